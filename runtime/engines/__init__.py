"""Engines: things that execute a compiled program on frames, behind one protocol.

``kernel`` runs the loaded program under BPF_PROG_TEST_RUN on the capture's
clock; ``reference`` interprets the same program in Python. A live engine
(attached to interfaces) will join them.

May import: abi, capture, dataplane (and ``compiler``/``dsl``: the reference
interpreter is built from the IR).
"""
