"""Pure-Python reference implementations that the kernel programs are checked against.

``decoder`` mirrors the XDP packet parser (codegen_templates/parse.c.j2) exactly.
``engine.ReferenceEngine`` executes a whole merged program (the IR, compiled to one
Python function by ``pycompile``, with the parser rendered by ``pyparse``) behind the
engine protocol of runtime.engines.base: ``xdpmon replay --engine reference``.
"""

from .decoder import ALL_LAYERS, IPV6_EXT_MAX, Decoded, decode

__all__ = ["ALL_LAYERS", "IPV6_EXT_MAX", "Decoded", "decode", "ReferenceEngine"]


def __getattr__(name):
    if name == "ReferenceEngine":          # imported lazily: it pulls in the compiler
        from .engine import ReferenceEngine
        return ReferenceEngine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
