#!/usr/bin/env bash
# Verify swin_edge's TensorRT path on an NVIDIA GPU (desktop or Jetson) in one go, and write one
# Markdown summary (DIR/summary.md). Run from the repository root with swin_edge, tensorrt and
# pycuda installed and trtexec on PATH (or TRTEXEC=/path/to/trtexec):
#
#   scripts/gpu_check.sh [--out DIR] [--model NAME] [--checkpoint PTH] [--dla CORE|auto|off]
#                        [--skip STEP]... [--dry-run]
#
# Steps (each logged under DIR; a failing step is recorded and the others still run):
#   env        GPU, driver, JetPack, TensorRT versions            -> env.txt
#   pytest     pytest -m tensorrt (engines fp32/fp16/int8, layer precisions, profile
#              violation, manifest refusal)                       -> pytest.xml, pytest.log
#   build      swin_edge build --precision fp16 and int8 (Swin-T) -> build-<precision>/
#   onnx       export + quantize (tensorrt recipe) + FP16 ONNX    -> onnx/
#   trtexec    build + benchmark fp16 and int8 with per-layer precision dump
#                                                                 -> trtexec/<precision>.*
#   dla        Jetson: FP16 on DLA (trtexec and swin_edge engine --dla) -> dla/
#   summary    python -m swin_edge.gpu_check summary DIR          -> summary.md
set -uo pipefail

OUT="gpu_check"
MODEL="swin_tiny"
CHECKPOINT=""
DLA="auto"
DRY_RUN=0
SKIP=" "
PY="${PYTHON:-python3}"
TRTEXEC="${TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}"

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }

need() { [ -n "${2:-}" ] || { echo "gpu_check.sh: $1 needs a value (see --help)" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
  case "$1" in
    --out) need "$@"; OUT="$2"; shift 2;;
    --model) need "$@"; MODEL="$2"; shift 2;;
    --checkpoint) need "$@"; CHECKPOINT="$2"; shift 2;;
    --dla) need "$@"; DLA="$2"; shift 2;;
    --skip) need "$@"; SKIP="$SKIP$2 "; shift 2;;
    --dry-run) DRY_RUN=1; shift;;
    -h|--help) usage; exit 0;;
    *) echo "gpu_check.sh: unknown argument '$1' (see --help)" >&2; exit 2;;
  esac
done
case "$DLA" in
  auto|off) ;;
  *[!0-9]*|"") echo "gpu_check.sh: --dla '$DLA': use a core number, auto or off" >&2; exit 2;;
esac
for s in $SKIP; do
  case "$s" in
    env|pytest|build|onnx|trtexec|dla|summary) ;;
    *) echo "gpu_check.sh: --skip '$s': steps are env pytest build onnx trtexec dla summary" >&2
       exit 2;;
  esac
done
if [ -n "$CHECKPOINT" ] && [ ! -f "$CHECKPOINT" ] && [ "$DRY_RUN" = 0 ]; then
  echo "gpu_check.sh: --checkpoint '$CHECKPOINT' does not exist" >&2; exit 2
fi
if [ "$DLA" = auto ]; then
  if [ -f /etc/nv_tegra_release ]; then DLA=0; else DLA=off; fi
fi
CKPT_ARGS=()
[ -n "$CHECKPOINT" ] && CKPT_ARGS=(--checkpoint "$CHECKPOINT")

skipped() { case "$SKIP" in *" $1 "*) return 0;; esac; return 1; }

# run STEP LOG CMD...: run (or, with --dry-run, print) a command, log its output, record status.
run() {
  local step="$1" log="$2"; shift 2
  if [ "$DRY_RUN" = 1 ]; then printf '+'; printf ' %q' "$@"; printf '\n'; return 0; fi
  mkdir -p "$(dirname "$log")"
  echo "== $step: $*"
  "$@" > "$log" 2>&1
  local rc=$?
  printf '%s\t%s\t%s\n' "$step" "$rc" "$log" >> "$OUT/steps.tsv"
  [ "$rc" = 0 ] || echo "   $step failed (exit $rc), see $log" >&2
  return "$rc"
}

