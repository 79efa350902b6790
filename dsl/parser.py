"""Parse .mon text into the AST of dsl/ast.py.

The grammar is dsl/mon.lark (Lark, LALR(1), positions kept). A syntax error
stops one app, not the file: when the whole file does not parse, every app is
parsed on its own so that each broken app reports its first error and every
good app still reaches semantic analysis.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from functools import lru_cache
from pathlib import Path

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import (UnexpectedCharacters, UnexpectedEOF, UnexpectedInput,
                             UnexpectedToken, VisitError)

from . import ast as A
from .errors import Diagnostic, SpecError
from .units import per_ns

GRAMMAR = Path(__file__).with_name("mon.lark")

# Spec files are small; this bound keeps a stray binary from taking minutes.
MAX_SPEC_BYTES = 4 * 1024 * 1024

# Longer numbers than this cannot be meant (a u64 has 20 digits).
MAX_DIGITS = 40

APP_START = re.compile(r"^[ \t]*app\b", re.M)


@lru_cache(maxsize=1)
def _lark() -> Lark:
    return Lark(GRAMMAR.read_text(), parser="lalr", propagate_positions=True,
                maybe_placeholders=True, start="start")


# ---- readable names for the grammar's terminals ----------------------------

_TERMINAL_WORDS = {
    "NAME": "a name",
    "INT": "a number",
    "QUANTITY": "a number with a unit",
    "IPV4": "an IPv4 address",
    "IPV6": "an IPv6 address",
    "MAC": "a MAC address",
    "STRING": "a quoted string",
    "COMPOP": "a comparison (==, !=, <, <=, >, >=)",
    "ADDOP": "'+' or '-'",
    "MULOP": "'*' or '/'",
    "BANDOP": "'&'",
    "$END": "end of file",
}


def _terminal_word(name: str) -> str:
    if name in _TERMINAL_WORDS:
        return _TERMINAL_WORDS[name]
    try:
        term = _lark().get_terminal(name)
    except KeyError:
        return name.lower()
    if term.pattern.type == "str":
        return f"'{term.pattern.value}'"
    return name.lower()


# Terminals that can continue an expression, and those that can start a value:
# when several are possible they are named as one group, not listed one by one.
_OPERATORS = {"AND", "OR", "NOT", "IN", "COMPOP", "ADDOP", "MULOP", "BANDOP", "DOT", "LSQB"}
_VALUES = {"INT", "QUANTITY", "DECIMAL", "IPV4", "IPV6", "MAC", "NAME", "LPAR", "PARAM", "SIZE",
           "TRUE", "FALSE", "NOT"}


def _expected_words(expected) -> list[str]:
    expected = set(expected) - {"$END"}
    groups = []
    if len(expected & _OPERATORS) >= 3:
        expected -= _OPERATORS
        groups.append("an operator")
    if {"INT", "IPV4"} <= expected:
        groups.append("a field, a number or an address" if "NAME" in expected else "a number or an address")
        expected -= _VALUES
    words = sorted({_terminal_word(e) for e in expected})
    # Literal keywords/punctuation first, then descriptive words.
    return sorted(words, key=lambda w: (not w.startswith("'"), w)) + groups


def _expected_of(err) -> set[str]:
    """The terminals that could really come next. LALR's own list is merged
    across states and names tokens that would fail a moment later; the
    interactive parser tries each one."""
    expected = set(getattr(err, "expected", None) or ())
    ip = getattr(err, "interactive_parser", None)
    if ip is not None:
        try:
            expected = set(ip.accepts()) or expected
        except Exception:        # only a refinement: fall back to Lark's list
            pass
    return expected


def _join(words: list[str]) -> str:
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def _expecting(expected) -> str:
    """``, expected X, Y or Z`` -- or nothing when the list would be too long
    to help."""
    words = _expected_words(expected)
    if not words or len(words) > 8:
        return ""
    return ", expected " + _join(words)


def _token_text(tok: Token) -> str:
    if tok.type == "$END":
        return "end of file"
    text = str(tok)
    if len(text) > 30:
        text = text[:27] + "..."
    return f"'{text}'"


def _unclosed_brace(text: str, upto: int) -> tuple[int, int] | None:
    """Line and column of the innermost '{' still open at offset ``upto``,
    ignoring comments and strings."""
    stack = []
    line, col = 1, 1
    i = 0
    in_str = False
    while i < min(upto, len(text)):
        ch = text[i]
        if in_str:
            if ch == "\\":
                i += 1
                col += 1
            elif ch == '"' or ch == "\n":
                in_str = False
        elif ch == "#":
            while i < len(text) and text[i] != "\n":
                i += 1
            continue
        elif ch == '"':
            in_str = True
        elif ch == "{":
            stack.append((line, col))
        elif ch == "}" and stack:
            stack.pop()
        if ch == "\n":
            line, col = line + 1, 1
        else:
            col += 1
        i += 1
    return stack[-1] if stack else None


def _char_word(ch: str) -> str:
    if ch == "'":
        return '"\'"'
    if ch.isprintable() and not ch.isspace():
        return f"'{ch}'"
    return f"U+{ord(ch):04X}"


def _never_closed(opened) -> str:
    return f"the '{{' at line {opened[0]}, column {opened[1]} is never closed"


def _syntax_diag(err: UnexpectedInput, path: str, text: str,
                 next_app: tuple[int, int, int] | None = None) -> Diagnostic:
    """A diagnostic for Lark's error. ``next_app``: when ``text`` is one app
    cut out of a file, the end of the cut and the line and column of the next
    app's keyword (the real token that follows, which the cut turned into an
    end of file)."""
    line = getattr(err, "line", 1) or 1
    col = getattr(err, "column", 1) or 1
    if isinstance(err, UnexpectedCharacters):
        pos = err.pos_in_stream
        ch = text[pos] if pos < len(text) else ""
        span = A.Span(path, line, col, line, col + 1)
        hint = None
        if ch == '"':
            end = text.find("\n", pos)
            end = len(text) if end < 0 else end
            return Diagnostic("unterminated string", A.Span(path, line, col, line, col + end - pos),
                              'a string ends with \'"\' on the same line')
        if ch in "!|":
            hint = "write conditions with 'and', 'or', 'not' and compare with '==' or '!='"
        elif ch == "'":
            hint = "strings use double quotes"
        elif ch == ";":
            hint = "statements end at the end of the line; no ';' is needed"
        elif ch == "=":
            hint = "compare with '=='"
        elif ch.isalpha() or ch.isdigit():
            hint = "names are ASCII letters, digits and '_'"
        return Diagnostic(f"unexpected character {_char_word(ch)}", span, hint)

    expected = _expected_of(err)
    if isinstance(err, UnexpectedEOF) or (isinstance(err, UnexpectedToken) and err.token.type == "$END"):
        if next_app is not None:        # the app ran into the next one
            cut, nline, ncol = next_app
            span = A.Span(path, nline, ncol, nline, ncol + 3)
            opened = _unclosed_brace(text, cut)
            return Diagnostic("unexpected 'app'" + _expecting(expected), span,
                              _never_closed(opened) if opened else None)
        # Point just past the last thing written, not at trailing blank lines.
        end_line, end_col = _line_col(text, len(text.rstrip()))
        span = A.Span(path, end_line, end_col, end_line, end_col + 1)
        opened = _unclosed_brace(text, len(text))
        return Diagnostic("unexpected end of file" + _expecting(expected), span,
                          _never_closed(opened) if opened else None)

    assert isinstance(err, UnexpectedToken)
    tok = err.token
    if tok.type == "BANDOP" and (tok.start_pos or 0) > 0 and text[tok.start_pos - 1] == "&":   # C's "&&"
        return Diagnostic("'&&' is not an operator", A.Span(path, line, col - 1, line, col + 1),
                          "write conditions with 'and', 'or', 'not'; '&' is the bitwise and of numbers "
                          "(tcp.flags & 0x02 != 0)")
    end_col = (tok.end_column or col + 1) if (tok.end_line or line) == line else col + len(str(tok).split("\n")[0])
    span = A.Span(path, line, col, line, max(end_col, col + 1))
    msg = f"unexpected {_token_text(tok)}" + _expecting(expected)
    hint = _hint_for_token(tok, expected, text)
    return Diagnostic(msg, span, hint)


def _hint_for_token(tok: Token, expected, text: str) -> str | None:
    exp = set(expected)
    if tok.type == "RBRACE" and "RBRACE" not in exp:
        if _unclosed_brace(text, tok.start_pos or 0) is None:
            return "this '}' closes nothing"
        return "something is missing before this '}'"
    if tok.type == "APP" or str(tok) == "app":
        opened = _unclosed_brace(text, tok.start_pos or 0)
        if opened:
            return _never_closed(opened)
    if tok.type == "EQUAL" and "COMPOP" in exp:
        return "compare with '=='"
    if tok.type == "INT" and "QUANTITY" in exp and "INT" not in exp:
        return f"add a unit, e.g. {tok}s"
    if tok.type == "NAME" and ("SELECT" in exp or "LBRACE" in exp and "AND" in exp):
        return "join conditions with 'and' or 'or'"
    if "LBRACE" in exp and tok.type != "LBRACE" and not exp & _OPERATORS:
        return "a block starts with '{'"
    option = _AGG_OPTION.search(text, 0, tok.start_pos or 0)
    if option and tok.type in ("INT", "QUANTITY"):
        return (f"an aggregate's options go inside its parentheses, after its fields: e.g. "
                f"{_OPTION_EXAMPLE[option.group(1)]}")
    return None


# "registers=64" written after an aggregate's ')' parses as the start of a new stat.
_AGG_OPTION = re.compile(r"\b(registers|width|depth)\s*=\s*\Z")
_OPTION_EXAMPLE = {"registers": "distinct(ip.src, registers=1024)", "width": "cms(ip.src, width=4096)",
                   "depth": "cms(ip.src, depth=8)"}


# ---- tree -> AST -----------------------------------------------------------

class _Build(Transformer):
    """Turns Lark's tree into dsl.ast nodes. Problems that the grammar cannot
    express (bad addresses, unknown units in rates) become diagnostics."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path
        self.diags: list[Diagnostic] = []

    # spans
    def _span(self, meta) -> A.Span:
        if getattr(meta, "empty", False):
            return A.Span(self.path, 1, 1, 1, 1)
        return A.Span(self.path, meta.line, meta.column, meta.end_line, meta.end_column)

    def _tspan(self, tok: Token) -> A.Span:
        return A.Span(self.path, tok.line, tok.column, tok.end_line, tok.end_column)

    def _int(self, tok: Token) -> int:
        """An INT token's value: decimal, or hexadecimal with 0x. A leading
        zero is refused: C would read 010 as octal, Python not at all."""
        text = str(tok)
        if len(text) > MAX_DIGITS:        # also keeps int() below Python's digit limit
            self._error(f"number '{text[:20]}...' is too long", self._tspan(tok),
                        "no count or duration needs that many digits")
            return 1
        if text[:2] in ("0x", "0X"):
            return int(text, 16)
        if len(text) > 1 and text[0] == "0":
            self._error(f"number '{text}' has a leading zero", self._tspan(tok),
                        f"write {text.lstrip('0') or '0'} (numbers are decimal, or hexadecimal with 0x)")
        return int(text, 10)

    def _error(self, msg: str, span: A.Span, hint: str | None = None):
        self.diags.append(Diagnostic(msg, span, hint))

    # terminals
    def NAME(self, tok):
        return tok

    def STRING(self, tok):
        return tok

    # literals
    @v_args(meta=True)
    def number(self, meta, children):
        tok = children[0]
        text = str(tok)
        span = self._tspan(tok)
        if len(text) > MAX_DIGITS:          # reported once; later checks see a harmless 1
            self._int(tok)
            unit = re.search(r"[A-Za-z]*$", text).group(0) if tok.type == "QUANTITY" else ""
            return A.Number(1, unit, text[:20] + "...", span)
        if tok.type == "INT":
            return A.Number(self._int(tok), "", text, span)
        if tok.type == "DECIMAL":
            self._error(f"'{text}' is not a whole number", span,
                        "only a number with a unit can have a fraction, e.g. 1.5s")
            return A.Number(int(text.split(".")[0]), "", text, span)
        m = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]+)", text)
        mag_text, unit = m.group(1), m.group(2)
        mag = float(mag_text) if "." in mag_text else int(mag_text)
        return A.Number(mag, unit, text, span)

    def IPV4(self, tok):
        return self._addr(tok, 4)

    def IPV6(self, tok):
        return self._addr(tok, 6)

    def MAC(self, tok):
        span = self._tspan(tok)
        return A.Addr("mac", bytes(int(x, 16) for x in str(tok).split(":")), None, str(tok), span)

    def _addr(self, tok, version):
        text = str(tok)
        span = self._tspan(tok)
        family = "ip4" if version == 4 else "ip6"
        try:
            if "/" in text:
                net = ipaddress.ip_network(text, strict=True)
                if net.version != version:
                    raise ValueError("wrong family")
                return A.Addr(family, net.network_address.packed, net.prefixlen, text, span)
            addr = ipaddress.ip_address(text)
            if addr.version != version:
                raise ValueError("wrong family")
            return A.Addr(family, addr.packed, None, text, span)
        except ValueError as e:
            hint = None
            if "/" in text:
                try:
                    net = ipaddress.ip_network(text, strict=False)
                    hint = f"the prefix has host bits set; did you mean {net}?"
                except ValueError:
                    maxlen = 32 if version == 4 else 128
                    hint = f"an IPv{version} prefix is an address and a length from 0 to {maxlen}"
            self._error(f"invalid IPv{version} {'prefix' if '/' in text else 'address'} '{text}'", span,
                        hint or (str(e) if "wrong family" not in str(e) else None))
            return A.Addr(family, bytes(4 if version == 4 else 16), None, text, span)

    @v_args(meta=True)
    def true(self, meta, _):
        return A.Bool(True, self._span(meta))

    @v_args(meta=True)
    def false(self, meta, _):
        return A.Bool(False, self._span(meta))

    @v_args(meta=True)
    def range_(self, meta, children):
        return A.Range(children[0], children[1], self._span(meta))

    # references
    @v_args(meta=True)
    def ref(self, meta, children):
        return A.Ref(tuple(str(c) for c in children), self._span(meta))

    @v_args(meta=True)
    def indexed_ref(self, meta, children):
        stat = children[0]
        member = None
        keys = []
        for c in children[1:]:
            if isinstance(c, A.Ref):
                keys.append(c)
            elif isinstance(c, Token):
                member = str(c)
        return A.IndexedRef(stat, tuple(keys), member, self._span(meta))

    @v_args(meta=True)
    def param_ref(self, meta, children):
        name, default = children
        return A.ParamRef(str(name), default, self._span(meta), self._tspan(name))

    @v_args(meta=True)
    def size_call(self, meta, children):
        return A.SizeOf(str(children[0]), self._span(meta), self._tspan(children[0]))

    # expressions
    @v_args(meta=True)
    def or_(self, meta, children):
        return self._boolop("or", meta, children)

    @v_args(meta=True)
    def and_(self, meta, children):
        return self._boolop("and", meta, children)

    def _boolop(self, op, meta, children):
        if len(children) == 1:          # the grammar's alias wraps single operands too
            return children[0]
        return A.BoolOp(op, tuple(children), self._span(meta))

    @v_args(meta=True)
    def not_(self, meta, children):
        return A.Not(children[0], self._span(meta))

    @v_args(meta=True)
    def compare(self, meta, children):
        left, op, right = children
        return A.Compare(str(op), left, right, self._span(meta))

    @v_args(meta=True)
    def arith(self, meta, children):
        left, op, right = children
        return A.Arith(str(op), left, right, self._span(meta))

    @v_args(meta=True)
    def in_(self, meta, children):
        return A.InSet(children[0], self._items(children[1]), False, self._span(meta))

    @v_args(meta=True)
    def not_in(self, meta, children):
        return A.InSet(children[0], self._items(children[1]), True, self._span(meta))

    def set_(self, children):
        return ("set", tuple(children))

    def _items(self, s):
        if isinstance(s, tuple) and s and s[0] == "set":
            return s[1]
        return (s,)

    # T1
    @v_args(meta=True)
    def select(self, meta, children):
        return ("select", children[0])

    @v_args(meta=True)
    def t1_block(self, meta, children):
        return ("t1", self._span(meta), [c[1] for c in children])

    # T2
    @v_args(meta=True)
    def kwarg(self, meta, children):
        return ("kwarg", str(children[0]), children[1], self._tspan(children[0]))

    @v_args(meta=True)
    def alias(self, meta, children):
        return ("alias", str(children[0]), self._tspan(children[0]))

    @v_args(meta=True)
    def aggregate(self, meta, children):
        func = children[0]
        args, opts, alias, alias_span = [], [], None, None
        for c in children[1:]:
            if c is None:
                continue
            if isinstance(c, A.Ref):
                args.append(c)
            elif c[0] == "kwarg":
                opts.append((c[1], c[2]))
            elif c[0] == "alias":
                alias, alias_span = c[1], c[2]
        return A.Aggregate(str(func), tuple(args), tuple(opts), alias, self._span(meta),
                           self._tspan(func), alias_span)

    @v_args(meta=True)
    def key(self, meta, children):
        return ("key", tuple(children), self._span(meta))

    @v_args(meta=True)
    def by_clause(self, meta, children):
        return ("by", children[0][1], children[0][2], self._span(meta))

    @v_args(meta=True)
    def where_clause(self, meta, children):
        return ("where", children[0], self._span(meta))

    @v_args(meta=True)
    def window_clause(self, meta, children):
        return ("window", children[0], self._span(meta))

    @v_args(meta=True)
    def size_clause(self, meta, children):
        return ("size", children[0], self._span(meta))

    @v_args(meta=True)
    def full_clause(self, meta, children):
        return ("on_full", str(children[0]), self._tspan(children[0]))

    def _options(self, clauses) -> A.StatOptions:
        seen: dict[str, A.Span] = {}
        kw: dict = {}
        for c in clauses:
            kind = c[0]
            if kind in seen:
                self._error(f"'{'on full' if kind == 'on_full' else kind}' given twice for one statistic",
                            c[-1], f"the first is at line {seen[kind].line}, column {seen[kind].col}")
                continue
            seen[kind] = c[-1]
            if kind == "by":
                kw["key"], kw["key_span"] = c[1], c[2]
            elif kind == "on_full":
                kw["on_full"], kw["on_full_span"] = c[1], c[2]
            else:
                kw[kind] = c[1]
        return A.StatOptions(**kw)

    @v_args(meta=True)
    def aggregate_stat(self, meta, children):
        name = children[0]
        aggs = [c for c in children[1:] if isinstance(c, A.Aggregate)]
        clauses = [c for c in children[1:] if isinstance(c, tuple)]
        return A.AggregateStat(str(name), tuple(aggs), self._options(clauses), self._span(meta),
                               self._tspan(name))

    @v_args(meta=True)
    def track_stat(self, meta, children):
        name, key, open_when, close_when, expire, *clauses = children
        opts = self._options(clauses)
        if opts.key:
            self._error("a track table is keyed by its own field list; 'by' is not allowed here",
                        opts.key_span)
        return A.TrackStat(str(name), key[1], open_when, close_when, expire, opts,
                           self._span(meta), self._tspan(name))

    @v_args(meta=True)
    def t2_block(self, meta, children):
        return ("t2", self._span(meta), children)

    # T3
    @v_args(meta=True)
    def limit(self, meta, children):
        count, unit = children
        span = self._span(meta)
        ns = per_ns(str(unit))
        if ns is None:
            self._error(f"unknown rate unit '/{unit}'", self._tspan(unit),
                        "write a rate as N/s, N/ms, N/m or N/h")
            ns = 1_000_000_000
        return A.Rate(self._int(count), str(unit), ns, span)

    @v_args(meta=True)
    def every(self, meta, children):
        return children[0]

    @v_args(meta=True)
    def send_packet(self, meta, children):
        fields = tuple(c for c in children if isinstance(c, A.Ref))
        limit = next((c for c in children if isinstance(c, A.Rate)), None)
        return A.SendPacket(fields, limit, self._span(meta))

    @v_args(meta=True)
    def send_summary(self, meta, children):
        every, limit = children
        return A.SendSummary(every, limit, self._span(meta))

    @v_args(meta=True)
    def enable_action(self, meta, children):
        name, dur = children
        return A.Enable(str(name), dur, self._span(meta), self._tspan(name))

    @v_args(meta=True)
    def alert_action(self, meta, children):
        msg, limit = children
        return A.Alert(_unquote(str(msg)), limit, self._span(meta))

    @v_args(meta=True)
    def rule(self, meta, children):
        return A.Rule(children[0], tuple(children[1:]), self._span(meta))

    @v_args(meta=True)
    def t3_block(self, meta, children):
        return ("t3", self._span(meta), children)

    # app
    @v_args(meta=True)
    def mode_decl(self, meta, children):
        return ("mode", self._span(meta), A.Mode(str(children[0]), self._tspan(children[0])))

    @v_args(meta=True)
    def asl_decl(self, meta, children):
        tok = children[0]
        return ("asl", self._span(meta), (_unquote(str(tok)), self._tspan(tok)))

    @v_args(meta=True)
    def param_decl(self, meta, children):
        name, default = children
        return ("param", self._span(meta), A.ParamDecl(str(name), default, self._span(meta), self._tspan(name)))

    @v_args(meta=True)
    def app(self, meta, children):
        name = children[0]
        kw: dict = {"selects": [], "stats": [], "rules": [], "params": []}
        blocks = []
        for kind, span, payload in children[1:]:
            blocks.append((kind, span))
            if kind == "t1":
                kw["selects"].extend(payload)
            elif kind == "t2":
                kw["stats"].extend(payload)
            elif kind == "t3":
                kw["rules"].extend(payload)
            elif kind == "param":
                kw["params"].append(payload)
            elif kind == "mode":
                kw.setdefault("mode", payload)
            elif kind == "asl":
                if "asl" not in kw:
                    kw["asl"], kw["asl_span"] = payload
        for k in ("selects", "stats", "rules", "params"):
            kw[k] = tuple(kw[k])
        return A.App(str(name), self._span(meta), self._tspan(name), blocks=tuple(blocks), **kw)

    def start(self, children):
        return list(children)


