"""Django settings for the server the end-to-end tests start (see :mod:`tests.e2e.app`)."""

from __future__ import annotations

SECRET_KEY = "rohrpost-e2e-not-secret"
# Off on purpose: a failing handler must not leak its exception text to the client.
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["channels", "rohrpost"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# The server's log goes to a file the tests read: handler tracebacks must land there.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"rohrpost": {"handlers": ["stderr"], "level": "WARNING", "propagate": False}},
}
