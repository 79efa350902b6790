"""Benchmarks: each ``benchmarks/bench_*.py`` module defines ``main()``; run them all with
``python -m benchmarks`` (or ``make bench``)."""
