"""The runtime's view of the compiler's artifacts: what the bytes mean.

Owns the typed manifest view (``manifest``), the decoding of keys and event
records (``records``), the decoding of raw map contents into snapshots
(``snapshot``) and the Python mirror of the kernel's integer helpers (``hll``).
Every other runtime package reads the manifest through this package only, so a
change of the manifest's fields is absorbed here.

May import: nothing from runtime (and neither ``compiler`` nor ``dsl``).
"""