def _unquote(s: str) -> str:
    """The value of a double-quoted string literal (backslash escapes kept
    literal except \\\" and \\\\)."""
    body = s[1:-1]
    return re.sub(r'\\(["\\])', r"\1", body)


# ---- entry points ------------------------------------------------------------

def _too_large(path: str, size: str) -> SpecError:
    return SpecError([Diagnostic(f"file is too large for a spec ({size} bytes; the limit is {MAX_SPEC_BYTES})",
                                 A.Span(path, 1, 1, 1, 2))])


def read_source(path: str) -> bytes:
    """The bytes of the spec file at ``path``, read with a bound: at most
    MAX_SPEC_BYTES + 1 bytes are read whatever the file is, so a device that never
    ends (/dev/zero), a FIFO whose writer never stops or a huge file is refused
    after the limit instead of being read to the end. OSError when it cannot be
    read; SpecError when it is too large."""
    with open(path, "rb") as f:
        data = f.read(MAX_SPEC_BYTES + 1)
        if len(data) > MAX_SPEC_BYTES:
            st = os.fstat(f.fileno())
            raise _too_large(path, str(st.st_size) if stat.S_ISREG(st.st_mode) else f"more than {MAX_SPEC_BYTES}")
    return data


def decode_source(data: bytes, path: str) -> str:
    """Bytes of a spec file as text, or a SpecError pointing at the first byte
    that is not UTF-8 (or a NUL byte). The error carries the text decoded with
    replacement characters, so that the line can still be shown."""
    if len(data) > MAX_SPEC_BYTES:
        raise _too_large(path, str(len(data)))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        before = data[: e.start].decode("utf-8")
        line, col = _line_col(before, len(before))
        raise SpecError([Diagnostic(f"file is not valid UTF-8 (byte 0x{data[e.start]:02x})",
                                    A.Span(path, line, col, line, col + 1),
                                    "spec files are UTF-8 text")],
                        {path: data.decode("utf-8", "replace")}) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    nul = text.find("\0")
    if nul >= 0:
        line, col = _line_col(text, nul)
        raise SpecError([Diagnostic("file contains a NUL byte", A.Span(path, line, col, line, col + 1),
                                    "spec files are UTF-8 text")], {path: text})
    return text


