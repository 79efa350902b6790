"""Traffic generation on live interfaces: frames sent at a controlled rate from a
network namespace by the kernel's XDP live-frames test mode (BPF_PROG_TEST_RUN with
BPF_F_TEST_XDP_LIVE_FRAMES), or by an AF_PACKET transmit ring where the kernel refuses
that mode; for ``xdpmon demo``, hot-reload tests and the live benchmarks.

    frames      template frames (UDP, TCP SYN) with exact checksums, and frame n of a
                run; addresses in 198.18.0.0/15 only
    xdp_live    the BPF_PROG_TEST_RUN call in live-frames mode (ctypes, no libbpf), and
                whether this kernel runs it
    netns       running the calling thread in a named network namespace
    veth        two namespaces joined by a veth pair (the demo's and the tests' bed)
    pacing      calls of a chunk of frames at a controlled rate, and what they sent
    livegen     the generator: its XDP program (livegen.c), counts; open_generator
                picks live frames, or where the kernel refuses them:
    txring      the same frames from an AF_PACKET transmit ring

May import: dataplane.
"""
