"""The host of application-specific logic: the apps' Python handler classes, their
context, and the dispatch of decoded events to them (``host``).

May import: abi.
"""
