/* SPDX-License-Identifier: GPL-2.0
 *
 * The paper's four reference apps written by hand, as one XDP program, for the
 * benchmark against xdpmon's generated program (benchmarks/bench_handwritten.py):
 *
 *   traffic_accounting  packets and bytes per ip.dst            (specs/traffic_accounting.mon)
 *   syn_flood           SYNs per ip.dst per 1 s window; above per_dst, send
 *                       (ip.src, ip.dst, tcp.dport) to user space, at most 1000/s;
 *                       on demand (enabled until ctl.syn_flood_until)  (specs/syn_flood.mon)
 *   flow_watch          distinct (ip.src, ip.dst, l4.sport, l4.dport) per 1 s window
 *                       (HyperLogLog, 4096 registers); above flow_threshold, enable
 *                       syn_flood for 60 s                       (specs/flow_watch.mon)
 *   dns_flows           count, bytes, first and last time per UDP/53 flow; responses
 *                       per rcode                                (specs/dns_flows.mon)
 *
 * It computes what xdpmon's merged program computes, with no generality:
 *   - it parses only what the apps read, and stops as soon as no app wants more
 *     (xdpmon's parser rules, exactly: a header the frame does not hold whole is absent;
 *     a non-first fragment has no L4 header; at most 2 VLAN tags and 6 IPv6 extension
 *     headers);
 *   - statistics only user space reads are per-CPU (plain adds, no atomics): per_dst,
 *     the DNS flows, the rcodes (a 16-slot array indexed by the rcode: no hashing);
 *   - the values a rule reads are shared: the SYN counts (their entry read right after
 *     the add, no second lookup) and the HyperLogLog, whose header and registers are one
 *     array value (one lookup) and whose estimate is recomputed only when a register
 *     grows (it is a function of the header only), not on every packet;
 *   - the 1 s window is found by comparing the clock with the window's bounds kept in
 *     the HyperLogLog header: a 64-bit division only when the window changes;
 *   - the clock is read only for frames that update a windowed or timed statistic (L4).
 * The HyperLogLog uses xdpmon's hash (xm_hash over the same 40-byte key), register
 * layout (window-tagged 64-bit registers: epoch << 8 | rank) and fixed-point estimator,
 * so its estimate is the same number (runtime/abi/hll.py is the Python twin).
 *
 * User space (benchmarks/handwritten/loader.py) decodes the maps into xdpmon's
 * snapshot structure. Every frame gets XDP_PASS.
 */
#include <uapi/linux/bpf.h>
#include <linux/types.h>

#define WINDOW_NS      1000000000ULL    /* syn_flood.syns and flow_watch.flows: window 1s */
#define ENABLE_NS      60000000000ULL   /* flow_watch: enable syn_flood for 60s */
#define RL_INTERVAL_NS 1000000ULL       /* syn_flood: limit 1000/s as GCRA: 1 ms apart ... */
#define RL_PER_NS      1000000000ULL    /* ... at most 1000 in any 1 s */

#define HLL_M        4096               /* registers (xdpmon's default) */
#define HLL_P        12                 /* log2(HLL_M): index bits of the hash */
#define HLL_RANK_MAX 53                 /* 64 - HLL_P + 1 */
#define HLL_S        32                 /* fixed-point bits of the 2^-rank sum */
#define HLL_AM2      12098219ULL        /* alpha_m * m^2 (compiler/plan.py hll_params) */
#define HLL_LOG2M_FP (12ULL << 16)      /* log2(m) in 2^-16 units */

#define DNS_PORT 53

/* ---- maps -------------------------------------------------------------------------- */

/* An address as xdpmon holds it: 16 bytes, IPv4 v4-mapped (::ffff:a.b.c.d). */
struct addr16 {
    __u32 w[4];
};

struct ta_val {                 /* traffic_accounting.per_dst, per CPU */
    __u64 packets;
    __u64 bytes;
};
BPF_TABLE("percpu_hash", struct addr16, struct ta_val, ta_per_dst, 65536);

struct sf_val {                 /* syn_flood.syns: read by the rule, so shared */
    __u64 epoch;                /* the window `count` is of: now / WINDOW_NS + 1 */
    __u64 count;
    __u64 last;                 /* the count of window epoch - 1, kept on the change */
};
BPF_TABLE("hash", struct addr16, struct sf_val, sf_syns, 16384);

