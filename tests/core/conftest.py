"""Fixtures of the sans-IO gateway tests; the fake network itself is tests/core/network.py."""

from __future__ import annotations

import pytest

from tests.core.network import Office, office


@pytest.fixture
def o() -> Office:
    """The standard office: phones 101..103 registered, the provider, time at 0 s."""
    return office()
