"""The host of application-specific logic: the apps' Python handler classes and
their context (``context``: what a handler may do), each app's handler loaded
and called (``handlers``), its bounded queue (``queues``) and worker (``workers``),
the ring buffer's consumer thread (``consumer``), and the host that puts them
together, live and in replay (``host``).

May import: abi, control (the Controller handlers change the program through).
"""
