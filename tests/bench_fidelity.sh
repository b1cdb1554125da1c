#!/usr/bin/env bash
# bench_fidelity.sh: how close moesim's prediction comes to a measured MoE layer after
# `moeprof calibrate` (make bench; figures in docs/PERFORMANCE.md, "moeprof: fidelity").
# Not a timed test: it prints a table and asserts nothing about the error.
#
# For each rank count in RANKS (one EP group of all of them) and each layer size in
# SIZES (hidden:expert_ffn_hidden:tokens_per_gpu, on configs/examples/moeprof-cpu.ini):
#  1. `moeprof calibrate --buffers cold --reps REPS` on those ranks and that layer: the
#     expert table and the intra-node latency and bandwidth (cold: the layer's buffers
#     come out of its GEMMs, not out of cache);
#  2. for uniform and Zipf(1.0) routing, `moeprof run --iters ITERS --compare
#     --calibration` the fragment of step 1;
#  3. from DIR/compare.csv, for fwd.dispatch, fwd.experts, fwd.combine and the forward
#     layer's modelled sum (fwd.modelled): the measured median over ranks, the
#     prediction, the error (predicted - measured) / measured and the all-to-alls' median
#     wait for the slowest peer; '*' marks an error beyond +-15 %.
# The 1-minute load average before each run is printed with it: on a shared machine the
# measurement moves with it.
# Run from the repository root: MOEPROF=build/bin/moeprof bash tests/bench_fidelity.sh
set -euo pipefail
MOEPROF=${MOEPROF:-build/bin/moeprof}
RANKS=${RANKS:-"2 4"}
SIZES=${SIZES:-"128:256:256 256:512:512 512:1024:1024"}
ITERS=${ITERS:-10}
REPS=${REPS:-5}
here=$(cd "$(dirname "$0")" && pwd)
CFG=$here/../configs/examples/moeprof-cpu.ini
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
# Each run under timeout: a hang fails the benchmark instead of stalling it.
MPIRUN=(timeout 300 mpirun --oversubscribe -q)
[ "$(id -u)" -eq 0 ] && MPIRUN+=(--allow-run-as-root)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fidelity-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

load1() { cut -d' ' -f1 /proc/loadavg; }

echo "# fidelity: moeprof calibrate --buffers cold --reps $REPS, then moeprof run --iters $ITERS" \
     "--compare; $(nproc) core(s); ranks: $RANKS"
printf "# %5s %-7s %-9s %6s %-13s %9s %9s %8s %8s %5s\n" ranks routing hid/ffn tokens phase \
       measured predicted error wait load
printf "# %5s %-7s %-9s %6s %-13s %9s %9s %8s %8s %5s\n" "" "" "" "" "" "(ms)" "(ms)" "(%)" \
       "(ms)" "(1m)"
misses=0
cells=0
for n in $RANKS; do
    [ "$n" -gt "$(nproc)" ] &&
        echo "# $n ranks on $(nproc) cores: oversubscribed, ranks share cores (time-sliced)"
    for size in $SIZES; do
        IFS=: read -r h f t <<< "$size"
        sets=(--set model.hidden="$h" --set model.expert_ffn_hidden="$f"
              --set routing.tokens_per_gpu="$t" --set parallel.ep="$n")
        cal=$tmp/cal-n$n-h$h.ini
        "${MPIRUN[@]}" -np "$n" "$MOEPROF" calibrate "$CFG" "${sets[@]}" --buffers cold \
            --reps "$REPS" --out "$cal" > "$tmp/cal-n$n-h$h.txt"
        for dist in uniform zipf; do
            out=$tmp/run-n$n-h$h-$dist
            ld=$(load1)
            "${MPIRUN[@]}" -np "$n" "$MOEPROF" run "$CFG" "${sets[@]}" \
                --set routing.distribution="$dist" --iters "$ITERS" --warmup 2 --out "$out" \
                --compare --calibration "$cal" > "$out.txt"
            # phase,modelled,measured,predicted,error_pct,...,wait ($10),samples,layer ($12)
            awk -F, -v n="$n" -v d="$dist" -v hf="$h/$f" -v t="$t" -v ld="$ld" '
                NR > 1 && $12 == "0" && $1 ~ /^fwd\.(dispatch|experts|combine|modelled)$/ {
                    e = $5 + 0; miss = (e > 15 || e < -15)
                    w = $10 == "" ? "-" : sprintf("%.3f", 1e3 * $10)
                    printf "  %5d %-7s %-9s %6d %-13s %9.3f %9.3f %+7.1f%s %8s %5s\n",
                           n, d, hf, t, $1, 1e3 * $3, 1e3 * $4, e, miss ? "*" : " ", w, ld
                }' "$out/compare.csv" | tee -a "$tmp/table.txt"
        done
    done
done
cells=$(wc -l < "$tmp/table.txt")
misses=$(grep -c '\*' "$tmp/table.txt" || true)
echo "# $((cells - misses)) of $cells within +-15 % ('*': beyond)"
