"""Replacing a running instance's program with another, without losing a frame or a count.

``Swap(inst, new_art, changes).run()`` (runtime/monitor/instance.py calls it for ``ctl add``,
``ctl remove``, ``ctl reload`` and SIGHUP), in this order:

1. **load and prepare**, the old program running untouched: the new program is compiled
   and loaded, with the instance's pins (runtime/deploy/pindir.py), by a process of its
   own, which hands it over by fds (runtime/deploy/verify.py, runtime/dataplane/handed.py:
   LLVM may end the process it compiles in, and the instance must survive that); every
   map whose identity, layout and size are unchanged is the same map (compiler/pins.py).
   Meanwhile the instance loads the fold program of the maps whose layout changed
   (runtime/deploy/fold.py; their new maps made and pinned first, so that the two
   processes open them). Then: what is pinned is checked; params, enable times and rate
   limiters are copied by name (runtime/deploy/carry.py). A failure here (a spec error
   was caught before: the compile, a verifier rejection, the memory budget, a pin that
   does not fit) unloads what was loaded, removes the pins it made, and raises: the old
   program is as it was.
2. **swap** on every interface, atomically: ``bpf_link_update`` with the old program as
   the expected one (netlink with ``XDP_FLAGS_REPLACE`` for a netlink attach); never
   detach-then-attach: the interface always has a program. A failure on one interface
   puts the old program back on those already swapped, then as in 1.
3. **quiesce**: ``membarrier(MEMBARRIER_CMD_GLOBAL)`` waits for an RCU grace period, after
   which no CPU runs the old program (XDP runs inside an RCU read-side section).
4. **fold and take over**: the migrated maps and the counters are folded into the new
   ones; enables the old program's triggers set meanwhile are taken over; the old ring
   buffer is drained into the ASL queues, the handlers of unchanged apps (and their
   queues) move to the new program, removed or changed apps' handlers get ``on_stop()``,
   added ones ``on_start()``; the controller, the blocklist and the reader turn to the
   new maps.
5. **clean up**: unpin the maps no program uses, unload the old program.

A frame arriving during the swap is run by exactly one of the two programs: the shared
maps count it once, and the old program's maps are read only after it stopped.
"""

from __future__ import annotations

import ctypes
import logging
import os
import time
from dataclasses import dataclass, field

from runtime.dataplane import libbpf as L

from . import carry, fold
from .changes import Changes, diff

log = logging.getLogger("xdpmon.deploy")

_SYS_MEMBARRIER = 324                 # x86_64
MEMBARRIER_CMD_GLOBAL = 1
FAULT_ENV = "XDPMON_INJECT_FAULT"     # "swap:<step>[:<app>]": fail at that step (tests of the way back)


class SwapError(RuntimeError):
    """The new program could not replace the old one, which still runs untouched."""


