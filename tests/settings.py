"""Django settings for rohrpost's own test suite."""

from __future__ import annotations

SECRET_KEY = "rohrpost-tests-not-secret"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "channels",
    "rohrpost",
    "tests.feedapp",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGGING_CONFIG = None

# The change-feed tests run on PostgreSQL too, when it answers (see tests/services.py:
# the tests that need it skip, or fail under ROHRPOST_REQUIRE_SERVICES=1, when it is absent).
from tests.services import POSTGRES, service_answers  # noqa: E402

if service_answers(POSTGRES["HOST"], POSTGRES["PORT"]):
    DATABASES["postgres"] = {"ENGINE": "django.db.backends.postgresql", **POSTGRES}
