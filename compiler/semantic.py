"""Semantic analysis: from parsed apps to the checked model (compiler/model.py).

Resolves names (fields, layers, stats, params, apps), checks kinds and units,
fills in defaults, and works out which layers each app's T1 guarantees. Every
problem is collected as a Diagnostic with its span; ``analyse`` raises one
SpecError with all of them. Notes (accepted but worth knowing) are returned in
``ProgramM.notes``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from dsl import ast as A
from dsl.errors import Diagnostic, SpecError, suggest
from dsl.fields import FIELDS, LAYERS, TCP_FLAG_BITS, Kind, implied_layers
from dsl.units import (COUNT_MULT, COUNT_UNITS, DURATION_UNITS, MAX_U64, NS_PER, UnitError,
                       count as unit_count, duration_ns)

from . import defaults as D
from . import model as M
from .names import check_identifier

AGGREGATES = {
    # name: (min args, max args or None, arg must be int, allowed options)
    "count": (0, 0, False, ()),
    "sum": (1, 1, True, ()),
    "min": (1, 1, True, ()),
    "max": (1, 1, True, ()),
    "distinct": (1, None, False, ("registers",)),
    "hist": (1, 1, True, ()),
    "cms": (1, None, False, ("width", "depth")),
}

# Largest count of a rate limit (it is kept in 32 bits).
MAX_RATE = (1 << 32) - 1

# Values that a T3 condition can compare.
COMPARABLE_AGGREGATES = {"count", "sum", "min", "max", "distinct", "cms"}


class _Scope:
    """What names mean while checking one expression."""

    def __init__(self, app: A.App, stats: dict[str, "M.StatM"] | None, where: str):
        self.app = app
        self.stats = stats          # None: stats are not visible here (T1, T2)
        self.where = where          # "t1", "t2", "t3": for messages


@dataclass
class _AppState:
    params: dict[str, M.ParamM]
    param_spans: dict[str, A.Span]


class Analyser:
    def __init__(self, incomplete: bool = False) -> None:
        # incomplete: some apps did not parse, so an unknown app name may be one of them
        self.incomplete = incomplete
        self.diags: list[Diagnostic] = []
        self.notes: list[Diagnostic] = []

    # ---- reporting ---------------------------------------------------------
    def error(self, msg: str, span: A.Span, hint: str | None = None) -> None:
        self.diags.append(Diagnostic(msg, span, hint))

    def note(self, msg: str, span: A.Span, hint: str | None = None) -> None:
        self.notes.append(Diagnostic(msg, span, hint, severity="note"))

    def check_name(self, name: str, span: A.Span, what: str) -> None:
        problem = check_identifier(name)
        if problem:
            msg, hint = problem
            self.error(f"{what} {msg}" if msg.startswith("'") else f"{what}: {msg}", span, hint)

    # ---- whole program -----------------------------------------------------
    def analyse(self, files: list[A.SpecFile]) -> M.ProgramM:
        apps: list[A.App] = []
        first_seen: dict[str, A.App] = {}
        for f in files:
            for app in f.apps:
                self.check_name(app.name, app.name_span, "app name")
                if app.name in first_seen:
                    prev = first_seen[app.name]
                    self.error(f"duplicate app '{app.name}'", app.name_span,
                               f"'{app.name}' is already defined at {prev.name_span}")
                    continue
                first_seen[app.name] = app
                apps.append(app)
        modes = {a.name: self._mode(a) for a in apps}
        self._check_enable_bits(apps, modes)
        checked = [self._app(a, modes) for a in apps]
        self._note_never_enabled(apps, modes, [c for c in checked if c is not None])
        return M.ProgramM(tuple(c for c in checked if c is not None), tuple(self.notes))

    def _note_never_enabled(self, apps: list[A.App], modes: dict[str, str], checked: list[M.AppM]) -> None:
        """An on-demand app that no rule of the apps given enables is off unless enabled at
        run time: accepted, with a note."""
        if self.incomplete:                # an app that did not parse may enable it
            return
        enabled = {act.app for a in checked for r in a.rules for act in r.actions if isinstance(act, M.EnableM)}
        for a in apps:
            if modes[a.name] == "on_demand" and a.name not in enabled:
                self.note(f"on-demand app '{a.name}' is enabled by no rule of the apps given; it stays off "
                          f"unless it is enabled at run time", a.name_span,
                          f"another app's rule switches it on with: enable {a.name} for DURATION")

    def _check_enable_bits(self, apps: list[A.App], modes: dict[str, str]) -> None:
        """Each on-demand app takes one bit of the program's enable mask (compiler/abi.py
        ENABLE_BITS, one __u64 tested per packet): past that, say which app is over."""
        from .abi import ENABLE_BITS

        on_demand = [a for a in apps if modes[a.name] == "on_demand"]
        if len(on_demand) > ENABLE_BITS:
            extra = on_demand[ENABLE_BITS]
            self.error(f"app '{extra.name}' is on-demand app number {ENABLE_BITS + 1}; one program holds at most "
                       f"{ENABLE_BITS} ({len(on_demand)} given)", extra.mode.span if extra.mode else extra.name_span,
                       "the enable mask is one 64-bit word tested per packet; make some apps 'mode always' "
                       "or run them in a second xdpmon instance")

    def _mode(self, app: A.App) -> str:
        if app.mode is None:
            return "always"
        if app.mode.value not in ("always", "on_demand"):
            self.error(f"unknown mode '{app.mode.value}'", app.mode.span,
                       suggest(app.mode.value, ["always", "on_demand"]) or "mode is 'always' or 'on_demand'")
            return "always"
        return app.mode.value

    # ---- one app -------------------------------------------------------------
    def _app(self, app: A.App, modes: dict[str, str]) -> M.AppM | None:
        seen: dict[str, A.Span] = {}
        for kind, span in app.blocks:
            if kind == "param":
                continue
            if kind in seen:
                self.error(f"'{kind}' given twice in app '{app.name}'", span,
                           f"the first is at line {seen[kind].line}, column {seen[kind].col}; merge them into one")
            else:
                seen[kind] = span

        state = _AppState({}, {})
        for p in app.params:
            self._declare_param(app, state, p.name, p.default, p.name_span)

        scope = _Scope(app, None, "t1")
        selects = [self.boolean(self.expr(s, scope, state), s) for s in app.selects]
        selects = [s for s in selects if s is not None]     # the others are reported
        select = None
        if len(selects) == 1:
            select = selects[0]
        elif selects:
            select = M.OrE(tuple(selects), selects[0].span)
        guaranteed = guaranteed_layers(select)

        stats: dict[str, M.StatM] = {}
        for st in app.stats:
            self.check_name(st.name, st.name_span, "stat name")
            if st.name in stats:
                first = stats[st.name].span
                self.error(f"duplicate stat '{st.name}' in app '{app.name}'", st.name_span,
                           f"'{st.name}' is already defined at line {first.line}, column {first.col}")
                continue
            if st.name in LAYERS:
                self.error(f"stat name '{st.name}' is the name of a protocol layer", st.name_span,
                           "pick another name, e.g. " + f"'{st.name}_stats'")
                continue
            checked = self._stat(app, st, state, guaranteed)
            if checked is not None:
                stats[st.name] = checked

        rules = [self._rule(app, r, stats, state, modes, guaranteed) for r in app.rules]
        mode = modes[app.name]
        if app.asl is not None:
            self._check_asl(app)
        if mode == "on_demand" and not app.stats and not app.rules:
            self.note(f"on-demand app '{app.name}' has no statistics and no rules", app.name_span)
        return M.AppM(app.name, app.span.file, mode, select, tuple(stats.values()),
                      tuple(r for r in rules if r is not None), tuple(state.params.values()),
                      app.asl, frozenset(guaranteed), app.span, app.asl_span)

    def _check_asl(self, app: A.App) -> None:
        path = app.asl
        if not path or any(ord(c) < 32 for c in path) or len(path) > 4096:
            self.error("asl path must be a non-empty file path on one line", app.asl_span)
        elif not path.endswith(".py"):
            self.error("asl handlers are Python files", app.asl_span, "name a .py file")

    def _declare_param(self, app, state: _AppState, name: str, default: A.Number | None,
                       span: A.Span) -> M.ParamM | None:
        self.check_name(name, span, "param name")
        if name in state.params:
            prev = state.params[name]
            if default is not None:
                value = self._param_value(default)
                if value is not None and value != prev.default:
                    self.error(f"param '{name}' has two defaults ({prev.default} and {value})", default.span,
                               f"it is first given at line {state.param_spans[name].line}; give the default once")
            return prev
        if default is None:
            self.error(f"param '{name}' has no default", span,
                       f"give it one where it is first used: param {name} = 100")
            return None
        value = self._param_value(default)
        if value is None:
            return None
        p = M.ParamM(app.name, name, value, span)
        state.params[name] = p
        state.param_spans[name] = span
        return p

    def _param_value(self, num: A.Number) -> int | None:
        try:
            if num.unit and num.unit not in ("k", "K", "M", "G", "Ki", "Mi", "Gi"):
                return duration_ns(num, "param default")
            return unit_count(num, "param default")
        except UnitError as e:
            self.error(e.message, num.span, e.hint)
            return None

    # ---- T2 ------------------------------------------------------------------
    def _stat(self, app, st, state, guaranteed) -> M.StatM | None:
        scope = _Scope(app, None, "t2")
        opts = st.opts
        errors_before = len(self.diags)
        key = tuple(self.packet_field(r, scope, "key") for r in (st.key if isinstance(st, A.TrackStat) else opts.key))
        key = tuple(k for k in key if k is not None)
        if len(key) > D.MAX_KEY_FIELDS:
            self.error(f"a key has at most {D.MAX_KEY_FIELDS} fields, not {len(key)}",
                       opts.key_span or st.span)
        elif sum(k.field.nbytes for k in key) > D.MAX_KEY_BYTES:
            self.error(f"key is {sum(k.field.nbytes for k in key)} bytes; the limit is {D.MAX_KEY_BYTES}",
                       opts.key_span or st.span)
        names = set()
        for k in key:
            if k.field.name in names:
                self.error(f"field '{k.field.name}' appears twice in the key", k.span)
            names.add(k.field.name)
            if k.field.either:
                self.error(f"'{k.field.name}' means either port and cannot be a key", k.span,
                           f"key by {k.field.either[0]} or {k.field.either[1]}")
        where = None
        if opts.where is not None:
            where = self.boolean(self.expr(opts.where, scope, state), opts.where)
        window = None
        if opts.window is not None:
            window = self._duration(opts.window, "window")
        is_track = isinstance(st, A.TrackStat)
        default_size = D.TRACK_SIZE if is_track else (D.KEYED_STAT_SIZE if key else 1)
        size = default_size
        if opts.size is not None:
            if not key:
                self.error("'size' applies to keyed statistics only", opts.size.span,
                           "add 'by FIELD', or drop 'size'")
            else:
                try:
                    size = unit_count(opts.size, "size", 1, D.MAX_MAP_SIZE)
                except UnitError as e:
                    self.error(e.message, opts.size.span, e.hint)
        on_full = "lru" if is_track else "count"
        if opts.on_full is not None:
            if opts.on_full not in D.ON_FULL:
                self.error(f"unknown full-map policy '{opts.on_full}'", opts.on_full_span,
                           "write 'on full lru' (evict the least recently used) or 'on full count' "
                           "(drop new keys, count the failures)")
            elif not key:
                self.error("'on full' applies to keyed statistics only", opts.on_full_span)
            else:
                on_full = opts.on_full

        for k in key:
            self._need_layer(k.field.layer, guaranteed, k.span, app, f"key field '{k.field.name}'")

        if is_track:
            open_when = self.boolean(self.expr(st.open_when, scope, state), st.open_when)
            close_when = self.boolean(self.expr(st.close_when, scope, state), st.close_when)
            expire = self._duration(st.expire, "expire")
            if window is not None:
                self.error("a track table expires entries with 'expire'; 'window' is not allowed",
                           opts.window.span)
            if len(self.diags) > errors_before:
                return None
            return M.StatM(app.name, st.name, "track", (), key, where, None, size, on_full, st.span,
                           open_when, close_when, expire)

        aggs: list[M.AggregateM] = []
        seen_names: dict[str, A.Span] = {}
        for agg in st.aggregates:
            a = self._aggregate(agg, scope, key, state)
            if a is None:
                continue
            if a.name in seen_names:
                self.error(f"stat '{st.name}' has two values named '{a.name}'", agg.span,
                           "give one of them another name with 'as NAME'")
                continue
            seen_names[a.name] = agg.span
            aggs.append(a)
        if len(self.diags) > errors_before:
            return None
        return M.StatM(app.name, st.name, "aggregate", tuple(aggs), key, where, window, size, on_full, st.span)

    def _aggregate(self, agg: A.Aggregate, scope, key, state) -> M.AggregateM | None:
        if agg.func not in AGGREGATES:
            hint = suggest(agg.func, AGGREGATES) or ("aggregates are " + ", ".join(AGGREGATES) + ", and track")
            self.error(f"unknown aggregate '{agg.func}'", agg.func_span, hint)
            return None
        lo, hi, want_int, allowed = AGGREGATES[agg.func]
        n = len(agg.args)
        if n < lo or (hi is not None and n > hi):
            want = f"{lo}" if lo == hi else (f"at least {lo}" if hi is None else f"{lo} to {hi}")
            plural = "" if lo == 1 and hi in (1, None) else "s"
            self.error(f"{agg.func}() takes {want} field argument{plural}, not {n}", agg.span,
                       "count() counts packets; to count per value, write count() by FIELD" if agg.func == "count" else None)
            return None
        args = []
        for r in agg.args:
            f = self.packet_field(r, scope, f"{agg.func}() argument")
            if f is None:
                return None
            if want_int and f.kind != Kind.INT:
                self.error(f"{agg.func}() needs a number, but '{f.field.name}' is {_kind_word(f.kind)}", r.span,
                           "numeric fields include pkt.len, ip.ttl, tcp.window")
                return None
            if f.field.either:
                self.error(f"'{f.field.name}' means either port and cannot be aggregated", r.span,
                           f"use {f.field.either[0]} or {f.field.either[1]}")
                return None
            args.append(f)
        opts = {}
        for name, num in agg.options:
            if name not in allowed:
                self.error(f"{agg.func}() has no option '{name}'", num.span,
                           ("options: " + ", ".join(allowed)) if allowed else f"{agg.func}() takes no options")
                return None
            if name in opts:
                self.error(f"option '{name}' given twice", num.span)
                return None
            try:
                opts[name] = unit_count(num, f"{agg.func}() {name}", 1)
            except UnitError as e:
                self.error(e.message, num.span, e.hint)
                return None
        if agg.func == "distinct":
            keyed = bool(key)
            regs = opts.get("registers", D.DISTINCT_REGISTERS_KEYED if keyed else D.DISTINCT_REGISTERS)
            top = D.DISTINCT_REGISTERS_KEYED_MAX if keyed else D.DISTINCT_REGISTERS_MAX
            if regs & (regs - 1) or not D.DISTINCT_REGISTERS_MIN <= regs <= top:
                span = dict(agg.options)["registers"].span
                self.error(f"registers must be a power of two from {D.DISTINCT_REGISTERS_MIN} to {top}"
                           f"{' for a keyed distinct' if keyed else ''}, not {regs}", span)
                return None
            opts = {"registers": regs}
        if agg.func == "cms":
            width = opts.get("width", D.CMS_WIDTH)
            depth = opts.get("depth", D.CMS_DEPTH)
            if width & (width - 1) or width > D.CMS_WIDTH_MAX:
                self.error(f"cms width must be a power of two up to {D.CMS_WIDTH_MAX}, not {width}",
                           dict(agg.options)["width"].span)
                return None
            if depth > D.CMS_DEPTH_MAX:
                self.error(f"cms depth must be at most {D.CMS_DEPTH_MAX}, not {depth}",
                           dict(agg.options)["depth"].span)
                return None
            if key:
                self.error("cms is a sketch over its own arguments and cannot be keyed", agg.span,
                           f"write cms({', '.join(k.field.name for k in key)}) without 'by'")
                return None
            opts = {"width": width, "depth": depth}
        if agg.alias is not None:
            self.check_name(agg.alias, agg.alias_span, "alias")
            name = agg.alias
        else:
            name = default_value_name(agg.func, [a.field.name for a in args])
        return M.AggregateM(agg.func, tuple(args), name, tuple(sorted(opts.items())), agg.span)

    def _duration(self, num: A.Number, what: str) -> int | None:
        try:
            return duration_ns(num, what)
        except UnitError as e:
            self.error(e.message, num.span, e.hint)
            return None

    def _need_layer(self, layer, guaranteed, span, app, what):
        if layer not in guaranteed:
            self.note(f"{what} needs the {layer} layer, which t1 of '{app.name}' does not guarantee; "
                      f"packets without it are skipped here", span)

    # ---- T3 ------------------------------------------------------------------
    def _rule(self, app, rule: A.Rule, stats, state, modes, guaranteed) -> M.RuleM | None:
        scope = _Scope(app, stats, "t3")
        cond = self.boolean(self.expr(rule.cond, scope, state), rule.cond)
        actions = []
        if not rule.actions:
            self.error("a 'when' rule needs at least one action", rule.span,
                       "actions: send packet(...) to asl, send summary to asl, enable APP for D, alert \"...\"")
        # fields the rule's condition tests are present when it fires
        sure = set(guaranteed) | (guaranteed_layers(cond) if cond is not None else set())
        for act in rule.actions:
            a = self._action(app, act, scope, state, modes, sure)
            if a is not None:
                actions.append(a)
        if cond is None:
            return None
        return M.RuleM(cond, tuple(actions), rule.span)

    def _rate(self, rate: A.Rate | None, default) -> M.RateM:
        if rate is None:
            n, per = default
            return M.RateM(n, per, f"{n}/s")
        if not 1 <= rate.count <= MAX_RATE:
            self.error(f"a rate limit must be between 1 and {MAX_RATE}, not {rate.count}", rate.span)
        return M.RateM(rate.count, rate.per_ns, f"{rate.count}/{rate.per}")

    def _action(self, app, act, scope, state, modes, sure=frozenset()):
        if isinstance(act, A.SendPacket):
            fields = []
            if not act.fields:
                self.error("send packet(...) needs at least one field", act.span,
                           "e.g. send packet(ip.src, ip.dst, tcp.dport) to asl")
            if len(act.fields) > D.MAX_SEND_FIELDS:
                self.error(f"send packet takes at most {D.MAX_SEND_FIELDS} fields", act.span)
            seen = set()
            for r in act.fields:
                f = self.packet_field(r, scope, "send packet field")
                if f is None:
                    continue
                if f.field.either:
                    self.error(f"'{f.field.name}' means either port; send {f.field.either[0]} and "
                               f"{f.field.either[1]} instead", r.span)
                    continue
                if f.field.name in seen:
                    self.error(f"field '{f.field.name}' is sent twice", r.span)
                    continue
                seen.add(f.field.name)
                fields.append(f)
                if f.field.layer not in sure:
                    self.note(f"sent field '{f.field.name}' needs the {f.field.layer} layer, which t1 of "
                              f"'{app.name}' does not guarantee; it is sent as 0 when absent", r.span)
            if app.asl is None:
                self.note(f"app '{app.name}' sends to asl but names no handler file; a generated stub will log",
                          act.span)
            return M.SendPacketM(tuple(fields), self._rate(act.limit, D.SEND_PACKET_LIMIT), act.span)
        if isinstance(act, A.SendSummary):
            every = D.SUMMARY_EVERY_NS if act.every is None else self._duration(act.every, "every")
            limit = None if act.limit is None else self._rate(act.limit, D.SEND_PACKET_LIMIT)
            return M.SendSummaryM(every or D.SUMMARY_EVERY_NS, limit, act.span)
        if isinstance(act, A.Enable):
            dur = self._duration(act.duration, "enable duration")
            if act.app not in modes:
                if self.incomplete:
                    return None
                self.error(f"'enable' names unknown app '{act.app}'", act.app_span,
                           suggest(act.app, modes, "an app") or "enable names an app with 'mode on_demand'")
                return None
            if act.app == app.name:
                self.error(f"app '{app.name}' cannot enable itself", act.app_span)
                return None
            if modes[act.app] != "on_demand":
                self.error(f"'enable' names app '{act.app}', which is always on", act.app_span,
                           f"add 'mode on_demand' to app '{act.app}'")
                return None
            return M.EnableM(act.app, dur or 0, act.span)
        if isinstance(act, A.Alert):
            if len(act.message) > 256 or any(ord(c) < 32 for c in act.message):
                self.error("an alert message is one line of at most 256 characters", act.span)
            return M.AlertM(act.message, self._rate(act.limit, D.ALERT_LIMIT), act.span)
        raise AssertionError(act)

    # ---- expressions -----------------------------------------------------------
    def boolean(self, e, node):
        """``e`` if it is a condition, else an error."""
        if e is None:
            return None
        if e.kind != Kind.BOOL:
            what = _describe(e)
            hint = None
            if isinstance(e, M.FieldE) and e.kind.is_addr:
                hint = f"compare it: {e.field.name} == ADDRESS or {e.field.name} in PREFIX"
            elif isinstance(e, M.FieldE):
                hint = f"compare it: {e.field.name} == VALUE"
            elif isinstance(e, M.ArithE) and e.op == "&":
                mask = e.right.value if isinstance(e.right, M.ConstE) else None
                test = (f"{e.left.field.name} & 0x{mask:02x}" if isinstance(e.left, M.FieldE) and mask is not None
                        else "FIELD & MASK")
                hint = f"compare it: {test} != 0 (any of its bits set) or {test} == {'MASK' if mask is None else f'0x{mask:02x}'} (all of them)"
            self.error(f"expected a condition, but {what} is {_kind_word(e.kind)}", node.span, hint)
            return None
        return e

    def packet_field(self, r: A.Ref, scope: _Scope, what: str) -> M.FieldE | None:
        name = r.dotted
        f = FIELDS.get(name)
        if f is not None:
            return M.FieldE(f, r.span)
        if name in LAYERS:
            fields = [n for n in FIELDS if n.startswith(name + ".")]
            self.error(f"{what} must be a field, not the layer '{name}'", r.span,
                       "fields of it: " + ", ".join(fields[:4]) + (", ..." if len(fields) > 4 else ""))
            return None
        self._unknown_name(r, scope)
        return None

    def _unknown_name(self, r: A.Ref, scope: _Scope) -> None:
        name = r.dotted
        layer = r.parts[0]
        if layer in LAYERS and len(r.parts) >= 2:
            cands = [n for n in FIELDS if n.startswith(layer + ".")]
            hint = suggest(name, cands) or suggest(name, FIELDS) or ("fields of " + layer + ": " + ", ".join(c.split(".", 1)[1] for c in cands))
            self.error(f"unknown field '{name}'", r.span, hint)
            return
        if scope.stats is None and len(r.parts) >= 1 and any(s.name == r.parts[0] for s in scope.app.stats):
            self.error(f"stat '{r.parts[0]}' cannot be used in {scope.where}", r.span,
                       "statistics are read in t3 conditions")
            return
        cands = list(FIELDS) + list(LAYERS)
        if scope.stats is not None:
            cands += list(scope.stats)
        hint = suggest(name, cands)
        self.error(f"unknown name '{name}'", r.span, hint)

    def expr(self, e, scope: _Scope, state: _AppState):
        """Check one expression; None when it has errors (already reported)."""
        if isinstance(e, A.Number):
            if e.unit:
                if e.unit not in COUNT_MULT and e.unit not in NS_PER:
                    self.error(f"unknown unit '{e.unit}' in '{e.text}'", e.span,
                               f"durations take {DURATION_UNITS}; counts take {COUNT_UNITS}")
                    return None
                try:
                    if e.unit in COUNT_MULT:
                        return M.ConstE(Kind.INT, unit_count(e, "number"), e.span)
                    return M.ConstE(Kind.INT, duration_ns(e, "duration"), e.span)
                except UnitError as err:
                    self.error(err.message, e.span, err.hint)
                    return None
            if e.value > MAX_U64:
                self.error(f"{e.text} does not fit in 64 bits", e.span)
                return None
            return M.ConstE(Kind.INT, e.value, e.span)
        if isinstance(e, A.Bool):
            return M.ConstE(Kind.BOOL, e.value, e.span)
        if isinstance(e, A.Addr):
            if e.prefix is not None:
                self.error(f"a prefix ({e.text}) can only be used with 'in'", e.span,
                           f"write FIELD in {e.text}")
                return None
            return M.ConstE(Kind(e.family), e.packed, e.span)
        if isinstance(e, A.Ref):
            return self._ref(e, scope)
        if isinstance(e, A.IndexedRef):
            return self._indexed(e, scope)
        if isinstance(e, A.ParamRef):
            p = self._declare_param(scope.app, state, e.name, e.default, e.name_span)
            if p is None:
                return None
            return M.ParamE(scope.app.name, e.name, e.span)
        if isinstance(e, A.SizeOf):
            if scope.stats is None:
                self.error("size(...) reads a statistic and can only be used in t3", e.span)
                return None
            st = scope.stats.get(e.stat)
            if st is None:
                self.error(f"unknown stat '{e.stat}'", e.stat_span, suggest(e.stat, scope.stats))
                return None
            if st.kind != "track":
                self.error(f"size() counts the open entries of a track table; '{e.stat}' is not one",
                           e.stat_span)
                return None
            return M.StatSizeE(scope.app.name, e.stat, e.span)
        if isinstance(e, A.Arith):
            left = self.expr(e.left, scope, state)
            right = self.expr(e.right, scope, state)
            if left is None or right is None:
                return None
            for side, node in ((left, e.left), (right, e.right)):
                if isinstance(side, M.FieldE) and side.field.either:
                    self.error(f"'{side.field.name}' means either port and cannot be computed with", node.span,
                               f"use {side.field.either[0]} or {side.field.either[1]}")
                    return None
                if side.kind != Kind.INT:
                    self.error(f"'{e.op}' needs numbers, but {_describe(side)} is {_kind_word(side.kind)}", node.span,
                               _bitwise_hint(side) if e.op == "&" else None)
                    return None
            if e.op == "/" and isinstance(right, M.ConstE) and right.value == 0:
                self.error("division by zero", e.right.span)
                return None
            return M.ArithE(e.op, left, right, e.span)
        if isinstance(e, A.Compare):
            return self._compare(e, scope, state)
        if isinstance(e, A.InSet):
            return self._in(e, scope, state)
        if isinstance(e, A.BoolOp):
            ops = [self.boolean(self.expr(o, scope, state), o) for o in e.operands]
            if any(o is None for o in ops):
                return None
            return (M.AndE if e.op == "and" else M.OrE)(tuple(ops), e.span)
        if isinstance(e, A.Not):
            o = self.boolean(self.expr(e.operand, scope, state), e.operand)
            return None if o is None else M.NotE(o, e.span)
        raise AssertionError(f"unexpected node {e!r}")

    def _ref(self, r: A.Ref, scope: _Scope):
        name = r.dotted
        if name in LAYERS:
            if name == "pkt":
                self.error("'pkt' is always present; name a field of it (pkt.len, pkt.ts)", r.span)
                return None
            return M.LayerE(name, r.span)
        if name in FIELDS:
            return M.FieldE(FIELDS[name], r.span)
        if scope.stats is not None and r.parts[0] in scope.stats:
            st = scope.stats[r.parts[0]]
            return self._stat_value(st, r.parts[1:], None, r.span, scope)
        self._unknown_name(r, scope)
        return None

    def _stat_value(self, st: M.StatM, rest, key, span, scope):
        if st.kind == "track":
            self.error(f"'{st.name}' is a track table; read its number of open entries with size({st.name})", span)
            return None
        if len(rest) > 1:
            self.error(f"unknown value '{'.'.join(rest)}' of stat '{st.name}'", span)
            return None
        if not rest:
            if len(st.aggregates) != 1:
                self.error(f"stat '{st.name}' has several values; name one", span,
                           "write " + " or ".join(f"{st.name}.{m}" for m in st.members))
                return None
            agg = st.aggregates[0]
        else:
            agg = next((a for a in st.aggregates if a.name == rest[0]), None)
            if agg is None:
                self.error(f"stat '{st.name}' has no value '{rest[0]}'", span,
                           suggest(rest[0], st.members) or ("its values: " + ", ".join(st.members)))
                return None
        if agg.func not in COMPARABLE_AGGREGATES:
            self.error(f"a {agg.func}() value cannot be compared", span,
                       "histograms are read by the ASL and the live view")
            return None
        if agg.func == "cms":
            # A count-min sketch is read with the packet's own values of its arguments.
            key = tuple(M.FieldE(a.field, span) for a in agg.args)
        return M.StatValueE(scope.app.name, st.name, agg.name, key if key is not None else st.key, span)

    def _indexed(self, e: A.IndexedRef, scope: _Scope):
        if scope.stats is None:
            self.error("statistics can only be read in t3", e.span)
            return None
        if len(e.stat.parts) != 1 or e.stat.parts[0] not in scope.stats:
            self.error(f"unknown stat '{e.stat.dotted}'", e.stat.span, suggest(e.stat.dotted, scope.stats))
            return None
        st = scope.stats[e.stat.parts[0]]
        if not st.key:
            self.error(f"stat '{st.name}' has no key to index", e.span, f"read it as {st.name}")
            return None
        fields = [self.packet_field(r, scope, "key") for r in e.key]
        if any(f is None for f in fields):
            return None
        if len(fields) != len(st.key):
            self.error(f"stat '{st.name}' is keyed by {len(st.key)} field{'s' if len(st.key) != 1 else ''} "
                       f"({', '.join(k.field.name for k in st.key)}), not {len(fields)}", e.span)
            return None
        for f, k in zip(fields, st.key):
            if (f.kind, f.field.bits) != (k.kind, k.field.bits) and not (f.kind.is_addr and k.kind == Kind.IP and f.kind != Kind.IP):
                self.error(f"'{f.field.name}' is {_kind_word(f.kind)} but the key field '{k.field.name}' is "
                           f"{_kind_word(k.kind)}", f.span)
                return None
        member = (e.member,) if e.member else ()
        return self._stat_value(st, member, tuple(fields), e.span, scope)

    def _compare(self, e: A.Compare, scope, state):
        left = self.expr(e.left, scope, state)
        right = self.expr(e.right, scope, state)
        if left is None or right is None:
            return None
        if isinstance(left, M.ConstE) and not isinstance(right, M.ConstE):
            left, right = right, left
            op = {"<": ">", ">": "<", "<=": ">=", ">=": "<="}.get(e.op, e.op)
        else:
            op = e.op
        for side in (left, right):
            if isinstance(side, M.FieldE) and side.field.either and op != "==":
                self.error(f"'{side.field.name}' means either port and supports only '==' and 'in'", e.span,
                           f"for 'neither port is 53' write: not {side.field.name} == 53")
                return None
        lk, rk = left.kind, right.kind
        if lk == Kind.BOOL or rk == Kind.BOOL:
            if lk != rk:
                self.error(f"cannot compare {_describe(left)} ({_kind_word(lk)}) with {_describe(right)} "
                           f"({_kind_word(rk)})", e.span, _bool_hint(left, right))
                return None
            if op not in ("==", "!="):
                self.error(f"conditions can only be compared with '==' or '!=', not '{op}'", e.span)
                return None
            return M.CmpE(op, left, right, e.span)
        if lk.is_addr or rk.is_addr or lk == Kind.MAC or rk == Kind.MAC:
            right = self._widen_addr(left, right, e.span)
            if right is None:
                return None
            if op not in ("==", "!="):
                self.error(f"addresses can only be compared with '==' or '!=', not '{op}'", e.span,
                           "for ranges of addresses use 'in' with a prefix")
                return None
            return M.CmpE(op, left, right, e.span)
        # integers
        if isinstance(right, M.ConstE) and isinstance(left, M.FieldE):
            bits = left.field.bits
            if right.value >= (1 << bits):
                node = e.right if not isinstance(e.left, A.Number) else e.left
                shown = f"{node.text} ({right.value})" if isinstance(node, A.Number) and node.unit else str(right.value)
                self.error(f"{shown} does not fit in '{left.field.name}' ({bits} bits, at most "
                           f"{(1 << bits) - 1})", node.span)
                return None
        return M.CmpE(op, left, right, e.span)

    def _widen_addr(self, left, right, span):
        """Check an address comparison and return ``right`` widened to left's kind."""
        lk, rk = left.kind, right.kind
        if lk == rk:
            return right
        if lk == Kind.IP and rk == Kind.IP4 and isinstance(right, M.ConstE):
            return M.ConstE(Kind.IP, b"\0" * 10 + b"\xff\xff" + right.value, right.span)
        if lk == Kind.IP and rk == Kind.IP6 and isinstance(right, M.ConstE):
            return M.ConstE(Kind.IP, right.value, right.span)
        hint = None
        if lk == Kind.IP4 and rk == Kind.IP6:
            hint = "ipv4.* fields hold IPv4 addresses; use ip.* for both families"
        elif lk == Kind.IP6 and rk == Kind.IP4:
            hint = "ipv6.* fields hold IPv6 addresses; use ip.* for both families"
        elif lk == Kind.INT or rk == Kind.INT:
            hint = "addresses are compared with addresses"
        self.error(f"cannot compare {_describe(left)} ({_kind_word(lk)}) with {_describe(right)} ({_kind_word(rk)})",
                   span, hint)
        return None

    def _in(self, e: A.InSet, scope, state):
        left = self.expr(e.left, scope, state)
        if left is None:
            return None
        if left.kind == Kind.BOOL:
            self.error(f"'in' needs a number or an address, but {_describe(left)} is a condition", e.span)
            return None
        items = []
        for it in e.items:
            c = self._set_item(left, it)
            if c is None:
                return None
            items.append(c)
        res = M.InE(left, tuple(items), e.span)
        return M.NotE(res, e.span) if e.negated else res

    def _set_item(self, left, it):
        lk = left.kind
        name = _describe(left)
        if isinstance(it, A.Range):
            if lk != Kind.INT:
                self.error(f"a range of numbers cannot hold {name} ({_kind_word(lk)})", it.span)
                return None
            if it.lo.unit or it.hi.unit:
                self.error("range bounds are plain numbers", it.span)
                return None
            lo, hi = it.lo.value, it.hi.value
            if lo > hi:
                self.error(f"empty range {lo}..{hi}", it.span, f"write {hi}..{lo}")
                return None
            if isinstance(left, M.FieldE) and hi >= (1 << left.field.bits):
                self.error(f"{hi} does not fit in '{left.field.name}' ({left.field.bits} bits)", it.hi.span)
                return None
            return M.RangeE(lo, hi, it.span)
        if isinstance(it, A.Addr):
            if it.family == "mac":
                if lk != Kind.MAC:
                    self.error(f"a MAC address cannot be compared with {name} ({_kind_word(lk)})", it.span)
                    return None
                if it.prefix is not None:
                    return None
                return M.ConstE(Kind.MAC, it.packed, it.span)
            if not lk.is_addr:
                self.error(f"an address cannot be compared with {name} ({_kind_word(lk)})", it.span)
                return None
            akind = Kind(it.family)
            packed, plen = it.packed, (it.prefix if it.prefix is not None else len(it.packed) * 8)
            if lk == Kind.IP and akind == Kind.IP4:
                packed, plen = b"\0" * 10 + b"\xff\xff" + packed, plen + 96
                akind = Kind.IP
            elif lk == Kind.IP:
                akind = Kind.IP
            elif lk != akind:
                self.error(f"an IPv{4 if akind == Kind.IP4 else 6} {'prefix' if it.prefix is not None else 'address'}"
                           f" cannot hold {name} ({_kind_word(lk)})", it.span,
                           "use ip.* fields to match either family")
                return None
            if plen == len(packed) * 8:
                return M.ConstE(akind, packed, it.span)
            return M.PrefixE(akind, packed, plen, it.span)
        if isinstance(it, A.Number):
            if lk != Kind.INT:
                self.error(f"a number cannot be compared with {name} ({_kind_word(lk)})", it.span)
                return None
            if it.unit:
                self.error("set members are plain numbers", it.span)
                return None
            if isinstance(left, M.FieldE) and it.value >= (1 << left.field.bits):
                self.error(f"{it.value} does not fit in '{left.field.name}' ({left.field.bits} bits)", it.span)
                return None
            return M.ConstE(Kind.INT, it.value, it.span)
        if isinstance(it, A.Bool):
            self.error("sets hold numbers, addresses or prefixes, not true/false", it.span)
            return None
        raise AssertionError(it)


