"""The live benchmark's programs (benchmarks/live_configs.py): the DROP wrapper runs all
of xdpmon's work and drops, the PASS program passes, the floors are what they say."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.live_configs import CONFIGS, drop_wrapped  # noqa: E402
from runtime.dataplane.bpf_test_run import test_run  # noqa: E402
from runtime.traffic import frames as F  # noqa: E402


@pytest.mark.kernel
@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_each_configuration_gives_its_verdict(kernel, config):
    frame = F.build("udp", "198.18.128.7", "198.18.0.1").frame
    p = config.load()
    try:
        before = p.frames()
        assert [test_run(p.fd, frame).verdict for _ in range(3)] == [f"XDP_{config.verdict}"] * 3
        if before is not None:                       # xdpmon counted every frame: its work was done
            assert p.frames() - before == 3
    finally:
        p.close()


def test_the_wrapper_needs_one_entry():
    with pytest.raises(ValueError, match="has 0 entry functions"):
        drop_wrapped("int main(void) { return 0; }")
    out = drop_wrapped("int xdpmon_main(struct xdp_md *ctx)\n{ return XDP_PASS; }\n")
    assert out.startswith("static __always_inline int xm_monitor_body(struct xdp_md *ctx)")
    assert "return verdict == XDP_PASS ? XDP_DROP : verdict;" in out
