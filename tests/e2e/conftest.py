"""End-to-end tests drive real SIPp processes: without SIPp they fail loudly, never skip."""

from __future__ import annotations

import pytest

from tests.e2e.sipp import SippMissingError, sipp_executable


@pytest.fixture(autouse=True)
def _sipp_installed() -> None:
    try:
        sipp_executable()
    except SippMissingError as exc:
        pytest.fail(str(exc), pytrace=False)