def quiesce() -> str:
    """Wait until no CPU runs a program replaced before this call; how."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(_SYS_MEMBARRIER, MEMBARRIER_CMD_GLOBAL, 0, 0) == 0:
        return "membarrier"
    time.sleep(0.05)          # nohz_full kernels refuse it; a NAPI poll lasts microseconds
    return "sleep"


def _fault(step: str, apps) -> None:
    """For the tests: fail at ``step`` (load, prepare, swap), when the new program has
    the app named after it, if one is."""
    want = os.environ.get(FAULT_ENV, "").split(":")
    if want[:2] == ["swap", step] and (len(want) < 3 or want[2] in apps):
        raise SwapError(f"fault injected by {FAULT_ENV}={':'.join(want)}")


@dataclass
class SwapResult:
    changes: Changes
    timings_ms: dict = field(default_factory=dict)
    carried: dict = field(default_factory=dict)
    folded: dict = field(default_factory=dict)          # map -> entries folded
    unpinned: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)   # after the swap: reported, not undone
    old_prog_id: int = 0
    new_prog_id: int = 0

    def to_json(self) -> dict:
        return {"changes": self.changes.to_json(), "timings_ms": self.timings_ms, "carried": self.carried,
                "folded": self.folded, "unpinned": self.unpinned, "problems": self.problems,
                "old_prog_id": self.old_prog_id, "new_prog_id": self.new_prog_id}


class Swap:
    def __init__(self, inst, new_art, changes: Changes | None = None):
        self.inst = inst
        self.old_eng = inst.engine
        self.new_art = new_art
        self.new_eng = None
        self.fold_plan = None
        self.fold_prog = None
        self.handed = None                   # the new program as the other process handed it over
        self.pinned_before: set[str] = inst.pins.pinned()
        self.result = SwapResult(changes or diff(inst.engine.art, new_art))
        self.new_apps = [a["name"] for a in new_art.manifest["apps"]]

    # ---- 1. prepare ------------------------------------------------------------------------
    def load_fold(self) -> None:
        """The fold program of the maps whose layout changed. Trusted code of a template:
        loaded in the instance, while the new program compiles in a process of its own."""
        from runtime.dataplane.loader import load

        t = time.monotonic()
        if self.fold_plan.maps:
            self.fold_prog = load(self.fold_plan.render(), pin_dir=str(self.inst.pins.path), function="xm_fold",
                                  watched=False)
        self.result.timings_ms["fold_load"] = round((time.monotonic() - t) * 1e3, 1)

    def load(self) -> None:
        """Compile and load the new program in a process of its own, which hands it over
        (runtime/deploy/verify.py, runtime/dataplane/handed.py), and the fold program here
        meanwhile; the maps the fold writes are made and pinned first, so that the two
        processes open them and neither races the other to make them."""
        from . import verify

        pins = self.inst.pins
        self.fold_plan = fold.plan(self.result.changes, self.old_eng.art.manifest, self.new_art.manifest)
        fold.precreate(self.fold_plan, pins.path)
        t = time.monotonic()
        pending = verify.handoff(self.new_art, str(pins.path))
        self.load_fold()
        try:
            pending.result()
        finally:
            self.handed = pending.handed
        self.result.timings_ms["handoff"] = round((time.monotonic() - t) * 1e3, 1)

    def prepare(self) -> None:
        """Take the handed-over program: maps checked against their pins, interfaces to
        count, params, enables and rate limiters carried."""
        from runtime.engines.live import LiveEngine

        inst, pins = self.inst, self.inst.pins
        t = time.monotonic()
        try:
            handed, self.handed = self.handed, None
            self.new_eng = LiveEngine(self.new_art, memory_budget=inst.opts.memory_budget, pins=pins,
                                      loaded=handed)
            self.result.changes.insns_before = self.old_eng.loaded.verified_insns
            self.result.changes.insns_after = self.new_eng.loaded.verified_insns
            _fault("load", self.new_apps)
            self.new_eng.maps.set_interfaces([a.ifindex for a in inst.attachment.results])
            self.result.carried = carry.before_swap(self.old_eng.maps, self.old_eng.manifest,
                                                    self.new_eng.maps, self.new_eng.manifest)
            _fault("prepare", self.new_apps)
        except BaseException:
            self.abandon()
            raise
        self.result.timings_ms["prepare"] = round((time.monotonic() - t) * 1e3, 1)

    def abandon(self) -> None:
        """Undo prepare: unload the new program and remove the pins it made."""
        for obj in (self.fold_prog, self.new_eng, self.handed):
            if obj is not None:
                try:
                    obj.close()
                except Exception as e:
                    log.warning("unloading: %s", e)
        self.fold_prog = self.new_eng = self.handed = None
        self.inst.pins.unpin(self.inst.pins.pinned() - self.pinned_before)

    # ---- 2. swap ------------------------------------------------------------------------------
    def swap(self) -> None:
        old_fd, new_fd = self.old_eng.fd, self.new_eng.fd
        new_id = L.prog_head(new_fd).id
        self.result.old_prog_id = L.prog_head(old_fd).id
        done = []
        t = time.monotonic()
        try:
            for i, a in enumerate(self.inst.attachment.results):
                if i == len(self.inst.attachment.results) - 1:
                    _fault("swap", self.new_apps)     # after the others were swapped
                _replace(a, new_fd, old_fd)
                done.append(a)
                a.prog_id = new_id
        except BaseException as e:
            for a in reversed(done):
                try:
                    _replace(a, old_fd, new_fd)
                    a.prog_id = self.result.old_prog_id
                except OSError as e2:
                    log.error("putting the old program back on %s failed: %s", a.name, e2)
            self.abandon()
            if isinstance(e, OSError):
                raise SwapError(f"swapping the program on {a.name} failed: {e}; the old program runs on") from None
            raise
        self.result.timings_ms["swap"] = round((time.monotonic() - t) * 1e3, 3)
        self.result.new_prog_id = new_id

    # ---- 3.-5. ----------------------------------------------------------------------------------
    def take_over(self) -> None:
        inst, old, new, res = self.inst, self.old_eng, self.new_eng, self.result
        t = time.monotonic()
        res.timings_ms["quiesce_how"] = quiesce()
        res.timings_ms["quiesce"] = round((time.monotonic() - t) * 1e3, 3)
        t = time.monotonic()
        for step, fn in (("enables", self._enables), ("fold", self._fold)):
            try:
                fn()
            except Exception as e:
                res.problems.append(f"{step}: {type(e).__name__}: {e}")
                log.error("after the swap, %s: %s", step, e)
        res.timings_ms["fold"] = round((time.monotonic() - t) * 1e3, 1)
        inst.adopt(new, self.new_art, res.changes, old)
        keep = set(self.new_art.manifest["pins"].values())
        res.unpinned = inst.pins.unpin(set(self.old_eng.art.manifest["pins"].values()) - keep)
        for obj in (self.fold_prog, old):
            if obj is not None:
                try:
                    obj.close()
                except Exception as e:
                    res.problems.append(f"unloading the old program: {e}")

    def _enables(self) -> None:
        old, new = self.old_eng, self.new_eng
        self.result.carried["enabled_meanwhile"] = carry.after_swap(old.maps, old.manifest, new.maps, new.manifest)

    def _fold(self) -> None:
        if self.fold_plan.maps:
            self.result.folded = fold.fold_all(self.fold_plan, self.fold_prog.fd, self.old_eng, self.new_eng)

    def run(self) -> SwapResult:
        """The whole swap (the steps of the module's doc)."""
        try:
            self.load()
        except BaseException:
            self.abandon()
            raise
        self.prepare()
        self.swap()
        self.take_over()
        return self.result


def _replace(a, new_fd: int, old_fd: int) -> None:
    """Put ``new_fd`` where ``old_fd`` runs on ``a``'s interface, atomically."""
    if a.how == "link":
        L.link_update(a.link_fd, new_fd, old_fd)
    else:
        L.xdp_attach(a.ifindex, new_fd, L.MODE_FLAGS[a.mode], old_prog_fd=old_fd)
