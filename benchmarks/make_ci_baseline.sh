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
# DIP and Double-DIP are pinned to precision=float32, so `BENCH_BF16=on|off` (or the CPU) does not change the verdict.
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-save}"
case "$mode" in save | --check) ;; *) echo "usage: $0 [--check]" >&2; exit 2 ;; esac

export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
if [ -z "${BENCH_LPIPS_ALEXNET:-}" ] && [ -f ../shared/weights/alexnet_features.pth ]; then
  export BENCH_LPIPS_ALEXNET="$(cd ../shared/weights && pwd)/alexnet_features.pth"
fi
[ -n "${BENCH_LPIPS_ALEXNET:-}" ] || echo "warning: BENCH_LPIPS_ALEXNET unset; LPIPS will be missing" >&2

BASELINE=results/baselines/ci_smoke.json
DEGRADATIONS=noise,jpeg,multi
methods="${CI_SMOKE_METHODS:-$(python -c 'from bench.registry import available; print(",".join(available("method")))')}"
results="${CI_SMOKE_RESULTS:-$(mktemp -d "${TMPDIR:-/tmp}/ci-smoke.XXXXXX")}"

# Pin the numeric path: DIP and Double-DIP run bfloat16 autocast where the CPU has bf16 units (precision=auto),
# which would make the verdict depend on the machine. float32 everywhere gives the same numbers on any x86 CPU.
pins=()
for m in dip doubledip; do
  case ",$methods," in *",$m,"*) pins+=(--set "$m.precision=float32") ;; esac
done

echo "smoke grid: methods $methods; degradations $DEGRADATIONS; results in $results"
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
