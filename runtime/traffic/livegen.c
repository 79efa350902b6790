/* xdpmon live traffic generator: the XDP program that BPF_PROG_TEST_RUN runs with
 * BPF_F_TEST_XDP_LIVE_FRAMES (runtime/traffic/livegen.py).
 *
 * The kernel builds each frame from the one template user space gave (data_in)
 * and runs this program on it; XDP_TX sends the frame out of the test run's
 * ingress interface (the kernel turns it into a redirect to that ifindex),
 * XDP_REDIRECT out of cfg->ifindex. Frames live in recycled pages that keep what
 * an earlier run wrote, so every rewritten field is written from the template's
 * values in lg_cfg, never adjusted from what the page holds.
 *
 * Per frame: n = this CPU's frame number (lg_state.frames, counted here); the IPv4 source is
 * src_base + n % src_count and the L4 source port sport_base + (n / src_count) %
 * sport_count, so src_count x sport_count distinct flows in turn. The IPv4 header
 * checksum and the TCP checksum (which covers the source address and port) are
 * updated incrementally from the template's; a UDP checksum is 0 (none, IPv4).
 */
#include <uapi/linux/bpf.h>

struct lg_cfg {
    __u32 src_base;        /* first source address, host order */
    __u32 src_count;       /* sources in turn (>= 1) */
    __u32 sport_count;     /* source ports in turn (>= 1) */
    __u16 sport_base;      /* first source port, host order */
    __u16 ip_check;        /* the template's IPv4 header checksum, as in the frame */
    __u16 l4_check;        /* the template's TCP checksum, as in the frame */
    __u16 l4_check_off;    /* LG_TCPCSUM_OFF: rewrite the TCP checksum; 0: no L4 checksum */
    __u32 action;          /* XDP_TX or XDP_REDIRECT */
    __u32 ifindex;         /* XDP_REDIRECT's target */
    __u32 in_ifindex;      /* the test run's ingress interface: frames from elsewhere pass */
};

struct lg_state {
    __u64 frames;          /* frames this program handed to the kernel to send */
};

BPF_ARRAY(lg_config, struct lg_cfg, 1);
BPF_PERCPU_ARRAY(lg_counter, struct lg_state, 1);   /* per CPU: senders on several CPUs */

#define LG_ETH_LEN 14
#define LG_SADDR_OFF (LG_ETH_LEN + 12)
#define LG_IPCSUM_OFF (LG_ETH_LEN + 10)
#define LG_SPORT_OFF (LG_ETH_LEN + 20)   /* IPv4 without options: the template's */
#define LG_TCPCSUM_OFF (LG_SPORT_OFF + 16)

/* One's complement: replace the 32-bit word `from` by `to` in a checksum (RFC 1624).
 * Byte order does not matter as long as all three are taken from memory alike. */
static __always_inline __u16 lg_csum_replace(__u16 check, __u32 from, __u32 to)
{
    __u32 sum = (__u16)~check;
    sum += (~from >> 16) & 0xffff;
    sum += ~from & 0xffff;
    sum += to >> 16;
    sum += to & 0xffff;
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return (__u16)~sum;
}

int livegen(struct xdp_md *ctx)
{
    __u32 zero = 0;
    struct lg_cfg *cfg = lg_config.lookup(&zero);
    struct lg_state *st = lg_counter.lookup(&zero);
    if (!cfg || !st)
        return XDP_ABORTED;
    /* The program is also attached to the sender namespace's loopback (generic XDP,
     * see livegen.py: that keeps it in the kernel's XDP dispatcher, so a test run
     * does not rebuild the dispatcher): whatever arrives there is left alone. */
    if (ctx->ingress_ifindex != cfg->in_ifindex)
        return XDP_PASS;
    void *data = (void *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;
    if (data + LG_TCPCSUM_OFF + 2 > end)   /* every template has 60 bytes or more */
        return XDP_ABORTED;

    /* this CPU's count: one sending thread per CPU, so a plain increment is exact */
    __u64 n = st->frames++;
    __u32 src_count = cfg->src_count ? cfg->src_count : 1;
    __u32 sport_count = cfg->sport_count ? cfg->sport_count : 1;
    __u32 src_base = __builtin_bswap32(cfg->src_base);
    __u32 src = __builtin_bswap32(cfg->src_base + (__u32)(n % src_count));
    __u16 sport_base = __builtin_bswap16(cfg->sport_base);
    __u16 sport = __builtin_bswap16(cfg->sport_base + (__u16)((n / src_count) % sport_count));

    __builtin_memcpy(data + LG_SADDR_OFF, &src, 4);
    __builtin_memcpy(data + LG_SPORT_OFF, &sport, 2);
    __u16 ipc = lg_csum_replace(cfg->ip_check, src_base, src);
    __builtin_memcpy(data + LG_IPCSUM_OFF, &ipc, 2);

    if (cfg->l4_check_off == LG_TCPCSUM_OFF) {
        /* the pseudo-header's source address, then the source port (as a 32-bit word
         * with a zero half: the same sum) */
        __u16 c = lg_csum_replace(cfg->l4_check, src_base, src);
        c = lg_csum_replace(c, sport_base, sport);
        __builtin_memcpy(data + LG_TCPCSUM_OFF, &c, 2);
    }
    if (cfg->action == XDP_REDIRECT)
        return bpf_redirect(cfg->ifindex, 0);
    return XDP_TX;
}
