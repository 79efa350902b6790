"""The ``xdpmon`` command line (``main``): thin click commands over library calls;
how a load failure is reported (``load_failures``) and Ctrl-C (``interrupt``).

May import: any runtime package (and ``compiler``, ``dsl``).
"""

from .main import main

__all__ = ["main"]
