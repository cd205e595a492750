"""Django app configuration: add ``"rohrpost"`` to ``INSTALLED_APPS`` (optional)."""

from __future__ import annotations

from django.apps import AppConfig

__all__ = ["RohrpostConfig"]


class RohrpostConfig(AppConfig):
    """Registers the built-in handlers and the settings checks when Django starts."""

    name = "rohrpost"
    verbose_name = "rohrpost"

    def ready(self) -> None:
        from rohrpost import checks, handlers  # noqa: F401 - importing registers "ping", checks
