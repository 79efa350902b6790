"""``xdpmon ctl``: commands to a running instance over its control socket
(runtime/control/socket.py). Exit status: 0 done; 2 the instance refused the
command (unknown app or param, a bad value: its message); 1 no such instance."""

from __future__ import annotations

import json
import sys

import click


def _instance_name(name: str | None) -> str:
    from runtime.control.socket import discover

    if name:
        return name
    alive = [i for i in discover() if i.alive]
    if len(alive) == 1:
        return alive[0].name
    if not alive:
        click.echo("xdpmon ctl: no xdpmon instance is running (xdpmon run ... starts one)", err=True)
        sys.exit(1)
    click.echo(f"xdpmon ctl: {len(alive)} instances are running ({', '.join(i.name for i in alive)}): "
               f"say which with --name", err=True)
    sys.exit(2)


def call(ctx, req: dict, timeout: float = 10.0) -> dict:
    from runtime.control.socket import discover, request, socket_path

    name = _instance_name(ctx.obj.get("name"))
    try:
        ans = request(name, req, timeout=timeout)
    except ValueError as e:
        click.echo(f"xdpmon ctl: {e}", err=True)
        sys.exit(2)
    except OSError:
        running = [i.name for i in discover() if i.alive]
        click.echo(f"xdpmon ctl: no xdpmon instance named '{name}' answers at {socket_path(name)}"
                   + (f" (running: {', '.join(running)})" if running else " (none is running)"), err=True)
        sys.exit(1)
    if not ans.get("ok"):
        click.echo(f"xdpmon ctl: {ans.get('error')}", err=True)
        sys.exit(2)
    return ans


def _out(obj, as_json: bool, text: str | None = None) -> None:
    if as_json or text is None:
        click.echo(json.dumps(obj, indent=2, default=str))
    else:
        click.echo(text)


@click.group()
@click.option("--name", help="The instance (default: the only one running).")
@click.pass_context
def ctl(ctx, name):
    """Commands to a running instance: status, stats, enable, disable, set, block, unblock, blocks;
    plan, add, remove, reload (apps deployed into the running program)."""
    ctx.ensure_object(dict)["name"] = name


@ctl.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def status(ctx, as_json):
    """The instance: interfaces, program, apps enabled, params, blocks."""
    st = call(ctx, {"cmd": "status"})["status"]
    if as_json:
        _out(st, True)
        return
    ifs = ", ".join(f"{i['name']} ({i['mode']}, {i['how']})" for i in st["interfaces"])
    click.echo(f"{st['name']}: pid {st['pid']}, up {st['uptime_s']:,.0f}s, on {ifs}; program id "
               f"{st['program']['id']}, {st['blocks']} blocks ({'enforcing' if st['enforce'] else 'log only'})")
    for app, e in st["enabled"].items():
        state = "always on" if e["mode"] == "always" else ("off" if not e["enabled"] else
                                                            "on" + ("" if e["until_ns"] is None else " (for a while)"))
        params = ", ".join(f"{k}={v:,}" for k, v in st["params"].get(app, {}).items())
        click.echo(f"  {app}: {state}" + (f"; {params}" if params else ""))


@ctl.command()
@click.argument("app", required=False)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def stats(ctx, app, as_json):
    """The latest reading (of one APP)."""
    _out(call(ctx, {"cmd": "stats", "app": app})["stats"], True)


@ctl.command()
@click.argument("app")
@click.option("--for", "for_", metavar="D", help="For how long (e.g. 60s); default: until disabled.")
@click.pass_context
def enable(ctx, app, for_):
    """Enable an on-demand APP."""
    ans = call(ctx, {"cmd": "enable", "app": app, "for": for_})
    click.echo(f"{app}: enabled" + (f" for {for_}" if for_ else " until disabled"))
    return ans


@ctl.command()
@click.argument("app")
@click.pass_context
def disable(ctx, app):
    """Disable an on-demand APP."""
    call(ctx, {"cmd": "disable", "app": app})
    click.echo(f"{app}: disabled")


@ctl.command(name="set")
@click.argument("target", metavar="APP.PARAM")
@click.argument("value")
@click.pass_context
def set_(ctx, target, value):
    """Set a param, e.g. set syn_flood.per_dst 2k (the language's units)."""
    if "." not in target:
        click.echo(f"xdpmon ctl: '{target}' is not APP.PARAM (e.g. syn_flood.per_dst)", err=True)
        sys.exit(2)
    app, param = target.split(".", 1)
    ans = call(ctx, {"cmd": "set", "app": app, "param": param, "value": value})
    click.echo(f"{app}.{param} = {ans['value']:,}")


@ctl.command()
@click.argument("prefix")
@click.option("--for", "for_", metavar="D", help="Time to live (default 5m, at most 24h).")
@click.option("--reason", default="", help="Why (shown with the entry).")
@click.pass_context
def block(ctx, prefix, for_, reason):
    """Block a source PREFIX (counted only, unless the instance runs with --enforce)."""
    e = call(ctx, {"cmd": "block", "prefix": prefix, "for": for_, "reason": reason})["entry"]
    click.echo(json.dumps(e, default=str))


@ctl.command()
@click.argument("prefix")
@click.pass_context
def unblock(ctx, prefix):
    """Remove a blocklist entry."""
    e = call(ctx, {"cmd": "unblock", "prefix": prefix})["entry"]
    click.echo(f"{e['prefix']}: unblocked")


@ctl.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def blocks(ctx, as_json):
    """The blocklist: prefix, reason, expiry, hits."""
    entries = call(ctx, {"cmd": "blocks"})["blocks"]
    if as_json or not entries:
        _out(entries, True)
        return
    for e in entries:
        click.echo("  ".join(f"{k}={v}" for k, v in e.items()))


# ---- deploying apps into the running instance (runtime/deploy/) ---------------------------------

def _deploy(ctx, req: dict, as_json: bool) -> None:
    from runtime.control.socket import DEPLOY_TIMEOUT_S

    ans = call(ctx, req, timeout=DEPLOY_TIMEOUT_S)
    if as_json:
        _out({k: v for k, v in ans.items() if k not in ("ok", "text")}, True)
    else:
        click.echo(ans["text"])


def _files(files) -> list[str]:
    import os
    return [os.path.abspath(f) for f in files]


@ctl.group(invoke_without_command=False)
def plan():
    """What add, remove or reload would change (a dry run: the running program is not touched)."""


@plan.command(name="add")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def plan_add(ctx, files, as_json):
    """What adding spec FILES would change."""
    _deploy(ctx, {"cmd": "plan", "op": "add", "files": _files(files)}, as_json)


@plan.command(name="remove")
@click.argument("apps", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def plan_remove(ctx, apps, as_json):
    """What removing APPS would change."""
    _deploy(ctx, {"cmd": "plan", "op": "remove", "apps": list(apps)}, as_json)


@plan.command(name="reload")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def plan_reload(ctx, as_json):
    """What reading the spec files again would change."""
    _deploy(ctx, {"cmd": "plan", "op": "reload"}, as_json)


@ctl.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def add(ctx, files, as_json):
    """Add the apps of spec FILES to the running program (the other apps' statistics go on)."""
    _deploy(ctx, {"cmd": "add", "files": _files(files)}, as_json)


@ctl.command()
@click.argument("apps", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def remove(ctx, apps, as_json):
    """Remove APPS from the running program."""
    _deploy(ctx, {"cmd": "remove", "apps": list(apps)}, as_json)


@ctl.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def reload(ctx, as_json):
    """Read the deployment config and the spec files again and deploy what changed."""
    _deploy(ctx, {"cmd": "reload"}, as_json)
