#!/usr/bin/env bash
# moeprof on CPU ranks (make bench; figures in docs/PERFORMANCE.md): the bundled
# example's layer (configs/examples/moeprof-cpu.ini) on 1, 2 and 4 ranks, one EP group
# of all of them, ITERS timed and ITERS untimed iterations after 3 warm-up ones:
#  - per phase, the median duration over ranks and timed iterations;
#  - the instrumentation overhead moeprof reports (per-pair ratios timed / untimed),
#    and again on 1 rank over OVH_PAIRS pairs (no MPI wait in the iteration);
#  - the rows all-to-all against a plain MPI_Alltoallv of the same bytes
#    (tests/mpi_bench_alltoallv.c, the run's dispatch-l0-i0.matrix): paired, alternating
#    calls of both on the same buffers, A2A_REPS pairs in a loop (barrier before each
#    call; hot, then with 8 MiB written between calls) and LAYER_REPS pairs of
#    iterations inside the layer itself (its routing forced from the run's
#    routing.trace, so the same bytes: checked; timed from the last arrival, as
#    moeprof does); then moeprof's own forward dispatch figure (transfer after the last
#    rank arrived, slowest rank per call, median over calls) against the plain medians.
set -euo pipefail
MOEPROF=${MOEPROF:-build/bin/moeprof}
BUILD=${BUILD:-build}
ITERS=${ITERS:-50}
OVH_PAIRS=${OVH_PAIRS:-1000}
A2A_REPS=${A2A_REPS:-300}
LAYER_REPS=${LAYER_REPS:-200}
here=$(cd "$(dirname "$0")" && pwd)
CFG=$here/../configs/examples/moeprof-cpu.ini
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
# Each run under timeout: a hang fails the benchmark instead of stalling it.
MPIRUN=(timeout 300 mpirun --oversubscribe -q)
[ "$(id -u)" -eq 0 ] && MPIRUN+=(--allow-run-as-root)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/moeprof-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

echo "# moeprof run: $(basename "$CFG"), ep = ranks, $ITERS timed + $ITERS untimed iterations"
for n in 1 2 4; do
    "${MPIRUN[@]}" -np $n "$MOEPROF" run "$CFG" --set parallel.ep=$n --iters "$ITERS" \
        --warmup 3 --out "$tmp/n$n" > "$tmp/n$n.txt"
    echo "# $n rank(s):"
    grep -E "^# (iteration|timer cost|routing)" "$tmp/n$n.txt"
done

echo "# instrumentation overhead, 1 rank, $OVH_PAIRS pairs"
# (about 2 x OVH_PAIRS x 0.1 s: a longer timeout)
timeout 900 "${MPIRUN[@]:2}" -np 1 "$MOEPROF" run "$CFG" --set parallel.ep=1 --iters "$OVH_PAIRS" --warmup 3 |
    grep -E "^# (iteration|timer cost)"

python3 - "$tmp" <<'PY'
import csv, statistics, sys
d = sys.argv[1]
runs = {n: list(csv.DictReader(open(f"{d}/n{n}/phases.csv"))) for n in (1, 2, 4)}
phases = []
for r in runs[1] + runs[4]:
    if r["phase"] not in phases:
        phases.append(r["phase"])
print("# phase             median ms:  1 rank   2 ranks   4 ranks")
for p in phases:
    cols = []
    for n in (1, 2, 4):
        v = [float(r["dur_s"]) for r in runs[n] if r["phase"] == p]
        cols.append(f"{1e3 * statistics.median(v):9.3f}" if v else "        -")
    print(f"  {p:26s}" + " ".join(cols))
PY

# The example's layer: hidden 256 fp32 (one row: 1024 B), expert ffn 512, top-2, 1 shared.
LAYER=(--hidden 256 --ffn 512 --top-k 2 --shared 1)
ROW_BYTES=$((256 * 4))
for n in 2 4; do
    m=$tmp/n$n/dispatch-l0-i0.matrix
    "${MPIRUN[@]}" -np $n "$BUILD/tests/mpi_bench_alltoallv" "$m" --row $ROW_BYTES \
        --reps "$A2A_REPS" | sed "s|$tmp/||" | tee "$tmp/hot$n.txt"
    "${MPIRUN[@]}" -np $n "$BUILD/tests/mpi_bench_alltoallv" "$m" --row $ROW_BYTES \
        --reps "$A2A_REPS" --evict 8 | sed "s|$tmp/||"
    "${MPIRUN[@]}" -np $n "$BUILD/tests/mpi_bench_alltoallv" "$m" --row $ROW_BYTES \
        --reps "$LAYER_REPS" --sync arrival --layer "$tmp/n$n/routing.trace" "${LAYER[@]}" |
        sed "s|$tmp/||" | tee "$tmp/layer$n.txt"
done

echo "# forward dispatch: moeprof run's transfer vs the plain MPI_Alltoallv medians above"
printf "#  ranks        bytes  moeprof  plain in layer  plain hot   ratio in layer  ratio hot\n"
printf "#                 (B)     (us)            (us)       (us)\n"
for n in 2 4; do
    layer_us=$(awk '$1 == "fwd.dispatch" { print $3 }' "$tmp/layer$n.txt")
    hot_us=$(awk '$1 == "alltoallv" { print $3 }' "$tmp/hot$n.txt")
    python3 - "$tmp/n$n" "$layer_us" "$hot_us" <<'PY'
import csv, statistics, sys
d, layer_us, hot_us = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
rows = list(csv.DictReader(open(f"{d}/phases.csv")))
per_call, cross = {}, {}
for r in rows:
    if r["phase"] == "fwd.dispatch":
        k = (r["iteration"], r["layer"])
        per_call[k] = max(per_call.get(k, 0.0), float(r["dur_s"]) - float(r["wait_s"]))
        cross[k] = cross.get(k, 0) + int(r["bytes"])
ranks = len({r["rank"] for r in rows})
us = 1e6 * statistics.median(per_call.values())
print(f"  {ranks:6d} {cross[min(cross)]:12d} {us:8.1f} {layer_us:15.1f} {hot_us:10.1f} "
      f"{layer_us / us:16.2f} {hot_us / us:10.2f}")
PY
done
