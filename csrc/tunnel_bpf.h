/* eBPF programs that pick out one VTEP's tunnel packets on the underlay:
 * untagged UDP to its address and port (VXLAN), or GRE to its address
 * (NVGRE).
 *
 * The filter of the underlay's packet socket: it takes those (and, so that
 * the pipeline can count them, later fragments and IPv6 extension headers
 * for the address); everything else on the link is the kernel's alone.
 *
 * The tcx program that keeps them out of the IP stack.  A packet socket
 * sees a copy of what arrives; the kernel carries on with the packet all
 * the same: its IP layer routes it, looks up the tunnel claim's UDP socket
 * (netlink.py, TunnelClaim) and runs that socket's filter, only to drop
 * it -- a fifth of the kernel's receive work for a tunnel packet, on
 * whatever CPU received it.  A tcx ingress program (Linux 6.6) runs after
 * the packet sockets have had their copy and before the IP layer: it drops
 * the tunnel packets and lets everything else go on.  It hangs on a BPF
 * link, which the kernel removes when its last file descriptor closes:
 * like the claim, it goes with vtepd, even with kill -9.  The claim stays,
 * for where this cannot be had (an older kernel, no CAP_BPF).
 *
 * Both read the headers with one copy to their stack (bpf_skb_load_bytes):
 * a packet sent from a TX ring or a GSO super-packet has little more than
 * its Ethernet header in the linear part, which direct packet access sees,
 * and each LD_ABS would be a copy of its own. */
#ifndef VTEP_TUNNEL_BPF_H
#define VTEP_TUNNEL_BPF_H

#include <stdint.h>
#include "util.h"
#include "vtep_packet.h"

/* Attach the filter to packet socket "fd".  0 or -errno. */
int vtep_tunnel_filter(int fd, const vtep_addr_t *local, uint16_t port);

/* Attach the tcx program to link "ifindex".  Returns the link's file
 * descriptor, or -errno. */
int vtep_stack_bypass(int ifindex, const vtep_addr_t *local, uint16_t port);

#endif
