"""The ASGI application ``make demo`` serves with uvicorn.

HTTP goes to Django (static files included while ``DEBUG`` is on, since no
``runserver`` is there to serve them); WebSockets on ``/ws/rohrpost/`` go to
rohrpost, behind the session/auth middleware and an ``Origin`` check against
``ALLOWED_HOSTS``.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings")
# Set up Django before importing anything that touches models (auth, consumers).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402 - needs Django set up
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402 - needs Django set up
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402 - kept with the imports above
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from demo.routing import websocket_urlpatterns  # noqa: E402 - imports the consumers

http_application = ASGIStaticFilesHandler(django_asgi_app) if settings.DEBUG else django_asgi_app

application = ProtocolTypeRouter(
    {
        "http": http_application,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