def _line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


# Deepest nesting of operators in one expression. Later passes walk
# expressions recursively; this bound keeps them far from Python's stack limit
# (real specs nest a handful of levels).
MAX_NESTING = 100
_NESTING_RULES = {"or_", "and_", "not_", "compare", "arith", "in_", "not_in"}


def _too_deep(app: Tree) -> Tree | None:
    """The first expression node of ``app`` nested more than MAX_NESTING
    operators deep, if any (an iterative walk: it must not recurse itself)."""
    stack = [(app, 0)]
    while stack:
        node, depth = stack.pop()
        if node.data in _NESTING_RULES:
            depth += 1
            if depth > MAX_NESTING:
                return node
        stack.extend((c, depth) for c in node.children if isinstance(c, Tree))
    return None


def _parse_text(text: str, path: str, diags: list[Diagnostic]) -> Tree:
    """Lark's tree of ``text``, without the apps whose expressions nest too
    deeply (each reported in ``diags``)."""
    tree = _lark().parse(text)
    kept = []
    for app in tree.children:
        deep = _too_deep(app) if isinstance(app, Tree) else None
        if deep is None:
            kept.append(app)
            continue
        m = deep.meta
        diags.append(Diagnostic(f"expression is nested too deeply (more than {MAX_NESTING} operators)",
                                A.Span(path, m.line, m.column, m.line, m.column + 1),
                                "split it, or drop redundant parentheses and 'not's"))
    return Tree(tree.data, kept, tree.meta) if len(kept) != len(tree.children) else tree


