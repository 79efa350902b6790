"""Load a program in a process of its own, to learn whether it loads, before a running
instance loads it.

A running instance has threads (the control socket, the ASL workers, the ring buffer's
consumer), so it cannot protect a compile by forking (runtime/dataplane/fatal_exit.py),
and LLVM ends the process on some back-end errors. So the next program is compiled and
loaded by a child process: ``handoff(art, pin_dir)`` with the instance's pins, the child
handing it over by fds (runtime/dataplane/handed.py); ``verify(art)`` for ``ctl plan`` (``python -m
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


HANDOFF_FD_ENV = "XDPMON_HANDOFF_FD"


class Pending:
    """A verification under way in a child process; ``result()`` waits for it. With
    ``pin_dir`` the child loads the program with the instance's pins and hands it over
    (runtime/dataplane/handed.py): ``handed`` is then the instance's ``Loaded``."""

    def __init__(self, art, pin_dir: str | None = None):
        import socket

        req = json.dumps({"c": art.c, "stages": art.manifest.get("stages"), "pin_dir": pin_dir})
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.sock = child = None
        pass_fds = ()
        if pin_dir is not None:
            self.sock, child = socket.socketpair()
            env[HANDOFF_FD_ENV] = str(child.fileno())
            pass_fds = (child.fileno(),)
        self.p = subprocess.Popen([sys.executable, "-m", "runtime.deploy.verify"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env,
                                  pass_fds=pass_fds)
        if child is not None:
            child.close()
        self.out = self.timed_out = self.handed = None
        self.thread = threading.Thread(target=self._talk, args=(req,), daemon=True)    # it runs meanwhile
        self.thread.start()

    def _talk(self, req: str) -> None:
        from runtime.dataplane import handed

        try:
            if self.sock is not None:
                self.p.stdin.write(req)
                self.p.stdin.close()
                self.p.stdin = None              # written: communicate() only reads
                self.sock.settimeout(TIMEOUT_S)
                try:
                    self.handed = handed.receive(self.sock)
                except (ConnectionError, OSError):
                    pass                         # it failed: its answer says why
                finally:
                    self.sock.close()
                req = None
            self.out = self.p.communicate(req, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.communicate()
            self.timed_out = True

    def result(self) -> int:
        """The verified instructions; VerifyFailed with the reason."""
        self.thread.join()
        if self.timed_out:
            if self.handed is not None:
                self.handed.close()
            raise VerifyFailed(f"loading the new program took more than {TIMEOUT_S} s")
        out, err = self.out
        try:
            ans = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise VerifyFailed(f"the process loading the new program ended with status {self.p.returncode}: "
                               f"{(err or '').strip()[-500:]}") from None
        if "error" in ans:
            if self.handed is not None:
                self.handed.close()
            raise VerifyFailed(ans["error"], ans.get("log", ""))
        return ans.get("insns")


def handoff(art, pin_dir: str) -> Pending:
    """Compile and load ``art`` with the pins of ``pin_dir`` in a child, which hands the
    program over: ``result()``, then ``handed`` (a Loaded, the instance's)."""
    return Pending(art, pin_dir)


def verify(art) -> int:
    """Load ``art`` in a child (not pinned, not attached) and unload it: its verified
    instructions (``ctl plan``); VerifyFailed with the reason."""
    return Pending(art).result()


def main() -> None:
    from runtime.dataplane import loader

    req = json.loads(sys.stdin.read())

    def died(e) -> None:
        print(json.dumps({"error": e.reason, "log": e.log[-4000:]}), flush=True)

    loader.survive_fatal_exits(died)
    try:
        loaded = loader.load(req["c"], stages=req.get("stages"), pin_dir=req.get("pin_dir"))
    except loader.LoadError as e:
        print(json.dumps({"error": e.reason, "log": e.log[-4000:]}), flush=True)
        return
    insns = loaded.verified_insns
    if req.get("pin_dir") is not None:             # hand the program over to the instance
        import socket

        from bcc import BPF

        from runtime.dataplane import handed
        stages = (req.get("stages") or {}).get("functions") or []
        stage_fds = [loaded.bpf.load_func(n, BPF.XDP).fd for n in stages[1:]] if (req.get("stages") or {}).get("map") \
            else []
        with socket.socket(fileno=int(os.environ[HANDOFF_FD_ENV])) as sock:
            handed.send(sock, loaded, stage_fds)
    loaded.close()
    print(json.dumps({"insns": insns}), flush=True)


if __name__ == "__main__":
    main()
