"""What a running instance is asked to do: the command line merged over the
deployment config (runtime/control/config.py). Durations are in ns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

DEFAULT_INTERVAL_NS = 1_000_000_000
DEFAULT_NAME = "default"


@dataclass
class RunOptions:
    specs: list[str] = field(default_factory=list)
    interfaces: list[str] = field(default_factory=list)
    name: str = DEFAULT_NAME
    xdp_mode: str = "auto"
    interval_ns: int = DEFAULT_INTERVAL_NS
    duration_ns: int | None = None
    params: dict = field(default_factory=dict)          # {app: {param: value}}
    asl: dict = field(default_factory=dict)             # {app: {"queue": N, "enabled": bool, "options": {}}}
    allow: list[str] = field(default_factory=list)      # prefixes never blocked (with the interfaces' own)
    block_max: int | None = None                        # None: the program's blocklist bound
    block_ttl: int | None = None                        # None: the default TTL
    block_max_ttl: int | None = None
    enforce: bool = False
    events_path: str | None = None                      # where events go: a file, syslog[:SOCKET]; None: stdout
    events_max_size: int | None = None                  # rotate the file past this many bytes (None: never)
    events_keep: int | None = None                      # rotated files kept (None: 5)
    events_facility: str | None = None                  # syslog's facility (None: daemon)
    events_format: str | None = None                    # syslog's framing: rfc3164 (None) or rfc5424
    events_in_memory: bool = False                      # also keep every event written (xdpmon demo reads them)
    json: bool = False
    view: str = "auto"                                  # auto, rich, plain, none
    replace: bool = False
    memory_budget: int | None = None
    top: int = 5
    keys_limit: int | None = 1000                       # keys listed per keyed statistic (None: all)
    metrics: str | None = None                          # ADDRESS:PORT of the Prometheus exporter
    metrics_export: dict | None = None                  # the config's metrics keys and stats (None: defaults)
    metrics_tls: dict | None = None                     # the config's metrics.tls: cert, key, client_ca (PEM paths)
    config_path: str | None = None
    config: object = None                               # the DeployConfig read (runtime/control/config.py)
    reload: Callable | None = None                      # SIGHUP with a config: apply it (set by the CLI)
