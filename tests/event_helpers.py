"""The events' schema in the tests: every event written is checked against
examples/events.schema.json (jsonschema, Draft 2020-12).

``conftest.py`` checks every event an EventWriter of the test process writes (a test
that writes one the schema refuses fails at its teardown); ``read_events(path)`` reads
the events file of an ``xdpmon run`` the test started and checks each line.
"""

from __future__ import annotations

import contextlib
import json
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = ROOT / "examples" / "events.schema.json"


@lru_cache(maxsize=1)
def validator():
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def problems(event: dict) -> list[str]:
    """Why ``event`` (as read back from its line) is not a valid event; [] when it is."""
    return [f"{'/'.join(map(str, e.absolute_path)) or '(the event)'}: {e.message}"
            for e in validator().iter_errors(event)]


def read_events(path) -> list[dict]:
    """The events of the file ``path``, each checked against the schema."""
    out = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        ev = json.loads(line)
        bad = problems(ev)
        assert not bad, f"{path}:{n}: not a valid event: {bad}\n{line}"
        out.append(ev)
    return out


@contextlib.contextmanager
def checking_writes():
    """Every event an EventWriter writes meanwhile, checked: yields the list of the
    invalid ones (with why)."""
    from runtime.export import events as E

    bad: list[tuple[dict, list[str]]] = []
    original = E.EventWriter.write

    def write(self, *args, **kw):
        event = original(self, *args, **kw)
        ev = json.loads(json.dumps(event, default=E._json_default))
        why = problems(ev)
        if why:
            bad.append((ev, why))
        return event

    E.EventWriter.write = write
    try:
        yield bad
    finally:
        E.EventWriter.write = original
