"""Django app configuration: add ``"rohrpost"`` to ``INSTALLED_APPS``.

When Django starts, the app registers the built-in ``ping`` handler and the
system checks (:mod:`rohrpost.checks`), and imports the ``rohrpost_handlers``
module of every installed app that has one, as ``django.contrib.admin``
imports ``admin.py``: a handler registered with ``@rohrpost_handler`` or a
``Subscriptions(...).install()`` there needs no import of its own.
"""

from __future__ import annotations

from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules

__all__ = ["HANDLER_MODULE", "RohrpostConfig"]

#: The module name looked for in every installed app.
HANDLER_MODULE = "rohrpost_handlers"


class RohrpostConfig(AppConfig):
    """Registers the built-in handlers and the checks; autodiscovers handler modules."""

    name = "rohrpost"
    verbose_name = "rohrpost"

    def ready(self) -> None:
        from rohrpost import checks, handlers, metrics  # noqa: F401 - registers "ping", checks

        metrics.configure()  # reads ROHRPOST["METRICS"] now, not on the first frame

        autodiscover_modules(HANDLER_MODULE)
