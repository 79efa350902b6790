"""The per-packet benchmark harness of xdpmon's generated programs.

One job per module:

- ``frames``: the benchmark frames (scapy), each with what the program must make of it;
- ``newflow``: a wrapper XDP program that gives every repeat of a frame a new source;
- ``configs``: what is measured (the floor, apps alone, merged, ...) and the small
  interface another configuration implements to be plugged in;
- ``checks``: after every run, the program's counters must have grown exactly as R
  repeats of the frame meant demand (a frame changed between repeats fails loudly);
- ``runner``: configurations interleaved round by round under BPF_PROG_TEST_RUN;
- ``stats``: medians, quartiles, paired differences against the floor;
- ``equivalence``: merged and separate programs compute the same statistics;
- ``scaling``: generated apps with controlled overlap, merged against separate;
- ``report``: JSON, markdown and PNG plots under benchmarks/results/.

``benchmarks/bench_merge.py`` puts them together (``make bench BENCH_ARGS=merge``).
"""
