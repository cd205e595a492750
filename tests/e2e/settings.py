"""Django settings for the server the end-to-end tests start (see :mod:`tests.e2e.app`)."""

from __future__ import annotations

import os

SECRET_KEY = "rohrpost-e2e-not-secret"
# Off on purpose: a failing handler must not leak its exception text to the client.
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["channels", "rohrpost"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
# tests/test_processes.py serves several processes on one Redis, configured the way
# channels_redis's README shows (a plain URL: redis-py's 5 s socket timeout included).
if _redis_url := os.environ.get("E2E_REDIS_URL"):
    _backends = {
        "core": "channels_redis.core.RedisChannelLayer",
        "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
    }
    _config: dict[str, object] = {"hosts": [_redis_url]}
    if _expiry := os.environ.get("E2E_GROUP_EXPIRY"):
        _config["group_expiry"] = int(_expiry)
    CHANNEL_LAYERS = {
        "default": {"BACKEND": _backends[os.environ["E2E_REDIS_LAYER"]], "CONFIG": _config}
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# tests.e2e.app declares subscription kinds with history (kept in Redis, or in memory).
ROHRPOST = {"HISTORY": {"ENABLED": True, "SIZE": int(os.environ.get("E2E_HISTORY_SIZE", "1000"))}}
# The server's log goes to a file the tests read: handler tracebacks must land there.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"rohrpost": {"handlers": ["stderr"], "level": "WARNING", "propagate": False}},
}
