"""The ``xdpmon`` command line (``main``): thin click commands over library calls.

May import: any runtime package (and ``compiler``, ``dsl``).
"""

from .main import main

__all__ = ["main"]
