"""Tests of the test infrastructure itself: the kernel guard, and a real BPF load."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import kernelguard
from kernelguard import FAIL, RUN, SKIP, kernel_guard

HERE = Path(__file__).resolve().parent

pytest_plugins = ["pytester"]


@pytest.mark.parametrize(
    ("reason", "require", "expected"),
    [
        (None, False, RUN),
        (None, True, RUN),
        ("no BPF", False, SKIP),
        ("no BPF", True, FAIL),
    ],
)
def test_kernel_guard_policy(reason, require, expected):
    assert kernel_guard(reason, require) == expected


def test_policy_values_are_the_documented_strings():
    assert (RUN, SKIP, FAIL) == ("run", "skip", "fail")


def test_forced_reason_overrides_probe(monkeypatch):
    monkeypatch.setenv(kernelguard.FORCE_ENV, "no BPF here")
    assert kernelguard.kernel_unavailable_reason() == (
        f"no BPF here (forced by {kernelguard.FORCE_ENV})"
    )


@pytest.mark.parametrize("require_val", ["1", "0", ""])
def test_require_env_parsing(monkeypatch, require_val):
    monkeypatch.setenv(kernelguard.REQUIRE_ENV, require_val)
    assert kernelguard.require_kernel() is (require_val == "1")


def _inner_session(pytester: pytest.Pytester, monkeypatch, require: bool):
    """Run a kernel-marked test in a child pytest with BPF forced unavailable."""
    for name in ("conftest.py", "kernelguard.py", "event_helpers.py"):
        shutil.copy(HERE / name, pytester.path / name)
    pytester.makepyfile(
        test_inner="""
        import pytest

        @pytest.mark.kernel
        def test_marked():
            pass

        def test_fixture(kernel):
            pass

        def test_plain():
            pass
        """
    )
    monkeypatch.setenv(kernelguard.FORCE_ENV, "simulated: no BPF")
    if require:
        monkeypatch.setenv(kernelguard.REQUIRE_ENV, "1")
    else:
        monkeypatch.delenv(kernelguard.REQUIRE_ENV, raising=False)
    return pytester.runpytest_subprocess("-ra", "-p", "no:cacheprovider")


def test_guard_skips_without_require(pytester, monkeypatch):
    result = _inner_session(pytester, monkeypatch, require=False)
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["*SKIPPED*simulated: no BPF (forced by XDPMON_FORCE_NO_BPF)*"])


def test_guard_fails_with_require(pytester, monkeypatch):
    result = _inner_session(pytester, monkeypatch, require=True)
    # pytest.fail() in the setup phase is reported as an error: the run fails either way.
    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines(
        ["*XDPMON_REQUIRE_KERNEL=1 but kernel test cannot run: simulated: no BPF*"]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED


@pytest.mark.kernel
def test_load_minimal_xdp_program():
    from bcc import BPF

    b = BPF(text="int xdp_pass(struct xdp_md *ctx) { return XDP_PASS; }")
    try:
        fn = b.load_func("xdp_pass", BPF.XDP)
        assert fn.fd > 0
    finally:
        b.cleanup()


def test_kernel_fixture_yields_bcc(kernel):
    assert hasattr(kernel, "BPF")
