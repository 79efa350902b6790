"""Shared pytest configuration: the kernel-test guard.

Tests that need the kernel are marked ``@pytest.mark.kernel`` or request the ``kernel``
fixture. Before each such test the guard probes (once per session) whether BPF programs
can be loaded; if not, the test is skipped with the reason, or fails with it when
``XDPMON_REQUIRE_KERNEL=1`` (as in CI), so kernel coverage can never silently vanish.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import kernelguard  # noqa: E402

# Every program the tests load is compiled with clang's warnings as errors
# (runtime/dataplane/loader.py); CLI subprocesses inherit it.
os.environ.setdefault("XDPMON_WERROR", "1")


def pytest_configure(config: pytest.Config) -> None:
    # Also declared in pyproject.toml; repeated so the marker exists in any rootdir.
    config.addinivalue_line("markers", "kernel: needs root and BPF")
    config.addinivalue_line("markers", "slow: takes seconds; `make quick` leaves these out")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Tests that use the fixture get the marker too, so `-m kernel` selects them.
    for item in items:
        if "kernel" in getattr(item, "fixturenames", ()) and item.get_closest_marker("kernel") is None:
            item.add_marker(pytest.mark.kernel)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("kernel") is None:
        return
    reason = kernelguard.kernel_unavailable_reason()
    action = kernelguard.kernel_guard(reason, kernelguard.require_kernel())
    if action == kernelguard.SKIP:
        pytest.skip(reason)
    elif action == kernelguard.FAIL:
        pytest.fail(f"{kernelguard.REQUIRE_ENV}=1 but kernel test cannot run: {reason}", pytrace=False)


@pytest.fixture(scope="session")
def kernel():
    """The ``bcc`` module, once the guard has established that BPF works here."""
    import bcc

    return bcc


@pytest.fixture(params=[pytest.param("kernel", marks=pytest.mark.kernel), "reference"])
def engine(request, tmp_path):
    """``engine(spec_text)``: the replay build of one spec on each engine in turn (the
    kernel's, a kernel test, and the reference interpreter): tests/engine_helpers.py."""
    from engine_helpers import EngineMaker

    maker = EngineMaker(request.param, tmp_path)
    yield maker
    maker.close()


@pytest.fixture
def veth_pair(kernel):
    """Two network namespaces joined by a veth pair (tests/netns.py); removed after the test."""
    from netns import VethPair

    with VethPair() as pair:
        yield pair


@pytest.fixture(autouse=True)
def _events_follow_the_schema():
    """Every event written in the test's process validates against examples/events.schema.json
    (tests/event_helpers.py)."""
    from event_helpers import checking_writes

    with checking_writes() as bad:
        yield
    assert not bad, f"events not valid by examples/events.schema.json: {bad[:3]}"
