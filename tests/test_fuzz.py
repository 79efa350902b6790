"""Property-based tests: whatever the input, the front end raises nothing but
SpecError, and every diagnostic it gives points inside the file.

Inputs: random text, random bytes (through parse_bytes and through
compiler.frontend.load on a real file), soups of the grammar's own keywords and
punctuation, and mutations of the reference specs (characters and tokens
deleted, inserted, duplicated, swapped).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from compiler.frontend import load
from compiler.semantic import analyse
from dsl.errors import SpecError, render_plain
from dsl.parser import _lark, parse_bytes, parse_text

ROOT = Path(__file__).resolve().parent.parent
SPEC_TEXTS = [p.read_text() for p in sorted((ROOT / "specs").glob("*.mon"))]
PATH = "fuzz.mon"

FUZZ = settings(max_examples=200, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _check_diagnostics(err: SpecError, path: str, text: str | None) -> None:
    assert err.diagnostics, "a SpecError without diagnostics"
    nlines = text.count("\n") + 1 if text is not None else None
    for d in err.diagnostics:
        assert d.span.line >= 1 and d.span.col >= 1, d
        assert d.span.end_line >= d.span.line, d
        if nlines is not None:
            assert d.span.line <= nlines, (d, nlines)
        assert d.headline().startswith(path + ":"), d.headline()
        assert d.message and "\n" not in d.message
        render_plain(d, err.sources or ({path: text} if text is not None else {}))


def _front_end_text(text: str, path: str = PATH) -> None:
    """parse + analyse: succeed, or raise SpecError with good diagnostics."""
    try:
        spec, diags = parse_text(text, path)
        analyse([spec], {path: text}, prior=diags)
    except SpecError as e:
        _check_diagnostics(e, path, text)


def _front_end_bytes(data: bytes, path: str = PATH) -> None:
    text = None
    try:
        text, spec, diags = parse_bytes(data, path)
        analyse([spec], {path: text}, prior=diags)
    except SpecError as e:
        _check_diagnostics(e, path, text)


# ---- random text and bytes ----------------------------------------------------------------

@FUZZ
@given(st.text(max_size=400))
def test_random_text(text):
    _front_end_text(text)


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes(data):
    _front_end_bytes(data)


_TMP = tempfile.TemporaryDirectory(prefix="xdpmon-fuzz-")


@FUZZ
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_random_file_through_load(data):
    path = Path(_TMP.name) / "spec.mon"
    path.write_bytes(data)
    try:
        load([path])
    except SpecError as e:
        _check_diagnostics(e, str(path), e.sources.get(str(path)))


# ---- token soups ---------------------------------------------------------------------------

def _grammar_words() -> list[str]:
    words = set()
    for term in _lark().terminals:
        if term.pattern.type == "str":
            words.add(term.pattern.value)
    words |= {"==", "!=", "<=", ">=", "<", ">", "+", "-", "*", "/"}
    return sorted(words)


WORDS = _grammar_words()
OTHER = ["a", "b", "x", "syn_flood", "tcp", "udp", "ip", "tcp.syn", "tcp.sport", "ip.src", "ip.dst",
         "udp.port", "pkt.len", "dns.qr", "l4.dport", "eth.src", "count()", "sum(pkt.len)",
         "0", "1", "53", "65536", "0x10", "1.5", "10s", "1ms", "5k", "2Mi", "30", "007",
         "10.0.0.0/8", "10.0.0.1/8", "1.2.3.4", "2001:db8::/32", "::1", "00:11:22:33:44:55",
         '"x.py"', '"alert"', "'q'", "#c\n", "\n", "&&", ";", "=", "..", "é", "\x00", "{{", "}}"]
TOKENS = st.sampled_from(WORDS + OTHER)


@FUZZ
@given(st.lists(TOKENS, max_size=60))
def test_token_soup(tokens):
    _front_end_text(" ".join(tokens))


@FUZZ
@given(st.lists(TOKENS, max_size=40))
def test_token_soup_inside_an_app(tokens):
    _front_end_text("app a {\n  " + " ".join(tokens) + "\n}\n")


@FUZZ
@given(st.sampled_from(["t1 { select ", "t2 { x = ", "t3 { when ", "t2 { x = count() by "]),
       st.lists(TOKENS, max_size=30))
@example("t1 { select ", ["alert", "select", "alert"])      # crashed: two selects, both wrong
def test_token_soup_in_each_tier(prefix, tokens):
    _front_end_text("app a {\n  " + prefix + " ".join(tokens) + " }\n}\n")


# ---- mutations of the valid specs ----------------------------------------------------------

TOKEN_RE = re.compile(r'"[^"\n]*"|#[^\n]*|[A-Za-z_][A-Za-z0-9_.]*|\d[\w.:/]*|==|!=|<=|>=|\.\.|\S')


def _mutate_chars(text: str, ops, draw_pos) -> str:
    for op, pos, ch in ops:
        if not text:
            text = ch
            continue
        i = pos % len(text)
        if op == "delete":
            text = text[:i] + text[i + 1:]
        elif op == "insert":
            text = text[:i] + ch + text[i:]
        elif op == "duplicate":
            j = min(len(text), i + 1 + pos % 7)
            text = text[:j] + text[i:j] + text[j:]
        elif op == "swap":
            j = (i + 1 + pos % 13) % len(text)
            a, b = sorted((i, j))
            text = text[:a] + text[b] + text[a + 1:b] + text[a] + text[b + 1:]
    return text


OPS = st.sampled_from(["delete", "insert", "duplicate", "swap"])
CHARS = st.sampled_from(list("{}()[],.=<>!&|;'\"#/:0123456789 \n\tabsxé\x00") + ["..", "==", " app "])


@FUZZ
@given(st.sampled_from(SPEC_TEXTS),
       st.lists(st.tuples(OPS, st.integers(min_value=0, max_value=10**6), CHARS), min_size=1, max_size=6))
def test_character_mutations_of_specs(text, ops):
    _front_end_text(_mutate_chars(text, ops, None))


@FUZZ
@given(st.lists(st.sampled_from(SPEC_TEXTS), min_size=1, max_size=3),
       st.lists(st.tuples(OPS, st.integers(min_value=0, max_value=10**6), TOKENS), min_size=1, max_size=6))
def test_token_mutations_of_specs(texts, ops):
    tokens = TOKEN_RE.findall("\n".join(texts))
    for op, pos, tok in ops:
        if not tokens:
            tokens = [tok]
            continue
        i = pos % len(tokens)
        if op == "delete":
            del tokens[i]
        elif op == "insert":
            tokens.insert(i, tok)
        elif op == "duplicate":
            tokens.insert(i, tokens[i])
        elif op == "swap":
            j = (i + 1 + pos % 5) % len(tokens)
            tokens[i], tokens[j] = tokens[j], tokens[i]
    _front_end_text(" ".join(tokens))


@FUZZ
@given(st.sampled_from(SPEC_TEXTS), st.integers(min_value=0, max_value=10**6),
       st.binary(min_size=1, max_size=8))
def test_byte_mutations_of_specs(text, pos, junk):
    data = text.encode()
    i = pos % (len(data) + 1)
    _front_end_bytes(data[:i] + junk + data[i:])


def test_mutation_helpers_change_the_text():
    text = SPEC_TEXTS[0]
    assert _mutate_chars(text, [("delete", 0, "x")], None) == text[1:]
    assert _mutate_chars("ab", [("swap", 0, "x")], None) == "ba"
    assert len(TOKEN_RE.findall(text)) > 20


# ---- syntactically valid apps with random content (exercises semantic analysis) ------------

from dsl.fields import FIELDS, LAYERS  # noqa: E402

FIELD_NAMES = sorted(FIELDS) + sorted(LAYERS) + ["tcp.nope", "x", "s", "s.count", "s.n"]
LITERALS = st.sampled_from(["0", "1", "80", "255", "256", "65535", "65536", "4294967296", "0x1f",
                            "18446744073709551616", "1s", "500ms", "10k", "1Mi", "3q", "true", "false",
                            "10.0.0.1", "10.0.0.0/8", "::1", "2001:db8::/32", "::ffff:1.2.3.4",
                            "00:11:22:33:44:55", "param p = 5", "param p", "param q = 1s", "size(s)",
                            "s[ip.src]", "s[ip.src].count", "s[tcp.sport, ip.dst]"])
FIELD = st.sampled_from(FIELD_NAMES)
SET_ITEM = LITERALS | st.sampled_from(["1..10", "10..1", "0..65536", "1s..2s"])


def _exprs():
    atom = FIELD | LITERALS
    cmp = st.builds(lambda a, op, b: f"{a} {op} {b}", atom, st.sampled_from(["==", "!=", "<", ">=", "+", "/"]), atom)
    inset = st.builds(lambda a, neg, items: f"{a} {'not in' if neg else 'in'} {{{', '.join(items)}}}",
                      FIELD, st.booleans(), st.lists(SET_ITEM, min_size=1, max_size=3))
    base = atom | cmp | inset
    return st.recursive(base, lambda inner: st.builds(lambda a, op, b: f"({a}) {op} ({b})", inner,
                                                      st.sampled_from(["and", "or"]), inner)
                        | inner.map(lambda e: f"not ({e})"), max_leaves=8)


EXPR = _exprs()
AGG = st.builds(lambda f, args, alias: f"{f}({', '.join(args)})" + (f" as {alias}" if alias else ""),
                st.sampled_from(["count", "sum", "min", "max", "distinct", "hist", "cms", "avg"]),
                st.lists(FIELD | st.sampled_from(["registers=64", "width=1024", "depth=3", "width=3"]),
                         max_size=3),
                st.sampled_from([None, "n", "count", "if"]))
CLAUSE = st.one_of(FIELD.map(lambda f: f"by {f}"), EXPR.map(lambda e: f"where {e}"),
                   st.sampled_from(["window 1s", "window 10", "size 1024", "size 0", "on full lru",
                                    "on full drop", "by (ip.src, ip.dst)", "by (tcp.sport, tcp.sport)"]))
STAT = st.one_of(
    st.builds(lambda aggs, clauses: "s = " + ", ".join(aggs) + " " + " ".join(clauses),
              st.lists(AGG, min_size=1, max_size=3), st.lists(CLAUSE, max_size=3)),
    st.builds(lambda key, o, c, e: f"s = track ({', '.join(key)}) open when {o} close when {c} expire {e}",
              st.lists(FIELD, min_size=1, max_size=3), EXPR, EXPR, st.sampled_from(["30s", "30", "0s"])))
ACTION = st.one_of(
    st.lists(FIELD, max_size=3).map(lambda fs: f"send packet({', '.join(fs)}) to asl limit 10/s"),
    st.sampled_from(["send summary to asl every 1s", "send summary to asl every 5", "enable a for 1s",
                     "enable b for 1s", "enable nope for 1s", 'alert "x" limit 1/s', 'alert "y" limit 0/s']))


@FUZZ
@given(EXPR, st.lists(STAT, max_size=2), EXPR, st.lists(ACTION, max_size=3),
       st.sampled_from(["", "mode on_demand", "mode always", "mode maybe"]))
def test_generated_apps(select, stats, cond, actions, mode):
    text = (f"app a {{\n  {mode}\n  t1 {{ select {select} }}\n  t2 {{\n    " + "\n    ".join(stats)
            + f"\n  }}\n  t3 {{ when {cond} {{ {' '.join(actions)} }} }}\n}}\n"
            + "app b { mode on_demand t1 { select tcp } }\n")
    _front_end_text(text)
