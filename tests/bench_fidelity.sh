#!/usr/bin/env bash
# bench_fidelity.sh: how close moesim's prediction comes to a measured MoE layer after
# `moeprof calibrate` (make bench; figures in docs/PERFORMANCE.md, "moeprof: fidelity").
# Not a timed test: it prints a table and asserts nothing about the error.
#
# For each rank count in RANKS (one EP group of all of them) and each layer size in
# SIZES (hidden:expert_ffn_hidden:tokens_per_gpu, on configs/examples/moeprof-cpu.ini):
#  1. `moeprof calibrate --buffers cold --reps REPS` on those ranks and that layer: the
#     expert table and the intra-node latency and bandwidth (cold: the layer's buffers
#     come out of its GEMMs, not out of cache) of the protocol band that holds the
#     layer's all-to-all bytes per peer (its line printed, beside one line over every size);
#  2. for uniform and Zipf(1.0) routing, `moeprof run --iters ITERS --compare
#     --calibration` the fragment of step 1;
#  3. from DIR/compare.csv, for fwd.dispatch, fwd.experts, fwd.combine and the forward
#     layer's modelled sum (fwd.modelled) of layer 0: the measured median over ranks,
#     the prediction, the error (predicted - measured) / measured; then "busy", the same
#     measurement less each all-to-all's wait for the slowest peer of the group (from
#     DIR/phases.csv), against the prediction less its predicted wait (the transfer, and
#     for fwd.modelled the per-rank busy sum), its error, compare's median wait, its
#     predicted wait (for the combine: the group's latest experts end less the rank's
#     own), and the slowest rank's error (for fwd.modelled: the slowest rank measured
#     against the slowest prediction, as the layer lasts as long as its slowest rank);
#     '*' marks an error beyond +-15 %.
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
# KEEP=1 keeps the calibrations and runs (their folder is printed).
if [ -n "${KEEP:-}" ]; then echo "# keeping $tmp"; else trap 'rm -rf "$tmp"' EXIT; fi

load1() { cut -d' ' -f1 /proc/loadavg; }

# row RANKS ROUTING SIZE TOKENS LOAD DIR: the table's lines of one run, from
# DIR/compare.csv (measured, predicted, error of layer 0) and DIR/phases.csv (busy: per
# record its duration less its wait for the slowest peer, per rank the median over the
# iterations (for fwd.modelled, of the three phases' sum), then the median over ranks:
# the part of the measurement moesim's layer model, in which every rank starts each
# phase together, represents).
row() {
    python3 - "$@" <<'EOF'
import csv, statistics as st, sys
n, dist, size, tokens, load, d = sys.argv[1:]
want = ["fwd.dispatch", "fwd.experts", "fwd.combine", "fwd.modelled"]
cmp = {r["phase"]: r for r in csv.DictReader(open(d + "/compare.csv")) if r["layer"] == "0"}
busy = {}                                   # (phase, rank) -> {iteration: seconds}
for r in csv.DictReader(open(d + "/phases.csv")):
    if r["layer"] != "0" or r["phase"] not in want:
        continue
    b = float(r["dur_s"]) - float(r["wait_s"])
    for ph in (r["phase"], "fwd.modelled"):
        it = busy.setdefault((ph, r["rank"]), {})
        it[r["iteration"]] = it.get(r["iteration"], 0.0) + b
pw_comb = float(cmp["fwd.combine"]["wait_predicted_s"])
for ph in want:
    c = cmp[ph]
    m, p = float(c["measured_median_s"]), float(c["predicted_s"])
    e = 100 * (p - m) / m
    bm = st.median(st.median(v.values()) for (q, _), v in busy.items() if q == ph)
    # busy against the prediction less its predicted wait (the modelled sum: the combine's)
    pw = float(c["wait_predicted_s"]) if c["wait_predicted_s"] else 0.0
    pb = p - (pw_comb if ph == "fwd.modelled" else pw)
    be = 100 * (pb - bm) / bm
    w = "%8.3f" % (1e3 * float(c["wait_median_s"])) if c["wait_median_s"] else "%8s" % "-"
    pws = "%8.3f" % (1e3 * pw) if c["wait_predicted_s"] else "%8s" % "-"
    se = float(c["slowest_error_pct"])
    print("  %5s %-7s %-9s %6s %-13s %9.3f %9.3f %+7.1f%s %9.3f %+7.1f%s %s %s %+7.1f%s %5s"
          % (n, dist, size, tokens, ph, 1e3 * m, 1e3 * p, e, "*" if abs(e) > 15 else " ",
             1e3 * bm, be, "*" if abs(be) > 15 else " ", w, pws, se,
             "*" if abs(se) > 15 else " ", load))
EOF
}

echo "# fidelity: moeprof calibrate --buffers cold --reps $REPS, then moeprof run --iters $ITERS" \
     "--compare; $(nproc) core(s); ranks: $RANKS"
printf "# %5s %-7s %-9s %6s %-13s %9s %9s %8s %9s %8s %8s %8s %8s %5s\n" ranks routing hid/ffn tokens \
       phase measured predicted error busy error wait "wait" slowest load
printf "# %5s %-7s %-9s %6s %-13s %9s %9s %8s %9s %8s %8s %8s %8s %5s\n" "" "" "" "" "" "(ms)" "(ms)" \
       "(%)" "(ms)" "(%)" "(ms)" "pred(ms)" "err(%)" "(1m)"
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
        # the all-to-all line written (the band holding the layer's bytes per peer) and,
        # for comparison, one line over every size
        grep -E '^# all-to-all(, one line| fit written)' "$tmp/cal-n$n-h$h.txt" |
            sed "s/^# /# calibrate $n ranks $h\/$f: /" || true
        for dist in uniform zipf; do
            out=$tmp/run-n$n-h$h-$dist
            ld=$(load1)
            "${MPIRUN[@]}" -np "$n" "$MOEPROF" run "$CFG" "${sets[@]}" \
                --set routing.distribution="$dist" --iters "$ITERS" --warmup 2 --out "$out" \
                --compare --calibration "$cal" > "$out.txt"
            row "$n" "$dist" "$h/$f" "$t" "$ld" "$out" | tee -a "$tmp/table.txt"
        done
    done
done
cells=$(wc -l < "$tmp/table.txt")
misses=$(awk '{ print $8 }' "$tmp/table.txt" | grep -c '\*' || true)
bmiss=$(awk '{ print $10 }' "$tmp/table.txt" | grep -c '\*' || true)
smiss=$(awk '$5 == "fwd.modelled" { print $13 }' "$tmp/table.txt" | grep -c '\*' || true)
scells=$(awk '$5 == "fwd.modelled"' "$tmp/table.txt" | wc -l)
echo "# within +-15 % ('*': beyond): $((cells - misses)) of $cells against the measurement," \
     "$((cells - bmiss)) of $cells against its busy part; the layer (fwd.modelled, slowest" \
     "rank against the slowest prediction): $((scells - smiss)) of $scells"
