"""The Prometheus exporter: a running instance's statistics and counters on ``/metrics``.

``Collector(view, settings)`` is a prometheus_client custom collector. ``collect()``
reads the maps when Prometheus scrapes (``view()``: the manifest, what
runtime/export/scrape.py read, and the instance's status; no polling loop of its own,
and concurrent scrapes each read for themselves); ``describe()`` names the families from
the manifest alone, so registering reads nothing. ``serve(address, port, collector)`` starts the official
client's HTTP server in a thread.

Names follow the Prometheus conventions: the prefix ``xdpmon_``, then the app, the
statistic and the member (``xdpmon_traffic_accounting_per_dst_bytes_total``), the key
fields as labels (``ip_dst="198.18.0.7"``):

- an unwindowed ``count()`` or ``sum()``: a counter (``_total``);
- an unwindowed ``min``, ``max`` or ``distinct``: a gauge; a ``min`` or ``max`` of ``pkt.ts``
  (a time) in Unix seconds, named ``..._timestamp_seconds``;
- a ``hist``: a histogram with the log2 buckets as bounds (``le`` = 0, 1, 3, 7, ...: bucket
  b holds [2^(b-1), 2^b)) and ``_count``; no ``_sum`` (the kernel keeps none);
- a windowed statistic: a gauge of the last completed window (``_last_window`` in the
  help), since a window's running value restarts every window;
- a track: a gauge of its open entries (``_size``).

Cardinality is bounded: a keyed statistic exports its N largest keys (default 100; per
statistic in the deployment config's ``metrics.stats``, which also chooses the member they
rank by, or turns a statistic's export off), and one more series whose key labels are all
``other``, aggregating the rest (sums add, maxima take the largest, minima the smallest;
distinct counts and histogram buckets of the rest are summed, an upper bound), so that sums
over a statistic stay right however many keys the map holds. What a scrape reads, and how
a million keys are ranked in bounded memory: runtime/export/scrape.py.

Global: frames, parse outcomes, verdicts, blocklist hits and operations, map insert
failures (labelled with the statistics the map keeps), ring
buffer drops, rate-limited events and rule firings as counters with labels; each
interface's frames and bytes; ``xdpmon_build_info``; each app's enable state and params
as gauges.
"""

from __future__ import annotations

import re
from typing import Callable, Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.samples import Sample

from .scrape import ExportSettings

PREFIX = "xdpmon"
BLOCKLIST_FRAMES = ("dropped", "logged")      # the kernel's blocklist counters; the others count operations
TIME_FIELD = "pkt.ts"            # a min or max of it is a time: exported as Unix seconds
OTHER = "other"
_BAD = re.compile(r"[^a-zA-Z0-9_]")


def name(*parts: str) -> str:
    return "_".join(_BAD.sub("_", p) for p in (PREFIX, *parts) if p)


def label(field: str) -> str:
    return _BAD.sub("_", field)


# ---- what each statistic is, from the manifest ---------------------------------------------

def _members(manifest: dict, settings: ExportSettings) -> list[dict]:
    """Per exported (app, stat, member): its family name, kind, key labels, function, window."""
    slots = {}
    for m in manifest["maps"]:
        for s in m.get("slots", ()):
            slots[(m["name"], s["name"])] = s
    out = []
    for app in manifest["apps"]:
        for st in app["stats"]:
            if not settings.exported(app["name"], st["name"]):
                continue
            if st["kind"] == "track":
                out.append({"app": app["name"], "stat": st["name"], "member": None, "kind": "track",
                            "family": name(app["name"], st["name"], "size"), "labels": []})
                continue
            for mb in st["members"]:
                s = slots.get((mb["map"], mb["slot"]), {})
                func, windowed = s.get("func"), s.get("window_ns") is not None
                kind = ("gauge" if windowed or func in ("min", "max", "distinct", "cms") else
                        "histogram" if func == "hist" else "counter")
                stamp = func in ("min", "max") and s.get("args") == [TIME_FIELD]      # a time: Unix seconds
                out.append({"app": app["name"], "stat": st["name"], "member": mb["name"], "kind": kind,
                            "func": func, "windowed": windowed, "window_ns": s.get("window_ns"),
                            "buckets": s.get("buckets"), "timestamp": stamp,
                            "family": name(app["name"], st["name"], mb["name"], *(["timestamp_seconds"] if stamp else [])),
                            "labels": [label(k) for k in st.get("key", [])], "fields": st.get("key", [])})
    return out


def _map_uses(manifest: dict) -> dict[str, str]:
    """Each state map's statistics, "app.stat,app.stat" (a full map's failures name them)."""
    out: dict[str, list] = {}
    for app in manifest["apps"]:
        for st in app["stats"]:
            for mp in dict.fromkeys([st["map"]] + [mb["map"] for mb in st.get("members", ())]):
                if mp:
                    out.setdefault(mp, []).append(f"{app['name']}.{st['name']}")
    return {mp: ",".join(v) for mp, v in out.items()}


