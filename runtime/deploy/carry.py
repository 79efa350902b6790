"""The state a new program takes over by name from the old one, in the maps that are not
pinned (compiler/pins.py): params, enable times, rate limiters.

``before_swap(old, new)`` copies them (``old``, ``new``: the engines' MapAccess and
manifests) before the new program sees a frame: every param both programs have keeps
the value it has now (set at run time or by the config), every on-demand app both
have keeps its enable time, every rate limit of an action both have keeps its next
allowed time. ``after_swap(old, new)`` runs once no CPU runs the old program: an
enable the old program's own trigger set in between (a kernel write) is taken over
too (the later of the two times).
"""

from __future__ import annotations

from runtime.abi.manifest import Manifest


def _params(maps, man: Manifest) -> dict[tuple[str, str], int]:
    values = maps.params()
    return {(p.app, p.name): values[p.index] for p in man.params}


def _until(maps, man: Manifest) -> dict[str, int]:
    _, until = maps.ctl()
    return {a.name: until[a.enable_bit] for a in man.apps if a.enable_bit >= 0}


def _limiters(man: Manifest) -> dict[int, int]:
    """action id -> its rate limiter's index."""
    out = {}
    for a in man.raw["apps"]:
        for r in a["rules"]:
            for act in r["actions"]:
                if act.get("limiter", -1) >= 0:            # -1: the action has no limit
                    out[act["id"]] = act["limiter"]
    return out


def before_swap(old_maps, old_man: Manifest, new_maps, new_man: Manifest) -> dict:
    """Copy params, enable times and rate limiters; what was carried (for the report)."""
    carried = {"params": {}, "enabled": {}, "limiters": 0}
    new_params = {(p.app, p.name) for p in new_man.params}
    for (app, name), v in _params(old_maps, old_man).items():
        if (app, name) in new_params:
            new_maps.set_param(app, name, v)
            carried["params"][f"{app}.{name}"] = v
    new_bits = {a.name for a in new_man.apps if a.enable_bit >= 0}
    for app, until in _until(old_maps, old_man).items():
        if app in new_bits and until:
            new_maps.set_enabled(app, until)
            carried["enabled"][app] = until
    old_rl, new_rl = _limiters(old_man), _limiters(new_man)
    rl_map = old_man.raw["rate_limiters"]["map"]
    for action, i in old_rl.items():
        j = new_rl.get(action)
        if j is not None:
            new_maps._write(rl_map, j, old_maps._read(rl_map, i))
            carried["limiters"] += 1
    return carried


def after_swap(old_maps, old_man: Manifest, new_maps, new_man: Manifest) -> list[str]:
    """Take over enables the old program set after ``before_swap``; the apps."""
    now_new = _until(new_maps, new_man)
    out = []
    for app, until in _until(old_maps, old_man).items():
        if app in now_new and until > now_new[app]:
            new_maps.set_enabled(app, until)
            out.append(app)
    return out
