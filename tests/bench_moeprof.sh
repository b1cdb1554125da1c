#!/usr/bin/env bash
# moeprof on CPU ranks (make bench; figures in docs/PERFORMANCE.md): the bundled
# example's layer (configs/examples/moeprof-cpu.ini) on 1, 2 and 4 ranks, one EP group
# of all of them, ITERS timed and ITERS untimed iterations after 3 warm-up ones:
#  - per phase, the median duration over ranks and timed iterations;
#  - the instrumentation overhead moeprof reports (paired timed - untimed iterations);
#  - the instrumentation overhead again on 1 rank over OVH_PAIRS pairs (no MPI wait);
#  - the forward dispatch's transfer (after the last rank arrived; slowest rank per call,
#    median over calls) against a plain MPI_Alltoallv of the same byte matrix and rows
#    (tests/mpi_bench_alltoallv.c, barrier before each call, slowest rank, median), with
#    hot caches and with 64 MiB written between calls (then the send buffer), as a
#    layer's compute leaves them.
set -euo pipefail
MOEPROF=${MOEPROF:-build/bin/moeprof}
BUILD=${BUILD:-build}
ITERS=${ITERS:-20}
OVH_PAIRS=${OVH_PAIRS:-100}
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
"${MPIRUN[@]}" -np 1 "$MOEPROF" run "$CFG" --set parallel.ep=1 --iters "$OVH_PAIRS" --warmup 3 |
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

echo "# forward dispatch: moeprof's transfer vs a plain MPI_Alltoallv of the same bytes"
printf "#  ranks        bytes  moeprof  plain hot  plain cold   moeprof  plain hot  plain cold  ratio hot  ratio cold\n"
printf "#                 (B)     (us)       (us)        (us)    (GB/s)     (GB/s)      (GB/s)\n"
ROW_BYTES=$((256 * 4))            # the example's hidden x fp32: one row
for n in 2 4; do
    hot=$("${MPIRUN[@]}" -np $n "$BUILD/tests/mpi_bench_alltoallv" \
        "$tmp/n$n/dispatch-l0-i0.matrix" 200 10 $ROW_BYTES 0 | awk '!/^#/ { print $3 }')
    cold=$("${MPIRUN[@]}" -np $n "$BUILD/tests/mpi_bench_alltoallv" \
        "$tmp/n$n/dispatch-l0-i0.matrix" 200 10 $ROW_BYTES 64 | awk '!/^#/ { print $2, $3 }')
    python3 - "$tmp/n$n" $cold $hot <<'PY'
import csv, statistics, sys
d, cross, cold_us, hot_us = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
rows = list(csv.DictReader(open(f"{d}/phases.csv")))
per_call = {}
for r in rows:
    if r["phase"] == "fwd.dispatch":
        k = (r["iteration"], r["layer"])
        per_call[k] = max(per_call.get(k, 0.0), float(r["dur_s"]) - float(r["wait_s"]))
ranks = len({r["rank"] for r in rows})
us = 1e6 * statistics.median(per_call.values())
gb = lambda t: cross / t / 1e3
print(f"  {ranks:6d} {cross:12d} {us:8.1f} {hot_us:10.1f} {cold_us:11.1f} {gb(us):9.3f} "
      f"{gb(hot_us):10.3f} {gb(cold_us):11.3f} {hot_us / us:10.2f} {cold_us / us:11.2f}")
PY
done
