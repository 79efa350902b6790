"""The blocklist of a running program: source prefixes whose frames are dropped
(with enforce) or only counted (by default, "would drop"), before any app.

The program (codegen_templates/xdp_program.c.j2) keeps the prefixes keyed as it
holds addresses: 16 bytes, IPv4 v4-mapped (::ffff:a.b.c.d, so an IPv4 /24 is prefix
length 96 + 24). The entries of up to ``lens_max`` prefix lengths (the manifest's
"filters") are in a hash map, one exact lookup per length, gated by a bit array;
the entries of any further length are in an LPM trie. A length takes a place in the
hash map when its first entry comes while one is free, and gives it up when its
last entry goes; a length whose entries are in the trie stays there. Each entry
carries its expiry on the program's clock and a hit counter the program
increments; the filter state holds the number of entries (0: the program does
not look), the enforce flag, the hash map's lengths and the trie's longest. This
module is the one writer of all of it, through the byte
interface of runtime/dataplane/maps.py (the kernel's maps or the reference
engine's), and keeps what the kernel does not need: each entry's reason, who
added it and when.

Every refusal raises ControlError with a message for the operator:

* a prefix that is not one (``ipaddress``), or has host bits set (the message
  names the network meant), or of an address family the program does not parse,
  or an IPv6 prefix holding the IPv4 addresses (::ffff:0:0/96: ::/0 and the like;
  an IPv6 block never covers IPv4, so an IPv4 source tries the lengths of 96 bits
  and more only);
* a prefix overlapping an allowed one (containing it or inside it): the
  allowlist is ``--allow`` plus the monitored interfaces' own addresses;
* a new prefix past the bound (``max_entries``, at most the trie's size);
* a TTL of zero or above ``max_ttl`` (24 h): every entry expires.

Adding a prefix again renews it: new expiry and reason, its hits kept. The
kernel ignores an expired entry at once; ``sweep()`` (every interval of a running
instance) removes them.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Callable

from runtime.abi.manifest import Manifest

from .controller import ControlError
from .values import parse_duration

NS_PER_S = 1_000_000_000
DEFAULT_TTL_NS = 300 * NS_PER_S          # 5 minutes
MAX_TTL_NS = 24 * 3600 * NS_PER_S        # 24 hours
_V4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _fmt_ns(ns: int) -> str:
    for unit, n in (("h", 3600 * NS_PER_S), ("m", 60 * NS_PER_S), ("s", NS_PER_S)):
        if ns >= n and ns % n == 0:
            return f"{ns // n}{unit}"
    return f"{ns / NS_PER_S:g}s"


def parse_prefix(text: str) -> Network:
    """An address or prefix as an operator writes it; an IPv4-mapped IPv6 prefix
    (::ffff:a.b.c.d/n, n >= 96) is the IPv4 prefix it maps."""
    t = str(text).strip()
    try:
        net = ipaddress.ip_network(t, strict=True)
    except ValueError as e:
        try:
            loose = ipaddress.ip_network(t, strict=False)
        except ValueError:
            raise ControlError(f"'{text}' is not an address or prefix ({e}); write e.g. 198.18.0.7, "
                               f"198.18.0.0/24 or 2001:2::/64") from None
        raise ControlError(f"'{text}' has host bits set: the /{loose.prefixlen} network holding it is "
                           f"{loose}; block that, or the address alone") from None
    if net.version == 6 and net.prefixlen >= 96 and net.subnet_of(_V4_MAPPED):
        net = ipaddress.IPv4Network((int(net.network_address) & 0xFFFFFFFF, net.prefixlen - 96))
    return net


def key_of(net: Network) -> tuple[int, bytes]:
    """(prefix length, 16 address bytes) as the program's trie holds ``net``."""
    if net.version == 4:
        return 96 + net.prefixlen, _V4_MAPPED.network_address.packed[:12] + net.network_address.packed
    return net.prefixlen, net.network_address.packed


def _mapped(net: Network) -> ipaddress.IPv6Network:
    """``net`` in the program's one address space (IPv4 v4-mapped), for overlap tests."""
    plen, addr = key_of(net)
    return ipaddress.IPv6Network((addr, plen))


def _ttl_ns(ttl, default: int) -> int:
    if ttl is None:
        return default
    if isinstance(ttl, bool):
        raise ControlError(f"--ttl: {ttl!r} is not a duration")
    if isinstance(ttl, int):
        return ttl
    try:
        return parse_duration(ttl, "--ttl")
    except ValueError as e:
        raise ControlError(str(e)) from None


