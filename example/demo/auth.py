"""Token authentication for the demo: signed tokens checked by rohrpost's token hook.

``ROHRPOST["AUTHENTICATE"]`` names :func:`user_for_token`, so a client that
sends ``auth_jwt`` (rohrpost.js's ``token`` option, the Python client's
``token=``) is that user from then on. The tokens are signed with Django's
:mod:`django.core.signing` and expire after a day; ``manage.py demo_token
USERNAME`` prints one. A real application would use JWTs from its identity
provider the same way.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core import signing

from rohrpost import Forbidden

SALT = "demo.token"
MAX_AGE = 24 * 60 * 60


def make_token(user: Any) -> str:
    """A signed token that stands for ``user`` for a day."""
    return signing.dumps({"user": user.pk}, salt=SALT)


def user_for_token(token: str, scope: Any) -> Any:
    """The token hook: the active user a token stands for, or ``None``."""
    try:
        claims = signing.loads(token, salt=SALT, max_age=MAX_AGE)
    except signing.SignatureExpired:
        raise Forbidden("The token has expired.") from None
    except signing.BadSignature:
        return None
    return get_user_model().objects.filter(pk=claims.get("user"), is_active=True).first()
