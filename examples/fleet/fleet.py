"""A fleet of xdpmon hosts on one machine, a site Prometheus and a global one.

``Fleet(hosts=4).up()`` builds, in this order (topology.py has the network):

1. removes what a killed earlier fleet left (its namespaces and temporary directory: its
   processes died with it), and makes a temporary directory that holds everything the fleet writes (configs, logs, events, run
   directories, both Prometheus' data);
2. the namespaces: per host, the host and its traffic peer joined by a veth pair, and a
   management link to the monitoring namespace;
3. one ``xdpmon run --config <host>.yaml`` per host, in its namespace, attached to its
   ``mon`` interface, with the exporter on its management address (host.yaml, filled in;
   each with a run directory of its own, so instances share nothing but the kernel), all
   started at once and each waited for until it says it is attached;
4. the site Prometheus, which finds the hosts by file service discovery (one JSON file
   per host) and loads examples/prometheus/xdpmon-alerts.yml, and the global Prometheus,
   which federates it (tiers.py); both waited for until the global tier sees every host
   up.

``send(...)`` sends each host's traffic (traffic.py) and the flood on one host, and says
what went; ``settled(sent)`` waits until the global tier's per-host frame counts equal
what was sent. ``close()`` takes it all down in the reverse order, whatever state it is
in (each step runs even if one before it failed): the senders, the instances (SIGTERM:
each detaches and exits 0), the Prometheus servers, the namespaces, the temporary
directory; it returns the problems met (an instance that did not exit 0, a namespace
still there). ``with Fleet(...) as f:`` calls it on every way out.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from runtime.traffic.veth import sh

from . import tiers, topology
from .procs import Proc
from .traffic import Sender, VICTIM, benign, syns_to

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
METRICS_PORT = 9400
TMP_PREFIX = "xdpmon-fleet-"      # + pid: what a killed fleet left is found by it
SITE = "lab"
# Every host runs all the reference apps and the fleet's SYN counter (tcp_syns.mon).
SPECS = sorted(str(p) for p in (ROOT / "specs").glob("*.mon")) + [str(HERE / "tcp_syns.mon")]


@dataclass
class Sent:
    """What one ``send`` sent, per host name: frames, and SYNs towards ``VICTIM``."""
    frames: dict[str, int] = field(default_factory=dict)
    syns_to_victim: dict[str, int] = field(default_factory=dict)
    flood: dict = field(default_factory=dict)         # the flood sender's report
    flood_host: str = ""


class Fleet:
    def __init__(self, hosts: int = 4, *, interval: str = "1s", say=print, specs: list[str] | None = None):
        self.n, self.interval, self.say = hosts, interval, say
        self.specs = specs or SPECS
        self.tmp: Path | None = None
        self.net: topology.Topology | None = None
        self.instances: list[Proc] = []
        self.site: tiers.Prometheus | None = None
        self.globe: tiers.Prometheus | None = None
        self.senders: list[Sender] = []

    @property
    def hosts(self):
        return self.net.hosts if self.net else []

    # ---- the way up -----------------------------------------------------------------------
    def up(self) -> "Fleet":
        tiers.binary("prometheus")           # before anything is made: the reason, if it is missing
        self._remove_stale()
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-"))
        self.net = topology.Topology(self.n)
        self.say(f"fleet: {self.n} hosts, each a namespace with its own veth and traffic peer "
                 f"({self.hosts[0].ns} ... {self.hosts[-1].ns}); monitoring namespace {self.net.monitor_ns}")
        for h in self.hosts:
            self.instances.append(self._instance(h))
        for h, p in zip(self.hosts, self.instances):
            m = p.wait_for(r"attached to \S+ .*program id (\d+)", timeout=180)
            self.say(f"fleet: {h.name}: xdpmon attached to {h.ns}/{h.iface}, program id {m.group(1)}, "
                     f"metrics on http://{h.mgmt_addr}:{METRICS_PORT}/metrics")
        self._tiers()
        return self

    def _remove_stale(self) -> None:
        """What a killed earlier fleet left (its processes died with it): namespaces, temporary files."""
        for ns in topology.stale():
            sh("ip", "netns", "del", ns, check=False)
            self.say(f"fleet: removed namespace {ns}, left by an earlier fleet that was killed")
        for d in Path(tempfile.gettempdir()).glob(f"{TMP_PREFIX}*-*"):
            pid = d.name[len(TMP_PREFIX):].split("-")[0]
            if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                shutil.rmtree(d, ignore_errors=True)
                self.say(f"fleet: removed {d}, left by an earlier fleet that was killed")

    def _instance(self, h) -> Proc:
        d = self.tmp / h.name
        d.mkdir()
        cfg = tiers.render("host.yaml", d / "xdpmon.yaml", name=h.name, specs=", ".join(self.specs),
                           interface=h.iface, events=d / "events.jsonl", metrics=f"{h.mgmt_addr}:{METRICS_PORT}")
        env = {**os.environ, "XDPMON_RUN_DIR": str(d / "run"), "PYTHONPATH": str(ROOT)}
        return Proc(f"xdpmon on {h.name}", h.ns, [sys.executable, "-m", "runtime.cli", "run", "--config", str(cfg)],
                    d / "xdpmon.log", env=env, cwd=str(ROOT))

    def _tiers(self) -> None:
        t, ns = self.tmp, self.net.monitor_ns
        tiers.write_targets(t / "targets", self.hosts, METRICS_PORT)
        site_cfg = tiers.render("prometheus-site.yml", t / "prometheus-site.yml", interval=self.interval,
                                site=SITE, rules=tiers.RULES, targets=t / "targets")
        glob_cfg = tiers.render("prometheus-global.yml", t / "prometheus-global.yml", interval=self.interval,
                                site_address=f"127.0.0.1:{tiers.SITE_PORT}")
        self.site = tiers.Prometheus("the site Prometheus", ns, site_cfg, t / "site-data", tiers.SITE_PORT,
                                     t / "prometheus-site.log")
        self.globe = tiers.Prometheus("the global Prometheus", ns, glob_cfg, t / "global-data", tiers.GLOBAL_PORT,
                                      t / "prometheus-global.log")
        self.site.wait_ready()
        self.globe.wait_ready()
        self.say(f"fleet: site Prometheus {self.site.url} (scrapes the {self.n} hosts every {self.interval}, "
                 f"file service discovery, alert rules {tiers.RULES.relative_to(ROOT)}); global Prometheus "
                 f"{self.globe.url} (federates the site); both in {ns}")
        self.wait("the global tier to see every host up", lambda: self.globe.api.scalar(
            'count(up{job="xdpmon"} == 1)') == self.n, timeout=60)

    def wait(self, what: str, cond, timeout: float, every: float = 0.5):
        """Poll ``cond()`` until true (its value); an error after ``timeout`` s, with the
        last exception ``cond`` raised, if any."""
        end, last = time.monotonic() + timeout, None
        while True:
            try:
                v = cond()
                if v:
                    return v
            except tiers.ApiError as e:
                last = e
            self._check_running()
            if time.monotonic() > end:
                raise TimeoutError(f"fleet: waited {timeout:.0f} s for {what}" + (f" (last error: {last})"
                                                                                    if last else ""))
            time.sleep(every)

    def _check_running(self) -> None:
        for p in self.instances + [x.proc for x in (self.site, self.globe) if x]:
            if not p.alive():
                raise p.failed(f"exited with status {p.p.returncode}")

    # ---- traffic ------------------------------------------------------------------------------
    def send(self, seconds: float = 15.0, *, flood_host: int = 0, flood_rate: float = 3000,
             flood_at_s: float = 1.0, flood_max_s: float = 40.0, stop_flood=None) -> Sent:
        """Benign traffic on every host for ``seconds``, and from ``flood_at_s`` a SYN flood
        towards VICTIM on host ``flood_host`` at ``flood_rate``, for at most ``flood_max_s``:
        it stops as soon as ``stop_flood()`` (asked every half second) is true. Returns what
        was sent."""
        frames = {h.name: benign(h.index, seconds) for h in self.hosts}
        start = time.monotonic_ns() + 1_500_000_000          # the senders load first
        fh = self.hosts[flood_host]
        ben = [Sender.benign(ROOT, h, frames[h.name], self.tmp / f"{h.name}-benign.bin", start) for h in self.hosts]
        flood = Sender.flood(ROOT, fh, start + int(flood_at_s * 1e9), int(flood_rate * flood_max_s), flood_rate)
        self.senders = ben + [flood]
        self.say(f"fleet: sending {seconds:g} s of benign traffic on every host ({sum(map(len, frames.values())):,} "
                 f"frames) and, on {fh.name}, a SYN flood towards {VICTIM} at {flood_rate:,.0f}/s")
        end = time.monotonic() + flood_at_s + flood_max_s + seconds + 30
        while not flood.done() and time.monotonic() < end:
            self._check_running()
            if stop_flood is not None and time.monotonic_ns() > start and stop_flood():
                flood.stop_early()
                break
            time.sleep(0.5)
        fres = flood.result(timeout=max(5.0, end - time.monotonic()))
        sent = Sent(flood=fres, flood_host=fh.name)
        for h, s in zip(self.hosts, ben):
            n = s.result(timeout=max(5.0, end - time.monotonic()))["sent"]
            extra = fres["sent"] if h is fh else 0
            sent.frames[h.name] = n + extra
            sent.syns_to_victim[h.name] = syns_to((f for _, f in frames[h.name][:n]), VICTIM) + extra
        self.senders = []
        self.say(f"fleet: sent {sum(sent.frames.values()):,} frames (the flood: {fres['sent']:,} SYNs in "
                 f"{(fres['last_ns'] - fres['first_ns']) / 1e9:.1f} s), {sum(sent.syns_to_victim.values()):,} "
                 f"SYNs towards {VICTIM} in all")
        return sent

    def settled(self, sent: Sent, timeout: float = 30) -> dict[str, float]:
        """Wait until the global tier's frames per host equal ``sent``'s; those counts."""
        got = {}

        def same():
            got.clear()
            got.update(self.globe.api.values("sum by (host) (xdpmon_interface_frames_total)", "host"))
            return got == {k: float(v) for k, v in sent.frames.items()}
        try:
            self.wait("the global tier to have every frame sent", same, timeout)
        except TimeoutError:
            pass          # the caller compares, and says what differs
        return got

    # ---- the way down ---------------------------------------------------------------------------
    def close(self) -> list[str]:
        problems = []
        for s in self.senders:
            s.stop_early()
        for s in self.senders:
            try:
                s.result(timeout=10)
            except Exception:
                s.kill()
        self.senders = []
        for p in self.instances:
            rc = p.stop()
            if rc != 0:
                problems.append(p.failed(f"exited with status {rc} when stopped").args[0])
        self.instances = []
        for t in (self.globe, self.site):
            if t is not None:
                t.stop()
        self.site = self.globe = None
        if self.net is not None:
            left = self.net.close()
            if left:
                problems.append(f"namespaces left: {', '.join(left)}")
            self.net = None
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None
        return problems

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for p in self.close():
            self.say(f"fleet: while tearing down: {p}")
        return False
