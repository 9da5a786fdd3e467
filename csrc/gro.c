/* Receive coalescing toward hosts: see gro.h. */
#include <string.h>
#include "csum.h"
#include "eth.h"
#include "gro.h"
#include "ipv4.h"
#include "ipv6.h"
#include "vtep_packet.h"

enum { TCP_PSH = 0x08, TCP_ACK = 0x10, TCP_HLEN = 20, TCP_CHECK = 16 };

static uint32_t l4_offset(const vtep_gro_seg_t *s)
{
    return VTEP_ETH_HLEN + (s->ipv6 ? VTEP_IPV6_HLEN : VTEP_IPV4_HLEN);
}

int vtep_gro_parse(const uint8_t *f, uint32_t len, vtep_gro_seg_t *s)
{
    const uint8_t *ip = f + VTEP_ETH_HLEN;
    uint32_t l4_len;
    uint64_t sum;
    if (len < VTEP_ETH_HLEN + VTEP_IPV4_HLEN)
        return 0;
    uint16_t type = vtep_get_be16(f + 12);
    if (type == VTEP_ETH_P_IPV4) {
        /* No options, no fragment, and a right header checksum: the
         * super-frame's header is recomputed, and must not hide a bad one. */
        if (ip[0] != 0x45 || ip[9] != VTEP_IPPROTO_TCP || vtep_get_be16(ip + 6) & (VTEP_IPV4_MF | VTEP_IPV4_OFFSET)
            || vtep_csum_fold(vtep_csum_add(0, ip, VTEP_IPV4_HLEN)) != 0xffff)
            return 0;
        uint32_t total = vtep_get_be16(ip + 2);
        if (total < VTEP_IPV4_HLEN + TCP_HLEN || VTEP_ETH_HLEN + total > len)
            return 0;
        s->ipv6 = 0;
        l4_len = total - VTEP_IPV4_HLEN;
        sum = vtep_csum_add(0, ip + 12, 8);
    } else if (type == VTEP_ETH_P_IPV6) {
        if (len < VTEP_ETH_HLEN + VTEP_IPV6_HLEN || ip[0] >> 4 != 6 || ip[6] != VTEP_IPPROTO_TCP)
            return 0;
        l4_len = vtep_get_be16(ip + 4);
        if (l4_len < TCP_HLEN || VTEP_ETH_HLEN + VTEP_IPV6_HLEN + l4_len > len)
            return 0;
        s->ipv6 = 1;
        sum = vtep_csum_add(0, ip + 8, 32);
    } else {
        return 0;
    }
    uint32_t l4 = l4_offset(s);
    const uint8_t *th = f + l4;
    uint32_t doff = (th[12] >> 4) * 4u;
    /* ACK, and PSH at most: SYN, FIN, RST, URG and the ECN flags end a run
     * (as in the kernel's GRO), and the reserved bits must be clear. */
    if (doff < TCP_HLEN || doff >= l4_len || (th[12] & 0x0f) || (th[13] & ~TCP_PSH) != TCP_ACK)
        return 0;
    sum += VTEP_IPPROTO_TCP + l4_len;
    if (vtep_csum_fold(vtep_csum_add(sum, th, l4_len)) != 0xffff)
        return 0;
    s->frame = f;
    s->hdr_len = l4 + doff;
    s->payload_len = l4_len - doff;
    s->seq = vtep_get_be32(th + 4);
    s->psh = (th[13] & TCP_PSH) != 0;
    return 1;
}

/* Whether "n" has the headers of "a" but for what differs from one segment
 * of a TSO cut to the next: IP lengths, IPv4 ID and checksum, TCP sequence
 * number, checksum and the PSH flag. */
static int same_headers(const vtep_gro_seg_t *a, const vtep_gro_seg_t *n)
{
    const uint8_t *x = a->frame, *y = n->frame;
    if (memcmp(x, y, VTEP_ETH_HLEN))
        return 0;
    x += VTEP_ETH_HLEN;
    y += VTEP_ETH_HLEN;
    if (a->ipv6) {
        if (memcmp(x, y, 4) || memcmp(x + 6, y + 6, VTEP_IPV6_HLEN - 6))
            return 0;
        x += VTEP_IPV6_HLEN;
        y += VTEP_IPV6_HLEN;
    } else {
        if (memcmp(x, y, 2) || memcmp(x + 6, y + 6, 4) || memcmp(x + 12, y + 12, 8))
            return 0;
        x += VTEP_IPV4_HLEN;
        y += VTEP_IPV4_HLEN;
    }
    uint32_t doff = a->hdr_len - l4_offset(a);
    return !memcmp(x, y, 4) && !memcmp(x + 8, y + 8, 5) && (x[13] & ~TCP_PSH) == (y[13] & ~TCP_PSH)
        && !memcmp(x + 14, y + 14, 2) && !memcmp(x + 18, y + 18, doff - 18);
}

int vtep_gro_follows(const vtep_gro_seg_t *first, const vtep_gro_seg_t *last, const vtep_gro_seg_t *next,
                     uint32_t payload)
{
    /* Every segment but the last carries the MSS (the first's payload) and no PSH. */
    return next->ipv6 == first->ipv6 && next->hdr_len == first->hdr_len && !last->psh
        && last->payload_len == first->payload_len && next->payload_len <= first->payload_len
        && next->seq == last->seq + last->payload_len
        && first->hdr_len - VTEP_ETH_HLEN + payload + next->payload_len <= VTEP_GRO_MAX_LEN
        && same_headers(first, next);
}

void vtep_gro_headers(const vtep_gro_seg_t *first, const vtep_gro_seg_t *last, uint32_t payload,
                      struct vtep_vnet_hdr *vnet, uint8_t *hdr)
{
    uint32_t l4 = l4_offset(first), l4_len = first->hdr_len - l4 + payload;
    uint8_t *ip = hdr + VTEP_ETH_HLEN, *th = hdr + l4;
    uint64_t pseudo;
    memcpy(hdr, first->frame, first->hdr_len);
    if (first->ipv6) {
        vtep_put_be16(ip + 4, (uint16_t)l4_len);
        pseudo = vtep_csum_add(0, ip + 8, 32);
    } else {
        vtep_put_be16(ip + 2, (uint16_t)(VTEP_IPV4_HLEN + l4_len));
        vtep_put_be16(ip + 10, 0);
        vtep_put_be16(ip + 10, (uint16_t)~vtep_csum_fold(vtep_csum_add(0, ip, VTEP_IPV4_HLEN)));
        pseudo = vtep_csum_add(0, ip + 12, 8);
    }
    th[13] |= last->psh ? TCP_PSH : 0;
    /* Left to finish, as a local TCP leaves it for TSO: the pseudo-header sum. */
    vtep_put_be16(th + TCP_CHECK, vtep_csum_fold(pseudo + VTEP_IPPROTO_TCP + l4_len));
    *vnet = (struct vtep_vnet_hdr){
        .flags = VTEP_VNET_NEEDS_CSUM,
        .gso_type = first->ipv6 ? VTEP_GSO_TCPV6 : VTEP_GSO_TCPV4,
        .hdr_len = (uint16_t)first->hdr_len,
        .gso_size = (uint16_t)first->payload_len,
        .csum_start = (uint16_t)l4,
        .csum_offset = TCP_CHECK,
    };
}
