#!/usr/bin/env bash
# bench_sweep.sh (make bench): moesim sweep on tests/bench/sweep-step.ini, 256 points,
# with 1 and 2 worker processes (points/s), against the same 256 points run one by one
# as plain `moesim run --csv` processes (the driver's overhead per point).
set -euo pipefail
MOESIM=${MOESIM:-build/bin/moesim}
here=$(cd "$(dirname "$0")" && pwd)
SWEEP=$here/bench/sweep-step.ini
tmp=$(mktemp -d "${TMPDIR:-/tmp}/moesim-bench-sweep.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

now() { date +%s.%N; }
echo "# moesim sweep: 256 steps of 64 GPUs (8 top_k x 8 expert counts x 4 schedules)"
# REPS runs of --jobs 1 and --jobs 2 in turn (a shared machine's load moves both of a
# pair alike); the speed-up is the median of the pairs' ratios.
REPS=${REPS:-5}
ratios=()
w=()
for rep in $(seq "$REPS"); do
    for jobs in 1 2; do
        rm -rf "$tmp/j$jobs"
        t0=$(now)
        "$MOESIM" sweep "$SWEEP" -o "$tmp/j$jobs" --jobs $jobs --no-timing > /dev/null
        t1=$(now)
        w[jobs]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }')
        awk -v w="${w[jobs]}" -v j=$jobs -v r="$rep" 'BEGIN { printf "run %d: sweep --jobs %d %8.2f s  %7.2f points/s\n", r, j, w, 256 / w }'
    done
    ratios+=("$(awk -v a="${w[1]}" -v b="${w[2]}" 'BEGIN { printf "%.6f", a / b }')")
done
printf '%s\n' "${ratios[@]}" | sort -g | awk '{ r[NR] = $1 } END {
    m = NR % 2 ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2
    printf "speed-up --jobs 2 over --jobs 1: median %.2fx of %d pairs (%.2f .. %.2f)\n", m, NR, r[1], r[NR] }'
cmp "$tmp/j1/results.csv" "$tmp/j2/results.csv" && echo "results.csv: --jobs 1 = --jobs 2"
# the same points, one moesim run process each (the sweep's rows give their values)
t0=$(now)
tail -n +2 "$tmp/j1/results.csv" | cut -d, -f2-4 | while IFS=, read -r k e s; do
    "$MOESIM" run "$SWEEP" --set model.top_k="$k" --set model.experts="$e" \
        --set schedule.kind="$s" --no-timing --csv /dev/null > /dev/null
done
t1=$(now)
awk -v a="$t0" -v b="$t1" 'BEGIN { printf "256 x moesim run %8.2f s  %7.2f points/s\n", b - a, 256 / (b - a) }'
