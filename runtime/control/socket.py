"""The control socket of a running instance, and finding running instances.

One Unix stream socket per instance, ``/run/xdpmon/NAME.sock`` (the directory
0700 and the socket 0600, both root's; ``XDPMON_RUN_DIR`` moves them, for
tests). The protocol is JSON lines: each request is one JSON object on one line,
``{"cmd": CMD, ...arguments}``, answered by one line, ``{"ok": true, ...}`` or
``{"ok": false, "error": "why"}``; a connection may send several. Commands:

    status                                   -> {"status": {...}}
    stats      [app]                         -> {"stats": {...}}
    enable     app [for]                     -> {"app", "until_ns"}     (for: "60s"; none: until disabled)
    disable    app                           -> {"app"}
    set        app param value               -> {"app", "param", "value"}   (value: "2k", "500ms", 7)
    block      prefix [for] [reason]         -> {"entry": {...}}
    unblock    prefix                        -> {"entry": {...}}
    blocks                                   -> {"blocks": [...]}
    plan       op [files] [apps]             -> {"plan": {...}, "text"}  (op: add, remove, reload; a dry run)
    add        files                         -> {"swap": {...}, "text"}  (spec files, absolute paths)
    remove     apps                          -> {"swap": {...}, "text"}
    reload                                   -> {"swap": {...}, "text"}  (the config and spec files again)

A request longer than ``MAX_REQUEST`` bytes, bad JSON, an unknown command or
argument is answered with an error (the connection then closes when the line
was too long); a connection idle for ``IDLE_S`` seconds is closed. Starting
where a live instance already answers on that name is refused; a socket file
left by a dead instance is removed.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .controller import ControlError

log = logging.getLogger("xdpmon.control")
RUN_DIR_ENV = "XDPMON_RUN_DIR"
DEFAULT_RUN_DIR = "/run/xdpmon"
MAX_REQUEST = 64 * 1024
IDLE_S = 30.0
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


def run_dir() -> Path:
    return Path(os.environ.get(RUN_DIR_ENV) or DEFAULT_RUN_DIR)


def check_name(name: str) -> str:
    if not name or not set(name) <= NAME_CHARS or name.startswith(".") or len(name) > 64:
        raise ValueError(f"instance name '{name}': use letters, digits, '_', '-' and '.' (at most 64)")
    return name


def socket_path(name: str) -> Path:
    return run_dir() / f"{check_name(name)}.sock"


DEPLOY_COMMANDS = ("plan", "add", "remove", "reload")
DEPLOY_TIMEOUT_S = 120.0          # ctl waits this long for a compile, a load and a swap


class InstanceRunning(RuntimeError):
    pass


def request(name: str, req: dict, timeout: float = 10.0) -> dict:
    """Send one request to instance ``name``; its answer. OSError when nothing answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(socket_path(name)))
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            buf += chunk
    return json.loads(buf)


@dataclass
class Instance:
    name: str
    path: str
    alive: bool
    pid: int | None = None
    interfaces: str = ""

    def to_json(self) -> dict:
        return {"name": self.name, "alive": self.alive, "pid": self.pid, "interfaces": self.interfaces,
                "socket": self.path}


def discover() -> list[Instance]:
    """The instances with a socket under the run directory (stale: nothing answers)."""
    out = []
    d = run_dir()
    if not d.is_dir():
        return out
    for p in sorted(d.glob("*.sock")):
        name = p.name[:-5]
        try:
            st = request(name, {"cmd": "status"}, timeout=2.0)["status"]
            out.append(Instance(name, str(p), True, st.get("pid"),
                                ", ".join(i["name"] for i in st.get("interfaces", ()))))
        except (OSError, ValueError, KeyError):
            out.append(Instance(name, str(p), False))
    return out