def _help(m: dict) -> str:
    if m["kind"] == "track":
        return f"{m['app']}.{m['stat']}: entries open"
    what = f"{m['app']}.{m['stat']}.{m['member']}: {m['func']}" + (f"({TIME_FIELD}), Unix time" if m.get("timestamp")
                                                                   else "")
    if m["windowed"]:
        what += f", the last completed window of {m['window_ns'] / 1e9:g} s"
    return what


def _family(m: dict, labels: list[str]):
    if m["kind"] == "counter":
        return CounterMetricFamily(m["family"], _help(m), labels=labels)
    if m["kind"] == "histogram":
        return HistogramMetricFamily(m["family"], _help(m), labels=labels)
    return GaugeMetricFamily(m["family"], _help(m), labels=labels)


# ---- values -------------------------------------------------------------------------------

def _hist_buckets(value: dict, n: int) -> list[tuple[str, float]]:
    """Cumulative (le, count) of all ``n`` log2 buckets (bounds 0, 1, 3, 7, ..., 2^(n-1) - 1)
    from a snapshot's {"lo-hi": count} (the buckets it holds)."""
    counts = {}
    for rng, c in value.items():
        hi = int(rng.split("-")[-1])
        counts[hi] = counts.get(hi, 0) + c
    out, acc = [], 0
    for b in range(n):
        hi = 0 if b == 0 else (1 << b) - 1
        acc += counts.get(hi, 0)
        out.append((str(hi), acc))
    out.append(("+Inf", acc + sum(c for hi, c in counts.items() if hi > (1 << (n - 1)) - 1)))
    return out


def _value(m: dict, row: dict):
    v = row.get("last_window") if m["windowed"] else row.get("value")
    return (v or {}).get(m["member"])


class Collector:
    """``view()`` -> (manifest, scrape of the running program, status); ``settings``: what
    is exported (runtime/export/scrape.py ExportSettings, or a callable giving the current
    ones: a reload may change them)."""

    def __init__(self, view: Callable[[], tuple[dict, dict, dict]],
                 settings: ExportSettings | Callable[[], ExportSettings] = ExportSettings(),
                 manifest: Callable[[], dict] | None = None):
        self.view = view
        self.settings = settings if callable(settings) else (lambda: settings)
        self.manifest = manifest or (lambda: view()[0])

    def describe(self) -> Iterable:
        man = self.manifest()
        for m in _members(man, self.settings()):
            yield _family(m, m["labels"])
        yield from self._global_families({}, {}, man, describe=True)

    def collect(self) -> Iterable:
        man, snap, status = self.view()
        wall = snap.get("wall_offset_ns", 0)
        for m in _members(man, self.settings()):
            fam = _family(m, m["labels"])
            data = snap["apps"].get(m["app"], {}).get("stats", {}).get(m["stat"])
            if data is None:
                yield fam
                continue
            if m["kind"] == "track":
                fam.add_metric([], data.get("size", 0))
            elif "rows" in data:                              # keyed: the top keys and the rest
                for r in data["rows"]:
                    self._add(fam, m, [str(r["key"].get(f)) for f in m["fields"]], _value(m, r), wall)
                if data["other"] is not None:
                    self._add(fam, m, [OTHER] * len(m["fields"]), _value(m, data["other"]), wall)
            else:
                self._add(fam, m, [], _value(m, data), wall)
            yield fam
        yield from self._global_families(snap, status, man)

    @staticmethod
    def _add(fam, m: dict, labels: list[str], v, wall_offset_ns: int = 0) -> None:
        if v is None:
            return
        if m["kind"] == "histogram":
            buckets = _hist_buckets(v, m["buckets"])
            fam.add_metric(labels, buckets, None)
            # the count (the +Inf bucket), which the client writes only with a sum; the kernel keeps no sum
            fam.samples.append(Sample(fam.name + "_count", dict(zip(fam._labelnames, labels)), buckets[-1][1]))
        elif m["timestamp"]:
            fam.add_metric(labels, (v + wall_offset_ns) / 1e9)
        else:
            fam.add_metric(labels, float(v))

    # ---- the instance's own -------------------------------------------------------------
    def _global_families(self, snap: dict, status: dict, man: dict, describe: bool = False):
        c = snap.get("counters", {})
        fams = {
            "frames": CounterMetricFamily(name("frames"), "frames the program ran on", labels=[]),
            "parse": CounterMetricFamily(name("parse"), "frames by parse outcome", labels=["outcome"]),
            "verdicts": CounterMetricFamily(name("verdicts"), "frames by verdict", labels=["verdict"]),
            "blocklist": CounterMetricFamily(name("blocklist_frames"), "frames a blocklist entry matched: "
                                             "dropped (enforcing) or logged (would drop)", labels=["action"]),
            "blocks": CounterMetricFamily(name("blocklist_operations"), "blocklist entries added, renewed, "
                                          "removed, expired, or refused (full, allowlist, ttl)", labels=["operation"]),
            "insert": CounterMetricFamily(name("map_insert_failures"), "new keys a full map could not take "
                                          "(stats: the statistics the map keeps)", labels=["map", "stats"]),
            "app": CounterMetricFamily(name("app_events"), "an app's events by what became of them",
                                       labels=["app", "outcome"]),
            "rules": CounterMetricFamily(name("rule_fired"), "times a rule's condition held", labels=["app", "rule"]),
            "asl": CounterMetricFamily(name("asl_events"), "ASL handlers' events by outcome", labels=["app", "outcome"]),
            "events": CounterMetricFamily(name("events"), "events (JSON lines: ASL, alerts, the runtime's) written "
                                          "or failed (runtime/export/events.py)", labels=["outcome"]),
            "if_frames": CounterMetricFamily(name("interface_frames"), "frames per interface", labels=["interface"]),
            "if_bytes": CounterMetricFamily(name("interface_bytes"), "bytes per interface", labels=["interface"]),
        }
        gauges = {
            "build": GaugeMetricFamily(name("build_info"), "the running program", labels=["program_id", "apps"]),
            "enabled": GaugeMetricFamily(name("app_enabled"), "1 while an app runs", labels=["app", "mode"]),
            "params": GaugeMetricFamily(name("app_param"), "an app's params", labels=["app", "param"]),
        }
        if not describe:
            uses = _map_uses(man)
            for key, v in c.items():
                parts = key.split(".")
                if key == "frames":
                    fams["frames"].add_metric([], v)
                elif parts[0] == "parse":
                    fams["parse"].add_metric([parts[1]], v)
                elif parts[0] == "verdict":
                    fams["verdicts"].add_metric([parts[1]], v)
                elif parts[0] == "blocklist":
                    fams["blocklist" if parts[1] in BLOCKLIST_FRAMES else "blocks"].add_metric([parts[1]], v)
                elif parts[0] == "map" and parts[-1] == "insert_failed":
                    fams["insert"].add_metric([parts[1], uses.get(parts[1], "")], v)
                elif parts[0] == "app" and len(parts) == 3:
                    fams["app"].add_metric([parts[1], parts[2]], v)
                elif parts[0] == "rule" and parts[-1] == "fired":
                    fams["rules"].add_metric([parts[1], parts[2]], v)
                elif parts[0] == "asl" and len(parts) == 3:
                    fams["asl"].add_metric([parts[1], parts[2]], v)
                elif parts[0] == "events" and len(parts) == 2:
                    fams["events"].add_metric([parts[1]], v)
            for ifname, ic in snap.get("interfaces", {}).items():
                fams["if_frames"].add_metric([ifname], ic["frames"])
                fams["if_bytes"].add_metric([ifname], ic["bytes"])
            prog = status.get("program", {})
            gauges["build"].add_metric([str(prog.get("id")), ",".join(prog.get("apps", []))], 1)
            for app, e in status.get("enabled", {}).items():
                gauges["enabled"].add_metric([app, e["mode"]], 1 if e["enabled"] else 0)
            for app, ps in status.get("params", {}).items():
                for p, v in ps.items():
                    gauges["params"].add_metric([app, p], v)
        yield from fams.values()
        yield from gauges.values()


