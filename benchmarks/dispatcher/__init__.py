"""The "multi-program system" deployment of the four reference apps: an entry XDP
program (``entry.c``: parses the outer headers, keeps the counters all apps share) that
tail-calls a chain of xdpmon's own per-app programs (each app compiled alone, wrapped by
``wrap.py`` to tail-call the next), loaded by ``loader.DispatcherApps``."""
