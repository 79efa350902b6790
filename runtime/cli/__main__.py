"""``python -m runtime.cli``: the ``xdpmon`` command."""

from .main import main

main()
