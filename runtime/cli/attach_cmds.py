"""``xdpmon status`` (what runs on this host's interfaces, and the running
instances) and ``xdpmon detach`` (remove a program left attached by netlink)."""

from __future__ import annotations

import json
import os
import sys

import click


def _need_root(what: str) -> None:
    if os.geteuid() != 0:
        click.echo(f"xdpmon {what}: reading the interfaces' XDP programs needs root (CAP_BPF, CAP_NET_ADMIN)",
                   err=True)
        sys.exit(2)


def _instances() -> list[dict]:
    try:
        from runtime.control.socket import discover
    except ImportError:
        return []
    return [i if isinstance(i, dict) else i.to_json() for i in discover()]


@click.command()
@click.option("--json", "as_json", is_flag=True, help="As JSON.")
@click.option("--all", "show_all", is_flag=True, help="Also interfaces without an XDP program.")
def status(as_json, show_all):
    """The XDP programs on this host's interfaces (xdpmon's and others) and the running xdpmon instances."""
    from runtime.dataplane.xdp_status import interfaces

    _need_root("status")
    ifs = interfaces()
    inst = _instances()
    if as_json:
        click.echo(json.dumps({"interfaces": [i.to_json() for i in ifs], "instances": inst}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title="XDP programs on this host's interfaces", title_justify="left")
    for col in ("interface", "ifindex", "program", "mode", "attached by"):
        t.add_column(col)
    shown = [i for i in ifs if show_all or i.prog_id is not None]
    for i in shown:
        prog = f"{i.prog_id} ({i.prog_name})" if i.prog_id else "-"
        t.add_row(i.name, str(i.ifindex), prog, i.mode or "-", i.how or "-")
    con = Console()
    if shown:
        con.print(t)
    else:
        con.print("no interface here runs an XDP program")
    if inst:
        it = Table(title="running xdpmon instances", title_justify="left")
        for col in inst[0]:
            it.add_column(str(col))
        for i in inst:
            it.add_row(*[str(v) for v in i.values()])
        con.print(it)
    else:
        con.print("no xdpmon instance is running")


@click.command()
@click.option("-i", "--interface", "interfaces", multiple=True, required=True, metavar="IFACE",
              help="The interface to free; repeat for several.")
@click.option("--force", is_flag=True, help="Also take a program held by a BPF link of a running process.")
def detach(interfaces, force):
    """Remove the XDP program from interfaces: a leftover netlink attach (a program
    held by a BPF link belongs to a running process: stop that process, or --force)."""
    from runtime.dataplane import libbpf as L
    from runtime.dataplane.attach import AttachError, describe, ifindex_of, present
    from runtime.dataplane.xdp_status import interfaces as list_ifs

    _need_root("detach")
    status = 0
    held = {i.name: i for i in list_ifs()}
    for name in interfaces:
        try:
            ifindex = ifindex_of(name)
        except AttachError as e:
            click.echo(f"xdpmon detach: {e}", err=True)
            status = 2
            continue
        cur = present(ifindex)
        if cur is None:
            click.echo(f"{name}: no XDP program; nothing to do")
            continue
        pid, mode = cur
        info = held.get(name)
        if info is not None and info.link_id is not None:
            if not force:
                click.echo(f"xdpmon detach: {name} runs {describe(pid)} held by BPF link {info.link_id}, which "
                           f"belongs to a running process: stop that process (it detaches when it ends), or "
                           f"--force", err=True)
                status = 2
                continue
            fd = L.link_fd_by_id(info.link_id)
            try:
                L.link_detach(fd)
            finally:
                os.close(fd)
            click.echo(f"{name}: detached {describe(pid)} (its BPF link {info.link_id}, forced)")
            continue
        fd = L.prog_fd_by_id(pid)
        try:
            L.xdp_detach(ifindex, L.MODE_FLAGS.get(mode, 0), old_prog_fd=fd)
        except OSError as e:
            click.echo(f"xdpmon detach: {name}: cannot remove {describe(pid)}: {e}", err=True)
            status = 1
            continue
        finally:
            os.close(fd)
        click.echo(f"{name}: detached {describe(pid)} ({mode}, attached by netlink)")
    sys.exit(status)
