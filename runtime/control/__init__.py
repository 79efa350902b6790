"""The control plane (not written yet). It will own the one writer of a running
program's params, enable bits and blocklist entries (with time-to-live, a size
bound, an allowlist and a log-only default), the root-only control socket that
takes operators' commands, and deployment changes.

May import: abi, dataplane.
"""
