"""The ABI between the generated XDP program and user space, defined once.

Every constant and fixed layout that both the kernel side and the user side use
lives here and nowhere else:

* the C side gets them rendered: ``codegen_templates/abi.h.j2`` prints the
  ``#define``s and the fixed structs from :func:`c_context`;
* the manifest carries them (``manifest["abi"]``, from :func:`manifest_section`),
  so the runtime reads them instead of knowing them;
* the reference backend (runtime/engines/reference/) and the Python parsers import them.

Layouts that depend on the program (keys, values, event records) are computed by
compiler/layout.py; the parse outcomes are owned by compiler/parse_outcomes.py and
the layer bits by compiler/c_fields.py (both derived from one table each). This
module gathers them for the two renderings above.
"""

from __future__ import annotations

import struct

from .layout import Member, Struct

# ---- bounds of the packet parser ----------------------------------------------------

IPV6_EXT_MAX = 6            # IPv6 extension headers skipped at most (<= 15: see parse.c.j2)
OFF_MASK = 0x7FFF           # the parser's cursor offsets are masked with this (verifier bound)

ETH_P_IPV4 = 0x0800
ETH_P_IPV6 = 0x86DD
ETH_P_8021Q = 0x8100
ETH_P_8021AD = 0x88A8
VLAN_TPIDS = (ETH_P_8021Q, ETH_P_8021AD)
VLAN_MAX_DEPTH = 2          # tags parsed; a third is vlan_too_deep

IPPROTO_HOPOPTS = 0
IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ROUTING = 43
IPPROTO_FRAGMENT = 44
IPPROTO_AH = 51
IPPROTO_ICMPV6 = 58
IPPROTO_DSTOPTS = 60
# IPv6 extension headers the parser skips.
IPV6_EXT = frozenset((IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_FRAGMENT, IPPROTO_AH, IPPROTO_DSTOPTS))

DNS_PORT = 53

# ---- statistics ------------------------------------------------------------------------

# A track table's size is counted in this many buckets of expire/N each.
TRACK_BUCKETS = 8
# HyperLogLog sums 2^-rank in fixed point with this many fraction bits.
HLL_SCALE_BITS = 32
# A count-min counter: the low CMS_COUNT_BITS count, the bits above tag the window
# (the low CMS_TAG_BITS of its epoch), so a new window needs no reset pass.
CMS_COUNT_BITS = 40
CMS_TAG_BITS = 24
assert CMS_COUNT_BITS + CMS_TAG_BITS == 64, "a count-min cell is one u64"
CMS_COUNT_MASK = (1 << CMS_COUNT_BITS) - 1
CMS_TAG_MASK = (1 << CMS_TAG_BITS) - 1

# A keyed map whose key fields' values (dsl Field.value_bits) fit in this many bits
# together, and whose size covers them all, is an array indexed by the key (dns.rcode:
# 16 entries), not a hash map: one lookup with no hashing, no insert, never full.
INDEX_KEY_BITS_MAX = 12
# A fused map no rule reads in the kernel keeps a value per CPU (compiler/percpu.py)
# when one copy of its values takes at most this many bytes: the kernel allocates a copy
# per possible CPU, so a 64-core host gives such a map at most 64 MiB (traffic_accounting's
# 65,536 destinations of packets and bytes: 1 MiB a copy).
PERCPU_COPY_BYTES_MAX = 1 << 20

# ---- events ------------------------------------------------------------------------------

# One ring buffer per program, shared by every app with rules (records carry
# their event's id): 256 KiB per such app, rounded up to a power of two pages
# (the kernel's rule), at most 16 MiB.
RINGBUF_PAGES_PER_APP = 64
RINGBUF_PAGES_MAX = 4096
PAGE_SIZE = 4096
EVENTS_MAP = "xm_events"

# ---- the live clock: bpf_ktime_get_coarse_ns() (CLOCK_MONOTONIC_COARSE: the time of the
# last tick, 1-4 ms old; a read ~20 ns cheaper than bpf_ktime_get_ns() here) where every
# window is at least this long; else bpf_ktime_get_ns() (CLOCK_MONOTONIC). User space
# reads the same clock (the manifest's program.clock; runtime/engines/live.py).
COARSE_CLOCK_MIN_WINDOW_NS = 100_000_000

