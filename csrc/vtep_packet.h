/* vtep: stateless packet functions.
 *
 * Encapsulate or decapsulate one frame with no tables and no state beyond a
 * tunnel template.  The engine's burst functions use the same inline bodies
 * (tunnel.h), so these are the fast path, one packet at a time.  The cffi
 * module (bindings/packet_build.py) reads this header after the preprocessor,
 * so it holds plain declarations only.
 *
 * Conventions: API functions return 0 or a negative errno; decapsulation and
 * the pipeline report why a frame was dropped as a vtep_drop_t (data, not an
 * error).  Addresses and MACs are bytes in network order; every other integer
 * in these structs is host order. */
#ifndef VTEP_PACKET_H
#define VTEP_PACKET_H

#ifndef VTEP_CFFI
#include <stddef.h>
#include <stdint.h>
#endif

typedef enum vtep_drop {
    VTEP_DROP_NONE = 0,
#define _(sym, name, help) VTEP_DROP_##sym,
#include "vtep_error.def"
#undef _
    VTEP_DROP_COUNT
} vtep_drop_t;

/* Flags of a received frame (vtep_pkt_t.flags, vtep_decap()).
 * VTEP_PKT_CSUM_OK: the kernel vouches for the UDP checksum.  It verified
 * it, or the frame was sent on this host and the checksum is not computed
 * yet (AF_PACKET TP_STATUS_CSUM_VALID or TP_STATUS_CSUMNOTREADY; across a
 * veth, or in a capture with checksum offload, the field then holds only
 * the pseudo-header sum).  Its UDP checksum is not verified again.
 * VTEP_PKT_VLAN: the frame came with a VLAN tag that the kernel moved out of
 * the frame into metadata (AF_PACKET TP_STATUS_VLAN_VALID): it is tagged,
 * though its bytes do not show it.
 * VTEP_PKT_CSUM_PARTIAL: sent on this host with a checksum left to finish
 * somewhere in it (AF_PACKET TP_STATUS_CSUMNOTREADY, without the offsets a
 * virtio-net header would give): on the underlay, the inner TCP/UDP
 * checksum of a local kernel VTEP's packet.  Decapsulated frames get their
 * TCP/UDP checksum computed when sent (vtep_l4_csum_fill). */
enum { VTEP_PKT_CSUM_OK = 1, VTEP_PKT_VLAN = 2, VTEP_PKT_CSUM_PARTIAL = 4 };

typedef enum vtep_encap {
    VTEP_ENCAP_VXLAN = 0,
    VTEP_ENCAP_NVGRE = 1,
} vtep_encap_t;

enum {
    VTEP_HDR_ROOM = 80,       /* room for the largest outer header (IPv6 + VXLAN: 70) */
    /* Outer bytes of the largest encapsulation (VXLAN), outer Ethernet
     * included.  The engine's MTU check counts each encapsulation's own
     * overhead (NVGRE is 8 bytes less): see docs/fastpath.md. */
    VTEP_OVERHEAD_IPV4 = 50,
    VTEP_OVERHEAD_IPV6 = 70,
};

typedef struct vtep_addr {
    uint8_t family;           /* 4 or 6 */
    uint8_t bytes[16];        /* network order; IPv4 uses the first 4 */
} vtep_addr_t;

typedef struct vtep_tunnel_params {
    vtep_encap_t encapsulation;
    vtep_addr_t local;
    vtep_addr_t remote;       /* same family as "local" */
    uint8_t src_mac[6];       /* outer Ethernet source: the underlay interface */
    uint8_t dst_mac[6];       /* outer Ethernet destination: the next hop */
    uint16_t destination_port;/* VXLAN UDP port, usually 4789 */
    uint16_t port_min;        /* UDP source port range, inclusive */
    uint16_t port_max;
    uint8_t ttl;
    uint8_t udp_checksum;     /* IPv4: compute the UDP checksum (IPv6 always does) */
} vtep_tunnel_params_t;

/* The outer headers for one (remote, encapsulation), built once by
 * vtep_tunnel_init(); encapsulation copies and patches it. */
typedef struct vtep_tunnel {
    uint8_t tmpl[VTEP_HDR_ROOM];
    uint8_t len;              /* bytes of tmpl in use */
    uint8_t family;
    uint8_t encapsulation;
    uint8_t udp_checksum;
    uint16_t port_min;
    uint32_t port_span;       /* port_max - port_min + 1 */
    uint32_t ip_sum;          /* IPv4: header sum with tot_len = tos = 0 (not folded) */
    uint32_t pseudo_sum;      /* UDP pseudo-header sum of the addresses and protocol */
} vtep_tunnel_t;

