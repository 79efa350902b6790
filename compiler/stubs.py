"""ASL stubs: one Python module per app, a class with typed handler methods.

The event dataclasses mirror the record layouts in the manifest; the runtime
decodes records into them (addresses as text, numbers as int).
"""

from __future__ import annotations

from dsl.fields import FIELDS, Kind

from .codegen import Generator, _env


def class_name(app: str) -> str:
    return "".join(part.capitalize() for part in app.split("_") if part) + "Handler"


def _pytype(kind: Kind) -> str:
    return "int" if kind == Kind.INT else ("bool" if kind == Kind.BOOL else "str")


def render_stub(gen: Generator, app_name: str) -> str:
    app = gen.apps[app_name]
    packet_events = []
    for ev in gen.events:
        if ev.app != app_name or ev.type != "packet":
            continue
        rule = next(r for r in app.rules if r.id == ev.rule)
        fields = [{"name": m.field, "attr": m.name, "pytype": _pytype(FIELDS[m.field].kind)}
                  for m in ev.struct.members if m.role == "field"]
        order = {f.name: i for i, f in enumerate(next(a for i, a in enumerate(rule.actions)
                                                    if gen.action_of[(rule.id, i)] == ev.action).fields)}
        fields.sort(key=lambda f: order[f["name"]])
        packet_events.append({"class_name": f"PacketEvent{ev.action}", "rule": ev.rule, "line": rule.span.line,
                              "text": f"send packet({', '.join(f['name'] for f in fields)})", "fields": fields})
    return _env().get_template("asl_stub.py.j2").render(
        app={"name": app.name, "file": app.file, "line": app.span.line},
        class_name=class_name(app.name), packet_events=packet_events)


def stub_filename(app: str) -> str:
    return f"{app}.py"
