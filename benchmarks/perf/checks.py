"""After every run: did the program see the frame meant, on every repeat?

BPF_PROG_TEST_RUN runs a program ``repeat`` times on one buffer and keeps what a
run did to it (packet writes, ``bpf_xdp_adjust_head``) for the next run: a program
that changes its frame is measured on other frames from the second repeat on.
So each timed run is checked against what R repeats of *that* frame must do to
the program's counters and statistics, read before and after (outside the
kernel's timing):

- every global counter grows exactly as expected: ``frames`` +R, the frame's
  parse outcome +R (as the reference decoder parses it for the layers this
  program parses), ``verdict.pass`` +R, every other counter (other outcomes,
  insert failures, rule firings, events) +0;
- the verdict is XDP_PASS;
- a keyed statistic: ``traffic_accounting.per_dst`` of the frame's ip.dst grew
  by R packets and R x the frame's length in bytes (when the program has it);
- a new-flow frame (a new source per repeat): every hash map keyed by ip.src
  (with or without other fields) that holds one of the frame's ``new_keys``
  statistics holds exactly R more entries.

A configuration that is not one of xdpmon's (``Measured`` only) is checked by
its verdict and, when it has traffic_accounting, by the keyed statistic read
through ``snapshot_apps()``. Any mismatch raises ``FrameCheckError`` naming
the configuration, the frame and every value that differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runtime.engines.reference.decoder import decode

XDP_PASS = 2


class FrameCheckError(AssertionError):
    """A run did not do what R repeats of its frame must do."""


def expected_outcome(layers, frame: bytes) -> str:
    """The parse outcome counter a program parsing ``layers`` counts for ``frame``."""
    return "parse." + decode(frame, layers).outcome


def per_dst_total(stat_entries, dst: str) -> tuple[int, int]:
    """(packets, bytes) of traffic_accounting.per_dst at key ``dst``."""
    for e in stat_entries:
        if e["key"].get("ip.dst") == dst:
            return e["value"]["packets"], e["value"]["bytes"]
    return 0, 0


@dataclass
class Probe:
    """What is read before and after a run of one configuration."""
    counters: dict | None = None
    per_dst: tuple[int, int] | None = None
    keyed_total: int | None = None
    src_entries: dict = field(default_factory=dict)


class RunCheck:
    """The check of one configuration (``prog``): ``probe()`` before and after a
    run, then ``verify(before, after, ...)``."""

    def __init__(self, name: str, prog, keyed: tuple[str, str, str] | None = None):
        """``keyed``: (app, stat, value) of a keyed statistic whose value, summed over
        its keys, must grow by 1 per repeat (for programs without traffic_accounting)."""
        self.name = name
        self.prog = prog
        self.keyed = keyed
        man = getattr(prog, "manifest", None)
        self.xdpmon = man is not None and hasattr(prog, "counters")
        self.layers = frozenset(man.raw["layers"]) if self.xdpmon else None
        apps = getattr(prog, "apps", None)
        self.has_accounting = "traffic_accounting" in (apps if apps is not None else self._snapshot_apps())
        # (app, stat) -> the hash map keyed by ip.src (among other fields) that holds it
        self.src_maps = ({(u["app"], u["stat"]): m["name"] for m in man.raw["maps"]
                          if "hash" in m["bpf_type"] and "ip.src" in m["key_fields"]
                          for u in m["uses"]} if self.xdpmon else {})
        self._outcomes: dict[bytes, str] = {}

    def _snapshot_apps(self) -> dict:
        return self.prog.snapshot_apps()

    def outcome(self, frame: bytes) -> str:
        o = self._outcomes.get(frame)
        if o is None:
            o = self._outcomes[frame] = expected_outcome(self.layers, frame)
        return o

    def new_key_maps(self, new_keys) -> list[str]:
        """The maps of this program that hold the statistics ``new_keys``."""
        return sorted({self.src_maps[k] for k in new_keys if k in self.src_maps})

    def probe(self, new_keys=(), dst: str | None = None) -> Probe:
        p = Probe()
        if self.xdpmon:
            p.counters = self.prog.counters()
            p.src_entries = {m: self.prog.map_entries(m) for m in self.new_key_maps(new_keys)}
        if self.has_accounting and dst is not None:
            entries = (self.prog.stat("traffic_accounting", "per_dst") if self.xdpmon
                       else self._snapshot_apps()["traffic_accounting"]["stats"]["per_dst"])
            p.per_dst = per_dst_total(entries, dst)
        if self.keyed and self.xdpmon:
            app, stat, value = self.keyed
            p.keyed_total = sum(e["value"][value] for e in self.prog.stat(app, stat))
        return p

    def expected_counters(self, before: dict, frames: list[bytes], repeat: int) -> dict:
        """The counters after ``repeat`` runs of each of ``frames`` from ``before``."""
        exp = dict(before)
        for f in frames:
            exp["frames"] += repeat
            exp[self.outcome(f)] += repeat
            exp["verdict.pass"] += repeat
        return exp

    def verify(self, before: Probe, after: Probe, frame: bytes, repeat: int, retval, *,
               frame_name: str, dst: str | None = None, new_keys=()) -> None:
        problems = []
        if retval != XDP_PASS:
            problems.append(f"verdict {retval} (expected XDP_PASS = {XDP_PASS})")
        if self.xdpmon:
            problems += self._counter_problems(before.counters, after.counters,
                                               self.expected_counters(before.counters, [frame], repeat))
            for m in self.new_key_maps(new_keys):
                grew = after.src_entries[m] - before.src_entries[m]
                if grew != repeat:
                    walked = self.prog.map_entries_walked(m) - before.src_entries[m]
                    problems.append(f"map {m} (keyed by ip.src) gained {grew} entries ({walked} counted by "
                                    f"walking its keys), expected {repeat} (a new source per repeat)")
        if before.per_dst is not None:
            want = (before.per_dst[0] + repeat, before.per_dst[1] + repeat * len(frame))
            if after.per_dst != want:
                problems.append(f"traffic_accounting.per_dst[{dst}] (packets, bytes) = {after.per_dst}, "
                                f"expected {want} (was {before.per_dst}, +{repeat} frames of {len(frame)} bytes)")
        if before.keyed_total is not None and after.keyed_total != before.keyed_total + repeat:
            app, stat, value = self.keyed
            problems.append(f"{app}.{stat} {value} (all keys) grew by {after.keyed_total - before.keyed_total}, "
                            f"expected {repeat}")
        if problems:
            raise FrameCheckError(f"{self.name}, frame {frame_name} ({len(frame)} bytes) x {repeat} repeats: "
                                  f"the program did not see this frame on every repeat: " + "; ".join(problems))

    def verify_counters(self, before: Probe, after: Probe, frames: list[bytes], what: str) -> None:
        """Each of ``frames`` run once (a capture in order): the counters must add up."""
        if not self.xdpmon:
            return
        problems = self._counter_problems(before.counters, after.counters,
                                          self.expected_counters(before.counters, frames, 1))
        if problems:
            raise FrameCheckError(f"{self.name}, {what} ({len(frames)} frames once each): " + "; ".join(problems))

    @staticmethod
    def _counter_problems(before: dict, after: dict, want: dict) -> list[str]:
        return [f"counter {k} grew by {after[k] - before[k]}, expected {want[k] - before[k]}"
                for k in want if after[k] != want[k]]