# trtexec_run STEP LOG HELPER-ARGS...: ask swin_edge for the trtexec arguments that this trtexec
# accepts (10.x vs 11.x by capability), then run trtexec with them.
trtexec_run() {
  local step="$1" log="$2"; shift 2
  if [ "$DRY_RUN" = 1 ]; then
    printf '+ %q $(%s -m swin_edge.gpu_check trtexec-line' "$TRTEXEC" "$PY"
    printf ' %q' "$@"; printf ')\n'; return 0
  fi
  local args
  if ! args="$("$PY" -m swin_edge.gpu_check trtexec-line --trtexec "$TRTEXEC" "$@" 2>&1)"; then
    mkdir -p "$(dirname "$log")"; printf '%s\n' "$args" > "$log"
    printf '%s\t%s\t%s\n' "$step" 1 "$log" >> "$OUT/steps.tsv"; return 1
  fi
  # shellcheck disable=SC2086
  run "$step" "$log" "$TRTEXEC" $args
}

[ "$DRY_RUN" = 1 ] || { mkdir -p "$OUT"; : > "$OUT/steps.tsv"; }

if ! skipped env && [ "$DRY_RUN" = 0 ]; then
  {
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"; uname -a
    cat /etc/nv_tegra_release 2>/dev/null || true
    command -v nvidia-smi >/dev/null && nvidia-smi
    command -v nvpmodel >/dev/null && nvpmodel -q
    "$PY" -c "import tensorrt; print('tensorrt', tensorrt.__version__)" 2>&1
    "$PY" -c "import pycuda.driver as c; c.init(); d=c.Device(0); print(d.name(), d.compute_capability())" 2>&1
    "$TRTEXEC" --help 2>&1 | head -n 1
  } > "$OUT/env.txt" 2>&1
fi

if ! skipped pytest; then
  run pytest "$OUT/pytest.log" "$PY" -m pytest -m tensorrt -q -p no:cacheprovider \
    --junitxml "$OUT/pytest.xml"
fi

if ! skipped build; then
  for p in fp16 int8; do
    run "build-$p" "$OUT/build-$p.log" "$PY" -m swin_edge build --precision "$p" \
      --target tensorrt --model "$MODEL" --out "$OUT/build-$p" --no-progress ${CKPT_ARGS[@]+"${CKPT_ARGS[@]}"}
  done
fi

ONNX="$OUT/onnx"
if ! skipped onnx; then
  run export "$ONNX/export.log" "$PY" -m swin_edge export --model "$MODEL" \
    --out "$ONNX/model.onnx" ${CKPT_ARGS[@]+"${CKPT_ARGS[@]}"}
  run quantize "$ONNX/quantize.log" "$PY" -m swin_edge quantize "$ONNX/model.onnx" \
    --target tensorrt --out "$ONNX/model.int8.onnx"
  run fp16 "$ONNX/fp16.log" "$PY" -m swin_edge.gpu_check fp16 "$ONNX/model.onnx" \
    "$ONNX/model.fp16.onnx"
fi

if ! skipped trtexec; then
  for p in fp16 int8; do
    e="$OUT/trtexec/model.$p.engine"
    trtexec_run "trtexec-build-$p" "$OUT/trtexec/$p.build.log" --onnx "$ONNX/model.$p.onnx" \
      --engine "$e" --precision "$p"
    trtexec_run "trtexec-bench-$p" "$OUT/trtexec/$p.bench.log" --onnx "$ONNX/model.$p.onnx" \
      --engine "$e" --precision "$p" --bench --layers "$OUT/trtexec/$p.layers.json"
  done
fi

if ! skipped dla && [ "$DLA" != off ]; then
  e="$OUT/dla/model.fp16.engine"
  trtexec_run dla-trtexec-build "$OUT/dla/build.log" --onnx "$ONNX/model.fp16.onnx" \
    --engine "$OUT/dla/trtexec.fp16.engine" --precision fp16 --dla "$DLA"
  trtexec_run dla-trtexec-bench "$OUT/dla/bench.log" --onnx "$ONNX/model.fp16.onnx" \
    --engine "$OUT/dla/trtexec.fp16.engine" --precision fp16 --dla "$DLA" --bench \
    --layers "$OUT/dla/layers.json"
  run dla-swin_edge "$OUT/dla/engine.log" "$PY" -m swin_edge engine "$ONNX/model.fp16.onnx" \
    --precision fp16 --dla "$DLA" --out "$e"
fi

if ! skipped summary; then
  run summary "$OUT/summary.log" "$PY" -m swin_edge.gpu_check summary "$OUT" || true
  [ "$DRY_RUN" = 1 ] || cat "$OUT/summary.md" 2>/dev/null
fi
