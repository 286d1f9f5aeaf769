"""Under CI=true a skipped test fails (except for a missing CUDA device); elsewhere skips stay skips."""

from __future__ import annotations

import pytest

SUITE = """
import pytest

def test_missing_browser():
    pytest.skip("needs Debian's chromium and chromium-driver")

def test_gpu():
    pytest.skip("no CUDA device")

@pytest.mark.skipif(True, reason="no CUDA device")
def test_gpu_marked():
    pass

@pytest.mark.xfail(reason="known")
def test_known():
    assert False

def test_ok():
    pass
"""

MODULE_SKIP = """
import pytest
pytest.importorskip("a_module_that_is_not_installed_anywhere")

def test_never_runs():
    pass
"""


def _run(pytester, monkeypatch, ci: str | None, source: str):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    pytester.makepyfile(test_suite=source)
    return pytester.runpytest_inprocess("-p", "ci_skips", "-ra")


def test_under_ci_a_skip_fails_but_no_cuda_does_not(pytester, monkeypatch):
    """CI=true: a missing browser fails; 'no CUDA device' stays a skip; xfail stays xfail."""
    result = _run(pytester, monkeypatch, "true", SUITE)
    result.assert_outcomes(passed=1, failed=1, skipped=2, xfailed=1)
    result.stdout.fnmatch_lines(["*CI=true: skipping is not allowed here*chromium*"])


def test_under_ci_a_module_importorskip_fails(pytester, monkeypatch):
    """CI=true: an optional import that fails at collection is an error, not a skip."""
    result = _run(pytester, monkeypatch, "true", MODULE_SKIP)
    outcomes = result.parseoutcomes()
    assert outcomes.get("skipped", 0) == 0 and (outcomes.get("errors", 0) + outcomes.get("failed", 0)) == 1


@pytest.mark.parametrize("ci", [None, "false"])
def test_outside_ci_skips_stay_skips(pytester, monkeypatch, ci):
    """Without CI=true every skip is a skip."""
    result = _run(pytester, monkeypatch, ci, SUITE)
    result.assert_outcomes(passed=1, skipped=3, xfailed=1)