# ---- entries T2 found, kept for T3 (plan.t2_entries_reused): at most this many maps'
# (each doubles the verifier's paths between T2 and T3: 5 of them took 32 generated apps
# from 198k instructions processed past the verifier's 1M), two in a program estimated
# within a quarter of a stage's budget (all nine specs: 103k -> 136k processed; a SYN of
# a known flow 116 -> 101 ns)
T2_ENTRIES_KEPT = 1
T2_ENTRIES_KEPT_SMALL = 2

# ---- full maps: a keyed map whose insert failed for want of room (E2BIG) is tried again
# only after this long; meanwhile a new key is counted as an insert failure at once,
# without the insert (each CPU keeps its own time in the scratch: compiler/plan.py).
FULL_RETRY_NS = 100_000_000
E2BIG = 7

# ---- sets: an `in { ... }` of more items than this is one map lookup, not code
SET_INLINE_MAX = 16

# ---- stages: a program too long for one XDP program runs as several, chained by
# tail calls through a program array; the packet and the time travel in the scratch.
STAGES_MAP = "xm_stages"
ENTRY_FUNCTION = "xdpmon_main"          # stage 0: the program attached or test-run
STAGE_FUNCTION = "xdpmon_stage{}"       # stages 1, 2, ...
PKT_STRUCT_MAX = 160                    # sizeof(struct xm_pkt) is checked against it in the C
MAX_STAGES = 34                         # the entry point and 33 tail calls: the kernel's MAX_TAIL_CALL_CNT


def ringbuf_pages(n_apps_with_rules: int) -> int:
    want = RINGBUF_PAGES_PER_APP * max(1, n_apps_with_rules)
    return min(RINGBUF_PAGES_MAX, 1 << (want - 1).bit_length())

# ---- filters: the blocklist and the per-interface frame counters ----------------------------
# Every program (live and replay builds) has them; user space (runtime/control/blocklist.py)
# is their one writer. The blocklist is an LPM trie (and the hash map below) keyed by the source address as the
# program holds addresses (16 bytes, IPv4 v4-mapped ::ffff:a.b.c.d, so an IPv4 /24 is
# prefix length 96 + 24). It is consulted right after parsing, before any app, and
# only while the filter state's ``entries`` (kept exact by user space) is non-zero.
BLOCKLIST_MAP = "xm_blocklist"
BLOCKLIST_MAX = 10_000                  # entries at most (the trie's max_entries)
# Most blocks are of a few prefix lengths (/32 and /128 hosts, a /24, a /64): their entries
# live in a hash map keyed like the trie, one exact lookup per length in use instead of a
# walk ~17 levels deep in a trie dense with entries. The filter state lists those lengths,
# longest first, with their masks: at most BLOCK_LENS of them; the entries of any further
# length stay in the trie. The longest live match of either decides (a trie entry carries its
# prefix length, so the program can tell which is longer).
BLOCKHASH_MAP = "xm_blockhash"          # hash: struct xm_block_key -> struct xm_block_v
BLOCK_LENS = 8                          # prefix lengths looked up in the hash map, at most
# A bit per hash of a (length, masked address), set while some hash entry hashes there (user
# space keeps it): a source whose bit is clear at a length has no entry of that length, and
# the hash map is not looked up for it.
BLOCKBITS_MAP = "xm_blockbits"          # array of BLOCKBITS_WORDS __u64
BLOCKBITS_WORDS = 1024                  # 65,536 bits
BLOCKBITS_MUL = 2654435761              # the bit: ((w0 ^ w1 ^ w2 ^ w3 ^ len) * MUL mod 2^32) >> 16, w the
                                        # masked address's four 32-bit words as loaded (host order)
BLOCK_V4_PREFIX = 96                    # prefix length of ::ffff:0:0/96 (an IPv4 /n is 96 + n)
FILTER_MAP = "xm_filter"                # one entry: struct xm_filter
FILTER_ENFORCE = 1                      # xm_filter.flags: drop live matches (else count them only)
FILTER_HASHED = 2                       # xm_filter.flags: the hash map holds entries (of the lengths listed)
FILTER_PREFIXES = 4                     # xm_filter.flags: the trie holds entries (else not looked up)
IFACES_MAP = "xm_ifaces"                # per-CPU hash ifindex -> frames, bytes (user space inserts)
IFACES_MAX = 64

