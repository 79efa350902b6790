"""The typed view of a program's manifest (compiler/manifest.py writes it).

``Manifest(data)`` wraps the manifest's plain data (as ``json`` reads it, or as
the compiler returns it) and is the runtime's only reader of its fields: the
other runtime packages use these properties, the decoders of this package
(``records``, ``snapshot``) the map, statistic and record layouts. When the
manifest's fields change, this package is what adapts.

The views are built once, at construction; ``raw`` is the data itself (for
JSON output and for the layouts the decoders read).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Param:
    """A run-time parameter: its slot in the params map and its default."""
    app: str
    name: str
    index: int
    default: int


@dataclass(frozen=True)
class Action:
    id: int
    type: str                       # packet, summary, alert, enable
    text: str                       # as the report and the tables show it


@dataclass(frozen=True)
class Rule:
    id: int                         # its ordinal among the app's rules (the records' ``rule``)
    name: str                       # "<app>.r<id>"
    line: int
    cond_text: str
    actions: tuple[Action, ...]
    fired_counter: str              # the counter of its firings


@dataclass(frozen=True)
class App:
    name: str
    index: int                      # its place in the program
    enable_bit: int                 # its bit and slot in the control map (-1: always on)
    mode: str                       # always or on_demand
    file: str                       # the spec file it comes from
    asl: str | None                 # the handler file the spec names
    ringbuf: str | None             # its ring buffer map (apps with rules)
    rules: tuple[Rule, ...]
    params: tuple[Param, ...]
    stats: tuple[str, ...]          # statistic names, in spec order

    @property
    def on_demand(self) -> bool:
        return self.mode == "on_demand"

    @property
    def rate_limited_counter(self) -> str:
        return f"app.{self.name}.rate_limited"

    @property
    def ringbuf_full_counter(self) -> str:
        return f"app.{self.name}.ringbuf_full"


@dataclass(frozen=True)
class Event:
    """What a ring buffer record of one action is: its layout (``record``, read by
    ``records.decode_event``) and what the record does not carry."""
    action: int
    app: str
    rule: int
    type: str
    record: dict
    message: str | None             # alert: its text
    enables: str | None             # enable: the app it switches on
    class_name: str | None          # packet: its class in the app's ASL module
    enable_ns: int | None = None    # enable: for how long (ns)


@dataclass(frozen=True)
class KeyIndex:
    """How a keyed array map's index holds its key (compiler/plan.py key_index): each
    part is (offset, size) of a key member and (shift, bits) of its value in the index."""
    key_size: int
    parts: tuple[tuple[int, int, int, int], ...]

    def key(self, i: int) -> bytes:
        """The key bytes of entry ``i``."""
        out = bytearray(self.key_size)
        for off, size, shift, bits in self.parts:
            out[off:off + size] = ((i >> shift) & ((1 << bits) - 1)).to_bytes(size, "little")
        return bytes(out)


@dataclass(frozen=True)
class StateMap:
    """A BPF map whose bytes a snapshot decodes."""
    name: str
    hashed: bool                    # hash (key, value) items; else an array of values
    index: KeyIndex | None = None   # a keyed array: read as the (key, value) items of its entries in use
    percpu: dict | None = None      # a value per CPU: the value struct (layout) they are combined by


@dataclass(frozen=True)
class Constants:
    """Numbers of the generated C that decoding needs."""
    track_buckets: int              # time buckets per track table
    hll_scale_bits: int             # fixed point of the HyperLogLog sums
    cms_count_bits: int             # count bits of a count-min cell (the rest is the window tag)
    cms_tag_bits: int               # bits of the window tag above them


@dataclass(frozen=True)
class Filters:
    """The filters' maps: the blocklist trie, the filter state, the interface counters."""
    blocklist_map: str
    max_entries: int                # the trie's bound
    v4_prefix: int                  # prefix length of ::ffff:0:0/96 (IPv4 is held v4-mapped)
    families: tuple[str, ...]       # the address families the program parses ("ipv4", "ipv6")
    state_map: str
    enforce_flag: int               # the state's flags bit that makes matches drop
    interfaces_map: str
    max_interfaces: int
    hash_map: str                   # the entries of the lengths the state lists, beside the trie
    lens_max: int                   # lengths the state lists at most (the others' entries: the trie)
    hashed_flag: int                # the state's flags bit: the hash map holds entries
    prefixes_flag: int              # the state's flags bit: the trie holds entries
    bits_map: str                   # a bit per (length, masked address) hash: some hash entry there
    bits_words: int
    bits_mul: int


