/* Keeping tunnel packets out of the kernel's IP stack.
 *
 * A packet socket sees a copy of what arrives; the kernel carries on with
 * the packet all the same: its IP layer routes it, looks up the tunnel
 * claim's UDP socket (netlink.py, TunnelClaim) and runs that socket's
 * filter, only to drop it.  That is a fifth of the kernel's receive work for
 * a tunnel packet, on whatever CPU received it.  A tcx ingress program
 * (Linux 6.6) runs after the packet sockets have had their copy and before
 * the IP layer: it drops the tunnel packets vtep takes, and lets everything
 * else go on.  It hangs on a BPF link, which the kernel removes when its
 * last file descriptor closes: like the claim, it goes with vtepd, even
 * with kill -9.  The claim stays, for where this cannot be had (an older
 * kernel, no CAP_BPF). */
#ifndef VTEP_STACK_BYPASS_H
#define VTEP_STACK_BYPASS_H

#include <stdint.h>
#include "util.h"
#include "vtep_packet.h"

/* Attach the program to link "ifindex" for tunnel packets to "local" (UDP
 * "port", or GRE).  Returns the link's file descriptor, or -errno. */
int vtep_stack_bypass(int ifindex, const vtep_addr_t *local, uint16_t port);

#endif
