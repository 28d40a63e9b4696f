#!/usr/bin/env bash
# Run a command as if this x86 CPU had AVX2 but no AVX-512/VNNI/AMX (scripts/avx2_view.c):
#   scripts/avx2_view.sh python scripts/u8s8_saturation.py RUN/model.onnx RUN/model.int8-cpu.onnx
# The kernels' CPUID hides those features, and swin_edge's own detection (and that of every
# process the command starts) reads this CPU's /proc/cpuinfo without their flags
# (SWIN_EDGE_CPUINFO, unless already set). Needs a C compiler and the cpuid_fault CPU flag
# (exit 2 otherwise). Not for figures that claim to be an AVX2-only CPU's: the core is still
# this one.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if ! grep -qw cpuid_fault /proc/cpuinfo; then
  echo "avx2_view: no CPUID faulting here (no cpuid_fault flag in /proc/cpuinfo)" >&2
  exit 2
fi
lib="${TMPDIR:-/tmp}/swin_edge_avx2_view.$(id -u).so"
if [ ! -f "$lib" ] || [ "$here/avx2_view.c" -nt "$lib" ]; then
  cc -O2 -shared -fPIC -o "$lib.tmp.$$" "$here/avx2_view.c" -ldl && mv -f "$lib.tmp.$$" "$lib"
fi
if [ -z "${SWIN_EDGE_CPUINFO:-}" ]; then
  info="${TMPDIR:-/tmp}/swin_edge_avx2_view.$(id -u).cpuinfo"
  sed -E '/^flags/ s/ (avx512[a-z0-9_]*|avx_vnni[a-z0-9_]*|amx_[a-z0-9_]*)\b//g' /proc/cpuinfo \
    >"$info.tmp.$$" && mv -f "$info.tmp.$$" "$info"
  export SWIN_EDGE_CPUINFO="$info"
fi
LD_PRELOAD="$lib${LD_PRELOAD:+:$LD_PRELOAD}" exec "$@"