struct fw_hll {                 /* flow_watch.flows: header and registers in one value */
    __u64 epoch;                /* the window of z and zeros */
    __u64 start;                /* [start, start + WINDOW_NS): that window, in ns */
    __u64 z;                    /* sum of 2^-register, HLL_S fixed point */
    __u64 zeros;                /* registers still 0 */
    __u64 z_last;               /* z and zeros of window epoch - 1, kept on the change */
    __u64 zeros_last;
    __u64 est;                  /* the estimate of (z, zeros), kept up to date */
    __u64 reg[HLL_M];           /* epoch << 8 | rank: a register of another window reads 0 */
};
BPF_ARRAY(fw_hll, struct fw_hll, 1);

struct dns_key {                /* dns_flows.flows */
    struct addr16 src;
    struct addr16 dst;
    __u16 sport;                /* host order */
    __u16 dport;
    __u32 pad;
};
struct dns_val {                /* per CPU; user space sums, takes the min and the max */
    __u64 count;
    __u64 bytes;
    __u64 first;                /* this CPU's first packet (the clock never goes back) */
    __u64 last;                 /* this CPU's last packet */
};
BPF_TABLE("percpu_hash", struct dns_key, struct dns_val, dns_flows, 16384);
BPF_PERCPU_ARRAY(dns_rcodes, __u64, 16);        /* dns_flows.rcodes: by the 4-bit rcode */

struct hw_ctl {                 /* params, the enable time and the rate limiter */
    __u64 syn_flood_until;      /* syn_flood runs while now < this */
    __u64 per_dst;              /* param syn_flood.per_dst */
    __u64 flow_threshold;       /* param flow_watch.flow_threshold */
    __u64 tat;                  /* syn_flood's GCRA: the next allowed time */
};
BPF_ARRAY(hw_ctl, struct hw_ctl, 1);

/* Events for user space, in the order they happened (256 KiB). */
BPF_RINGBUF_OUTPUT(hw_events, 64);
#define EV_SYN_FLOOD  1
#define EV_ENABLE     2
struct ev_syn_flood {
    __u64 ts;
    __u32 type;                 /* EV_SYN_FLOOD */
    __u16 dport;                /* tcp.dport, host order */
    __u16 pad;
    struct addr16 src;
    struct addr16 dst;
};
struct ev_enable {
    __u64 ts;
    __u32 type;                 /* EV_ENABLE: flow_watch switched syn_flood on */
    __u32 pad;
};

/* What is never silent: sends over the limit, records lost, inserts into full maps. */
#define C_SF_RATE_LIMITED 0
#define C_SF_RINGBUF_FULL 1
#define C_FW_RINGBUF_FULL 2
#define C_TA_FULL         3
#define C_SF_FULL         4
#define C_DNS_FULL        5
#define C_N               6
BPF_PERCPU_ARRAY(hw_counters, __u64, C_N);

#define ZERO_KEY (&(__u32){0})

static __always_inline void count(__u32 i)
{
    __u64 *c = hw_counters.lookup(&i);
    if (c)
        *c += 1;
}

/* ---- the HyperLogLog: xdpmon's hash, rank and estimator ------------------------------ */

static __always_inline __u64 fmix64(__u64 k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return k;
}

static __always_inline __u64 hash_step(__u64 h, __u64 w)
{
    return (h ^ fmix64(w)) * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL;
}

/* xm_hash(words, 5, seed 0) of the key {ip.dst[16], ip.src[16], l4.dport, l4.sport, pad}
 * as little-endian words: w4 = dport | sport << 16. For IPv4, w0 and w2 are 0 (and
 * fmix64(0) is 0): clang folds those steps. */
static __always_inline __u64 flow_hash(__u64 w0, __u64 w1, __u64 w2, __u64 w3, __u64 w4)
{
    __u64 h = 5;                /* seed * K + n words */
    h = hash_step(h, w0);
    h = hash_step(h, w1);
    h = hash_step(h, w2);
    h = hash_step(h, w3);
    h = hash_step(h, w4);
    return fmix64(h);
}

