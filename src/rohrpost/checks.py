"""Django system checks for rohrpost (run by ``manage.py check``, and once at start-up).

=================  ==========================================================
``rohrpost.E001``  a problem with the ``ROHRPOST`` setting: an unknown key (a
                   typo), a value of the wrong type or out of range, a token
                   hook that does not import
``rohrpost.W001``  no channel layer: ``CHANNEL_LAYERS`` has no ``"default"``,
                   so groups, subscriptions and the change feed cannot work
``rohrpost.W002``  ``"rohrpost"`` is not in ``INSTALLED_APPS``: no JavaScript
                   client as a static file, no handler autodiscovery, and
                   ``manage.py check`` runs none of these checks
=================  ==========================================================

ASGI servers run no system checks, so :func:`rohrpost.startup.check_once` runs
:func:`rohrpost_problems` when a process opens its first rohrpost connection
and logs what it finds.
"""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, Warning, register

from rohrpost import conf

__all__ = ["check_channel_layers", "check_settings", "rohrpost_problems"]

SETTINGS_HINT = "See rohrpost.conf for every key and its meaning."


@register("rohrpost")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Report every problem with ``settings.ROHRPOST`` as an error ``rohrpost.E001``."""
    from django.conf import settings

    if not hasattr(settings, "ROHRPOST"):
        return []
    return [
        Error(problem, hint=SETTINGS_HINT, id="rohrpost.E001")
        for problem in conf.problems(settings.ROHRPOST)
    ]


@register("rohrpost")
def check_channel_layers(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Warn (``rohrpost.W001``) when there is no default channel layer."""
    from django.conf import settings

    layers = getattr(settings, "CHANNEL_LAYERS", None)
    if isinstance(layers, dict) and isinstance(layers.get("default"), dict):
        return []
    return [
        Warning(
            "CHANNEL_LAYERS has no 'default' layer: joining groups, subscriptions, "
            "send_to_group and the change feed cannot work.",
            hint=(
                "For one process: CHANNEL_LAYERS = {'default': {'BACKEND': "
                "'channels.layers.InMemoryChannelLayer'}}; for several, channels_redis "
                "(pip install 'rohrpost[redis]')."
            ),
            id="rohrpost.W001",
        )
    ]


def rohrpost_problems() -> list[CheckMessage]:
    """Every problem rohrpost's checks find, ``INSTALLED_APPS`` included (for start-up)."""
    from django.apps import apps

    problems = [*check_settings(), *check_channel_layers()]
    if not apps.is_installed("rohrpost"):
        problems.insert(
            0,
            Warning(
                "'rohrpost' is not in INSTALLED_APPS: the JavaScript client is not served "
                "as a static file, handler modules are not autodiscovered, and "
                "manage.py check does not check rohrpost's settings.",
                hint="Add 'rohrpost' to INSTALLED_APPS.",
                id="rohrpost.W002",
            ),
        )
    return problems
