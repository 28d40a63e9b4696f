#!/usr/bin/env bash
# Run a command as if this x86 CPU had AVX2 but no AVX-512/VNNI/AMX (scripts/avx2_view.c):
#   scripts/avx2_view.sh python scripts/u8s8_saturation.py RUN/model.onnx RUN/model.int8-cpu.onnx
# Needs a C compiler and the cpuid_fault CPU flag (exit 2 otherwise). Not for figures that claim
# to be an AVX2-only CPU's: the core is still this one.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if ! grep -qw cpuid_fault /proc/cpuinfo; then
  echo "avx2_view: no CPUID faulting here (no cpuid_fault flag in /proc/cpuinfo)" >&2
  exit 2
fi
lib="${TMPDIR:-/tmp}/swin_edge_avx2_view.$(id -u).so"
if [ ! -f "$lib" ] || [ "$here/avx2_view.c" -nt "$lib" ]; then
  cc -O2 -shared -fPIC -o "$lib.tmp.$$" "$here/avx2_view.c" && mv -f "$lib.tmp.$$" "$lib"
fi
LD_PRELOAD="$lib${LD_PRELOAD:+:$LD_PRELOAD}" exec "$@"
