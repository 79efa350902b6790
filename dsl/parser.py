"""Parse .mon text into the AST of dsl/ast.py.

The grammar is dsl/mon.lark (Lark, LALR(1), positions kept). A syntax error
stops one app, not the file: when the whole file does not parse, every app is
parsed on its own so that each broken app reports its first error and every
good app still reaches semantic analysis.
"""

from __future__ import annotations

import ipaddress
import re
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


def _expected_words(expected) -> list[str]:
    words = sorted({_terminal_word(e) for e in expected})
    # Literal keywords/punctuation first, then descriptive words.
    return sorted(words, key=lambda w: (not w.startswith("'"), w))


def _join(words: list[str]) -> str:
    if len(words) == 1:
        return words[0]
    if len(words) > 8:
        return ", ".join(words[:8]) + ", ..."
    return ", ".join(words[:-1]) + " or " + words[-1]


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


def _syntax_diag(err: UnexpectedInput, path: str, text: str) -> Diagnostic:
    line = getattr(err, "line", 1) or 1
    col = getattr(err, "column", 1) or 1
    if isinstance(err, UnexpectedCharacters):
        ch = text[err.pos_in_stream] if err.pos_in_stream < len(text) else ""
        span = A.Span(path, line, col, line, col + 1)
        shown = ch if ch.isprintable() else repr(ch)
        hint = None
        if ch in "!&|":
            hint = "write conditions with 'and', 'or', 'not' and compare with '==' or '!='"
        elif ch == "'":
            hint = "strings use double quotes"
        elif ch == ";":
            hint = "statements end at the end of the line; no ';' is needed"
        elif ch == "=":
            hint = "compare with '=='"
        return Diagnostic(f"unexpected character '{shown}'", span, hint)

    if isinstance(err, UnexpectedEOF) or (isinstance(err, UnexpectedToken) and err.token.type == "$END"):
        lines = text.split("\n")
        end_line = len(lines)
        end_col = len(lines[-1]) + 1
        span = A.Span(path, end_line, end_col, end_line, end_col + 1)
        expected = _expected_words(getattr(err, "expected", []) or [])
        msg = "unexpected end of file" + (f", expected {_join(expected)}" if expected else "")
        hint = None
        opened = _unclosed_brace(text, len(text))
        if opened:
            hint = f"the '{{' at line {opened[0]}, column {opened[1]} is never closed"
        return Diagnostic(msg, span, hint)

    assert isinstance(err, UnexpectedToken)
    tok = err.token
    end_col = (tok.end_column or col + 1) if (tok.end_line or line) == line else col + len(str(tok).split("\n")[0])
    span = A.Span(path, line, col, line, max(end_col, col + 1))
    expected = _expected_words(err.expected)
    msg = f"unexpected {_token_text(tok)}, expected {_join(expected)}"
    hint = _hint_for_token(tok, err.expected, text)
    return Diagnostic(msg, span, hint)


def _hint_for_token(tok: Token, expected, text: str) -> str | None:
    exp = set(expected)
    if tok.type == "RBRACE" and "RBRACE" not in exp:
        return "something is missing before this '}'"
    if tok.type == "APP" or str(tok) == "app":
        opened = _unclosed_brace(text, tok.start_pos or 0)
        if opened:
            return f"the '{{' at line {opened[0]}, column {opened[1]} is never closed"
    if tok.type == "EQUAL" and "COMPOP" in exp:
        return "compare with '=='"
    if "LBRACE" in exp and tok.type != "LBRACE":
        return "a block starts with '{'"
    if tok.type == "INT" and "QUANTITY" in exp and "INT" not in exp:
        return f"add a unit, e.g. {tok}s"
    return None


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
        if tok.type == "INT":
            return A.Number(int(text, 0), "", text, span)
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
                            c[-1], f"the first is at line {seen[kind].line}")
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
        return A.Rate(int(str(count), 0), str(unit), ns, span)

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

def decode_source(data: bytes, path: str) -> str:
    """Bytes of a spec file as text, or a SpecError pointing at the first byte
    that is not UTF-8 (or a NUL byte)."""
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError([Diagnostic(f"file is too large for a spec ({len(data)} bytes; the limit is {MAX_SPEC_BYTES})",
                                    A.Span(path, 1, 1, 1, 2))])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        before = data[: e.start]
        line = before.count(b"\n") + 1
        col = len(before) - (before.rfind(b"\n") + 1) + 1
        raise SpecError([Diagnostic(f"file is not valid UTF-8 (byte 0x{data[e.start]:02x})",
                                    A.Span(path, line, col, line, col + 1),
                                    "spec files are UTF-8 text")]) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return text


def _parse_text(text: str) -> Tree:
    return _lark().parse(text)


def _build(tree: Tree, path: str, diags: list[Diagnostic]) -> list[A.App]:
    builder = _Build(path)
    try:
        apps = builder.transform(tree)
    except VisitError as e:          # a bug in a transformer method: do not hide it
        raise e.orig_exc from None
    diags.extend(builder.diags)
    return apps


def parse_text(text: str, path: str = "<string>") -> tuple[A.SpecFile, list[Diagnostic]]:
    """Parse ``text``; return the apps that parsed and every diagnostic."""
    diags: list[Diagnostic] = []
    try:
        tree = _parse_text(text)
    except UnexpectedInput as first:
        return _parse_per_app(text, path, first)
    except RecursionError:
        return A.SpecFile(path, ()), [Diagnostic("expression is nested too deeply", A.Span(path, 1, 1, 1, 2))]
    try:
        apps = _build(tree, path, diags)
    except RecursionError:
        return A.SpecFile(path, ()), [Diagnostic("expression is nested too deeply", A.Span(path, 1, 1, 1, 2))]
    return A.SpecFile(path, tuple(apps)), diags


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
            tree = _parse_text(chunk_text)
        except UnexpectedInput as e:
            diags.append(_syntax_diag(e, path, chunk_text))
            continue
        except RecursionError:
            diags.append(Diagnostic("expression is nested too deeply", A.Span(path, 1, 1, 1, 2)))
            continue
        try:
            apps.extend(_build(tree, path, diags))
        except RecursionError:
            diags.append(Diagnostic("expression is nested too deeply", A.Span(path, 1, 1, 1, 2)))
    if not diags:        # chunking hid the problem: report the whole-file error
        diags.append(_syntax_diag(first, path, text))
    return A.SpecFile(path, tuple(apps)), diags


def _only_comments(s: str) -> bool:
    return all(not ln.strip() or ln.strip().startswith("#") for ln in s.split("\n"))


def parse_bytes(data: bytes, path: str) -> tuple[str, A.SpecFile, list[Diagnostic]]:
    text = decode_source(data, path)
    spec, diags = parse_text(text, path)
    return text, spec, diags
