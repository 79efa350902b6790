"""Pure-Python reference implementations that the kernel programs are checked against.

``decoder`` mirrors the XDP packet parser (codegen_templates/parse.c.j2) exactly.
"""

from .decoder import ALL_LAYERS, IPV6_EXT_MAX, Decoded, decode

__all__ = ["ALL_LAYERS", "IPV6_EXT_MAX", "Decoded", "decode"]