/* 1 + trailing zeros of w, at most HLL_RANK_MAX (w < 2^52: never above it but for 0). */
static __always_inline __u64 hll_rank(__u64 w)
{
    __u64 n = 1;
    if (!w)
        return HLL_RANK_MAX;
    if (!(w & 0xffffffffULL)) { n += 32; w >>= 32; }
    if (!(w & 0xffffULL))     { n += 16; w >>= 16; }
    if (!(w & 0xffULL))       { n += 8;  w >>= 8; }
    if (!(w & 0xfULL))        { n += 4;  w >>= 4; }
    if (!(w & 0x3ULL))        { n += 2;  w >>= 2; }
    if (!(w & 0x1ULL))        { n += 1; }
    return n > HLL_RANK_MAX ? HLL_RANK_MAX : n;
}

/* 2^-r in HLL_S fixed point. */
static __always_inline __u64 hll_pow(__u64 r)
{
    return r > HLL_S ? 0 : (1ULL << HLL_S) >> r;
}

/* floor(log2(x)) for x >= 1. */
static __always_inline __u32 log2_floor(__u64 v)
{
    __u32 b = 0;
    if (v >> 32) { b += 32; v >>= 32; }
    if (v >> 16) { b += 16; v >>= 16; }
    if (v >> 8)  { b += 8;  v >>= 8; }
    if (v >> 4)  { b += 4;  v >>= 4; }
    if (v >> 2)  { b += 2;  v >>= 2; }
    if (v >> 1)  { b += 1; }
    return b;
}

/* log2(x) in 2^-16 units, x >= 1, by repeated squaring (as xdpmon's xm_log2_fp). */
static __always_inline __u64 log2_fp(__u64 x)
{
    __u32 n = log2_floor(x);
    __u64 y = n >= 31 ? x >> (n - 31) : x << (31 - n);
    __u64 r = (__u64)n << 16;
#pragma unroll
    for (int i = 0; i < 16; i++) {
        y = (y * y) >> 31;
        if (y >= (1ULL << 32)) {
            y >>= 1;
            r |= 1ULL << (15 - i);
        }
    }
    return r;
}

/* The estimate of (z, zeros): alpha m^2 / z, linear counting below 5m/2 (as xdpmon). */
static __always_inline __u64 hll_estimate(__u64 z, __u64 zeros)
{
    __u64 q = z >> 16;
    if (!q)
        q = 1;
    __u64 e = (HLL_AM2 << 16) / q;
    if (e <= 5 * HLL_M / 2 && zeros > 0)
        e = (HLL_M * (HLL_LOG2M_FP - log2_fp(zeros)) * 45426ULL) >> 32;   /* m ln(m/zeros) */
    return e;
}

/* The HyperLogLog of the window `now` is in: a new window keeps the last one's z and
 * zeros (if it was the window just before) and starts with every register at 0 (their
 * tags are of another window). Returns that window's epoch. */
static __always_inline __u64 hll_window(struct fw_hll *hd, __u64 now)
{
    if (hd->epoch && now - hd->start < WINDOW_NS)      /* false too when now < start */
        return hd->epoch;
    __u64 ep = now / WINDOW_NS + 1;
    int keep = hd->epoch == ep - 1;
    hd->z_last = keep ? hd->z : 0;
    hd->zeros_last = keep ? hd->zeros : 0;
    hd->epoch = ep;
    hd->start = (ep - 1) * WINDOW_NS;
    hd->z = (__u64)HLL_M << HLL_S;
    hd->zeros = HLL_M;
    hd->est = hll_estimate(hd->z, hd->zeros);
    return ep;
}

/* Add the flow of hash h to the sketch of window ep. */
static __always_inline void hll_add(struct fw_hll *hd, __u64 ep, __u64 h)
{
    __u32 i = h & (HLL_M - 1);
    __u64 r = hll_rank(h >> HLL_P);
    __u64 reg = hd->reg[i];
    __u64 old = (reg >> 8) == ep ? (reg & 0xff) : 0;
    if (r <= old)
        return;                                 /* the common case: nothing changes */
    hd->reg[i] = (ep << 8) | r;
    hd->z = hd->z - hll_pow(old) + hll_pow(r);
    if (old == 0)
        hd->zeros -= 1;
    hd->est = hll_estimate(hd->z, hd->zeros);
}

