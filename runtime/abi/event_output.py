"""Where a running instance's events go, as ``--events`` and the config's ``outputs:``
say it, checked once (runtime/export/ opens it, runtime/control/config.py reports a
mistake at its line).

``Output.of(target, max_bytes, keep, facility, framing)``: ``target`` None, ``-`` or
``stdout``; ``syslog`` (the local daemon, /dev/log) or ``syslog:SOCKET``; else a file.
A file may rotate (``max_bytes``; ``keep`` files, 5 unless given); syslog takes a
facility (RFC 5424's names, default ``daemon``) and a framing (``rfc3164``, the
default, or ``rfc5424``). Settings that do not go with the target raise OutputError.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_SYSLOG = "/dev/log"
DEFAULT_KEEP = 5
FRAMINGS = ("rfc3164", "rfc5424")
FACILITIES = {"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
              "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
              **{f"local{i}": 16 + i for i in range(8)}}         # RFC 5424, table 1


class OutputError(ValueError):
    """Events cannot go where asked; ``str()`` says why."""


@dataclass(frozen=True)
class Output:
    kind: str = "stdout"                 # stdout, file, syslog
    path: str | None = None              # the file, or the syslog socket
    max_bytes: int | None = None         # a file: rotate before it passes this (None: never)
    keep: int = DEFAULT_KEEP             # a file: rotated files kept
    facility: str = "daemon"
    framing: str = "rfc3164"

    @classmethod
    def of(cls, target: str | None, max_bytes: int | None = None, keep: int | None = None,
           facility: str | None = None, framing: str | None = None) -> "Output":
        if target in (None, "", "-", "stdout"):
            kind, path = "stdout", None
        elif target == "syslog" or target.startswith("syslog:"):
            kind, path = "syslog", target.partition(":")[2] or DEFAULT_SYSLOG
        else:
            kind, path = "file", target
        where = {"stdout": "stdout", "syslog": "syslog", "file": "a file"}[kind]
        if kind != "file" and (max_bytes is not None or keep is not None):
            raise OutputError(f"events to {where} are not rotated: a maximum size and files kept are for an "
                              f"events file")
        if kind != "syslog" and (facility is not None or framing is not None):
            raise OutputError(f"a syslog facility and framing are for events to syslog, not to {where}")
        if keep is not None and max_bytes is None:
            raise OutputError("rotated files kept (--events-keep, events_keep) need a size to rotate at "
                              "(--events-max-size, events_max_size)")
        if keep is not None and keep < 1:
            raise OutputError(f"rotation keeps at least 1 file, not {keep}")
        if max_bytes is not None and max_bytes < 1:
            raise OutputError(f"an events file's maximum size is at least 1 byte, not {max_bytes}")
        if facility is not None and facility not in FACILITIES:
            raise OutputError(f"syslog facility '{facility}' is not one of {', '.join(FACILITIES)}")
        if framing is not None and framing not in FRAMINGS:
            raise OutputError(f"syslog framing '{framing}' is not one of {', '.join(FRAMINGS)}")
        return cls(kind, path, max_bytes, DEFAULT_KEEP if keep is None else keep, facility or "daemon",
                   framing or "rfc3164")
