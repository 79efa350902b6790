"""The live demo: namespaces, the monitor, the senders, the timeline, and teardown.

``run_demo(scenario, ...)``:

1. takes the live build of every spec in ``specs/`` (the CLI compiles it, as for
   ``xdpmon run``), and builds the benign frames (traffic.py);
2. removes what a killed earlier demo left (namespaces ``xdpmon-demo<pid>-m/-p`` of a
   process that is gone), then makes its own veth pair (runtime/traffic/veth.py):
   the monitor side ``mon`` in ``xdpmon-demo<pid>-m``, the sending side in ``-p``;
3. starts the monitor (runtime/monitor/instance.py) in the monitor namespace: the
   program attached in native mode, the ASL of every app, the control socket
   ``/run/xdpmon/demo-<pid>.sock`` (``xdpmon ctl --name demo-<pid> ...`` works while
   it runs), syn_flood's ASL told to block (``block: true``) and the blocklist to drop
   with ``--enforce``;
4. starts the two senders (sender.py, a process each, entering the sending namespace):
   benign frames from the start for the whole run, the flood from ``attack_at_s``;
5. shows the live view every second until the run's time is up, then waits for the
   senders and reads the last time;
6. tears everything down, whatever happened (the end, Ctrl-C, an error): the senders
   are stopped (SIGTERM, then SIGKILL), the program detached, the instance closed, the
   namespaces deleted (the veth and any XDP program with them); then checks that none
   of it is left and says so;
7. prints the timeline (timeline.py) and keeps it in ``build/demo-timeline.json``, the
   events in ``build/demo-events.jsonl``; with ``write_pcap`` the same traffic as a
   capture, each frame at the time it was sent.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .scenario import S, Scenario
from .timeline import Timeline
from . import traffic

PREFIX = "xdpmon-demo"
START_DELAY_S = 1.0            # the senders start this long after they are spawned (they load first)
GRACE_S = 3.0                  # the run goes on this long after the traffic, for the end of the attack
log = logging.getLogger("xdpmon.demo")


class DemoError(RuntimeError):
    """A demo that could not run; the message says why."""


def _spawn(args: list[str], root: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "runtime.demo.sender", *args], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)        # Ctrl-C goes to the demo, which stops them


def _result(p: subprocess.Popen, timeout: float) -> dict:
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    lines = [line for line in (out or "").splitlines() if line.startswith("{")]
    if not lines:
        return {"error": f"the sender exited with {p.returncode} and no result: {(err or '').strip()[-500:]}"}
    return json.loads(lines[-1])


def _stop(p: subprocess.Popen | None) -> None:
    if p is None or p.poll() is not None:
        return
    p.terminate()
    try:
        p.wait(timeout=3)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def clean_stale(say) -> None:
    from runtime.traffic.veth import sh, stale

    for ns in stale(PREFIX):
        sh("ip", "netns", "del", ns, check=False)
        say(f"removed namespace {ns}, left by an earlier demo that was killed")


def run_demo(sc: Scenario, art, *, rich: bool, write_pcap: str | None = None, say=print,
             build_dir: str = "build") -> tuple[int, Timeline | None]:
    """Run the demo with ``art``, the live build of every spec of ``specs/`` (compiled by
    the caller, in the checkout: the specs name their ASL relative to it); (exit status,
    timeline). 0: it ran (the verdicts are in the timeline)."""
    from runtime.control.options import RunOptions
    from runtime.monitor.instance import Instance
    from runtime.traffic.veth import VethPair, namespaces

    from .sender import write_frames
    from .view import DemoView

    root = traffic.project_root()
    specs = sorted(str(p) for p in (root / "specs").glob("*.mon"))
    say(f"xdpmon demo: building {sc.duration_s:g} s of benign traffic")
    benign = traffic.benign(sc)
    benign_sources = _sources(benign)
    out_dir = root / build_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    events_path = out_dir / "demo-events.jsonl"
    events_path.unlink(missing_ok=True)
    clean_stale(say)

    pid = os.getpid()
    pair = inst = ben = fl = None
    tmp = tempfile.TemporaryDirectory(prefix="xdpmon-demo-")
    status, tl, why = 0, None, None
    flood_res = ben_res = None
    old_int = signal.signal(signal.SIGINT, _interrupt)
    old_term = signal.signal(signal.SIGTERM, _interrupt)
    try:
        pair = VethPair(f"{PREFIX}{pid}", subnet=pid % 250)
        say(f"xdpmon demo: namespaces {pair.mon_ns} (monitor, {pair.MON_IF} {pair.mon_addr}) and "
            f"{pair.peer_ns} (senders), joined by a veth pair; no default route")
        opts = RunOptions(specs=specs, interfaces=[pair.MON_IF], name=f"demo-{pid}", xdp_mode="native",
                          enforce=sc.enforce, events_path=str(events_path), events_in_memory=True,
                          asl={"syn_flood": {"options": {"block": sc.enforce}}},
                          view="none")
        inst = Instance(art, opts)
        with pair.monitor():
            started = inst.start()
        for a in started.attached:
            say(f"xdpmon demo: attached to {a.name} ({a.mode}), program id {a.prog_id}; "
                f"ctl: xdpmon ctl --name {opts.name} status")
        frames_file = os.path.join(tmp.name, "benign.bin")
        write_frames(frames_file, benign)
        start = time.monotonic_ns() + int(START_DELAY_S * S)
        common = ["--netns", pair.peer_ns, "--ifname", pair.PEER_IF]
        ben = _spawn(["benign", *common, "--start-ns", str(start), "--frames", frames_file], root)
        mac = pair.mac("mon")
        fl = _spawn(["flood", *common, "--start-ns", str(start + int(sc.attack_at_s * S)),
                     "--src", sc.flood_first_source, "--sources", str(sc.flood_sources),
                     "--sport", str(traffic.FLOOD_SPORT), "--sports", str(traffic.FLOOD_SPORTS),
                     "--dst", sc.victim, "--dst-mac", mac, "--count", str(sc.flood_frames),
                     "--rate", str(sc.rate_pps)], root)
        wall_minus_mono = time.time_ns() - time.monotonic_ns()
        events = inst.events_out.written
        with DemoView(sc, inst.engine.manifest, events, start + wall_minus_mono, rich) as view:
            end = start + int((sc.duration_s + GRACE_S) * S)
            next_at = time.monotonic_ns()
            while time.monotonic_ns() < end:
                now = time.monotonic_ns()
                if now >= next_at:
                    inst.tick(lambda r, st: view.update(r, st, (time.monotonic_ns() - start) / S))
                    next_at += S
                for p, what in ((ben, "benign"), (fl, "flood")):
                    if p.poll() not in (None, 0):
                        raise DemoError(f"the {what} sender failed: {_result(p, 1).get('error')}")
                time.sleep(max(0.0, min(0.1, (next_at - time.monotonic_ns()) / S)))
        ben_res, flood_res = _result(ben, 10), _result(fl, 10)
        for r in (ben_res, flood_res):
            if "error" in r:
                raise DemoError(f"the {r.get('kind', 'a')} sender failed: {r['error']}")
        inst.detach()
        final = inst.reader.read()
        counters = final.snapshot["counters"]
        blocks = inst.controller.blocks()
        params = inst.controller.params()
        per_dst, syn_threshold = params["syn_flood"]["per_dst"], params["flow_watch"]["syn_threshold"]
        tl = Timeline.build(sc, t0_ns=start, flood=flood_res, per_dst=per_dst, syn_threshold=syn_threshold,
                            events=list(events), wall_minus_mono=wall_minus_mono, counters=counters,
                            blocks=blocks, benign_sources=benign_sources, benign_sent=ben_res.get("sent", 0))
        tl.frames_seen = counters.get("frames", 0)
        tl.frames_sent = ben_res.get("sent", 0) + flood_res.get("sent", 0)
        tl.veth_dropped = pair.rx_dropped()
    except KeyboardInterrupt:
        why, status = "interrupted (Ctrl-C)", 130
    except DemoError as e:
        why, status = str(e), 1
    except Exception as e:        # the program refused, an interface gone, ...: said, and everything removed
        why, status = f"{type(e).__name__}: {e}", 1
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
        for p in (fl, ben):
            _stop(p)
        problems = inst.close() if inst is not None else []
        if pair is not None:
            pair.close()
            left = set(namespaces()) & {pair.mon_ns, pair.peer_ns}
            if left:
                problems.append(f"namespaces left: {', '.join(sorted(left))}")
        tmp.cleanup()
        for p in problems:
            say(f"xdpmon demo: while tearing down: {p}")
        if pair is not None:
            say("xdpmon demo: torn down: " + ("namespaces, veth pair, XDP program and control socket removed"
                                              if not problems else "with the problems above"))
    if why is not None:
        say(f"xdpmon demo: stopped: {why}")
        return status, None
    (out_dir / "demo-timeline.json").write_text(json.dumps(tl.to_json(), indent=2) + "\n")
    if write_pcap:
        say(f"xdpmon demo: writing the traffic as sent to {write_pcap}")
        n = traffic.write_pcap(write_pcap, sc, benign, start, flood_res["first_ns"], flood_res["sent"],
                               flood_res["rate_pps"] or sc.rate_pps, traffic.flood_template(sc, mac),
                               base_ns=capture_base(start))
        say(f"xdpmon demo: {write_pcap}: {n:,} frames; replay it: xdpmon replay specs/*.mon --pcap {write_pcap} --asl")
    return 0, tl


def _interrupt(*_):
    raise KeyboardInterrupt


def capture_base(start_ns: int) -> int:
    """The capture's time of the demo's start: 2026-01-01T00:00:00Z plus the start's
    phase within its second, so the program's windows split the traffic as they did live."""
    return 1_767_225_600 * S + start_ns % S


def _sources(frames) -> set[str]:
    """The IPv4/IPv6 source addresses of the benign frames (for 'no benign source blocked')."""
    import ipaddress

    import dpkt
    out = set()
    for _, f in frames:
        try:
            ip = dpkt.ethernet.Ethernet(f).data
        except dpkt.dpkt.UnpackError:
            continue
        if isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)):
            out.add(str(ipaddress.ip_address(bytes(ip.src))))
    return out