def _filters(f: dict | None) -> Filters | None:
    if f is None:
        return None
    b, st, ifc = f["blocklist"], f["state"], f["interfaces"]
    return Filters(b["map"], b["max_entries"], b["v4_prefix"], tuple(b["families"]), st["map"], st["enforce"],
                   ifc["map"], ifc["max_entries"], b["hash_map"], b["lens_max"], st["hashed"], st["prefixes"],
                   b["bits_map"], b["bits_words"], b["bits_mul"])


class Manifest:
    def __init__(self, data: dict):
        self.raw = data
        self.replay: bool = bool(data["program"]["replay"])
        # "capture" (replay), "monotonic_coarse" or "monotonic" (compiler/plan.py Plan.clock)
        self.clock: str = data["program"].get("clock", "capture" if self.replay else "monotonic")
        self.apps: tuple[App, ...] = tuple(_app(a) for a in data["apps"])
        self._apps = {a.name: a for a in self.apps}
        self.params_map: str = data["params"]["map"]
        self.params: tuple[Param, ...] = tuple(_param(s) for s in data["params"]["slots"])
        self._params = {(p.app, p.name): p for p in self.params}
        self.control_map: str = data["control"]["map"]
        self.n_bits: int = data["control"]["n_bits"]          # enable bits (on-demand apps)
        self.counters_map: str = data["counters"]["map"]
        self.counter_names: tuple[str, ...] = tuple(data["counters"]["names"])
        self.events: dict[int, Event] = {e["action"]: self._event(e) for e in data["events"]}
        self.state_maps: tuple[StateMap, ...] = tuple(_state_maps(data["maps"]))
        self._state_maps = {m.name: m for m in self.state_maps}
        self.filters: Filters | None = _filters(data.get("filters"))
        c = data["abi"]
        self.constants = Constants(c["track_buckets"], c["hll_scale_bits"], c["cms_count_bits"], c["cms_tag_bits"])
        self.parse_outcomes: tuple[str, ...] = tuple(o["name"] for o in c["parse_outcomes"])

    @classmethod
    def of(cls, manifest: "Manifest | dict") -> "Manifest":
        return manifest if isinstance(manifest, Manifest) else cls(manifest)

    def app(self, name: str) -> App:
        return self._apps[name]

    def param(self, app: str, name: str) -> Param:
        return self._params[(app, name)]

    def state_map(self, name: str) -> StateMap:
        return self._state_maps[name]

    def _event(self, e: dict) -> Event:
        app = next(a for a in self.raw["apps"] if a["name"] == e["app"])
        act = next(x for r in app["rules"] for x in r["actions"] if x["id"] == e["action"])
        return Event(e["action"], e["app"], e["rule"], e["type"], e["record"], act.get("message"),
                     act.get("app") if e["type"] == "enable" else None, e.get("class_name"),
                     act.get("duration_ns") if e["type"] == "enable" else None)

    def __eq__(self, other) -> bool:
        return isinstance(other, Manifest) and self.raw == other.raw

    __hash__ = None


def _param(s: dict) -> Param:
    return Param(s["app"], s["name"], s["index"], s["default"])


def _app(a: dict) -> App:
    rules = tuple(Rule(r["id"], r["name"], r["line"], r["cond_text"],
                       tuple(Action(x["id"], x["type"], x["text"]) for x in r["actions"]), r["counter"])
                  for r in a["rules"])
    params = tuple(Param(a["name"], p["name"], p["index"], p["default"]) for p in a["params"])
    return App(a["name"], a["index"], a["enable_bit"], a["mode"], a["file"], a.get("asl"), a.get("ringbuf"), rules, params,
               tuple(s["name"] for s in a["stats"]))


def _key_index(m: dict) -> KeyIndex | None:
    if not m.get("index"):
        return None
    members = {mb["name"]: mb for mb in m["key"]["members"]}
    return KeyIndex(m["key"]["size"], tuple((members[p["member"]]["offset"], members[p["member"]]["size"],
                                             p["shift"], p["bits"]) for p in m["index"]))


def _state_maps(maps: list[dict]):
    for m in maps:
        yield StateMap(m["name"], "hash" in m["bpf_type"], _key_index(m),
                       m["value"] if m["bpf_type"].startswith(("percpu", "lru_percpu")) else None)
        for companion in ("buckets_map", "header_map"):      # track buckets, HyperLogLog header
            if companion in m:
                yield StateMap(m[companion], False)