/* ---- the apps ------------------------------------------------------------------------ */

/* traffic_accounting: one per-CPU entry per destination; a new one is inserted with this
 * packet's values (other CPUs' copies start at 0). */
static __always_inline void traffic_accounting(struct addr16 *dst, __u64 len)
{
    struct ta_val *v = ta_per_dst.lookup(dst);
    if (v) {
        v->packets += 1;
        v->bytes += len;
        return;
    }
    struct ta_val init = {1, len};
    int rc = ta_per_dst.insert(dst, &init);
    if (rc == -17) {                            /* EEXIST: another CPU inserted it meanwhile */
        v = ta_per_dst.lookup(dst);
        if (v) {
            v->packets += 1;
            v->bytes += len;
        }
    } else if (rc) {
        count(C_TA_FULL);
    }
}

/* syn_flood, for a SYN without ACK while it is enabled: count it in its destination's
 * window, then the rule: above per_dst, send the packet's fields (rate-limited). */
static __always_inline void syn_flood(struct hw_ctl *ctl, struct addr16 *src, struct addr16 *dst, __u16 dport,
                                      __u64 now, __u64 ep)
{
    __u64 n;
    struct sf_val *v = sf_syns.lookup(dst);
    if (v) {
        if (v->epoch != ep) {                   /* another window: keep the last, restart */
            v->last = v->epoch == ep - 1 ? v->count : 0;
            v->epoch = ep;
            v->count = 0;
        }
        __sync_fetch_and_add(&v->count, 1);
        n = v->count;
    } else {
        struct sf_val init = {ep, 1, 0};
        int rc = sf_syns.insert(dst, &init);
        if (rc == -17) {                        /* EEXIST: another CPU inserted it */
            v = sf_syns.lookup(dst);
            if (!v)
                return;
            __sync_fetch_and_add(&v->count, 1);
            n = v->count;
        } else if (rc) {
            count(C_SF_FULL);
            return;                             /* no entry: the rule reads nothing */
        } else {
            n = 1;
        }
    }
    if (n <= ctl->per_dst)
        return;
    /* limit 1000/s (GCRA) */
    __u64 t = ctl->tat > now ? ctl->tat : now;
    if (t - now + RL_INTERVAL_NS > RL_PER_NS) {
        count(C_SF_RATE_LIMITED);
        return;
    }
    ctl->tat = t + RL_INTERVAL_NS;
    struct ev_syn_flood *e = hw_events.ringbuf_reserve(sizeof(*e));
    if (!e) {
        count(C_SF_RINGBUF_FULL);
        return;
    }
    e->ts = now;
    e->type = EV_SYN_FLOOD;
    e->dport = dport;
    e->pad = 0;
    e->src = *src;
    e->dst = *dst;
    hw_events.ringbuf_submit(e, 0);
}

/* flow_watch's rule, after its sketch took this packet: above flow_threshold, syn_flood
 * runs until now + 60 s (an event when it was off). */
static __always_inline void flow_watch_rule(struct hw_ctl *ctl, struct fw_hll *hd, __u64 now)
{
    if (hd->est <= ctl->flow_threshold)
        return;
    __u64 until = now + ENABLE_NS;
    int was_off = ctl->syn_flood_until <= now;
    if (ctl->syn_flood_until < until)
        ctl->syn_flood_until = until;
    if (!was_off)
        return;
    struct ev_enable *e = hw_events.ringbuf_reserve(sizeof(*e));
    if (!e) {
        count(C_FW_RINGBUF_FULL);
        return;
    }
    e->ts = now;
    e->type = EV_ENABLE;
    e->pad = 0;
    hw_events.ringbuf_submit(e, 0);
}

/* dns_flows.flows: one per-CPU entry per flow. */
static __always_inline void dns_add(struct dns_val *v, __u64 len, __u64 now)
{
    if (!v->count)                              /* this CPU's first packet of the flow */
        v->first = now;
    v->count += 1;
    v->bytes += len;
    v->last = now;                              /* the clock never goes back on a CPU */
}

