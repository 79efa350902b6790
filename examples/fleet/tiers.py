"""The fleet's two Prometheus tiers, and the HTTP API they answer on.

- the site tier (``SITE_PORT``): scrapes every host's exporter, found by file service
  discovery (``write_targets``: one JSON file per host), and evaluates the alert rules of
  examples/prometheus/xdpmon-alerts.yml;
- the global tier (``GLOBAL_PORT``): federates the site's ``/federate`` (every xdpmon series
  and the ``ALERTS`` series), where the fleet-wide questions are asked.

Their configs are the files prometheus-site.yml and prometheus-global.yml next to this
module, whose ``${...}`` fields ``render`` fills in (string.Template). Both run Debian's
``/usr/bin/prometheus`` (tools/setup-prometheus.sh installs it) in the monitoring
namespace, listening on its loopback only, with their data under the fleet's temporary
directory and a retention of an hour: nothing of the system's own Prometheus (its config,
its data, its port) is used or touched.

``Api(ns, port)`` asks one of them from this process: each request is made by a thread
that has entered the namespace (runtime/traffic/netns.py), so nothing outside it listens.
"""

from __future__ import annotations

import json
import shutil
import string
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from runtime.traffic.netns import in_netns

from .procs import Proc

HERE = Path(__file__).resolve().parent
RULES = HERE.parent / "prometheus" / "xdpmon-alerts.yml"
SITE_PORT, GLOBAL_PORT = 9090, 9091
RETENTION = "1h"


class PrometheusMissing(RuntimeError):
    """Debian's prometheus is not installed; ``str()`` says how to install it."""


def binary(name: str = "prometheus") -> str:
    path = shutil.which(name)
    if path is None:
        raise PrometheusMissing(f"{name} is not installed (Debian's prometheus package brings prometheus and "
                                f"promtool): run tools/setup-prometheus.sh as root (make fleet-demo and make test do)")
    return path


def render(template: str, dest: Path, **fields) -> Path:
    """``template`` (a file next to this module) with its ``${field}``s filled in, written to ``dest``."""
    text = string.Template((HERE / template).read_text()).substitute(**{k: str(v) for k, v in fields.items()})
    dest.write_text(text)
    return dest


def write_targets(directory: Path, hosts, port: int) -> None:
    """file_sd: ``<host>.json`` per host, its exporter's address and a ``host`` label."""
    directory.mkdir(parents=True, exist_ok=True)
    for h in hosts:
        entry = [{"targets": [f"{h.mgmt_addr}:{port}"], "labels": {"host": h.name}}]
        tmp = directory / f".{h.name}.json.tmp"
        tmp.write_text(json.dumps(entry, indent=2) + "\n")
        tmp.rename(directory / f"{h.name}.json")       # whole files only: Prometheus may read at any time


class ApiError(RuntimeError):
    """A query Prometheus refused or could not be asked; ``str()`` says why."""


def _error_of(body: bytes) -> str:
    """What an API error answer says (its JSON ``error``, else the start of the body)."""
    try:
        return json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return body[:300].decode(errors="replace")


class Api:
    def __init__(self, ns: str, port: int):
        self.ns, self.port = ns, port
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, timeout: float = 10, **params) -> dict:
        url = self.base + path + ("?" + urllib.parse.urlencode(params, doseq=True) if params else "")
        with in_netns(self.ns):
            try:
                with urllib.request.urlopen(url, timeout=timeout) as r:
                    body = r.read()
            except urllib.error.HTTPError as e:
                raise ApiError(f"{path} {params}: HTTP {e.code}: {_error_of(e.read())}") from None
            except OSError as e:
                raise ApiError(f"{url}: {e}") from None
        return json.loads(body)

    def query(self, expr: str) -> list[dict]:
        """An instant query's result: ``[{"metric": {labels}, "value": [t, "v"]}]``."""
        out = self.get("/api/v1/query", query=expr)
        if out.get("status") != "success":
            raise ApiError(f"{expr}: {out.get('error')}")
        return out["data"]["result"]

    def values(self, expr: str, by: str) -> dict[str, float]:
        """``{label value: value}`` of an instant query whose series differ by label ``by``."""
        return {r["metric"].get(by, ""): float(r["value"][1]) for r in self.query(expr)}

    def scalar(self, expr: str) -> float | None:
        """The value of a query with one series (None: no series)."""
        res = self.query(expr)
        if len(res) > 1:
            raise ApiError(f"{expr}: {len(res)} series, not one")
        return float(res[0]["value"][1]) if res else None

    def ready(self) -> bool:
        try:
            with in_netns(self.ns):
                with urllib.request.urlopen(self.base + "/-/ready", timeout=2) as r:
                    return r.status == 200
        except OSError:
            return False

    def names(self) -> set[str]:
        """Every metric name it holds."""
        return set(self.get("/api/v1/label/__name__/values")["data"])


class Prometheus:
    """One Prometheus server: ``config`` rendered, data in ``data``, on 127.0.0.1:``port`` of ``ns``."""

    def __init__(self, what: str, ns: str, config: Path, data: Path, port: int, log: Path):
        self.what, self.port = what, port
        data.mkdir(parents=True, exist_ok=True)
        self.api = Api(ns, port)
        self.proc = Proc(what, ns, [binary(), f"--config.file={config}", f"--storage.tsdb.path={data}",
                                    f"--storage.tsdb.retention.time={RETENTION}",
                                    f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"], log)

    @property
    def url(self) -> str:
        return self.api.base

    def wait_ready(self, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while not self.api.ready():
            if not self.proc.alive():
                raise self.proc.failed(f"exited with status {self.proc.p.returncode}")
            if time.monotonic() > end:
                raise self.proc.failed(f"was not ready within {timeout:.0f} s")
            time.sleep(0.2)

    def stop(self) -> int | None:
        return self.proc.stop()
