/* The new-flow wrapper: every run of it is a packet of a new flow.
 *
 * Under BPF_PROG_TEST_RUN the kernel runs a program `repeat` times on ONE buffer,
 * and what a run writes into the packet is still there for the next. This program
 * uses that on purpose: it adds 1 to the IPv4 source address (fixing the IPv4 and
 * TCP/UDP checksums incrementally, RFC 1624) and then tail-calls the program under
 * test (slot 0 of xb_target). Repeat n therefore sees source base + n: a new flow
 * for every statistic keyed by the source.
 *
 * Anything it cannot do is XDP_ABORTED (a non-IPv4 frame, a frame too short, an
 * empty slot), which the harness's checks catch: the program under test returns
 * XDP_PASS for every frame.
 */
#include <uapi/linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/in.h>

BPF_PROG_ARRAY(xb_target, 1);

/* The ones'-complement sum `check` after a 32-bit word of the data went from
 * `from` to `to` (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')), in network order. */
static __always_inline __u16 xb_csum_replace4(__u16 check, __u32 from, __u32 to)
{
    __u32 sum = (__u16)~check;
    sum += (__u16)~(from >> 16) + (__u16)~(from & 0xffff);
    sum += (to >> 16) + (to & 0xffff);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return (__u16)~sum;
}

int xb_newflow(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    struct iphdr *ip = data + sizeof(*eth);
    if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5)
        return XDP_ABORTED;

    __u32 from = ip->saddr;
    __u32 to = bpf_htonl(bpf_ntohl(from) + 1);     /* the next source address */
    ip->saddr = to;
    ip->check = xb_csum_replace4(ip->check, from, to);
    if (ip->protocol == IPPROTO_TCP) {              /* the pseudo-header holds the source too */
        struct tcphdr *tcp = (void *)(ip + 1);
        if ((void *)(tcp + 1) <= end)
            tcp->check = xb_csum_replace4(tcp->check, from, to);
    }

    xb_target.call(ctx, 0);                         /* does not return when it succeeds */
    return XDP_ABORTED;
}
