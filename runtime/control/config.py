"""The deployment config: a YAML file saying what an instance runs and how.

``load_config(path)`` reads it (PyYAML's node tree, so every value keeps its
place) into a ``DeployConfig``; a problem is a ``SpecError`` whose diagnostics
point at the line and column of the key or value at fault (an unknown key with
the closest known one, a wrong type, a bad value), rendered like spec errors.
``merge(config, cli)`` gives the RunOptions (runtime/control/options.py) a run
consumes: the command line's options over the file's. ``check_against(config,
manifest)`` reports apps and params the compiled program does not have.
``live_changes(old, new)`` says what a reload (SIGHUP) may change while running
(params, allowlist, enforce, blocklist TTLs, interval, what the exporter exports; the
specs are deployed into
the running program, runtime/deploy/) and what needs a restart (interfaces, XDP
mode, name, blocklist size, outputs, the exporter's address).

    name: edge1                   # the instance (its control socket)
    specs: [../specs/syn_flood.mon, ../specs/flow_watch.mon]   # relative to this file
    interfaces: [eth1, eth2]
    xdp_mode: auto                # auto | native | generic
    interval: 1s
    duration: 2h                  # optional: stop after
    params: {syn_flood: {per_dst: 2k}}
    asl: {syn_flood: {queue: 10000, options: {top: 10}}}
    allow: [198.18.0.0/24]        # never blocked (with the interfaces' own addresses)
    blocklist: {max_entries: 10000, default_ttl: 5m, max_ttl: 24h}
    enforce: false                # blocks drop frames only when true
    outputs: {events: /var/log/xdpmon/events.jsonl, json: false, view: plain}
    metrics: 127.0.0.1:9400       # the Prometheus exporter (runtime/export/prometheus.py), or:
    metrics:
      listen: 127.0.0.1:9400
      keys: 100                   # keys exported per keyed statistic (its top N, + "other")
      stats:                      # per statistic: keys, the member they rank by, or off
        traffic_accounting.per_dst: {keys: 20, by: bytes}
        port_scan.ports: {export: false}
      tls: {cert: tls.crt, key: tls.key, client_ca: ca.crt}   # https; client_ca: scrapers need its certs

``outputs``: ``events`` a file (relative to this file), ``stdout``/``-``, ``syslog`` or
``syslog:SOCKET``; with a file ``events_max_size`` (rotate before it passes that many
bytes: ``100Mi``) and ``events_keep`` (rotated files kept); with syslog
``events_facility`` and ``events_format`` (rfc3164 or rfc5424): runtime/export/events.py.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dsl.ast import Span
from dsl.errors import Diagnostic, SpecError

from .values import parse_duration, parse_value

MAX_CONFIG_BYTES = 1 << 20
XDP_MODES = ("auto", "native", "generic")
VIEWS = ("auto", "rich", "plain", "none")


@dataclass
class DeployConfig:
    path: str
    name: str | None = None
    specs: list[str] = field(default_factory=list)
    interfaces: list[str] = field(default_factory=list)
    xdp_mode: str | None = None
    interval_ns: int | None = None
    duration_ns: int | None = None
    params: dict = field(default_factory=dict)
    asl: dict = field(default_factory=dict)
    allow: list[str] = field(default_factory=list)
    block_max: int | None = None
    block_ttl: int | None = None
    block_max_ttl: int | None = None
    enforce: bool | None = None
    events_path: str | None = None                  # a file, syslog[:SOCKET]; None: stdout
    events_max_size: int | None = None
    events_keep: int | None = None
    events_facility: str | None = None
    events_format: str | None = None
    json: bool | None = None
    view: str | None = None
    metrics: str | None = None
    metrics_export: dict | None = None      # {"keys": N, "stats": {APP.STAT: {keys, by, export}}} (None: not given)
    metrics_tls: dict | None = None         # {"cert", "key", "client_ca"?}: PEM file paths
    spans: dict = field(default_factory=dict)       # "params.APP.PARAM" / "asl.APP" -> Span (for later checks)


class _Reader:
    def __init__(self, path: str):
        self.path = path
        self.diags: list[Diagnostic] = []
        self.keys: dict[int, object] = {}          # id(value node) -> its key node

    def span(self, node) -> Span:
        s, e = node.start_mark, node.end_mark
        return Span(self.path, s.line + 1, s.column + 1, e.line + 1, e.column + 1 if e.line == s.line else s.column + 2)

    def error(self, node, msg: str, hint: str | None = None) -> None:
        self.diags.append(Diagnostic(msg, self.span(node), hint))

    def mapping(self, node, what: str, keys: dict) -> dict:
        """{key: value node} of a mapping whose keys are all in ``keys``."""
        if not isinstance(node, yaml.MappingNode):
            self.error(node, f"{what} must be a mapping of {', '.join(keys) or 'names'}")
            return {}
        out = {}
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode):
                self.error(k, f"a key of {what} must be a name")
                continue
            if keys and k.value not in keys:
                close = difflib.get_close_matches(k.value, list(keys), n=1)
                self.error(k, f"unknown key '{k.value}' in {what}",
                           f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(keys)}")
                continue
            if k.value in out:
                self.error(k, f"'{k.value}' is given twice in {what}")
                continue
            out[k.value] = v
            self.keys[id(v)] = k
        return out

    def scalar(self, node, what: str) -> str | None:
        if not isinstance(node, yaml.ScalarNode):
            self.error(node, f"{what} must be a single value, not a {'list' if isinstance(node, yaml.SequenceNode) else 'mapping'}")
            return None
        return node.value

    def string(self, node, what: str) -> str | None:
        v = self.scalar(node, what)
        if v is not None and (v == "" or node.tag != "tag:yaml.org,2002:str"):
            self.error(node, f"{what} must be text, not '{v}'")
            return None
        return v

    def strings(self, node, what: str) -> list[tuple[str, object]]:
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:str":
            return [(node.value, node)]
        if not isinstance(node, yaml.SequenceNode):
            self.error(node, f"{what} must be a list")
            return []
        out = []
        for item in node.value:
            v = self.string(item, f"an item of {what}")
            if v is not None:
                out.append((v, item))
        return out

    def boolean(self, node, what: str) -> bool | None:
        v = self.scalar(node, what)
        if v is None:
            return None
        if node.tag != "tag:yaml.org,2002:bool":
            self.error(node, f"{what} must be true or false, not '{v}'")
            return None
        return v.lower() in ("true", "yes", "on")

    def converted(self, node, what: str, fn):
        v = self.scalar(node, what)
        if v is None:
            return None
        try:
            return fn(int(v) if node.tag == "tag:yaml.org,2002:int" else v, what)
        except ValueError as e:
            self.error(node, str(e))
            return None

    def choice(self, node, what: str, choices) -> str | None:
        v = self.scalar(node, what)
        if v is not None and v not in choices:
            self.error(node, f"{what} '{v}' is not one of {', '.join(choices)}")
            return None
        return v


TOP = ("name", "specs", "interfaces", "xdp_mode", "interval", "duration", "params", "asl", "allow", "blocklist",
       "enforce", "outputs", "metrics")


def _count(v, what: str) -> int:
    n = parse_value(v, what)
    if n < 1:
        raise ValueError(f"{what} must be at least 1")
    return n


def _listen(r: "_Reader", node, what: str) -> str | None:
    m = r.scalar(node, what)
    if m is None:
        return None
    host, _, port = m.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        r.error(node, f"{what} '{m}' is not ADDRESS:PORT (e.g. 127.0.0.1:9400)")
        return None
    return m


def _metrics(r: "_Reader", node, cfg: DeployConfig, base: Path) -> None:
    """``metrics: ADDRESS:PORT``, or a mapping of listen, keys and stats (what the exporter
    exports: runtime/export/scrape.py ExportSettings.of_config)."""
    if not isinstance(node, yaml.MappingNode):
        cfg.metrics = _listen(r, node, "metrics")
        return
    m = r.mapping(node, "metrics", dict.fromkeys(("listen", "keys", "stats", "tls")))
    if "listen" in m:
        cfg.metrics = _listen(r, m["listen"], "metrics.listen")
    else:
        r.error(node, "metrics: give listen: ADDRESS:PORT (e.g. 127.0.0.1:9400)")
    keys = r.converted(m["keys"], "metrics.keys", _count) if "keys" in m else None
    stats = {}
    if "stats" in m:
        for name, snode in r.mapping(m["stats"], "metrics.stats", {}).items():
            where = f"metrics.stats.{name}"
            if name.count(".") != 1:
                r.error(r.keys[id(snode)], f"{where}: name a statistic as APP.STAT (e.g. traffic_accounting.per_dst)")
                continue
            opts = r.mapping(snode, where, dict.fromkeys(("keys", "by", "export")))
            stats[name] = {
                "keys": r.converted(opts["keys"], f"{where}.keys", _count) if "keys" in opts else None,
                "by": r.string(opts["by"], f"{where}.by") if "by" in opts else None,
                "export": r.boolean(opts["export"], f"{where}.export") is not False if "export" in opts else True}
            cfg.spans[f"metrics.stats.{name}"] = r.span(r.keys[id(snode)])
    cfg.metrics_export = {"keys": keys, "stats": stats}
    if "tls" in m:
        cfg.metrics_tls = _tls(r, m["tls"], base)


def _tls(r: "_Reader", node, base: Path) -> dict | None:
    """``metrics.tls``: cert and key (PEM files, relative to the config), and client_ca: only
    clients with a certificate it signed may scrape."""
    t = r.mapping(node, "metrics.tls", dict.fromkeys(("cert", "key", "client_ca")))
    out = {}
    for k in ("cert", "key", "client_ca"):
        if k not in t:
            continue
        v = r.string(t[k], f"metrics.tls.{k}")
        if v is None:
            continue
        p = Path(v) if os.path.isabs(v) else base / v
        if not p.is_file():
            r.error(t[k], f"metrics.tls.{k}: file '{v}' not found ({p})")
        out[k] = str(p)
    if "cert" not in t or "key" not in t:
        r.error(node, "metrics.tls: give cert and key (PEM files)")
        return None
    return out


def load_config(path: str) -> DeployConfig:
    """Read and check the config at ``path``; SpecError with every problem found."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise SpecError([Diagnostic(f"cannot read the config: {e.strerror or e}", Span(path, 1, 1, 1, 1))]) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise SpecError([Diagnostic(f"a config is at most {MAX_CONFIG_BYTES:,} bytes", Span(path, 1, 1, 1, 1))])
    text = data.decode("utf-8", "replace")
    sources = {path: text}
    r = _Reader(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        m = e.problem_mark or e.context_mark
        line, col = (m.line + 1, m.column + 1) if m else (1, 1)
        raise SpecError([Diagnostic(f"not valid YAML: {e.problem or e}", Span(path, line, col, line, col + 1))],
                        sources) from None
    cfg = DeployConfig(path=path)
    if root is None:
        raise SpecError([Diagnostic("the config is empty", Span(path, 1, 1, 1, 1),
                                    "give at least specs and interfaces")], sources)
    top = r.mapping(root, "the config", dict.fromkeys(TOP))
    base = Path(path).resolve().parent
    if "name" in top:
        cfg.name = r.string(top["name"], "name")
        if cfg.name is not None:
            from .socket import check_name
            try:
                check_name(cfg.name)
            except ValueError as e:
                r.error(top["name"], str(e))
    if "specs" in top:
        for v, node in r.strings(top["specs"], "specs"):
            p = Path(v) if os.path.isabs(v) else base / v
            if not p.is_file():
                r.error(node, f"spec file '{v}' not found ({p})")
            cfg.specs.append(str(p))
    if "interfaces" in top:
        for v, node in r.strings(top["interfaces"], "interfaces"):
            if len(v) > 15 or "/" in v or " " in v:
                r.error(node, f"'{v}' is not an interface name (at most 15 characters, no '/' or space)")
            cfg.interfaces.append(v)
    if "xdp_mode" in top:
        cfg.xdp_mode = r.choice(top["xdp_mode"], "xdp_mode", XDP_MODES)
    if "interval" in top:
        cfg.interval_ns = r.converted(top["interval"], "interval", parse_duration)
    if "duration" in top:
        cfg.duration_ns = r.converted(top["duration"], "duration", parse_duration)
    if "params" in top:
        for app, anode in r.mapping(top["params"], "params", {}).items():
            for pname, pnode in r.mapping(anode, f"params of {app}", {}).items():
                v = r.converted(pnode, f"{app}.{pname}", parse_value)
                if v is not None:
                    cfg.params.setdefault(app, {})[pname] = v
                    cfg.spans[f"params.{app}.{pname}"] = r.span(r.keys[id(pnode)])
                cfg.spans.setdefault(f"params.{app}", r.span(r.keys[id(anode)]))
    if "asl" in top:
        for app, anode in r.mapping(top["asl"], "asl", {}).items():
            opts = r.mapping(anode, f"asl of {app}", dict.fromkeys(("queue", "options")))
            out = {}
            if "queue" in opts:
                out["queue"] = r.converted(opts["queue"], f"asl.{app}.queue", _count)
            if "options" in opts:
                if isinstance(opts["options"], yaml.MappingNode):
                    out["options"] = yaml.safe_load(yaml.serialize(opts["options"]))
                else:
                    r.error(opts["options"], f"asl.{app}.options must be a mapping (handed to the handler as ctx.options)")
            cfg.asl[app] = out
            cfg.spans[f"asl.{app}"] = r.span(r.keys[id(anode)])
    if "allow" in top:
        for v, node in r.strings(top["allow"], "allow"):
            try:
                ipaddress.ip_network(v, strict=True)
                cfg.allow.append(v)
            except ValueError as e:
                r.error(node, f"allow: '{v}' is not a prefix ({e})")
    if "blocklist" in top:
        b = r.mapping(top["blocklist"], "blocklist", dict.fromkeys(("max_entries", "default_ttl", "max_ttl")))
        if "max_entries" in b:
            cfg.block_max = r.converted(b["max_entries"], "blocklist.max_entries", _count)
        if "default_ttl" in b:
            cfg.block_ttl = r.converted(b["default_ttl"], "blocklist.default_ttl", parse_duration)
        if "max_ttl" in b:
            cfg.block_max_ttl = r.converted(b["max_ttl"], "blocklist.max_ttl", parse_duration)
    if "enforce" in top:
        cfg.enforce = r.boolean(top["enforce"], "enforce")
    if "outputs" in top:
        _outputs(r, cfg, top["outputs"], base)
    if "metrics" in top:
        _metrics(r, top["metrics"], cfg, base)
    if r.diags:
        raise SpecError(sorted(r.diags, key=lambda d: (d.span.line, d.span.col)), sources)
    return cfg


OUTPUTS = ("events", "events_max_size", "events_keep", "events_facility", "events_format", "json", "view")


def _outputs(r: _Reader, cfg: DeployConfig, node, base: Path) -> None:
    """``outputs:``: where the events go (and how: rotation, syslog), json, view."""
    from compiler.memory import parse_size
    from runtime.abi.event_output import Output, OutputError

    o = r.mapping(node, "outputs", dict.fromkeys(OUTPUTS))
    if "events" in o:
        ev = r.string(o["events"], "outputs.events")
        if ev in (None, "stdout", "-"):
            cfg.events_path = None
        elif ev == "syslog" or ev.startswith("syslog:"):
            sock = ev.partition(":")[2]
            cfg.events_path = ev if not sock or os.path.isabs(sock) else f"syslog:{base / sock}"
        else:
            cfg.events_path = str(Path(ev) if os.path.isabs(ev) else base / ev)
    if "events_max_size" in o:
        cfg.events_max_size = r.converted(o["events_max_size"], "outputs.events_max_size",
                                          lambda v, what: parse_size(str(v)))
    if "events_keep" in o:
        cfg.events_keep = r.converted(o["events_keep"], "outputs.events_keep", _count)
    if "events_facility" in o:
        cfg.events_facility = r.string(o["events_facility"], "outputs.events_facility")
    if "events_format" in o:
        cfg.events_format = r.string(o["events_format"], "outputs.events_format")
    try:
        Output.of(cfg.events_path, cfg.events_max_size, cfg.events_keep, cfg.events_facility, cfg.events_format)
    except OutputError as e:
        at = next((o[k] for k in ("events_max_size", "events_keep", "events_facility", "events_format", "events")
                   if k in o), node)
        r.error(at, f"outputs: {e}")
    if "json" in o:
        cfg.json = r.boolean(o["json"], "outputs.json")
    if "view" in o:
        cfg.view = r.choice(o["view"], "outputs.view", VIEWS)


def merge(cfg: DeployConfig | None, cli: dict):
    """RunOptions: the config's values, then the command line's where given
    (``cli``: option name -> value, None or [] where not given)."""
    from runtime.control.options import RunOptions

    opts = RunOptions()
    if cfg is not None:
        for k in ("name", "xdp_mode", "interval_ns", "duration_ns", "block_max", "block_ttl", "block_max_ttl",
                  "enforce", "events_path", "events_max_size", "events_keep", "events_facility", "events_format",
                  "json", "view", "metrics", "metrics_export", "metrics_tls"):
            v = getattr(cfg, k)
            if v is not None:
                setattr(opts, k, v)
        opts.specs, opts.interfaces = list(cfg.specs), list(cfg.interfaces)
        opts.params, opts.asl, opts.allow = dict(cfg.params), dict(cfg.asl), list(cfg.allow)
        opts.config_path = cfg.path
    for k, v in cli.items():
        if v is None or v == []:
            continue
        if k == "allow":
            opts.allow = list(opts.allow) + list(v)
        else:
            setattr(opts, k, v)
    return opts


def check_against(cfg: DeployConfig, manifest) -> list[Diagnostic]:
    """Apps and params of the config that the compiled program does not have."""
    from runtime.abi.manifest import Manifest

    man = Manifest.of(manifest)
    apps = {a.name: a for a in man.apps}
    out = []
    for app, params in cfg.params.items():
        if app not in apps:
            out.append(Diagnostic(f"params: no app '{app}' in the specs", cfg.spans[f"params.{app}"],
                                  f"apps: {', '.join(apps)}"))
            continue
        known = [p.name for p in apps[app].params]
        for pname in params:
            if pname not in known:
                out.append(Diagnostic(f"app '{app}' has no param '{pname}'", cfg.spans[f"params.{app}.{pname}"],
                                      f"its params: {', '.join(known) or 'none'}"))
    for app in cfg.asl:
        if app not in apps:
            out.append(Diagnostic(f"asl: no app '{app}' in the specs", cfg.spans[f"asl.{app}"],
                                  f"apps: {', '.join(apps)}"))
    stats = {f"{a['name']}.{st['name']}": st for a in man.raw["apps"] for st in a["stats"]}
    for name, s in (cfg.metrics_export or {}).get("stats", {}).items():
        where, st = cfg.spans[f"metrics.stats.{name}"], stats.get(name)
        if st is None:
            out.append(Diagnostic(f"metrics.stats: no statistic '{name}' in the specs", where,
                                  f"statistics: {', '.join(stats)}"))
        elif s["by"] is not None:
            members = [mb["name"] for mb in st.get("members", ())]
            if not st.get("key"):
                out.append(Diagnostic(f"metrics.stats: '{name}' has no keys to rank (by: is for a keyed statistic)",
                                      where))
            elif s["by"] not in members:
                out.append(Diagnostic(f"metrics.stats: '{name}' has no member '{s['by']}'", where,
                                      f"its members: {', '.join(members)}"))
    return sorted(out, key=lambda d: (d.span.line, d.span.col))


# The specs change live too: a reload deploys them into the running program (runtime/deploy/).
LIVE = ("params", "allow", "enforce", "block_ttl", "block_max_ttl", "interval_ns", "metrics_export")
RESTART = ("interfaces", "xdp_mode", "name", "block_max", "events_path", "events_max_size", "events_keep",
           "events_facility", "events_format", "json", "view", "asl", "metrics", "metrics_tls")


def live_changes(old: DeployConfig, new: DeployConfig) -> tuple[list[str], list[str]]:
    """(what a reload applies while running, what changed but needs a restart)."""
    live = [k for k in LIVE if getattr(old, k) != getattr(new, k)]
    restart = [k for k in RESTART if getattr(old, k) != getattr(new, k)]
    return live, restart
