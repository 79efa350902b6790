"""The four reference apps written by hand in C (``four_apps.c``) and their loader
(``loader.HandwrittenApps``): the expert's version that xdpmon's generated program is
measured against (benchmarks/bench_handwritten.py)."""