class TLSError(ValueError):
    """The exporter's TLS files cannot serve https."""


def check_tls(tls: dict) -> None:
    """Load ``tls``'s files as the server will, before it binds anything."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(tls["cert"], tls["key"])
    except (ssl.SSLError, OSError) as e:
        raise TLSError(f"cert {tls['cert']} and key {tls['key']}: not a PEM certificate and its private key "
                       f"({getattr(e, 'reason', None) or e})") from None
    if tls.get("client_ca"):
        try:
            ctx.load_verify_locations(cafile=tls["client_ca"])
        except (ssl.SSLError, OSError) as e:
            raise TLSError(f"client_ca {tls['client_ca']}: no PEM certificate ({getattr(e, 'reason', None) or e})") \
                from None


def serve(address: str, port: int, collector: Collector, tls: dict | None = None):
    """The client's HTTP server for ``collector`` on ADDRESS:PORT, in a daemon thread;
    (server, thread): ``server.shutdown()`` stops it. ``tls``: {"cert", "key"} PEM files
    serve https (TLS 1.2 at least); with "client_ca", only a client presenting a
    certificate it signed is answered (mutual TLS). OSError or ssl.SSLError when it
    cannot listen; TLSError, saying which file, when the files are not a certificate and its
    key, or client_ca holds no certificate."""
    import ssl

    from prometheus_client import CollectorRegistry, start_http_server

    tls = tls or {}
    if tls:
        check_tls(tls)
    reg = CollectorRegistry(auto_describe=True)
    reg.register(collector)
    return start_http_server(port, addr=address, registry=reg, certfile=tls.get("cert"), keyfile=tls.get("key"),
                             client_cafile=tls.get("client_ca"), client_auth_required=bool(tls.get("client_ca")),
                             tls_min_version=ssl.TLSVersion.TLSv1_2 if tls else None)
