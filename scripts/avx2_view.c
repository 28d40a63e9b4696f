// Run a program as if this x86 CPU had AVX2 but no AVX-512, VNNI, AVX-VNNI, BF16 or AMX.
//
// A development tool (see scripts/avx2_view.sh): libraries that dispatch on CPUID (ONNX
// Runtime's MLAS, numpy) then take their AVX2 code paths, so an AVX-512/VNNI build machine can
// run the integer kernels an AVX2-only edge box runs, e.g. to check what they compute
// (tests/backends/test_onnxrt_u8s8.py). Timings under it are the AVX2 code on THIS core, not
// an AVX2-only CPU's. It uses Linux CPUID faulting (arch_prctl ARCH_SET_CPUID; /proc/cpuinfo
// flag cpuid_fault): every CPUID traps, the handler runs the real one and clears those bits.
// Programs that install their own SIGSEGV handler (tritonserver, Python's faulthandler) keep
// this one: sigaction() and signal() for SIGSEGV are intercepted, and a fault that is not a
// CPUID goes to the program's handler. /proc/cpuinfo is not changed (avx2_view.sh points
// swin_edge at a cpuinfo text without those flags). Build:
//   cc -O2 -shared -fPIC -o avx2_view.so avx2_view.c -ldl
#define _GNU_SOURCE
#include <cpuid.h>
#include <dlfcn.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#ifndef ARCH_SET_CPUID
#define ARCH_SET_CPUID 0x1012
#endif

static long set_cpuid(int on) { return syscall(SYS_arch_prctl, ARCH_SET_CPUID, on); }

typedef int (*sigaction_fn)(int, const struct sigaction *, struct sigaction *);
static sigaction_fn real_sigaction;
static int installed;            // our handler is the process's SIGSEGV handler
static struct sigaction program; // the handler the program asked for (SIG_DFL until it asks)

static sigaction_fn next_sigaction(void) {
  if (!real_sigaction) real_sigaction = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
  return real_sigaction;
}

static void on_segv(int sig, siginfo_t *info, void *ctx) {
  greg_t *g = ((ucontext_t *)ctx)->uc_mcontext.gregs;
  const unsigned char *ip = (const unsigned char *)g[REG_RIP];
  if (ip[0] != 0x0F || ip[1] != 0xA2) {  // not CPUID: a real fault, the program's business
    if (program.sa_flags & SA_SIGINFO) {
      program.sa_sigaction(sig, info, ctx);
    } else if (program.sa_handler != SIG_DFL && program.sa_handler != SIG_IGN) {
      program.sa_handler(sig);
    } else {  // die as usual when the instruction faults again
      struct sigaction dfl;
      memset(&dfl, 0, sizeof dfl);
      dfl.sa_handler = SIG_DFL;
      next_sigaction()(SIGSEGV, &dfl, 0);
      installed = 0;
    }
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

// The program's SIGSEGV handler is recorded, not installed: ours stays and forwards to it.
int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
  if (sig != SIGSEGV || !installed) return next_sigaction()(sig, act, old);
  if (old) *old = program;
  if (act) program = *act;
  return 0;
}

sighandler_t signal(int sig, sighandler_t handler) {
  struct sigaction act, old;
  memset(&act, 0, sizeof act);
  act.sa_handler = handler;
  act.sa_flags = SA_RESTART;
  if (sigaction(sig, &act, &old) != 0) return SIG_ERR;
  return (old.sa_flags & SA_SIGINFO) ? (sighandler_t)old.sa_sigaction : old.sa_handler;
}

__attribute__((constructor)) static void avx2_view(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_segv;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  program.sa_handler = SIG_DFL;
  next_sigaction()(SIGSEGV, &sa, 0);
  installed = 1;
  if (set_cpuid(0) != 0) {
    static const char msg[] = "avx2_view: this CPU/kernel has no CPUID faulting (cpuid_fault)\n";
    (void)!write(2, msg, sizeof msg - 1);
    _exit(3);
  }
}
