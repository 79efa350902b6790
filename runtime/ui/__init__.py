"""Showing snapshots to operators: rich tables (``view``); the live view will join.

May import: abi.
"""
