#!/usr/bin/env bash
# The CI smoke regression grid, defined once for CI and for regenerating its baseline.
#
#   benchmarks/make_ci_baseline.sh           run the grid, then write results/baselines/ci_smoke.json
#   benchmarks/make_ci_baseline.sh --check   run the grid, then `bench check` it against that file (CI does this)
#
# Grid: every registered method × noise,jpeg,multi × the first 2 builtin images, profile smoke
# (64 px crops, a few iterations), seed 0, one CPU thread (OMP_NUM_THREADS=1) so numbers are
# deterministic. Regenerate the baseline whenever a method is added or changes its results on
# purpose, and commit the JSON diff with that change.
#
# Environment: CI_SMOKE_METHODS (comma-separated; default: all registered methods),
# CI_SMOKE_RESULTS (results directory; default: a fresh temporary one), BENCH_LPIPS_ALEXNET
# (default: ../shared/weights/alexnet_features.pth when present; the baseline has LPIPS values).
# DIP and Double-DIP are pinned to precision=float64, so neither `BENCH_BF16=on|off` nor the CPU's kernel path
# (AVX2, AVX-512/AMX, ATEN_CPU_CAPABILITY=default, ...) changes the verdict: see docs/portability.md.
#
#   BENCH_KERNELS=portable benchmarks/make_ci_baseline.sh --check
# runs the same check with torch, oneDNN and MKL forced onto their most basic kernels (a second kernel path on
# any x86 CPU); CI runs it after the plain check.
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-save}"
case "$mode" in save | --check) ;; *) echo "usage: $0 [--check]" >&2; exit 2 ;; esac

export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
case "${BENCH_KERNELS:-native}" in
  native) ;;
  portable) export ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 MKL_ENABLE_INSTRUCTIONS=SSE4_2 ;;
  avx2) export ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 ;;
  *) echo "BENCH_KERNELS=${BENCH_KERNELS}: expected native, portable or avx2" >&2; exit 2 ;;
esac
if [ -z "${BENCH_LPIPS_ALEXNET:-}" ] && [ -f ../shared/weights/alexnet_features.pth ]; then
  export BENCH_LPIPS_ALEXNET="$(cd ../shared/weights && pwd)/alexnet_features.pth"
fi
[ -n "${BENCH_LPIPS_ALEXNET:-}" ] || echo "warning: BENCH_LPIPS_ALEXNET unset; LPIPS will be missing" >&2

BASELINE=results/baselines/ci_smoke.json
DEGRADATIONS=noise,jpeg,multi
methods="${CI_SMOKE_METHODS:-$(python -c 'from bench.registry import available; print(",".join(available("method")))')}"
results="${CI_SMOKE_RESULTS:-$(mktemp -d "${TMPDIR:-/tmp}/ci-smoke.XXXXXX")}"

# Pin the numeric path: DIP and Double-DIP run bfloat16 autocast where the CPU has bf16 units (precision=auto),
# and their short fits amplify float32 rounding, whose order differs between kernel paths, into changes of
# 0.2-5 dB per image (measured, docs/portability.md). In float64 the same fits agree to the float32 output's
# last bit on every path. The other methods differ by at most 0.001 dB between kernel paths.
pins=()
for m in dip doubledip; do
  case ",$methods," in *",$m,"*) pins+=(--set "$m.precision=float64") ;; esac
done

echo "smoke grid: methods $methods; degradations $DEGRADATIONS; kernels ${BENCH_KERNELS:-native}; results in $results"
start=$(date +%s)
set +e
bench run --profile smoke --dataset builtin --limit 2 --methods "$methods" --degradations "$DEGRADATIONS" \
  "${pins[@]}" --results-dir "$results" --no-progress >"$results/run.log" 2>&1
run_status=$?
set -e
tail -n 12 "$results/run.log"
echo "smoke grid took $(( $(date +%s) - start )) s (exit $run_status)"

if [ "$mode" = "--check" ]; then
  set +e
  bench check --baseline "$BASELINE" --results-dir "$results"
  check_status=$?
  set -e
  # A failed cell fails CI even when the baseline does not name its method yet.
  [ "$run_status" -eq 0 ] || { echo "CI: smoke run had failed cells (see $results/run.log)" >&2; exit 1; }
  exit "$check_status"
fi

if [ "$run_status" -ne 0 ]; then
  echo "some cells failed (see $results/run.log); fix them or leave the method out with CI_SMOKE_METHODS=..." >&2
  exit 1
fi
bench baseline save --out "$BASELINE" --results-dir "$results" --dataset builtin --profile smoke \
  --methods "$methods" --degradations "$DEGRADATIONS"
