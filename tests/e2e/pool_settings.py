"""Django settings for the server the sync-pool tests start (see :mod:`tests.e2e.pool_app`).

The test chooses through the environment, before the server starts:

- ``ROHRPOST_POOL_THREADS``: ``ROHRPOST["SYNC_THREADS"]`` (default 1);
- ``ROHRPOST_POOL_DB``: ``sqlite`` (a file, ``ROHRPOST_POOL_SQLITE``) or
  ``postgres`` (the test PostgreSQL database, tests.services.POSTGRES, with the
  ``application_name`` ``ROHRPOST_POOL_APP``, so a test can count the server's
  connections in ``pg_stat_activity``).
"""

from __future__ import annotations

import os
from typing import Any

SECRET_KEY = "rohrpost-pool-not-secret"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["channels", "rohrpost"]
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ROHRPOST = {"SYNC_THREADS": int(os.environ.get("ROHRPOST_POOL_THREADS", "1"))}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"rohrpost": {"handlers": ["stderr"], "level": "WARNING", "propagate": False}},
}

DATABASES: dict[str, Any]
if os.environ.get("ROHRPOST_POOL_DB") == "postgres":
    from tests.services import POSTGRES

    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            **POSTGRES,
            "OPTIONS": {"application_name": os.environ.get("ROHRPOST_POOL_APP", "rohrpost-pool")},
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("ROHRPOST_POOL_SQLITE", "pool.sqlite3"),
        }
    }
