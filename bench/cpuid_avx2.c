/* cpuid_avx2.so: makes the CPUID instruction report an AVX2-only CPU to the process it is preloaded into.

   ONNX Runtime's kernels (MLAS) pick AVX2, AVX-512, VNNI or AMX from CPUID when the library loads, with no
   setting to lower the choice. Linux can make CPUID fault instead of running (arch_prctl ARCH_SET_CPUID on
   CPUs with "cpuid_fault" in /proc/cpuinfo); this library, loaded through LD_PRELOAD, turns that on and
   answers each faulting CPUID itself: it runs the real one, clears the AVX-512, AVX-VNNI and AMX feature
   bits (and their register state in leaf 0xD), and steps over the instruction. Libraries that read CPUID
   after it loads (ONNX Runtime, oneDNN, torch's cpuinfo) then see a CPU with AVX2 and FMA3 and nothing
   wider, and their kernels run on this CPU's cores. Not covered: the dynamic loader reads CPUID before any
   library loads, so glibc keeps its AVX-512 string routines; XGETBV still reports the wider register state
   enabled (harmless: code checks CPUID's feature bits first).

   The faulting is inherited by threads and forked children and dropped on exec, where LD_PRELOAD loads
   this library again. It answers CPUID from its SIGSEGV handler, so a later handler for SIGSEGV (Python's
   faulthandler, a crash reporter) makes the next CPUID fatal: bench/isa.py runs the bench without
   PYTHONFAULTHANDLER. bench/isa.py builds this file with `cc` and reads scl_bench_cpuid_held. */
#define _GNU_SOURCE
#include <cpuid.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define ARCH_SET_CPUID 0x1012
#define BIT(n) (1u << (n))

/* 1 once CPUID faults and is answered here; read by bench/isa.py through ctypes. */
int scl_bench_cpuid_held = 0;

static void real_cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
    __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
}

/* Clear what an AVX2-only CPU lacks (Intel SDM vol. 2A, CPUID leaves 7 and 0xD). */
static void mask(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
    if (leaf == 7 && sub == 0) {
        /* EBX: AVX512 F, DQ, IFMA, PF, ER, CD, BW, VL */
        r[1] &= ~(BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) | BIT(28) | BIT(30) | BIT(31));
        /* ECX: AVX512 VBMI, VBMI2, VNNI, BITALG, VPOPCNTDQ */
        r[2] &= ~(BIT(1) | BIT(6) | BIT(11) | BIT(12) | BIT(14));
        /* EDX: AVX512 4VNNIW, 4FMAPS, VP2INTERSECT; AMX BF16; AVX512 FP16; AMX TILE, INT8 */
        r[3] &= ~(BIT(2) | BIT(3) | BIT(8) | BIT(22) | BIT(23) | BIT(24) | BIT(25));
    } else if (leaf == 7 && sub == 1) {
        /* EAX: AVX-VNNI, AVX512 BF16, AMX FP16, AVX-IFMA;
           EDX: AVX-VNNI-INT8, AVX-NE-CONVERT, AMX COMPLEX, AVX-VNNI-INT16, AVX10 */
        r[0] &= ~(BIT(4) | BIT(5) | BIT(21) | BIT(23));
        r[3] &= ~(BIT(4) | BIT(5) | BIT(8) | BIT(10) | BIT(19));
    } else if (leaf == 0xd && sub == 0) {
        /* EAX: the opmask, ZMM and AMX tile register state the OS saves */
        r[0] &= ~(BIT(5) | BIT(6) | BIT(7) | BIT(17) | BIT(18));
    }
}

static void on_segv(int sig, siginfo_t *info, void *context) {
    greg_t *g = ((ucontext_t *)context)->uc_mcontext.gregs;
    const uint8_t *ip = (const uint8_t *)g[REG_RIP];
    if (info->si_code != SI_KERNEL) { /* sent by kill() or the like: what it would have done without us */
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    if (ip[0] != 0x0f || ip[1] != 0xa2) { /* not CPUID: a real fault, which faults again and kills as it would */
        signal(sig, SIG_DFL);
        return;
    }
    uint32_t leaf = (uint32_t)g[REG_RAX], sub = (uint32_t)g[REG_RCX], r[4];
    real_cpuid(leaf, sub, r);
    mask(leaf, sub, r);
    g[REG_RAX] = r[0];
    g[REG_RBX] = r[1];
    g[REG_RCX] = r[2];
    g[REG_RDX] = r[3];
    g[REG_RIP] += 2;
}

__attribute__((constructor)) static void hold(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_segv;
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGSEGV, &action, NULL) == 0 && syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) == 0)
        scl_bench_cpuid_held = 1;
}