# The trie's key: 20 bytes, not padded to 8 (the template declares it packed as the
# kernel's struct bpf_lpm_trie_key wants: prefix length in host order, then the address).
BLOCK_KEY = Struct("xm_block_key", (
    Member("prefixlen", 0, 4, "__u32", "prefixlen"),
    Member("addr", 4, 16, "__u8[16]", "addr"),
), 20)

BLOCK_VALUE = Struct("xm_block_v", (
    Member("expires", 0, 8, "__u64", "ts"),          # the program's clock: ignored from then on
    Member("hits", 8, 8, "__u64", "count"),          # live matches (atomic add)
    Member("prefixlen", 16, 8, "__u64", "prefixlen"),  # the entry's own prefix length (its key's)
), 24)

FILTER_STATE = Struct("xm_filter", (
    Member("entries", 0, 8, "__u64", "count"),       # entries in the blocklist: 0 skips the lookup
    Member("flags", 8, 8, "__u64", "flags"),         # FILTER_ENFORCE | FILTER_HASHED | FILTER_PREFIXES
    Member("trie_longest", 16, 4, "__u32", "prefixlen"),  # the trie's longest prefix length (FILTER_PREFIXES)
    Member("n_lens", 20, 4, "__u32", "count"),       # lengths in lens[] (FILTER_HASHED)
    Member("n_lens_v4", 24, 4, "__u32", "count"),    # the first of them an IPv4 source tries: those >= 96
    Member("n_ifaces", 28, 4, "__u32", "count"),     # interfaces counted in IFACES_MAP (0: not looked up)
    Member("lens", 32, 4 * BLOCK_LENS, f"__u32[{BLOCK_LENS}]", "prefixlen", count=BLOCK_LENS),      # longest first
    Member("masks", 32 + 4 * BLOCK_LENS, 16 * BLOCK_LENS, f"__u32[{4 * BLOCK_LENS}]", "mask",
           count=4 * BLOCK_LENS),  # lens[i]'s mask
), 32 + 20 * BLOCK_LENS)

IFACE_VALUE = Struct("xm_iface_v", (
    Member("frames", 0, 8, "__u64", "count"),
    Member("bytes", 8, 8, "__u64", "sum"),
), 16)

# ---- bounds of one program (enforced by compiler/limits.py) ---------------------------------

ENABLE_BITS = 64            # the enable mask is one __u64: one bit per on-demand app
MAX_MAPS = 64               # maps one program may use: the kernel's MAX_USED_MAPS (include/linux/bpf.h)
PERCPU_VALUE_MAX = 32_768   # largest value of a per-CPU map: the kernel's PCPU_MIN_UNIT_SIZE

# ---- fixed structs -------------------------------------------------------------------------

TRACK_VALUE = Struct("xm_track_v", (
    Member("opened", 0, 8, "__u64", "ts"),
    Member("bucket", 8, 8, "__u64", "epoch"),
), 16)

TRACK_BUCKET = Struct("xm_bucket", (
    Member("epoch", 0, 8, "__u64", "epoch"),
    Member("count", 8, 8, "__s64", "count"),
), 16)

# An unkeyed HyperLogLog's header: the window its registers are of (their tags),
# the estimator state of that window and, for a windowed sketch, of the window
# before it (kept when a packet of a new window resets the header; 0: none).
HLL_HEADER = Struct("xm_hll_hdr", (
    Member("epoch", 0, 8, "__u64", "epoch"),
    Member("z", 8, 8, "__u64", "hll_z"),
    Member("zeros", 16, 8, "__u64", "hll_zeros"),
    Member("z_last", 24, 8, "__u64", "last_hll_z"),
    Member("zeros_last", 32, 8, "__u64", "last_hll_zeros"),
    Member("est", 40, 8, "__u64", "hll_est"),      # the estimate of z, zeros: kept when they change,
), 48)                                              # so that a rule reads it without recomputing


