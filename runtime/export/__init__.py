"""What a running instance gives to the tools operators already use.

``events`` writes the application events as JSON lines; ``prometheus`` serves the
statistics and counters on ``/metrics``, read from the maps at scrape time.

May import: abi.
"""