class Blocklist:
    """The blocklist of one program; see the module docstring."""

    def __init__(self, manifest: Manifest | dict, maps, clock: Callable[[], int], *, allow=(),
                 max_entries: int | None = None, default_ttl: int | None = None, max_ttl: int | None = None,
                 enforce: bool = False):
        self.manifest = Manifest.of(manifest)
        f = self.manifest.filters
        if f is None:
            raise ControlError("this program has no blocklist (compiled before filters existed: compile it again)")
        self.filters = f
        self.maps = maps
        self.clock = clock
        self.max_ttl = MAX_TTL_NS if max_ttl is None else max_ttl
        if self.max_ttl <= 0:
            raise ControlError("the longest block (max TTL) must be more than 0")
        self.default_ttl = DEFAULT_TTL_NS if default_ttl is None else default_ttl
        if not 0 < self.default_ttl <= self.max_ttl:
            raise ControlError(f"the default block TTL {_fmt_ns(self.default_ttl)} is not between 0 and the "
                               f"longest allowed, {_fmt_ns(self.max_ttl)}")
        self.max_entries = f.max_entries if max_entries is None else max_entries
        if not 0 < self.max_entries <= f.max_entries:
            raise ControlError(f"a blocklist holds 1 to {f.max_entries:,} prefixes (the program's bound), "
                               f"not {max_entries:,}")
        self.allow: list[tuple[Network, str]] = []
        for a in allow or ():
            text, why = a if isinstance(a, tuple) else (a, "--allow")
            self.allow.append((parse_prefix(text), why))
        self.enforce = bool(enforce)
        self._meta: dict[Network, dict] = {}        # prefix -> reason, by, added_ns, hashed
        self._bits: dict[int, int] = {}             # bit -> hash entries hashing there (the bit array)
        self._hashed: dict[int, int] = {}           # prefix length (program's) -> its entries, in the hash map
        self._trie: dict[int, int] = {}             # prefix length -> its entries, in the trie
        self._counters = {"blocklist.added": 0, "blocklist.renewed": 0, "blocklist.removed": 0,
                          "blocklist.expired": 0, "blocklist.refused_full": 0,
                          "blocklist.refused_allowlist": 0, "blocklist.refused_ttl": 0}
        self._sync()

    @classmethod
    def for_program(cls, manifest, maps, clock, allow=None, max_entries=None, default_ttl=None, max_ttl=None,
                    enforce=None) -> "Blocklist":
        """A running program's blocklist (None: the defaults); starts empty."""
        return cls(manifest, maps, clock, allow=allow or (), max_entries=max_entries, default_ttl=default_ttl,
                   max_ttl=max_ttl, enforce=bool(enforce))

    # ---- the kernel's state -----------------------------------------------------------------
    def _sync(self) -> None:
        """The filter state the program gates on: the exact number of entries, the flags,
        the hash map's lengths, the trie's longest."""
        f = self.filters
        flags = ((f.enforce_flag if self.enforce else 0) | (f.hashed_flag if self._hashed else 0)
                 | (f.prefixes_flag if self._trie else 0))
        self.maps.set_filter_state(len(self._meta), flags, max(self._trie, default=0), sorted(self._hashed))

    def _hashes(self, plen: int) -> bool:
        """Whether a new entry of program prefix length ``plen`` goes to the hash map."""
        if plen in self._hashed:
            return True
        return plen not in self._trie and plen > 0 and len(self._hashed) < self.filters.lens_max

    def _bit(self, plen: int, addr: bytes) -> int:
        """The bit of a hash entry in the program's bit array (compiler/abi.py BLOCKBITS_MUL)."""
        w = struct.unpack("=4I", addr)
        return (((w[0] ^ w[1] ^ w[2] ^ w[3] ^ plen) * self.filters.bits_mul) & 0xFFFFFFFF) >> 16

    def _count(self, net: Network, hashed: bool, delta: int) -> None:
        """An entry added (+1) or gone (-1): its length's count and, in the hash map, its
        bit's count and word in the program."""
        plen, addr = key_of(net)
        lens = self._hashed if hashed else self._trie
        n = lens.get(plen, 0) + delta
        if n:
            lens[plen] = n
        else:
            lens.pop(plen, None)
        if not hashed:
            return
        bit = self._bit(plen, addr)
        n = self._bits.get(bit, 0) + delta
        if n:
            self._bits[bit] = n
        else:
            self._bits.pop(bit, None)
        word = bit >> 6
        self.maps.block_bits_put(word, sum(1 << i for i in range(64) if (word << 6) + i in self._bits))

    def set_enforce(self, on: bool) -> None:
        self.enforce = bool(on)
        self._sync()

    # ---- changes ------------------------------------------------------------------------------
    def _check(self, net: Network) -> None:
        fam = f"ipv{net.version}"
        if fam not in self.filters.families:
            parsed = " and ".join(self.filters.families) or "no IP header"
            raise ControlError(f"cannot block {net}: this program parses {parsed} only (its apps read no "
                               f"{fam} field), so a {fam} block would never match")
        if net.version == 6 and _V4_MAPPED.subnet_of(net):
            raise ControlError(f"cannot block {net}: it holds ::ffff:0:0/96, where the program keeps every "
                               f"IPv4 address, and an IPv6 block never covers IPv4: block 0.0.0.0/0 for all of "
                               f"IPv4, and IPv6 prefixes such as 2000::/3 for IPv6")
        m = _mapped(net)
        for a, why in self.allow:
            if m.overlaps(_mapped(a)):
                self._counters["blocklist.refused_allowlist"] += 1
                how = "is" if net == a else ("contains" if _mapped(a).subnet_of(m) else "is inside")
                raise ControlError(f"cannot block {net}: it {how} the allowed prefix {a} ({why}); "
                                   f"allowed prefixes are never blocked")

    def add(self, prefix: str, ttl=None, reason: str = "", by: str = "ctl") -> dict:
        """Block ``prefix`` for ``ttl`` (ns, text such as ``5m``, None: the default);
        renews it if blocked already. Returns the entry as ``entries()`` lists it."""
        net = parse_prefix(prefix)
        self._check(net)
        ttl_ns = _ttl_ns(ttl, self.default_ttl)
        if not 0 < ttl_ns <= self.max_ttl:
            self._counters["blocklist.refused_ttl"] += 1
            raise ControlError(f"cannot block {net} for {_fmt_ns(ttl_ns) if ttl_ns > 0 else ttl_ns}: a block "
                               f"lasts more than 0 and at most {_fmt_ns(self.max_ttl)} (every block expires; "
                               f"add it again to renew it)")
        renew = net in self._meta
        if not renew and len(self._meta) >= self.max_entries:
            self._counters["blocklist.refused_full"] += 1
            raise ControlError(f"cannot block {net}: the blocklist is full ({self.max_entries:,} prefixes); "
                               f"unblock some, or block a shorter prefix that covers several")
        now = self.clock()
        plen, addr = key_of(net)
        hits = self.maps.block_items().get((plen, addr), (0, 0, 0))[1] if renew else 0
        hashed = self._meta[net]["hashed"] if renew else self._hashes(plen)
        self.maps.block_put(plen, addr, now + ttl_ns, hits, hashed=hashed)
        self._meta[net] = {"reason": reason or "", "by": by, "added_ns": self._meta[net]["added_ns"] if renew
                           else now, "renewed_ns": now if renew else None, "hashed": hashed}
        self._counters["blocklist.renewed" if renew else "blocklist.added"] += 1
        if not renew:
            self._count(net, hashed, +1)
        self._sync()
        return self._entry(net, now + ttl_ns, hits, now)

    def remove(self, prefix: str) -> dict:
        net = parse_prefix(prefix)
        if net not in self._meta:
            have = ", ".join(str(n) for n in list(self._meta)[:5]) or "none"
            raise ControlError(f"{net} is not blocked (blocked: {have}{', ...' if len(self._meta) > 5 else ''})")
        plen, addr = key_of(net)
        expires, hits, _ = self.maps.block_items().get((plen, addr), (0, 0, 0))
        hashed = self._meta[net]["hashed"]
        self.maps.block_delete(plen, addr, hashed=hashed)
        entry = self._entry(net, expires, hits, self.clock())
        del self._meta[net]
        self._counters["blocklist.removed"] += 1
        self._count(net, hashed, -1)
        self._sync()
        return entry

    def sweep(self) -> list[dict]:
        """Remove the entries whose time ran out (the kernel already ignores them)."""
        now = self.clock()
        kernel = self.maps.block_items()
        gone = []
        for net in list(self._meta):
            plen, addr = key_of(net)
            expires, hits, _ = kernel.get((plen, addr), (0, 0, 0))
            if expires <= now:
                hashed = self._meta[net]["hashed"]
                self.maps.block_delete(plen, addr, hashed=hashed)
                gone.append(self._entry(net, expires, hits, now))
                del self._meta[net]
                self._count(net, hashed, -1)
        if gone:
            self._counters["blocklist.expired"] += len(gone)
            self._sync()
        return gone

    # ---- reading --------------------------------------------------------------------------------
    def _entry(self, net: Network, expires: int, hits: int, now: int) -> dict:
        m = self._meta[net]
        return {"prefix": str(net), "expires_ns": expires, "ttl_left_ns": max(0, expires - now), "hits": hits,
                "action": "drop" if self.enforce else "would drop", "reason": m["reason"], "by": m["by"],
                "added_ns": m["added_ns"], "renewed_ns": m["renewed_ns"]}

    def entries(self) -> list[dict]:
        """Every entry, with its hits as the program counted them, by prefix."""
        now = self.clock()
        kernel = self.maps.block_items()
        out = []
        for net in sorted(self._meta, key=lambda n: (n.version, n)):
            expires, hits, _ = kernel.get(key_of(net), (0, 0, 0))
            out.append(self._entry(net, expires, hits, now))
        return out

    def __len__(self) -> int:
        return len(self._meta)

    def counters(self) -> dict:
        """User-space counters, shown with the kernel's (blocklist.logged / .dropped)."""
        return dict(self._counters)