# ---- helpers -------------------------------------------------------------------------

def default_value_name(func: str, args: list[str]) -> str:
    """The name of an aggregate's value when it has no ``as`` alias:
    count, sum_pkt_len, min_pkt_ts, distinct, hist_pkt_len, cms_ip_src."""
    if func in ("count", "distinct") or not args:
        return func
    return func + "_" + "_".join(a.replace(".", "_") for a in args)


def _bitwise_hint(e) -> str | None:
    """What '&' on something that is not a number was probably meant as."""
    if isinstance(e, M.FieldE) and e.field.layer == "tcp" and e.kind == Kind.BOOL:
        bit = 1 << TCP_FLAG_BITS[e.field.name]
        return f"a flag is a condition on its own ({e.field.name}); or test its bit: tcp.flags & 0x{bit:02x} != 0"
    if isinstance(e, M.FieldE) and e.kind == Kind.BOOL:
        return f"a flag is a condition on its own ({e.field.name}); join conditions with 'and'"
    if e.kind == Kind.BOOL:
        return "join conditions with 'and'"
    if e.kind.is_addr:
        return "'&' is for integer fields; test an address with ==, != or in (ip.src in 192.0.2.0/24)"
    return None



def _kind_word(kind: Kind) -> str:
    return {
        Kind.BOOL: "a condition",
        Kind.INT: "a number",
        Kind.MAC: "a MAC address",
        Kind.IP4: "an IPv4 address",
        Kind.IP6: "an IPv6 address",
        Kind.IP: "an IP address",
    }[kind]


