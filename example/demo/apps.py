"""The demo app: registers the demo's rohrpost handlers once Django is ready."""

from __future__ import annotations

from django.apps import AppConfig


class DemoConfig(AppConfig):
    """Imports the handler modules, whose decorators add to rohrpost's registry."""

    name = "demo"
    verbose_name = "rohrpost demo"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from demo import board, handlers, signals  # noqa: F401 - imported for their registrations
