"""A separate process that saves one ``Task`` and exits at once.

``python -m tests.feedapp.script REDIS_URL PREFIX DB_PATH PK`` configures Django
with channels_redis and a file SQLite database, creates the task ``PK`` and
returns without waiting for anything: the push must still leave the process
(the publisher flushes its queue at exit).
"""

from __future__ import annotations

import sys


def main(redis_url: str, prefix: str, db_path: str, pk: int) -> None:
    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=["django.contrib.contenttypes", "channels", "rohrpost", "tests.feedapp"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": db_path}},
        CHANNEL_LAYERS={
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {"hosts": [redis_url], "prefix": prefix},
            }
        },
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        USE_TZ=True,
    )
    django.setup()

    from django.db import connection

    from tests.feedapp.models import Task

    with connection.schema_editor() as editor:
        editor.create_model(Task)
    Task.objects.create(pk=pk, title="from another process")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