def _describe(e) -> str:
    if isinstance(e, M.FieldE):
        return f"'{e.field.name}'"
    if isinstance(e, M.LayerE):
        return f"'{e.layer}'"
    if isinstance(e, M.ConstE):
        if isinstance(e.value, bytes):
            if e.kind == Kind.MAC:
                return ":".join(f"{b:02x}" for b in e.value)
            addr = ipaddress.ip_address(e.value)
            mapped = getattr(addr, "ipv4_mapped", None)
            return f"::ffff:{mapped}" if mapped else str(addr)
        return str(e.value).lower() if isinstance(e.value, bool) else str(e.value)
    if isinstance(e, M.ParamE):
        return f"param '{e.name}'"
    if isinstance(e, M.StatValueE):
        return f"'{e.stat}.{e.member}'"
    return "the expression"


def _bool_hint(left, right) -> str | None:
    for side in (left, right):
        if isinstance(side, M.FieldE) and side.kind == Kind.BOOL:
            return f"'{side.field.name}' is a flag: write '{side.field.name}' or 'not {side.field.name}'"
    return None


def guaranteed_layers(select) -> set[str]:
    """Layers every packet that passes ``select`` is sure to have. ``pkt``
    always; a layer test or a comparison on a field in a conjunction adds its
    layer (a comparison on an absent field is false); a disjunction keeps what
    all its branches guarantee."""
    base = {"pkt"}
    if select is None:
        return base
    return base | _guarantees(select)


