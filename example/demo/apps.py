"""The demo app: registers the demo's rohrpost handlers once Django is ready."""

from __future__ import annotations

from django.apps import AppConfig


class DemoConfig(AppConfig):
    """Imports :mod:`demo.handlers`, whose decorators add to rohrpost's registry."""

    name = "demo"
    verbose_name = "rohrpost demo"

    def ready(self) -> None:
        from demo import handlers  # noqa: F401 - imported for its registrations
