"""``manage.py demo_token USERNAME``: print a token a client can authenticate with.

The token goes in a request's ``auth_jwt`` field (rohrpost.js's ``token``
option, ``python -m rohrpost ... --token``); see :mod:`demo.auth`.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from demo.auth import make_token


class Command(BaseCommand):
    help = "Print a token (valid for a day) that authenticates rohrpost requests as USERNAME."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"No user called {options['username']!r}.")
        self.stdout.write(make_token(user))
