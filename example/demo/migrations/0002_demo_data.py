"""The demo's starting data: a public board and two users with private boards.

``alice`` (also an admin, for /admin/) and ``bob`` both have the password
``rohrpost``: a local demo bound to 127.0.0.1, not a deployment.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.hashers import make_password
from django.db import migrations

DEMO_PASSWORD = "rohrpost"
FIRST_TASKS = [
    ("Open this page in a second tab", True),
    ("Add a task in one tab and watch the other", False),
    ("Edit a task in the admin (/admin/, alice / rohrpost)", False),
    ("Run `python manage.py board add 'From the shell'`", False),
]


def create_demo_data(apps: Any, schema_editor: Any) -> None:
    user_model = apps.get_model("auth", "User")
    board_model = apps.get_model("demo", "Board")
    task_model = apps.get_model("demo", "Task")
    public = board_model.objects.create(name="Everyone's board")
    for title, done in FIRST_TASKS:
        task_model.objects.create(board=public, title=title, done=done)
    for name, admin in (("alice", True), ("bob", False)):
        user = user_model.objects.create(
            username=name,
            password=make_password(DEMO_PASSWORD),
            is_staff=admin,
            is_superuser=admin,
        )
        private = board_model.objects.create(name=f"{name}'s board", owner=user)
        task_model.objects.create(board=private, title=f"Only {name} sees this board")


def remove_demo_data(apps: Any, schema_editor: Any) -> None:
    apps.get_model("demo", "Board").objects.all().delete()
    apps.get_model("auth", "User").objects.filter(username__in=["alice", "bob"]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("demo", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(create_demo_data, remove_demo_data)]
