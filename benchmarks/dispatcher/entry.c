/* SPDX-License-Identifier: GPL-2.0
 *
 * The dispatcher's entry program (benchmarks/dispatcher/): what a multi-program system
 * runs first on every frame. It parses the outer headers (Ethernet, up to two VLAN
 * tags, the IP version), keeps the counters every app shares (frames, bytes, IPv4,
 * IPv6, other), then tail-calls the first app program of the chain, index 0; each app
 * program tail-calls the next (benchmarks/dispatcher/wrap.py).
 *
 * The program array and the shared counters are public BCC tables: the app programs,
 * compiled and loaded separately in the same process, declare them "extern" (BCC hands
 * them the same map fds). @CHAIN@ and @SHARED@ are replaced by names unique to one
 * dispatcher (loader.py), so that two dispatchers in one process never share them.
 */
#include <uapi/linux/bpf.h>
#include <linux/types.h>

#define XD_FRAMES          0
#define XD_BYTES           1
#define XD_IPV4            2
#define XD_IPV6            3
#define XD_OTHER           4
#define XD_ENTRY_CALL_FAIL 5    /* the tail call to app 0 failed */
#define XD_APP_CALL_FAIL   6    /* an app program's tail call to the next failed */
#define XD_N               8

BPF_TABLE_PUBLIC("prog", int, int, @CHAIN@, 8);
BPF_TABLE_PUBLIC("percpu_array", int, __u64, @SHARED@, XD_N);

static __always_inline void xd_add(__u32 i, __u64 n)
{
    __u64 *c = @SHARED@.lookup(&i);
    if (c)
        *c += n;
}

static __always_inline int xd_is_vlan(__be16 t)
{
    return t == bpf_htons(0x8100) || t == bpf_htons(0x88A8);
}

int xdpmon_main(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;
    __u8 *eth = data;
    __u32 kind = XD_OTHER;

    xd_add(XD_FRAMES, 1);
    xd_add(XD_BYTES, bpf_xdp_get_buff_len(ctx));
    if ((void *)(eth + 14) <= end) {
        __be16 type = *(__be16 *)(eth + 12);
        __u32 off = 14;
#pragma unroll
        for (int i = 0; i < 2; i++) {
            if (!xd_is_vlan(type) || (void *)(eth + off + 4) > end)
                break;
            type = *(__be16 *)(eth + off + 2);
            off += 4;
        }
        if (type == bpf_htons(0x0800))
            kind = XD_IPV4;
        else if (type == bpf_htons(0x86DD))
            kind = XD_IPV6;
    }
    xd_add(kind, 1);
    @CHAIN@.call(ctx, 0);
    xd_add(XD_ENTRY_CALL_FAIL, 1);              /* reached only if the tail call failed */
    return XDP_PASS;
}
