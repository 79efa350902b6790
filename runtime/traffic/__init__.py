"""Traffic generation on live interfaces: frames sent at a controlled rate by the
kernel's XDP live-frames test mode (BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES)
from a network namespace, for ``xdpmon demo``, hot-reload tests and the live
benchmarks.

    frames      template frames (UDP, TCP SYN) with exact checksums; addresses in
                198.18.0.0/15 only
    xdp_live    the BPF_PROG_TEST_RUN call in live-frames mode (ctypes, no libbpf)
    netns       running the calling thread in a named network namespace
    livegen     the generator: its XDP program (livegen.c), pacing, counts

May import: dataplane.
"""
