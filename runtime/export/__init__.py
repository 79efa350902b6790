"""Exporters (not written yet). It will own the Prometheus metrics, computed from
snapshots at scrape time.

May import: abi.
"""
