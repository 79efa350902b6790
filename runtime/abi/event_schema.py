"""The events' schema, written down once: the keys of every event line, the severities,
the runtime's reserved app name and its kinds of event, the fields of an alert.

What the names mean is in the README ("Events: JSON lines to a file, stdout or syslog")
and, for machines, in ``examples/events.schema.json`` (tests/test_events_schema.py checks
it against these). runtime/export/events.py writes the lines, runtime/asl/context.py
the handlers' alerts, runtime/monitor/runtime_events.py the runtime's own events.
"""

from __future__ import annotations

# Every line's keys, in this order.
KEYS = ("time", "time_ns", "host", "interfaces", "interface", "instance", "app", "kind", "severity", "fields")

# The severities, by their syslog numbers (RFC 5424, table 2; emergency and alert are left
# out: an event is not the system's end, and "alert" is a kind of event here).
SEVERITY_CODES = {"critical": 2, "error": 3, "warning": 4, "notice": 5, "info": 6, "debug": 7}
SEVERITIES = tuple(SEVERITY_CODES)

# The app of the runtime's own events: the compiler reserves the prefix "xdpmon"
# (compiler/names.py), so no app has this name.
RUNTIME_APP = "xdpmon"

# The runtime's kinds (app RUNTIME_APP), each with its fields (always all of them, null
# where they do not apply) and severity.
RUNTIME_KINDS = {
    "instance_started": (("pid", "program_id", "apps", "enforce", "config", "version"), "notice"),
    "instance_stopped": (("stopped_by", "uptime_s", "frames", "events_written", "events_failed"), "notice"),
    "attached": (("ifindex", "mode", "how", "link_id", "program_id"), "info"),
    "detached": (("ifindex", "program_id", "error"), "info"),
    "app_enabled": (("app", "cause", "by", "rule", "changed_at", "until", "for_ns"), "info"),
    "app_disabled": (("app", "cause", "by", "changed_at"), "info"),
    "param_set": (("app", "param", "value", "by"), "info"),
    "block_added": (("prefix", "action", "ttl_ns", "expires", "reason", "by", "added_by", "hits"), "notice"),
    "block_renewed": (("prefix", "action", "ttl_ns", "expires", "reason", "by", "added_by", "hits"), "notice"),
    "block_removed": (("prefix", "action", "ttl_ns", "expires", "reason", "by", "added_by", "hits"), "notice"),
    "block_expired": (("prefix", "action", "ttl_ns", "expires", "reason", "by", "added_by", "hits"), "notice"),
    "block_refused": (("prefix", "why", "by"), "warning"),
    "deployed": (("cmd", "old_program_id", "new_program_id", "apps_added", "apps_removed", "apps_changed",
                  "apps_kept", "took_ms", "problems"), "notice"),
    "deploy_refused": (("cmd", "why"), "warning"),
}

# An app's alerts (a rule's ``alert "..."`` in the kernel, or ``ctx.alert`` in its handler):
# kind ALERT, these fields first (a handler's own follow).
ALERT = "alert"
ALERT_FIELDS = ("message", "rule", "ts_ns")
KERNEL_ALERT_SEVERITY = "warning"