class ControlServer:
    """Serves ``controller`` (runtime/control/controller.py) on the instance's socket;
    ``status()`` and ``stats(app)`` come from the running instance."""

    def __init__(self, name: str, controller, status: Callable[[], dict], stats: Callable[[str | None], dict],
                 deploy: Callable[[str, dict], dict] | None = None):
        self.name = check_name(name)
        self.path = socket_path(name)
        self.controller, self.status, self.stats = controller, status, stats
        self.deploy = deploy              # plan/add/remove/reload (runtime/monitor/instance.py)
        self.sock: socket.socket | None = None
        self.thread: threading.Thread | None = None
        self.stopping = False

    def claim(self) -> None:
        """Refuse (InstanceRunning) when a live instance has this name; remove a stale
        socket. ``start`` does it too; an instance calls it before it loads anything."""
        d = self.path.parent
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(d, 0o700)
        if self.path.exists():
            try:
                request(self.name, {"cmd": "status"}, timeout=2.0)
            except (OSError, ValueError):
                self.path.unlink()                  # left by an instance that is gone
            else:
                raise InstanceRunning(f"an xdpmon instance named '{self.name}' is already running ({self.path}): "
                                      f"give this one another --name")

    def start(self) -> None:
        self.claim()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            s.bind(str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        s.listen(16)
        s.settimeout(0.5)
        self.sock = s
        self.thread = threading.Thread(target=self._accept, name="xdpmon-control", daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(IDLE_S)
        buf = b""
        with conn:
            try:
                while True:
                    chunk = conn.recv(1 << 16)
                    if not chunk:
                        return
                    buf += chunk
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        if line.strip():
                            conn.sendall(json.dumps(self.answer(line), default=str).encode() + b"\n")
                    if len(buf) > MAX_REQUEST:
                        conn.sendall(json.dumps({"ok": False, "error": f"request longer than {MAX_REQUEST} bytes"})
                                     .encode() + b"\n")
                        return
            except (OSError, socket.timeout):
                return

    def answer(self, line: bytes) -> dict:
        try:
            req = json.loads(line)
        except ValueError as e:
            return {"ok": False, "error": f"not JSON: {e}"}
        if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
            return {"ok": False, "error": 'a request is an object with "cmd"'}
        try:
            return {"ok": True, **self._do(req)}
        except ControlError as e:
            return {"ok": False, "error": str(e)}
        except (TypeError, KeyError) as e:
            if req["cmd"] in DEPLOY_COMMANDS:        # they check their own arguments: this is a bug
                log.exception("%s", req["cmd"])
                return {"ok": False, "error": f"internal error: {type(e).__name__}: {e}"}
            return {"ok": False, "error": f"bad arguments for '{req['cmd']}': {e}"}
        except Exception as e:                 # never let a request stop the instance
            log.exception("%s", req["cmd"])
            return {"ok": False, "error": f"internal error: {type(e).__name__}: {e}"}

    def _do(self, req: dict) -> dict:
        c, cmd = self.controller, req["cmd"]
        if cmd == "status":
            return {"status": self.status()}
        if cmd == "stats":
            return {"stats": self.stats(req.get("app"))}
        if cmd == "enable":
            until = c.enable(req["app"], req.get("for"), by="ctl")
            return {"app": req["app"], "until_ns": None if until >= (1 << 64) - 1 else until}
        if cmd == "disable":
            c.disable(req["app"], by="ctl")
            return {"app": req["app"]}
        if cmd == "set":
            v = c.set_param(req["app"], req["param"], req["value"], by="ctl")
            return {"app": req["app"], "param": req["param"], "value": v}
        if cmd == "block":
            return {"entry": c.block(req["prefix"], req.get("for"), req.get("reason") or "", by="ctl")}
        if cmd == "unblock":
            return {"entry": c.unblock(req["prefix"], by="ctl")}
        if cmd == "blocks":
            return {"blocks": c.blocks()}
        if cmd in DEPLOY_COMMANDS and self.deploy is not None:
            return self.deploy(cmd, req)
        raise ControlError(f"unknown command '{cmd}' (commands: status, stats, enable, disable, set, block, "
                           f"unblock, blocks, plan, add, remove, reload)")

    def stop(self) -> None:
        self.stopping = True
        if self.sock is not None:
            self.sock.close()
        if self.thread is not None:
            self.thread.join(timeout=2)
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
