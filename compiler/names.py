"""Rules for the identifiers a spec may define.

App, stat, alias and param names end up as C identifiers in the generated XDP
program and as Python identifiers in the ASL stubs and the manifest. So they
are limited to ``[A-Za-z_][A-Za-z0-9_]{0,63}``, may not be a C or Python
keyword (nor a BPF/C type name) and may not use the prefixes the compiler keeps
for itself. Together with string escaping in codegen this means no spec can
inject code.
"""

from __future__ import annotations

import re

IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
MAX_LEN = 64

C_KEYWORDS = frozenset("""
auto break case char const continue default do double else enum extern float for goto if
inline int long register restrict return short signed sizeof static struct switch typedef
union unsigned void volatile while _Alignas _Alignof _Atomic _Bool _Complex _Generic
_Imaginary _Noreturn _Static_assert _Thread_local asm typeof
""".split())

# Type and macro names that the generated C relies on: the kernel's integer types
# (``typedef __s8 s8`` ... in the headers BCC includes), C's, and the names of
# xdpmon_main's locals. Spec names were C identifiers once; the C now names maps and
# slots by content (compiler/identity.py) and spec names reach it only in comments
# and prefixed (``xm_rb_APP``), but the rule stays: a valid spec stays valid.
C_RESERVED = frozenset("""
u8 u16 u32 u64 s8 s16 s32 s64 __u8 __u16 __u32 __u64 __be16 __be32 size_t NULL true false
bool ctx data data_end
""".split())

# Python's keywords and soft keywords (3.11), and ``self``: written out rather than
# taken from the running Python's ``keyword`` module, so that the language does not
# change with the Python that runs it (tests/test_readme.py checks that every hard
# keyword of the running Python is here).
PY_KEYWORDS = frozenset("""
False None True and as assert async await break class continue def del elif else except
finally for from global if import in is lambda nonlocal not or pass raise return try while
with yield _ case match self
""".split())

RESERVED_PREFIXES = ("xm_", "XM_", "xdpmon", "__", "bpf_", "BPF_")


def check_identifier(name: str) -> tuple[str, str | None] | None:
    """None if ``name`` is acceptable, else (message, hint). The message
    starts with the quoted name, so that callers can put what it names
    before it: "app name 'while' is a reserved word in C"."""
    if len(name) > MAX_LEN:
        return (f"'{name[:20]}...' is {len(name)} characters long; the limit is {MAX_LEN}",
                "names become C and Python identifiers; pick a shorter one")
    if not IDENT.match(name):
        return (f"'{name}' is not a valid name", "names are letters, digits and '_', not starting with a digit")
    if name in C_KEYWORDS or name in C_RESERVED:
        return (f"'{name}' is a reserved word in C", f"rename it, e.g. '{name}_'"
                if not name.endswith("_") else "rename it")
    if name in PY_KEYWORDS:
        return (f"'{name}' is a reserved word in Python", f"rename it, e.g. '{name}_'")
    for prefix in RESERVED_PREFIXES:
        if name.startswith(prefix):
            other = name[len(prefix):].lstrip("_")
            return (f"'{name}' starts with '{prefix}', which is reserved for the compiler",
                    f"rename it, e.g. '{other}'" if other and check_identifier(other) is None else "rename it")
    return None
