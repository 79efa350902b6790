"""What a running instance deploys: its spec files and the apps taken out of them, and
the requests that change it (``ctl plan``, ``add``, ``remove``, ``reload``).

``Deployment(specs, removed)`` is immutable: ``added(files)``, ``without(apps)`` and
``reread(specs)`` give the next one, ``compile()`` its program (the live build). A
request is done by ``handle(inst, cmd, req)``: the next deployment is compiled (a spec
error is refused with ``file:line:col`` and a caret, nothing changed), compared with
the running program (runtime/deploy/changes.py) and, unless it is ``plan``, swapped in
(runtime/deploy/swap.py). The new program is compiled and loaded in a process of its own
(runtime/deploy/verify.py): for ``plan`` not pinned, not attached, unloaded again, to
count its instructions; for a swap with the instance's pins, and handed over.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from runtime.control.controller import ControlError


class DeployError(ControlError):
    """A change refused before anything changed; ``str()`` is the whole explanation."""


@dataclass(frozen=True)
class Deployment:
    specs: tuple[str, ...]
    removed: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(cls, specs) -> "Deployment":
        return cls(tuple(os.path.abspath(p) for p in specs))

    def added(self, files) -> "Deployment":
        if not files:
            raise DeployError("add: name the spec files to add")
        new = [os.path.abspath(f) for f in files]
        dup = [f for f in new if f in self.specs]
        if dup:
            raise DeployError(f"add: {', '.join(dup)} is deployed already (ctl reload reads it again)")
        return Deployment(self.specs + tuple(dict.fromkeys(new)), self.removed)

    def without(self, apps, files: dict[str, str]) -> "Deployment":
        """Without ``apps``; ``files``: every running app's spec file. A file whose every
        app is removed leaves the deployment (``add`` brings it back)."""
        running = list(files)
        if not apps:
            raise DeployError("remove: name the apps to remove")
        unknown = [a for a in apps if a not in running]
        if unknown:
            raise DeployError(f"remove: no app {', '.join(repr(a) for a in unknown)} running "
                              f"(apps: {', '.join(running)})")
        if set(apps) >= set(running):
            raise DeployError("remove: that would remove every app; stop the instance instead")
        removed = self.removed | frozenset(apps)
        gone = {os.path.abspath(f) for f in set(files.values())
                if os.path.abspath(f) in self.specs and all(a in removed for a, g in files.items() if g == f)}
        keep_removed = frozenset(a for a in removed if os.path.abspath(files.get(a, "")) not in gone)
        return Deployment(tuple(p for p in self.specs if p not in gone), keep_removed)

    def reread(self, specs=None) -> "Deployment":
        """The same files read again (or the config's new list: apps removed stay out
        only of files still deployed)."""
        if specs is None:
            return self
        return Deployment(tuple(os.path.abspath(p) for p in specs), self.removed)

    def compile(self):
        """The live build of this deployment; DeployError with the rendered diagnostics."""
        from compiler.driver import compile_program
        from compiler.frontend import load
        from dsl.errors import SpecError, render_plain

        try:
            program, sources = load(list(self.specs), exclude=self.removed)
            return compile_program(program, sources, replay=False)
        except SpecError as e:
            text = "\n".join(render_plain(d, e.sources) for d in e.diagnostics)
            raise DeployError(f"the specs have errors; nothing changed\n{text}") from None


def _refused(e) -> DeployError:
    tail = "\n".join(e.log.strip().splitlines()[-8:])
    return DeployError(f"the new program does not load: {e.reason}; the running program is untouched"
                       + (f"\n{tail}" if tail else ""))


def next_deployment(inst, cmd: str, req: dict) -> Deployment:
    dep = inst.deployment
    op = req.get("op", cmd) if cmd == "plan" else cmd
    if op == "add":
        return dep.added(req.get("files") or [])
    if op == "remove":
        return dep.without(req.get("apps") or [], {a["name"]: a["file"] for a in inst.art.manifest["apps"]})
    if op == "reload":
        return dep.reread(req.get("specs"))
    raise DeployError(f"plan: unknown operation '{op}' (add, remove, reload)")


def handle(inst, cmd: str, req: dict) -> dict:
    """One deploy request on the running instance ``inst``; its answer."""
    from compiler import memory
    from dsl.errors import SpecError
    from runtime.dataplane.loader import LoadError

    from .changes import diff
    from .pindir import PinError
    from .swap import Swap, SwapError
    from .verify import VerifyFailed, program_key, verify

    if inst.pins is None:
        raise DeployError(f"this instance keeps no maps in bpffs ({inst.no_pins}): apps cannot be deployed "
                          f"while it runs; restart it with the new specs")
    t0 = time.monotonic()
    dep = next_deployment(inst, cmd, req)
    art = dep.compile()
    compiled_ms = round((time.monotonic() - t0) * 1e3, 1)
    over = memory.check(memory.estimate(art.plan), memory.Budget.of(inst.opts.memory_budget))
    if over:
        raise DeployError(f"refused, nothing changed: {over[0].message}")
    ch = diff(inst.art, art)
    if ch.nothing and cmd != "plan":
        inst.deployment = dep
        return {"swap": None, "text": "nothing changed: the new program is the running one (not swapped)"}
    key = program_key(art)
    known = inst.loads_ok.get(key)           # the instance loaded it, or a plan verified it
    if cmd == "plan":
        t = time.monotonic()
        try:
            insns = known if known is not None else verify(art)
        except VerifyFailed as e:
            raise _refused(e) from None
        inst.loads_ok[key] = insns
        ch.insns_before, ch.insns_after = inst.engine.loaded.verified_insns, insns
        return {"plan": ch.to_json(), "text": ch.render(), "compile_ms": compiled_ms,
                "verify_ms": round((time.monotonic() - t) * 1e3, 1)}
    with inst.lock:
        try:
            res = Swap(inst, art, ch).run()
        except VerifyFailed as e:
            raise _refused(e) from None
        except (SwapError, PinError) as e:
            raise DeployError(f"refused, the running program is untouched: {e}") from None
        except LoadError as e:
            raise DeployError(f"the new program did not load: {e.reason}; the running program is untouched") from None
        except SpecError as e:
            raise DeployError(f"refused, nothing changed: {e.diagnostics[0].message}") from None
        inst.deployment = dep
        inst.loads_ok[key] = res.changes.insns_after
    res.timings_ms["compile"] = compiled_ms
    res.timings_ms["total"] = round((time.monotonic() - t0) * 1e3, 1)
    inst.swaps.append({"cmd": cmd, "at_ns": inst.now(), "old_prog_id": res.old_prog_id,
                       "new_prog_id": res.new_prog_id, "timings_ms": res.timings_ms})
    text = res.changes.render() + f"\nswapped: program {res.old_prog_id} -> {res.new_prog_id} in " \
        f"{res.timings_ms['total']:.0f} ms (compile {compiled_ms:.0f}, load " \
        f"{res.timings_ms.get('handoff', 0):.0f}, prepare {res.timings_ms.get('prepare', 0):.0f}, " \
        f"swap {res.timings_ms.get('swap', 0):.2f}, fold {res.timings_ms.get('fold', 0):.0f})"
    if res.problems:
        text += "\nproblems after the swap: " + "; ".join(res.problems)
    return {"swap": res.to_json(), "text": text}
