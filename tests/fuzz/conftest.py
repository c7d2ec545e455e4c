"""Hypothesis settings of the fuzz tests: bounded and repeatable.

`derandomize=True` makes every run draw the same examples (CI repeats what a developer saw) and
`database=None` keeps no example file between runs; `max_examples` keeps each test to a few
seconds on a loaded two-core machine. A deeper run: `LINEBOX_FUZZ_EXAMPLES=20000 pytest
tests/fuzz` (random seeds, still no database).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_DEEP = int(os.environ.get("LINEBOX_FUZZ_EXAMPLES", "0"))

settings.register_profile(
    "linebox-fuzz",
    max_examples=_DEEP or 400,
    deadline=None,  # a loaded CI machine must not fail on a slow example; the count bounds it
    derandomize=not _DEEP,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
FUZZ = settings.get_profile("linebox-fuzz")