def _guarantees(e) -> set[str]:
    if isinstance(e, M.LayerE):
        return implied_layers(e.layer)
    if isinstance(e, M.FieldE):          # a bool flag used as a condition
        return implied_layers(e.field.layer) if e.field.layer != "pkt" else set()
    if isinstance(e, (M.CmpE, M.InE)):
        out = set()
        for side in ((e.left, e.right) if isinstance(e, M.CmpE) else (e.left,)):
            if isinstance(side, M.FieldE) and side.field.layer != "pkt":
                out |= implied_layers(side.field.layer)
        return out
    if isinstance(e, M.AndE):
        out = set()
        for o in e.operands:
            out |= _guarantees(o)
        return out
    if isinstance(e, M.OrE):
        sets = [_guarantees(o) for o in e.operands]
        return set.intersection(*sets) if sets else set()
    return set()


def analyse(files: list[A.SpecFile], sources: dict[str, str] | None = None,
            prior: list[Diagnostic] | None = None) -> M.ProgramM:
    """Check parsed files; raise SpecError with every problem (``prior`` ones,
    e.g. syntax errors, included), else return the model."""
    # Apps may be missing (an app or a whole file that did not parse): then an
    # unknown app name may be one of them, and is not reported.
    parsed = {f.path for f in files}
    missing = any(f.incomplete for f in files) or any(d.span.file not in parsed for d in prior or [])
    an = Analyser(incomplete=missing)
    program = an.analyse(files)
    diags = list(prior or []) + an.diags
    if diags:
        raise SpecError(sorted(diags, key=lambda d: (d.span.file, d.span.line, d.span.col)), sources)
    return program
