"""A pytest plugin: under ``CI=true`` a skipped test is a failed test, unless the skip is allowed.

CI must not pass with tests quietly skipped (a missing Chromium, an optional
extra that fails to import, absent shared data). Only the skips whose reason
contains one of :data:`ALLOWED` (hardware this machine does not have) stay
skips. Collection-time skips (``pytest.importorskip`` at module level) are
caught too. Loaded by ``tests/conftest.py``; ``pytest -p ci_skips`` loads it
elsewhere.
"""

from __future__ import annotations

import os

import pytest

#: Skip reasons that CI accepts: the hardware is simply not there.
ALLOWED = ("no CUDA device",)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (file, line, "Skipped: why")
        return str(longrepr[2])
    return str(longrepr)


def _forbidden(report) -> bool:
    return _in_ci() and report.skipped and not hasattr(report, "wasxfail") and not any(a in _reason(report) for a in ALLOWED)


def _fail(report) -> None:
    why = _reason(report)
    report.outcome = "failed"
    report.longrepr = f"CI=true: skipping is not allowed here ({why}); install what the test needs or fix the test"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if _forbidden(report):
        _fail(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if _forbidden(report):
        _fail(report)