typedef struct vtep_decap_info {
    uint32_t vni;             /* VNI, or VSID for NVGRE */
    uint16_t inner_offset;    /* where the inner Ethernet frame starts */
    uint16_t inner_len;
    uint16_t source_port;     /* outer UDP source port (VXLAN) */
    uint8_t encapsulation;    /* vtep_encap_t */
    uint8_t flow_id;          /* NVGRE FlowID */
    uint8_t tos;              /* outer DSCP/ECN byte */
    uint8_t ttl;
    vtep_addr_t src;          /* outer source: the sending VTEP */
    vtep_addr_t dst;
} vtep_decap_info_t;

/* Name of drop reason "d" (the counter name), or "?" if out of range. */
const char *vtep_drop_name(int d);

/* Build "t" from "p".  Returns 0, or -EINVAL for an invalid family mix, TTL 0
 * or an empty port range. */
int vtep_tunnel_init(vtep_tunnel_t *t, const vtep_tunnel_params_t *p);

/* Encapsulate "frame" ("len" bytes, a whole Ethernet frame) with VNI/VSID
 * "vni" into "out" (room "cap").  Returns the length written, -EINVAL for a
 * frame shorter than an Ethernet header or a VNI above 2^24-1, or -ENOSPC. */
int vtep_encap(const vtep_tunnel_t *t, uint32_t vni, const uint8_t *frame, size_t len,
               uint8_t *out, size_t cap);

/* Decapsulate VXLAN (UDP port "destination_port") or NVGRE from the Ethernet
 * frame "pkt" with VTEP_PKT_* "flags".  Returns VTEP_DROP_NONE and fills
 * "info", or the drop reason. */
vtep_drop_t vtep_decap(const uint8_t *pkt, size_t len, uint16_t destination_port, uint32_t flags,
                       vtep_decap_info_t *info);

/* Hash of the inner flow (MACs, IP addresses, protocol, L4 ports) of "frame";
 * the UDP source port and NVGRE FlowID are taken from it. */
uint32_t vtep_flow_hash(const uint8_t *frame, size_t len);

/* RFC 1071 checksum of "len" bytes (complemented, host order). */
uint16_t vtep_checksum(const uint8_t *data, size_t len);

/* RFC 1624 eqn. 3 update of checksum "hc" for a 16-bit field "m" -> "m_new". */
uint16_t vtep_checksum_update(uint16_t hc, uint16_t m, uint16_t m_new);

/* Offloads (offload.c): what the kernel leaves to whoever sends a frame
 * that crossed a veth or left a TAP -- a TCP/UDP checksum holding only its
 * pseudo-header sum, and a TCP super-frame of up to 64 KB to cut into
 * segments (GSO) -- finished in software. */

/* The GSO types vtep segments (virtio-net's numbers; 0x80 adds ECN). */
enum { VTEP_GSO_NONE = 0, VTEP_GSO_TCPV4 = 1, VTEP_GSO_TCPV6 = 4, VTEP_GSO_UDP_L4 = 5 };

/* Finish the checksum the kernel left: the one's complement sum of the
 * frame from "start" to its end, stored at start + "offset" (where the
 * pseudo-header sum already is).  0, or -EINVAL if it does not fit. */
int vtep_csum_finish(uint8_t *frame, uint32_t len, uint32_t start, uint32_t offset);

/* Compute the TCP or UDP checksum of an Ethernet/IPv4 or IPv6 frame from
 * scratch (a frame whose checksum state is unknown but may be unfinished).
 * Frames of other kinds, fragments and IPv6 extension headers are left as
 * they are.  Always safe: a correct checksum comes out unchanged. */
void vtep_l4_csum_fill(uint8_t *frame, uint32_t len);

/* Check GSO super-frame "frame" of "gso_type" (VTEP_GSO_*, ECN bit
 * allowed): Ethernet, IPv4 without fragments or IPv6 without extension
 * headers, then TCP or UDP as the type says.  Returns the length of its
 * headers (Ethernet to TCP/UDP included), or 0 if vtep cannot segment it. */
uint32_t vtep_gso_headers(const uint8_t *frame, uint32_t len, uint8_t gso_type);

/* Cut a GSO super-frame ("hdr_len" from vtep_gso_headers) into segments of
 * at most "gso_size" payload bytes.  For each, in order, calls
 * emit(ctx, h, h_len, payload, n): "h" holds "outer" (the tunnel's headers,
 * "outer_len" bytes, possibly none) then the segment's own headers with
 * lengths, IPv4 IDs, TCP sequence numbers and flags, and checksums (the
 * outer IP/UDP ones too) all set.  Stops at the first emit that fails and
 * returns its error; else the number of segments. */
typedef int (*vtep_emit_fn)(void *ctx, const uint8_t *h, uint32_t h_len, const uint8_t *payload, uint32_t n);
int vtep_gso_segment(const uint8_t *outer, uint32_t outer_len, const uint8_t *frame, uint32_t len,
                     uint32_t hdr_len, uint32_t gso_size, vtep_emit_fn emit, void *ctx);

#endif
