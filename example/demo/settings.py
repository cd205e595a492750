"""Settings of the rohrpost demo: a local, zero-setup development server.

Two environment variables change the defaults:

- ``DEMO_DB_PATH``: the SQLite file (default ``example/db.sqlite3``); the
  tests point it at a temporary file.
- ``REDIS_URL``: use ``channels_redis`` with that server instead of the
  in-memory channel layer (needed once several server processes share groups).
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

# A local demo: the key guards nothing and DEBUG shows errors in the page.
SECRET_KEY = "rohrpost-demo-not-a-secret"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rohrpost",
    "demo.apps.DemoConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demo.urls"
ASGI_APPLICATION = "demo.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DEMO_DB_PATH") or BASE_DIR / "db.sqlite3",
    }
}

_redis_url = os.environ.get("REDIS_URL")
if _redis_url:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py 8 reads with a 5 s timeout by default, the time channels_redis
            # blocks in every receive: without this, idle sockets close (rohrpost.W003).
            "CONFIG": {"hosts": [{"address": _redis_url, "socket_timeout": None}]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# The JavaScript client comes with the rohrpost app: /static/rohrpost/rohrpost.js.

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "index"
LOGOUT_REDIRECT_URL = "index"

ROHRPOST = {
    # Clients may authenticate with a token in `auth_jwt` (see demo.auth).
    "AUTHENTICATE": "demo.auth.user_for_token",
    # Boards keep their recent pushes: a page that reconnects gets what it missed
    # (docs/delivery.md). In memory with the in-memory layer, on Redis with REDIS_URL.
    "HISTORY": {"ENABLED": True},
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"rohrpost": {"handlers": ["console"], "level": "INFO"}},
}
