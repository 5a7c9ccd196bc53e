#!/usr/bin/env bash
# Reference results at the published budgets (profile paper), exported as a bundle to commit under results/.
#
#   benchmarks/reference_bundle.sh [--device cuda] [--jobs 8] [--limit 100] [--minutes 9] \
#       [--methods dip,doubledip] [--degradations noise,jpeg,multi] [--results-dir DIR] [--out FILE]
#
# Runs `bench run --profile paper` on the DIV2K validation crops (../shared/data/eval/div2k_valid_crops256)
# with --jobs worker processes on one device (on a GPU, several processes share it: DIP's nets are small,
# one process leaves most of an H200 idle), stops after --minutes (the run is killed; every finished
# cell is already in the store), then exports what the store holds for this grid with `bench export`.
# Resumable: run it again with the same --results-dir and finished cells are cached, so the grid
# continues where it stopped. Import the bundle anywhere with `bench import FILE`.
#
# Defaults: cpu, 1 job, 100 crops, 9 minutes, dip + doubledip, noise,jpeg,multi,
# results in ./results-reference, bundle results/reference/paper_<device>.zip.
set -euo pipefail
cd "$(dirname "$0")/.."

device=cpu jobs=1 limit=100 minutes=9 methods=dip,doubledip degradations=noise,jpeg,multi
results=results-reference out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    --limit) limit="$2"; shift 2 ;;
    --minutes) minutes="$2"; shift 2 ;;
    --methods) methods="$2"; shift 2 ;;
    --degradations) degradations="$2"; shift 2 ;;
    --results-dir) results="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
out="${out:-results/reference/paper_${device%%:*}.zip}"
data=../shared/data/eval/div2k_valid_crops256
[ -d "$data" ] || { echo "missing $data: the DIV2K crops live in ../shared (see README)" >&2; exit 2; }
if [ -z "${BENCH_LPIPS_ALEXNET:-}" ] && [ -f ../shared/weights/alexnet_features.pth ]; then
  export BENCH_LPIPS_ALEXNET="$(cd ../shared/weights && pwd)/alexnet_features.pth"
fi
# one thread per worker process: the workers share the cores (and, on a GPU, the device)
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

echo "reference grid: $methods × $degradations × $limit crops, profile paper, $device, $jobs job(s), ${minutes} min"
set +e
timeout --signal=INT --kill-after=60 "$(awk "BEGIN{print int($minutes*60)}")" \
  bench run --profile paper --dataset "folder:$data" --limit "$limit" --methods "$methods" \
  --degradations "$degradations" --device "$device" --jobs "$jobs" --results-dir "$results" --no-progress
status=$?
set -e
case $status in
  0) echo "grid complete" ;;
  124 | 130 | 137) echo "time limit reached: finished cells are stored; run again to continue" ;;
  *) echo "bench run exited $status (failed cells are listed above; finished cells are stored)" ;;
esac
mkdir -p "$(dirname "$out")"
bench export --results-dir "$results" --methods "$methods" --degradations "$degradations" --profile paper \
  --out "$out"
bench report --results-dir "$results" --methods "$methods" --degradations "$degradations" --profile paper
