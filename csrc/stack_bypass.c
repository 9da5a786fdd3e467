/* Keeping tunnel packets out of the kernel's IP stack (see stack_bypass.h). */
#include <errno.h>
#include <linux/bpf.h>
#include <stddef.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "stack_bypass.h"

/* Linux 6.6's tcx hook, newer than the system's headers may be. */
enum { ATTACH_TCX_INGRESS = 46, TCX_NEXT = -1, TCX_DROP = 2 };

/* eBPF instructions.  LD_ABS/LD_IND read the packet (network order, into
 * r0, the program ending with 0 -- TCX_PASS -- if the packet is too short)
 * and need the context in r6.  Unlike direct packet access, they read past
 * the linear head: a packet sent from a TX ring or a GSO super-packet has
 * little more than its Ethernet header there (tried: direct access passed
 * such packets on to the stack).  Addresses are compared as 32-bit words
 * (JMP32): a 64-bit compare would sign-extend the immediate. */
#define INSN(c, d, s, o, i) ((struct bpf_insn){.code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i)})
#define LD_ABS(size, at) INSN(BPF_LD | BPF_ABS | (size), 0, 0, 0, (at))
#define LD_IND(size, reg, at) INSN(BPF_LD | BPF_IND | (size), 0, (reg), 0, (at))
#define JMP32_K(op, k, to) INSN(BPF_JMP32 | (op) | BPF_K, 0, 0, (to), (int32_t)(k))
#define JMP32_RK(op, reg, k, to) INSN(BPF_JMP32 | (op) | BPF_K, (reg), 0, (to), (int32_t)(k))
#define ALU32_K(op, reg, k) INSN(BPF_ALU | (op) | BPF_K, (reg), 0, 0, (int32_t)(k))
#define MOV64_X(dst, src) INSN(BPF_ALU64 | BPF_MOV | BPF_X, (dst), (src), 0, 0)
#define RETURN(v) INSN(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, (v)), INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)

/* Jumps are written to labels PASS and DROP and resolved by finish(). */
enum { PASS = -1000, DROP = -2000 };

static int finish(struct bpf_insn *p, int n)
{
    struct bpf_insn ends[] = {RETURN(TCX_NEXT), RETURN(TCX_DROP)};
    memcpy(p + n, ends, sizeof ends);
    for (int i = 0; i < n; i++) {
        if (BPF_CLASS(p[i].code) != BPF_JMP32 && BPF_CLASS(p[i].code) != BPF_JMP)
            continue;
        if (p[i].off == PASS)
            p[i].off = (int16_t)(n - (i + 1));
        else if (p[i].off == DROP)
            p[i].off = (int16_t)(n + 2 - (i + 1));
    }
    return n + 4;
}

/* What the underlay's packet socket takes for vtep (io_afpacket.c,
 * tunnel_filter), less the fragments and IPv6 extension headers, which the
 * stack may keep: untagged UDP to "port" or GRE, for "local". */
static int program(struct bpf_insn *p, const vtep_addr_t *local, uint16_t port)
{
    int n = 0;
    p[n++] = INSN(BPF_ALU64 | BPF_MOV | BPF_X, 6, 1, 0, 0);  /* r6 = the context */
    p[n++] = INSN(BPF_LDX | BPF_MEM | BPF_W, 0, 6, offsetof(struct __sk_buff, vlan_present), 0);
    p[n++] = JMP32_K(BPF_JNE, 0, PASS);
    if (local->family == 4) {
        /* Four loads of 32-bit words where six fields are wanted (each is
         * a copy out of the packet's pages); r8 and r9 keep two of them
         * (a load clobbers r1-r5). */
        p[n++] = LD_ABS(BPF_W, 12);                              /* EtherType, version and IHL, TOS */
        p[n++] = MOV64_X(8, 0);
        p[n++] = ALU32_K(BPF_AND, 0, 0xffff0000);
        p[n++] = JMP32_K(BPF_JNE, 0x08000000, PASS);
        p[n++] = LD_ABS(BPF_W, 30);
        p[n++] = JMP32_K(BPF_JNE, vtep_get_be32(local->bytes), PASS);
        p[n++] = LD_ABS(BPF_W, 20);                              /* flags and fragment offset, TTL, protocol */
        p[n++] = MOV64_X(9, 0);
        p[n++] = ALU32_K(BPF_AND, 0, 0xff);
        p[n++] = JMP32_K(BPF_JEQ, 47, DROP);
        p[n++] = JMP32_K(BPF_JNE, 17, PASS);
        p[n++] = JMP32_RK(BPF_JSET, 9, 0x3fff0000, PASS);       /* a fragment */
        p[n++] = MOV64_X(7, 8);
        p[n++] = ALU32_K(BPF_RSH, 7, 6);
        p[n++] = ALU32_K(BPF_AND, 7, 0x3c);                     /* r7 = the IPv4 header length */
        p[n++] = LD_IND(BPF_H, 7, 14 + 2);
    } else {
        p[n++] = LD_ABS(BPF_H, 12);
        p[n++] = JMP32_K(BPF_JNE, 0x86dd, PASS);
        for (int w = 0; w < 4; w++) {
            p[n++] = LD_ABS(BPF_W, 38 + 4 * w);
            p[n++] = JMP32_K(BPF_JNE, vtep_get_be32(local->bytes + 4 * w), PASS);
        }
        p[n++] = LD_ABS(BPF_B, 20);
        p[n++] = JMP32_K(BPF_JEQ, 47, DROP);
        p[n++] = JMP32_K(BPF_JNE, 17, PASS);
        p[n++] = LD_ABS(BPF_H, 14 + 40 + 2);
    }
    p[n++] = JMP32_K(BPF_JEQ, port, DROP);
    return finish(p, n);
}

static int bpf(int cmd, union bpf_attr *attr)
{
    return (int)syscall(__NR_bpf, cmd, attr, sizeof *attr);
}

int vtep_stack_bypass(int ifindex, const vtep_addr_t *local, uint16_t port)
{
    struct bpf_insn prog[64];
    union bpf_attr load = {0};
    load.prog_type = BPF_PROG_TYPE_SCHED_CLS;
    load.insn_cnt = (uint32_t)program(prog, local, port);
    load.insns = (uint64_t)(uintptr_t)prog;
    load.license = (uint64_t)(uintptr_t)"Apache-2.0";
    memcpy(load.prog_name, "vtep_bypass", sizeof "vtep_bypass");
    int prog_fd = bpf(BPF_PROG_LOAD, &load);
    if (prog_fd < 0)
        return -errno;
    union bpf_attr link = {0};
    link.link_create.prog_fd = (uint32_t)prog_fd;
    link.link_create.target_ifindex = (uint32_t)ifindex;
    link.link_create.attach_type = ATTACH_TCX_INGRESS;
    int link_fd = bpf(BPF_LINK_CREATE, &link);
    int err = errno;
    close(prog_fd);  /* the link holds the program */
    return link_fd >= 0 ? link_fd : -err;
}