static __always_inline void dns_flow(struct dns_key *k, __u64 len, __u64 now)
{
    struct dns_val *v = dns_flows.lookup(k);
    if (v) {
        dns_add(v, len, now);
        return;
    }
    struct dns_val init = {1, len, now, now};
    int rc = dns_flows.insert(k, &init);
    if (rc == -17) {                            /* EEXIST: another CPU inserted it meanwhile */
        v = dns_flows.lookup(k);
        if (v)
            dns_add(v, len, now);
    } else if (rc) {
        count(C_DNS_FULL);
    }
}

/* ---- parsing helpers ---------------------------------------------------------------- */

#define ETH_P_IPV4   0x0800
#define ETH_P_IPV6   0x86DD
#define ETH_P_8021Q  0x8100
#define ETH_P_8021AD 0x88A8

static __always_inline int is_vlan(__be16 t)
{
    return t == bpf_htons(ETH_P_8021Q) || t == bpf_htons(ETH_P_8021AD);
}

static __always_inline int is_ipv6_ext(__u8 nh)
{
    return nh == 0 || nh == 43 || nh == 44 || nh == 60 || nh == 51;
}

/* libbpf's barrier_var(): clang forgets what it knew of v (keeps the masks below). */
#define barrier_var(v) asm volatile("" : "+r"(v))
#define OFF_MASK 0x7fff

/* Skip up to 6 IPv6 extension headers from offset *off (xdpmon's rules): returns the
 * upper-layer protocol, or -1 when the frame has no L4 header for the apps (a non-first
 * fragment, a header cut short, more than 6). Rare: only IPv6 with extension headers. */
static __always_inline int ipv6_skip_ext(void *data, void *end, __u32 *off, __u8 nh)
{
#pragma unroll
    for (int i = 0; i < 6; i++) {
        if (!is_ipv6_ext(nh))
            return nh;
        __u32 o = *off;
        barrier_var(o);
        o &= OFF_MASK;
        __u8 *h = data + o;
        if ((void *)(h + 8) > end)
            return -1;
        __u32 hlen;
        if (nh == 44) {                         /* fragment header */
            __u16 fo = ((__u16)h[2] << 8) | h[3];
            if (fo & 0xfff8)                    /* non-first fragment */
                return -1;
            hlen = 8;
        } else if (nh == 51) {                  /* AH: (len + 2) * 4 */
            hlen = ((__u32)h[1] + 2) << 2;
        } else {                                /* (len + 1) * 8 */
            hlen = ((__u32)h[1] + 1) << 3;
        }
        nh = h[0];
        barrier_var(hlen);
        hlen &= 0xfff;
        o = (o + hlen) & OFF_MASK;
        if (data + o > end)
            return -1;
        *off = o;
    }
    return is_ipv6_ext(nh) ? -1 : nh;
}

/* ---- the program --------------------------------------------------------------------- */

