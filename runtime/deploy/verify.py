"""Load a program in a process of its own, to learn whether it loads, before a running
instance loads it.

A running instance has threads (the control socket, the ASL workers, the ring buffer's
consumer), so it cannot protect a compile by forking (runtime/dataplane/fatal_exit.py),
and LLVM ends the process on some back-end errors. ``verify(art)`` therefore compiles,
loads and verifies the new program in a child process (``start(art, load=False)``:
compiles it only, which is what may end a process; ``ctl add`` does that while the
instance loads the fold program) (``python -m
runtime.deploy.verify``: the C and the stages on stdin, a JSON answer on stdout), not
pinned and not attached, and unloads it. If it loads there, it loads in the instance
(the same C, the same kernel); if not, the instance refuses the change with the
child's reason and the running program is untouched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
TIMEOUT_S = 300


class VerifyFailed(RuntimeError):
    def __init__(self, reason: str, log: str = ""):
        super().__init__(reason)
        self.reason, self.log = reason, log


def program_key(art) -> str:
    """What makes two programs load alike: the C and the stages."""
    import hashlib
    return hashlib.sha256((art.c + json.dumps(art.manifest.get("stages"), sort_keys=True)).encode()).hexdigest()


class Pending:
    """A verification under way in a child process; ``result()`` waits for it."""

    def __init__(self, art, load: bool = True):
        req = json.dumps({"c": art.c, "stages": art.manifest.get("stages"), "load": load})
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.p = subprocess.Popen([sys.executable, "-m", "runtime.deploy.verify"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
        self.out = self.timed_out = None
        self.thread = threading.Thread(target=self._talk, args=(req,), daemon=True)    # it runs meanwhile
        self.thread.start()

    def _talk(self, req: str) -> None:
        try:
            self.out = self.p.communicate(req, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.communicate()
            self.timed_out = True

    def result(self) -> int | None:
        """The verified instructions (None: compiled only); VerifyFailed with the reason."""
        self.thread.join()
        if self.timed_out:
            raise VerifyFailed(f"loading the new program took more than {TIMEOUT_S} s")
        out, err = self.out
        try:
            ans = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise VerifyFailed(f"the process loading the new program ended with status {self.p.returncode}: "
                               f"{(err or '').strip()[-500:]}") from None
        if "error" in ans:
            raise VerifyFailed(ans["error"], ans.get("log", ""))
        return ans.get("insns")


def start(art, load: bool = True) -> Pending:
    """Start verifying ``art``: compiled and, with ``load``, loaded and verified by the
    kernel (to count its instructions, for ``ctl plan``); compiling is what may end a
    process, a verifier rejection in the instance is an error like any other."""
    return Pending(art, load)


def verify(art) -> int:
    """The new program's verified instructions; VerifyFailed with the reason."""
    return start(art).result()


def main() -> None:
    from runtime.dataplane import loader

    req = json.loads(sys.stdin.read())

    def died(e) -> None:
        print(json.dumps({"error": e.reason, "log": e.log[-4000:]}), flush=True)

    loader.survive_fatal_exits(died)
    if not req.get("load", True):
        try:
            loader.compile_only(req["c"])
        except loader.LoadError as e:
            print(json.dumps({"error": e.reason, "log": e.log[-4000:]}), flush=True)
            return
        print(json.dumps({"compiled": True}), flush=True)
        return
    try:
        loaded = loader.load(req["c"], stages=req.get("stages"))
    except loader.LoadError as e:
        print(json.dumps({"error": e.reason, "log": e.log[-4000:]}), flush=True)
        return
    insns = loaded.verified_insns
    loaded.close()
    print(json.dumps({"insns": insns}), flush=True)


if __name__ == "__main__":
    main()