def _build(tree: Tree, path: str, diags: list[Diagnostic]) -> list[A.App]:
    builder = _Build(path)
    try:
        apps = builder.transform(tree)
    except VisitError as e:          # a bug in a transformer method: do not hide it
        raise e.orig_exc from None
    diags.extend(builder.diags)
    return apps


def _deep(path: str) -> Diagnostic:
    return Diagnostic("expression is nested too deeply", A.Span(path, 1, 1, 1, 2))


def parse_text(text: str, path: str = "<string>") -> tuple[A.SpecFile, list[Diagnostic]]:
    """Parse ``text``; return the apps that parsed and every diagnostic."""
    diags: list[Diagnostic] = []
    try:
        tree = _parse_text(text, path, diags)
    except UnexpectedInput as first:
        return _parse_per_app(text, path, first)
    except RecursionError:
        return A.SpecFile(path, (), True), [_deep(path)]
    dropped = bool(diags)             # apps nested too deeply are left out
    try:
        apps = _build(tree, path, diags)
    except RecursionError:
        return A.SpecFile(path, (), True), [_deep(path)]
    return A.SpecFile(path, tuple(apps), dropped), diags


def _parse_per_app(text: str, path: str, first: UnexpectedInput):
    """Recover from a syntax error: parse each app's text on its own, keeping
    positions exact by padding with the newlines that came before it."""
    starts = [m.start() for m in APP_START.finditer(text)]
    if not starts or starts[0] != 0 and text[: starts[0]].strip() and not _only_comments(text[: starts[0]]):
        starts = [0] + starts
    if not starts:
        starts = [0]
    diags: list[Diagnostic] = []
    apps: list[A.App] = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(text)
        chunk = text[start:end]
        if not chunk.strip():
            continue
        pad = "\n" * text.count("\n", 0, start)
        line_start = text.rfind("\n", 0, start) + 1
        pad += " " * (start - line_start)
        chunk_text = pad + chunk
        try:
            tree = _parse_text(chunk_text, path, diags)
        except UnexpectedInput as e:
            next_app = None
            if end < len(text):
                keyword = text.index("app", end)
                next_app = (len(chunk_text), *_line_col(text, keyword))
            diags.append(_syntax_diag(e, path, chunk_text, next_app))
            continue
        except RecursionError:
            diags.append(_deep(path))
            continue
        try:
            apps.extend(_build(tree, path, diags))
        except RecursionError:
            diags.append(_deep(path))
    if not diags:        # chunking hid the problem: report the whole-file error
        diags.append(_syntax_diag(first, path, text))
    return A.SpecFile(path, tuple(apps), True), diags


def _only_comments(s: str) -> bool:
    return all(not ln.strip() or ln.strip().startswith("#") for ln in s.split("\n"))


def parse_bytes(data: bytes, path: str) -> tuple[str, A.SpecFile, list[Diagnostic]]:
    text = decode_source(data, path)
    spec, diags = parse_text(text, path)
    return text, spec, diags