/* The entry point: named as runtime/dataplane/loader.py loads it (loader.FUNCTION). */
int xdpmon_main(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;
    __u8 *eth = data;

    if ((void *)(eth + 14) > end)
        return XDP_PASS;
    __u32 off = 14;
    __be16 type = *(__be16 *)(eth + 12);
    if (is_vlan(type)) {                        /* at most 2 tags; a third: not IP */
        if ((void *)(eth + 18) > end)
            return XDP_PASS;
        type = *(__be16 *)(eth + 16);
        off = 18;
        if (is_vlan(type)) {
            if ((void *)(eth + 22) > end)
                return XDP_PASS;
            type = *(__be16 *)(eth + 20);
            off = 22;
            if (is_vlan(type))
                return XDP_PASS;
        }
    }

    struct addr16 src, dst;
    __u8 proto;
    __u32 l4off;
    __u64 len = (__u64)(ctx->data_end - ctx->data);   /* pkt.len: a single-buffer program sees linear frames only */

    if (type == bpf_htons(ETH_P_IPV4)) {
        __u8 *ip = data + off;
        if ((void *)(ip + 20) > end)
            return XDP_PASS;
        __u8 vihl = ip[0];
        __u32 ihl = (vihl & 0x0f) << 2;
        if ((vihl >> 4) != 4 || ihl < 20)
            return XDP_PASS;
        if ((void *)(ip + ihl) > end)           /* options included */
            return XDP_PASS;
        dst.w[0] = 0;
        dst.w[1] = 0;
        dst.w[2] = bpf_htonl(0x0000ffff);
        dst.w[3] = *(__u32 *)(ip + 16);
        traffic_accounting(&dst, len);
        if (*(__be16 *)(ip + 6) & bpf_htons(0x1fff))
            return XDP_PASS;                    /* a non-first fragment: no L4 header */
        src.w[0] = 0;
        src.w[1] = 0;
        src.w[2] = bpf_htonl(0x0000ffff);
        src.w[3] = *(__u32 *)(ip + 12);
        proto = ip[9];
        l4off = off + ihl;
    } else if (type == bpf_htons(ETH_P_IPV6)) {
        __u8 *ip6 = data + off;
        if ((void *)(ip6 + 40) > end)
            return XDP_PASS;
        if ((ip6[0] >> 4) != 6)
            return XDP_PASS;
        __builtin_memcpy(&dst, ip6 + 24, 16);
        traffic_accounting(&dst, len);
        __builtin_memcpy(&src, ip6 + 8, 16);
        l4off = off + 40;
        int nh = ip6[6];
        if (is_ipv6_ext(nh)) {
            nh = ipv6_skip_ext(data, end, &l4off, nh);
            if (nh < 0)
                return XDP_PASS;
        }
        proto = nh;
    } else {
        return XDP_PASS;
    }

    /* L4: the apps but traffic_accounting. */
    l4off &= OFF_MASK;
    __u8 *l4 = data + l4off;
    __u16 sport, dport;
    __u8 tcp_flags = 0;
    if (proto == 6) {
        if ((void *)(l4 + 20) > end)
            return XDP_PASS;
        __u32 doff = (l4[12] >> 4) << 2;
        if (doff < 20 || (void *)(l4 + doff) > end)
            return XDP_PASS;                    /* no whole TCP header: no l4 */
        tcp_flags = l4[13];
    } else if (proto == 17) {
        if ((void *)(l4 + 8) > end)
            return XDP_PASS;
    } else {
        return XDP_PASS;
    }
    sport = bpf_ntohs(*(__be16 *)l4);
    dport = bpf_ntohs(*(__be16 *)(l4 + 2));

    __u64 now = bpf_ktime_get_coarse_ns();   /* 1 s windows: the last tick's time will do, as xdpmon's */
    struct hw_ctl *ctl = hw_ctl.lookup(ZERO_KEY);
    struct fw_hll *hd = fw_hll.lookup(ZERO_KEY);
    if (!ctl || !hd)
        return XDP_PASS;
    __u64 ep = hll_window(hd, now);

    /* syn_flood: a SYN without ACK, while enabled (before flow_watch's rule may enable it). */
    if (proto == 6 && (tcp_flags & 0x12) == 0x02 && now < ctl->syn_flood_until)
        syn_flood(ctl, &src, &dst, dport, now, ep);

    /* dns_flows: UDP with either port 53; rcodes of responses with a whole DNS header. */
    if (proto == 17 && (sport == DNS_PORT || dport == DNS_PORT)) {
        struct dns_key k = {.src = src, .dst = dst, .sport = sport, .dport = dport, .pad = 0};
        dns_flow(&k, len, now);
        __u8 *dns = l4 + 8;
        if ((void *)(dns + 12) <= end && (dns[2] & 0x80)) {     /* QR */
            __u32 rcode = dns[3] & 0x0f;
            __u64 *c = dns_rcodes.lookup(&rcode);
            if (c)
                *c += 1;
        }
    }

    /* flow_watch: the flow into the sketch, then its rule. */
    __u64 w4 = (__u64)dport | ((__u64)sport << 16);
    __u64 h = flow_hash(((__u64)dst.w[1] << 32) | dst.w[0], ((__u64)dst.w[3] << 32) | dst.w[2],
                        ((__u64)src.w[1] << 32) | src.w[0], ((__u64)src.w[3] << 32) | src.w[2], w4);
    hll_add(hd, ep, h);
    flow_watch_rule(ctl, hd, now);
    return XDP_PASS;
}
