"""Load a program in a process of its own, to learn whether it loads, before a running
instance loads it.

A running instance has threads (the control socket, the ASL workers, the ring buffer's
consumer), so it cannot protect a compile by forking (runtime/dataplane/fatal_exit.py),
and LLVM ends the process on some back-end errors. ``verify(art)`` therefore compiles,
loads and verifies the new program in a child process (``python -m
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
TIMEOUT_S = 300


class VerifyFailed(RuntimeError):
    def __init__(self, reason: str, log: str = ""):
        super().__init__(reason)
        self.reason, self.log = reason, log


def verify(art) -> int:
    """The new program's verified instructions; VerifyFailed with the reason."""
    req = json.dumps({"c": art.c, "stages": art.manifest.get("stages")})
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        r = subprocess.run([sys.executable, "-m", "runtime.deploy.verify"], input=req, capture_output=True,
                           text=True, cwd=ROOT, env=env, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise VerifyFailed(f"loading the new program took more than {TIMEOUT_S} s") from None
    try:
        ans = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise VerifyFailed(f"the process loading the new program ended with status {r.returncode}: "
                           f"{(r.stderr or '').strip()[-500:]}") from None
    if "error" in ans:
        raise VerifyFailed(ans["error"], ans.get("log", ""))
    return ans["insns"]


def main() -> None:
    from runtime.dataplane import loader

    req = json.loads(sys.stdin.read())

    def died(e) -> None:
        print(json.dumps({"error": e.reason, "log": e.log[-4000:]}), flush=True)

    loader.survive_fatal_exits(died)
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
