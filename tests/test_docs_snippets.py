"""Code in docs/security.md and docs/testing.md, run as written."""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest

from rohrpost.exceptions import Forbidden
from rohrpost.registry import HandlerRegistry
from tests.walkthrough import ROOT


def python_blocks(page: str, after: str) -> list[str]:
    """The Python blocks of ``docs/<page>`` in the section that starts with ``after``."""
    text = (ROOT / "docs" / page).read_text().split(after, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


def load(name: str, code: str) -> types.ModuleType:
    module = types.ModuleType(name)
    sys.modules[name] = module
    exec(compile(code, f"<{name}>", "exec"), module.__dict__)  # noqa: S102 - the docs' own code
    return module


@pytest.fixture
def auth_module(settings: Any) -> Iterator[types.ModuleType]:
    """docs/security.md's ``myapp/auth.py``, with a key as long as startproject makes."""
    settings.SECRET_KEY = "k" * 50
    [code] = python_blocks("security.md", "## Tokens")
    assert code.startswith("# myapp/auth.py\n")
    yield load("myapp_auth", code)
    del sys.modules["myapp_auth"]


@pytest.mark.django_db
def test_a_token_made_by_the_docs_function_is_accepted_by_the_docs_hook(
    auth_module: Any, django_user_model: Any
) -> None:
    alice = django_user_model.objects.create_user("alice")
    token = auth_module.token_for(alice)
    assert token.count(".") == 2  # a signed JWT
    assert auth_module.user_for_token(token, {}) == alice


@pytest.mark.django_db
def test_an_integer_subject_is_refused_and_the_reason_logged(
    auth_module: Any, django_user_model: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The trap the docs warn about: PyJWT refuses ``{"sub": user.pk}``."""
    import jwt
    from django.conf import settings

    alice = django_user_model.objects.create_user("alice")
    token = jwt.encode({"sub": alice.pk}, settings.SECRET_KEY, algorithm="HS256")
    with caplog.at_level(logging.INFO, logger="myapp_auth"):
        assert auth_module.user_for_token(token, {}) is None
    assert caplog.messages == ["Token refused: Subject must be a string"]
    assert token not in caplog.text


@pytest.mark.django_db
def test_an_expired_token_is_refused_with_its_own_message(
    auth_module: Any, django_user_model: Any
) -> None:
    import datetime

    alice = django_user_model.objects.create_user("alice")
    token = auth_module.token_for(alice, lifetime=datetime.timedelta(seconds=-1))
    with pytest.raises(Forbidden, match=r"^The token has expired\.$"):
        auth_module.user_for_token(token, {})


def test_the_testing_docs_handler_tests_pass(registry: HandlerRegistry) -> None:
    [code, *_] = python_blocks("testing.md", "## The 4.x test double")
    module = load("testing_docs", code)
    try:
        module.test_ping_answers_pong()
        asyncio.run(module.test_join_records_the_group())
    finally:
        del sys.modules["testing_docs"]
    assert "join" in registry
