"""Diagnostics: what went wrong, where, and how to fix it.

Every problem with a spec becomes a ``Diagnostic`` with a span. They are
collected (a file reports all its errors, not only the first) and raised
together as one ``SpecError``, the only exception the front end lets out.
``render`` turns them into ``path:line:col: error: message``, the source line,
a caret under the whole span and an optional ``hint:`` line.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from .ast import Span


@dataclass(frozen=True)
class Diagnostic:
    message: str
    span: Span
    hint: str | None = None
    severity: str = "error"          # "error" | "note"

    def headline(self) -> str:
        return f"{self.span}: {self.severity}: {self.message}"


class SpecError(Exception):
    """One or more errors in the given specs."""

    def __init__(self, diagnostics: list[Diagnostic], sources: dict[str, str] | None = None):
        self.diagnostics = list(diagnostics)
        self.sources = dict(sources or {})
        first = self.diagnostics[0].headline() if self.diagnostics else "spec error"
        super().__init__(first)


class Sources:
    """The text of every file read so far, for quoting lines in messages."""

    def __init__(self) -> None:
        self.text: dict[str, str] = {}

    def add(self, path: str, text: str) -> None:
        self.text[path] = text

    def line(self, path: str, lineno: int) -> str | None:
        text = self.text.get(path)
        if text is None:
            return None
        lines = text.split("\n")
        if 1 <= lineno <= len(lines):
            return lines[lineno - 1].rstrip("\r")
        return None


def suggest(word: str, candidates, what: str = "") -> str | None:
    """A ``did you mean`` hint for the nearest candidate, if any is close."""
    best = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=0.6)
    if not best:
        return None
    return f"did you mean '{best[0]}'?" + (f" ({what})" if what else "")


# Longest source line quoted under a message; longer ones are cut around the span.
MAX_SHOWN = 100


def render_plain(diag: Diagnostic, sources: Sources | dict[str, str]) -> str:
    """The diagnostic as plain text lines (no colour)."""
    return "\n".join(_render_parts(diag, sources)[0])


def _render_parts(diag: Diagnostic, sources):
    if isinstance(sources, dict):
        s = Sources()
        for k, v in sources.items():
            s.add(k, v)
        sources = s
    out = [diag.headline()]
    kinds = ["head"]
    src = sources.line(diag.span.file, diag.span.line)
    if src is not None:
        # One column per character: tabs and control characters become one
        # visible character each, so the caret stays under the span.
        shown = "".join(c if c.isprintable() else (" " if c == "\t" else "\ufffd") for c in src)
        start = max(diag.span.col - 1, 0)
        if diag.span.end_line == diag.span.line:
            width = max(diag.span.end_col - diag.span.col, 1)
        else:
            width = max(len(shown) - start, 1)
        if len(shown) > MAX_SHOWN:      # show a window around the span
            left = max(0, min(start - 20, len(shown) - MAX_SHOWN))
            right = left + MAX_SHOWN
            width = max(1, min(width, right - start))
            shown = ("..." if left else "") + shown[left:right] + ("..." if right < len(shown) else "")
            start = start - left + (3 if left else 0)
        out.append("  " + shown)
        kinds.append("source")
        out.append("  " + " " * start + "^" * width)
        kinds.append("caret")
    if diag.hint:
        out.append(f"hint: {diag.hint}")
        kinds.append("hint")
    return out, kinds


def render(diags: list[Diagnostic], sources, color: bool = False, file=None) -> None:
    """Print diagnostics to ``file`` (stderr by default), in colour if asked."""
    import sys

    stream = file or sys.stderr
    if not color:
        for d in diags:
            print(render_plain(d, sources), file=stream)
        return
    from rich.console import Console
    from rich.text import Text

    console = Console(file=stream, highlight=False, soft_wrap=True, force_terminal=True)
    style = {"head": "bold", "source": "", "caret": "bold red", "hint": "cyan"}
    for d in diags:
        lines, kinds = _render_parts(d, sources)
        for line, kind in zip(lines, kinds):
            text = Text(line, style=style[kind])
            if kind == "head":
                sev = f"{d.severity}:"
                i = line.find(f" {sev} ")
                if i >= 0:
                    text.stylize("bold red" if d.severity == "error" else "bold blue",
                                 i + 1, i + 1 + len(sev))
            console.print(text)
