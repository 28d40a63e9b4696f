// Run a program as if this x86 CPU had AVX2 but no AVX-512, VNNI, AVX-VNNI, BF16 or AMX.
//
// A development tool (see scripts/avx2_view.sh): libraries that dispatch on CPUID (ONNX
// Runtime's MLAS, numpy) then take their AVX2 code paths, so an AVX-512/VNNI build machine can
// run the integer kernels an AVX2-only edge box runs, e.g. to check what they compute
// (tests/backends/test_onnxrt_u8s8.py). Timings under it are the AVX2 code on THIS core, not
// an AVX2-only CPU's. It uses Linux CPUID faulting (arch_prctl ARCH_SET_CPUID; /proc/cpuinfo
// flag cpuid_fault): every CPUID traps, the handler runs the real one and clears those bits.
// /proc/cpuinfo is not changed. Build: cc -O2 -shared -fPIC -o avx2_view.so avx2_view.c
#define _GNU_SOURCE
#include <cpuid.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#ifndef ARCH_SET_CPUID
#define ARCH_SET_CPUID 0x1012
#endif

static long set_cpuid(int on) { return syscall(SYS_arch_prctl, ARCH_SET_CPUID, on); }

static void on_segv(int sig, siginfo_t *info, void *ctx) {
  (void)sig;
  (void)info;
  greg_t *g = ((ucontext_t *)ctx)->uc_mcontext.gregs;
  const unsigned char *ip = (const unsigned char *)g[REG_RIP];
  if (ip[0] != 0x0F || ip[1] != 0xA2) {  // not CPUID: a real fault, die as usual
    signal(SIGSEGV, SIG_DFL);
    return;
  }
  unsigned int leaf = (unsigned int)g[REG_RAX], sub = (unsigned int)g[REG_RCX];
  unsigned int a, b, c, d;
  set_cpuid(1);
  __cpuid_count(leaf, sub, a, b, c, d);
  set_cpuid(0);
  if (leaf == 7 && sub == 0) {
    // EBX: AVX512 F, DQ, IFMA, CD, BW, VL
    b &= ~((1u << 16) | (1u << 17) | (1u << 21) | (1u << 28) | (1u << 30) | (1u << 31));
    // ECX: AVX512 VBMI, VBMI2, VNNI, BITALG, VPOPCNTDQ
    c &= ~((1u << 1) | (1u << 6) | (1u << 11) | (1u << 12) | (1u << 14));
    // EDX: AVX512 4VNNIW, 4FMAPS, VP2INTERSECT, AMX-BF16, AVX512-FP16, AMX-TILE, AMX-INT8
    d &= ~((1u << 2) | (1u << 3) | (1u << 8) | (1u << 22) | (1u << 23) | (1u << 24) | (1u << 25));
  } else if (leaf == 7 && sub == 1) {
    a &= ~((1u << 4) | (1u << 5));  // AVX-VNNI, AVX512-BF16
  }
  g[REG_RAX] = a;
  g[REG_RBX] = b;
  g[REG_RCX] = c;
  g[REG_RDX] = d;
  g[REG_RIP] += 2;  // CPUID is 0F A2
}

__attribute__((constructor)) static void avx2_view(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_segv;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigaction(SIGSEGV, &sa, 0);
  if (set_cpuid(0) != 0) {
    static const char msg[] = "avx2_view: this CPU/kernel has no CPUID faulting (cpuid_fault)\n";
    (void)!write(2, msg, sizeof msg - 1);
    _exit(3);
  }
}
