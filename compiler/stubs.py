"""ASL stubs: one Python module per app, a class with typed handler methods.

The event dataclasses mirror the record layouts in the manifest; the runtime
decodes records into them (addresses as text, numbers as int).
"""

from __future__ import annotations

from dsl.fields import FIELDS, Kind

from .codegen import env
from .plan import Plan


def class_name(app: str) -> str:
    return "".join(part.capitalize() for part in app.split("_") if part) + "Handler"


def _pytype(kind: Kind) -> str:
    return "int" if kind == Kind.INT else ("bool" if kind == Kind.BOOL else "str")


def render_stub(plan: Plan, app_name: str) -> str:
    app = plan.app(app_name).app
    packet_events = []
    for ev in plan.events:
        if ev.app != app_name or ev.type != "packet":
            continue
        rule = app.rules[ev.rule]
        members = {m.field: m.name for m in ev.record.members if m.role == "field"}
        fields = [{"name": f.name, "attr": members[f.name], "pytype": _pytype(FIELDS[f.name].kind)} for f in ev.fields]
        packet_events.append({"class_name": ev.class_name, "rule": ev.rule, "line": rule.span.line,
                              "text": f"send packet({', '.join(f['name'] for f in fields)})", "fields": fields})
    return env().get_template("asl_stub.py.j2").render(
        app={"name": app.name, "file": app.file, "line": app.span.line,
             "stats": list(app.stats), "params": [p.param.name for p in plan.params if p.param.app == app.name]},
        class_name=class_name(app.name), packet_events=packet_events)


def stub_filename(app: str) -> str:
    return f"{app}.py"