# The replay build's input under BPF_PROG_TEST_RUN: each frame is preceded by this header,
# which the program reads and strips with bpf_xdp_adjust_head(): the capture time (the
# program's clock) and the frame's length on the wire (pkt.len), which is more than the
# bytes that follow when the capture cut the frame at its snap length.
REPLAY_HEADER = Struct("xm_replay_hdr", (
    Member("ts", 0, 8, "__u64", "ts"),
    Member("wire_len", 8, 4, "__u32", "len"),
    Member("_pad0", 12, 4, "__u32", "pad"),
), 16)
REPLAY_HEADER_PACK = struct.Struct("<QI4x")     # host order, as the program reads it (x86_64, arm64)
assert REPLAY_HEADER_PACK.size == REPLAY_HEADER.size


def params_struct(n_params: int) -> Struct:
    """The params map's one value: every param's current value, by slot."""
    n = max(1, n_params)
    return Struct("xm_params", (Member("v", 0, 8 * n, f"__u64[{n}]", "param", count=n),), 8 * n)


def ctl_struct(n_bits: int) -> Struct:
    """The control map's one value: the enable mask of the on-demand apps, the
    earliest time an enable runs out, and per enable bit the time it runs out."""
    n = max(1, n_bits)
    return Struct("xm_ctl", (
        Member("mask", 0, 8, "__u64", "mask"),
        Member("next_change", 8, 8, "__u64", "ts"),
        Member("until", 16, 8 * n, f"__u64[{n}]", "ts", count=n),
    ), 16 + 8 * n)


def fixed_structs() -> list[Struct]:
    return [TRACK_BUCKET, TRACK_VALUE, HLL_HEADER, BLOCK_VALUE, FILTER_STATE, IFACE_VALUE]


def parser_defines() -> list[tuple[str, int]]:
    """(macro, value) pairs the parser template prints."""
    return [
        ("XM_ETH_P_IPV4", ETH_P_IPV4), ("XM_ETH_P_IPV6", ETH_P_IPV6),
        ("XM_ETH_P_8021Q", ETH_P_8021Q), ("XM_ETH_P_8021AD", ETH_P_8021AD),
        ("XM_IPPROTO_HOPOPTS", IPPROTO_HOPOPTS), ("XM_IPPROTO_ICMP", IPPROTO_ICMP),
        ("XM_IPPROTO_TCP", IPPROTO_TCP), ("XM_IPPROTO_UDP", IPPROTO_UDP),
        ("XM_IPPROTO_ROUTING", IPPROTO_ROUTING), ("XM_IPPROTO_FRAGMENT", IPPROTO_FRAGMENT),
        ("XM_IPPROTO_AH", IPPROTO_AH), ("XM_IPPROTO_ICMPV6", IPPROTO_ICMPV6),
        ("XM_IPPROTO_DSTOPTS", IPPROTO_DSTOPTS), ("XM_DNS_PORT", DNS_PORT),
    ]


def layer_defines() -> list[tuple[str, int]]:
    from .c_fields import LAYER_BITS, LAYER_MACROS
    return [(LAYER_MACROS[layer], bit.bit_length() - 1) for layer, bit in LAYER_BITS.items()]


def outcome_defines() -> list[tuple[str, int]]:
    from .parse_outcomes import COUNT, OUTCOMES
    return [(o.c_name, o.index) for o in OUTCOMES] + [("XM_OUT_COUNT", COUNT)]


def manifest_section() -> dict:
    """What the runtime needs of the ABI, as the manifest's ``abi`` section."""
    from .c_fields import LAYER_BITS
    from .parse_outcomes import OUTCOMES
    return {
        "ipv6_ext_max": IPV6_EXT_MAX,
        "track_buckets": TRACK_BUCKETS,
        "hll_scale_bits": HLL_SCALE_BITS,
        "cms_count_bits": CMS_COUNT_BITS,
        "cms_tag_bits": CMS_TAG_BITS,
        "ringbuf_pages_per_app": RINGBUF_PAGES_PER_APP,
        "ringbuf_pages_max": RINGBUF_PAGES_MAX,
        "enable_bits": ENABLE_BITS,
        "layer_bits": dict(LAYER_BITS),
        "parse_outcomes": [{"index": o.index, "name": o.name, "error": o.error, "doc": o.doc} for o in OUTCOMES],
        "structs": {s.name: s.to_json() for s in fixed_structs() + [BLOCK_KEY, REPLAY_HEADER]},
    }
