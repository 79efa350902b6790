"""The control plane: the one writer of a running program's params, enable bits
and blocklist entries (``controller``), operators' values with units
(``values``), the blocklist with its allowlist, bound and time-to-live
(``blocklist``), the root-only control socket (``socket``) and the deployment
config (``config``).

May import: abi, dataplane (and ``dsl``: operators' values take the language's units).
"""
