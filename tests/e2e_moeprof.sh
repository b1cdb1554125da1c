#!/usr/bin/env bash
# e2e_moeprof.sh: moeprof under mpirun (OpenMPI), on the CPU backend.
#  1. The expert-parallel layer equals the one-process layer (tests/mpi_test_eplayer.c,
#     its own oracle) for N = 1, 2, 3, 4 ranks; the wait / transfer split, the tiers and
#     the overhead statistics against hand-worked answers and a staged live skew
#     (tests/mpi_test_records.c, N = 3).
#  2. `moeprof run` of the bundled example writes what it promises: phases.csv with one
#     row per (rank, iteration, layer, phase), 15 phases (counts has no backward); a
#     routing trace whose counts add up to tokens_per_gpu x top_k per (iteration, rank);
#     wait_s of each all-to-all row = its group's last start - its start, clipped to
#     [0, dur_s], 0 for compute; dispatch matrices whose row sums are the same tokens x hidden x 4 bytes and whose
#     dense nccl-tests form equals the sparse form rounded up to 16 bytes; combine the
#     transpose of dispatch; a Chrome trace that is valid JSON with one process per rank
#     and every phase; the same seed gives the same routing trace and matrices.
#  3. moesim replays what moeprof recorded: the routing trace of the 4-rank run, replayed
#     with routing.distribution = trace (same placement, 4 B per element), gives a
#     dispatch matrix (moesim run --matrix-out) byte-identical to the one the ranks
#     measured in iteration 0; moesim reads the dense .alltoallv form and simulates it
#     exactly as the pairs form (same per-GPU and per-link CSVs); --matrix-out without
#     a routing is refused (exit 2).
#     Zipf skew: the expert shares of the 4-rank run (the gate's top-k under the
#     calibrated bias) match the successive-sampling law of Zipf(1) popularity, closed
#     form for top-2 (pi_e = p_e + sum_j!=e p_j p_e / (1 - p_j), share pi_e / 2), within
#     4 standard deviations of the run's and the calibration's token counts; the
#     popularity ranking is read off moesim's routing of 800k tokens with the same seed,
#     whose shares must match the closed form too. Forced routing: the 4-rank run
#     replayed from its own routing trace (routing.distribution = trace) writes the same
#     routing trace and the same dispatch and combine matrices.
#  4. Bad input (a bad --set key, ep that does not divide the ranks, an unknown option):
#     exit 2, the message once, no file in --out DIR; the ep refusal names the file:line
#     or --set where parallel.ep (or, derived, the cluster key) was set.
#  5. A rank killed mid-run: every rank and mpirun exit non-zero within 10 s.
# Run from the repository root: MOEPROF=build/bin/moeprof BUILD=build bash tests/e2e_moeprof.sh
set -u

MOEPROF=${MOEPROF:-build/bin/moeprof}
BUILD=${BUILD:-build}
EPTEST=$BUILD/tests/mpi_test_eplayer
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
# OpenMPI's own allocations are not ours to check under ASan.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
MPIRUN=(timeout 60 mpirun --oversubscribe -q)
[ "$(id -u)" -eq 0 ] && MPIRUN+=(--allow-run-as-root)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/moeprof-e2e.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

npass=0
nfail=0
pass() { echo "ok - $1"; npass=$((npass + 1)); }
fail() { echo "FAIL - $1"; nfail=$((nfail + 1)); }

# ---- 1. N-rank layer == one-process layer
for n in 1 2 3 4; do
    if "${MPIRUN[@]}" -np "$n" "$EPTEST" > "$tmp/ep$n.log" 2>&1 &&
        grep -q "^PASS: np=$n, 0 failure" "$tmp/ep$n.log"; then
        pass "eplayer == one-process layer, np=$n ($(grep -c '^ok' "$tmp/ep$n.log") tensors)"
    else
        fail "eplayer np=$n"; grep -v '^ok' "$tmp/ep$n.log" | head -20
    fi
done

if "${MPIRUN[@]}" -np 3 "$BUILD/tests/mpi_test_records" > "$tmp/rec.log" 2>&1 &&
    grep -q "^PASS: np=3, 0 failure" "$tmp/rec.log"; then
    pass "records: waits, tiers, overhead interval, live skew ($(grep -c '^ok' "$tmp/rec.log") checks)"
else
    fail "records"; grep -v '^ok' "$tmp/rec.log" | head -20
fi

# The CUDA backend with NCCL (built where nvcc and NCCL are found): one rank, one GPU, or
# one SKIP line without a GPU.
if [ -x "$BUILD/tests/mpi_gpu_test_eplayer" ]; then
    "${MPIRUN[@]}" -np 1 "$BUILD/tests/mpi_gpu_test_eplayer" > "$tmp/gpu.log" 2>&1
    rc=$?
    if [ "$rc" -eq 0 ] && grep -q "^SKIP: " "$tmp/gpu.log"; then
        echo "# $(grep '^SKIP: ' "$tmp/gpu.log")"
    elif [ "$rc" -eq 0 ] && grep -q "^PASS: np=1, 0 failure" "$tmp/gpu.log"; then
        pass "cuda + nccl eplayer == one-process cuda layer, np=1"
    else
        fail "cuda + nccl eplayer (rc $rc)"; cat "$tmp/gpu.log"
    fi
fi

# ---- 2. the example's records
CFG=configs/examples/moeprof-cpu.ini
T=512 K=2 H=256 ITERS=3
run_example() { # DIR NP [ARGS...]
    local dir=$1 np=$2
    shift 2
    "${MPIRUN[@]}" -np "$np" "$MOEPROF" run $CFG --iters $ITERS --warmup 1 --seed 7 \
        --out "$dir" "$@" > "$dir.stdout" 2> "$dir.stderr"
}
if run_example "$tmp/a" 4; then pass "example runs on 4 ranks"; else
    fail "example on 4 ranks"; cat "$tmp/a.stderr"; fi
grep -q "^  fwd.dispatch " "$tmp/a.stdout" && grep -q "clock offsets" "$tmp/a.stdout" &&
    pass "summary table has the phases and the clock offsets" || fail "summary table"

rows=$(($(wc -l < "$tmp/a/phases.csv") - 1))
[ "$rows" -eq $((4 * ITERS * 15)) ] && pass "phases.csv: $rows rows = 4 ranks x $ITERS x 15" ||
    fail "phases.csv has $rows rows, want $((4 * ITERS * 15))"

# wait_s: from the CSV's own starts, EP groups of 2 (the example's parallel.ep).
python3 - "$tmp/a/phases.csv" 2 <<'PY' && pass "phases.csv: wait_s = group's last start - start, clipped" || fail "phases.csv wait_s"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
ep = int(sys.argv[2])
comm = ("counts", "dispatch", "combine")
last = {}
for r in rows:
    k = (int(r["rank"]) // ep, r["iteration"], r["layer"], r["phase"])
    last[k] = max(last.get(k, -1e9), float(r["start_s"]))
n = 0
for r in rows:
    w, s, d = float(r["wait_s"]), float(r["start_s"]), float(r["dur_s"])
    if r["phase"].split(".")[1] in comm:
        want = min(max(last[(int(r["rank"]) // ep, r["iteration"], r["layer"], r["phase"])] - s, 0), d)
        assert abs(w - want) < 2e-9, (r, want)
        n += w > 0
    else:
        assert w == 0, r
assert n > 0, "no all-to-all waited at all"
PY

# Routing trace: per (iteration, gpu) the counts add up to T x K.
bad=$(awk -v want=$((T * K)) '!/^#/ && NF == 5 { s[$2 " " $3] += $5 }
      END { n = 0; for (k in s) if (s[k] != want) n++; print n + (length(s) == 0) }' \
      "$tmp/a/routing.trace")
[ "$bad" -eq 0 ] && pass "routing trace: counts add to tokens x top_k on every rank" ||
    fail "routing trace counts ($bad bad)"

# Dispatch rows sum to T K H 4 bytes; dense == sparse rounded to 16; combine = transpose.
python3 - "$tmp/a" $ITERS $((T * K * H * 4)) <<'PY' && pass "matrices: row sums, dense == sparse, combine = transpose" || fail "matrices"
import sys
d, iters, want = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def sparse(p):
    m = {}
    for line in open(p):
        line = line.split('#')[0].split()
        if line: m[(int(line[0]), int(line[1]))] = int(line[2])
    return m
for it in range(iters):
    disp = sparse(f"{d}/dispatch-l0-i{it}.matrix")
    comb = sparse(f"{d}/combine-l0-i{it}.matrix")
    dense = [list(map(int, l.split())) for l in open(f"{d}/dispatch-l0-i{it}.alltoallv")]
    n = len(dense)
    assert all(len(r) == n for r in dense)
    for s in range(n):
        assert sum(v for (a, b), v in disp.items() if a == s) == want, (it, s)
        for t in range(n):
            v = disp.get((s, t), 0)
            assert dense[s][t] == (v + 15) // 16 * 16
            assert comb.get((t, s), 0) == v
PY

# Expert-side buffers sized from the counts: the rows each rank received, from the
# routing trace (round-robin: expert e on rank e mod ep of its group; the same routing
# every iteration: same inputs, same weights), span the summary's min .. max, and the
# skew sends some rank more than the average T K.
python3 - "$tmp/a/routing.trace" "$tmp/a.stdout" 2 $((T * K)) <<'PY' && pass "buffers: rows received per rank = the routing trace's counts, peak above the average" || fail "buffers line"
import re, sys
ep, avg = int(sys.argv[3]), int(sys.argv[4])
cnt = {}
for line in open(sys.argv[1]):
    f = line.split('#')[0].split()
    if len(f) == 5 and f[0] == "0" and f[1] == "0":
        cnt[(int(f[2]), int(f[3]))] = int(f[4])
ranks = 1 + max(g for g, _ in cnt)
rows = [sum(v for (s, e), v in cnt.items() if s // ep == r // ep and e % ep == r % ep)
        for r in range(ranks)]
m = re.search(r"rows received per layer (\d+) \.\. (\d+) over ranks \(average (\d+)\)",
              open(sys.argv[2]).read())
assert m, "no buffers line"
assert (int(m[1]), int(m[2]), int(m[3])) == (min(rows), max(rows), avg), (m.groups(), rows)
assert max(rows) > avg, rows
PY

python3 - "$tmp/a/trace.json" <<'PY' && pass "trace.json: valid JSON, one process per rank, every phase" || fail "trace.json"
import json, sys
t = json.load(open(sys.argv[1]))["traceEvents"]
pids = {e["pid"] for e in t if e.get("ph") == "X"}
names = {e["name"] for e in t if e.get("ph") == "X"}
assert pids == {0, 1, 2, 3}, pids
want = {f"F {s}" for s in "gate permute counts dispatch experts combine unpermute shared".split()}
want |= {f"B {s}" for s in "gate permute dispatch experts combine unpermute shared".split()}
assert names == want, names ^ want
for e in t:
    if e.get("ph") == "X":
        assert ("wait_s" in e["args"]) == (e["tid"] == 1), e
PY

if run_example "$tmp/b" 4 && cmp -s "$tmp/a/routing.trace" "$tmp/b/routing.trace" &&
    cmp -s "$tmp/a/dispatch-l0-i2.matrix" "$tmp/b/dispatch-l0-i2.matrix"; then
    pass "same seed, same routing trace and matrices"
else
    fail "determinism"
fi

# ---- 3. moesim replays the records
MOESIM=${MOESIM:-build/bin/moesim}
SIM4=(--set cluster.gpus_per_node=4 --no-timing)
if "$MOESIM" run $CFG "${SIM4[@]}" --set routing.distribution=trace \
        --set routing.trace="$tmp/a/routing.trace" --set model.dispatch_bytes_per_elem=4 \
        --matrix-out "$tmp/a/sim.matrix" > /dev/null 2> "$tmp/sim.stderr" &&
    cmp -s "$tmp/a/sim.matrix" "$tmp/a/dispatch-l0-i0.matrix"; then
    pass "moesim replay of the routing trace: the dispatch matrix the ranks measured"
else
    fail "moesim replay"; cat "$tmp/sim.stderr"; diff "$tmp/a/sim.matrix" "$tmp/a/dispatch-l0-i0.matrix" | head
fi
for f in matrix alltoallv; do
    "$MOESIM" run $CFG "${SIM4[@]}" --set traffic.pattern=matrix \
        --set traffic.matrix="$tmp/a/dispatch-l0-i1.$f" --gpu-csv "$tmp/a/g-$f.csv" \
        --link-csv "$tmp/a/l-$f.csv" > /dev/null 2> "$tmp/sim.stderr" || cat "$tmp/sim.stderr"
done
cmp -s "$tmp/a/g-matrix.csv" "$tmp/a/g-alltoallv.csv" && cmp -s "$tmp/a/l-matrix.csv" "$tmp/a/l-alltoallv.csv" &&
    [ -s "$tmp/a/l-matrix.csv" ] && pass "moesim: the dense .alltoallv simulates as the pairs .matrix" ||
    fail "moesim: dense and pairs forms differ"
"$MOESIM" run $CFG "${SIM4[@]}" --set traffic.pattern=alltoall --matrix-out "$tmp/x.matrix" \
    > /dev/null 2> "$tmp/sim.stderr"
rc=$?
[ "$rc" -eq 2 ] && grep -q -- "--matrix-out: only for traffic.pattern moe (not alltoall)" "$tmp/sim.stderr" &&
    [ ! -e "$tmp/x.matrix" ] && pass "moesim --matrix-out without a routing: exit 2" ||
    fail "moesim --matrix-out without a routing: rc $rc"

# ---- Zipf shares
"$MOESIM" run $CFG "${SIM4[@]}" --seed 7 --set routing.tokens_per_gpu=200000 \
    --routing-trace "$tmp/sim-zipf.trace" > /dev/null 2> "$tmp/sim.stderr" || cat "$tmp/sim.stderr"
python3 - "$tmp/sim-zipf.trace" "$tmp/a/routing.trace" $((4 * T)) 4096 <<'PY' && pass "zipf(1): measured expert shares = successive sampling of the popularity" || fail "zipf shares"
import math, sys
def shares(path):
    c = {}
    for line in open(path):
        f = line.split('#')[0].split()
        if len(f) == 5 and f[0].isdigit() and f[1] == "0":     # iteration 0: distinct tokens
            c[int(f[3])] = c.get(int(f[3]), 0) + int(f[4])
    t = sum(c.values())
    return [c.get(e, 0) / t for e in range(8)]
sim, got = shares(sys.argv[1]), shares(sys.argv[2])
tokens, cal = int(sys.argv[3]), int(sys.argv[4])
E, K, s = 8, 2, 1.0
order = sorted(range(E), key=lambda e: -sim[e])          # popularity rank 1 first
h = sum(r ** -s for r in range(1, E + 1))
p = [0.0] * E
for r, e in enumerate(order):
    p[e] = (r + 1) ** -s / h
pi = [p[e] + sum(p[j] * p[e] / (1 - p[j]) for j in range(E) if j != e) for e in range(E)]
want = [x / K for x in pi]
for e in range(E):
    q = pi[e]                                            # a token picks e with prob. q
    sd = math.sqrt(q * (1 - q) / tokens + q * (1 - q) / cal) / K
    assert abs(sim[e] - want[e]) < 0.003, ("moesim", e, sim[e], want[e])
    assert abs(got[e] - want[e]) < 4 * sd + 1e-3, ("moeprof", e, got[e], want[e], sd)
PY

# ---- forced routing: the run replayed from its own routing trace
same_records() { # DIR1 DIR2: same routing trace and matrices
    local m
    cmp -s "$1/routing.trace" "$2/routing.trace" || return 1
    for m in "$1"/dispatch-* "$1"/combine-*; do cmp -s "$m" "$2/${m##*/}" || return 1; done
}
if run_example "$tmp/f" 4 --set routing.distribution=trace --set routing.trace="$tmp/a/routing.trace" &&
    same_records "$tmp/a" "$tmp/f"; then
    pass "forced routing from the trace: same routing trace and matrices"
else
    fail "forced routing replay"; cat "$tmp/f.stderr"
fi

"${MPIRUN[@]}" -np 4 "$MOEPROF" run $CFG --set routing.distribution=trace \
    --set routing.trace="$tmp/f/routing.trace" --out "$tmp/f" > /dev/null 2> "$tmp/f2.stderr"
rc=$?
[ "$rc" -eq 2 ] && grep -q "would overwrite routing.trace" "$tmp/f2.stderr" && same_records "$tmp/a" "$tmp/f" &&
    pass "forced routing: --out onto the trace it replays is refused, nothing touched" ||
    fail "forced routing: --out onto its trace: rc $rc"

# ---- 4. bad input: exit 2, the message once, nothing in --out
expect_bad() { # NAME NP MESSAGE-SUBSTRING ARGS...
    local name=$1 np=$2 want=$3 out=$tmp/bad-$1
    shift 3
    "${MPIRUN[@]}" -np "$np" "$MOEPROF" run "$@" --out "$out" > "$tmp/bad.stdout" 2> "$tmp/bad.stderr"
    local rc=$?
    local n; n=$(grep -cF -- "$want" "$tmp/bad.stderr")
    local files; files=$(ls -A "$out" 2> /dev/null | wc -l)
    if [ "$rc" -eq 2 ] && [ "$n" -eq 1 ] && [ "$files" -eq 0 ] && [ ! -s "$tmp/bad.stdout" ]; then
        pass "bad input: $name (exit 2, one line)"
    else
        fail "bad input: $name (rc $rc, message $n times, $files files)"; cat "$tmp/bad.stderr"
    fi
}
expect_bad set-key 2 "--set: model.expertz: unknown key" $CFG --set model.expertz=3
# The ep refusal names where parallel.ep was set (file:line, --set), or, derived from the
# cluster (not set), the key of the derivation set last, as moesim's own rules do.
epline=$(grep -n '^ep *=' $CFG | cut -d: -f1)
expect_bad ep-ranks 3 "$CFG:$epline: parallel.ep: 2 needs a multiple of 2 ranks; mpirun started 3" $CFG
grep -v '^ep *=' $CFG > "$tmp/noep.ini"
gpnline=$(grep -n '^gpus_per_node *=' "$tmp/noep.ini" | cut -d: -f1)
expect_bad ep-derived 3 "$tmp/noep.ini:$gpnline: cluster.gpus_per_node: parallel.ep = 0 (dp = 8) needs a multiple of 8 ranks; mpirun started 3" "$tmp/noep.ini"
expect_bad ep-derived-set 3 "--set: cluster.gpus_per_node: parallel.ep = 0 (dp = 4) needs a multiple of 4 ranks" \
    "$tmp/noep.ini" --set cluster.gpus_per_node=4
expect_bad option 2 "unknown option '--bogus'" $CFG --bogus
expect_bad trace-gpus 2 "routing.trace: $tmp/a/routing.trace:1: gpus=4 in the header, but 2 GPUs expected" \
    $CFG --set routing.distribution=trace --set routing.trace="$tmp/a/routing.trace"
expect_bad trace-tokens 4 "layer 0 iteration 0 gpu 0: 1024 token-expert assignments, but routing.tokens_per_gpu x model.top_k = 2048" \
    $CFG --set routing.distribution=trace --set routing.trace="$tmp/a/routing.trace" \
    --set routing.tokens_per_gpu=1024
expect_bad aux-trace 2 "--set: routing.distribution: trace: forced routing has no aux loss" \
    $CFG --set routing.distribution=trace --set routing.trace="$tmp/a/routing.trace" --aux-alpha 0.01
expect_bad aux-alpha 2 "moeprof run: --aux-alpha: '-1' is not a number in 0..1e6" $CFG --aux-alpha -1
expect_bad backend-cuda-mpi 2 "moeprof run: --backend cuda" \
    $CFG --backend cuda
expect_bad ep-more-ranks 2 "--set: parallel.ep: 4 needs a multiple of 4 ranks; mpirun started 2" $CFG \
    --set parallel.ep=4

# ---- 5. one rank killed mid-run: all exit non-zero within 10 s
timeout 60 mpirun --oversubscribe -q $([ "$(id -u)" -eq 0 ] && echo --allow-run-as-root) \
    -np 2 "$MOEPROF" run $CFG --iters 100000 --warmup 0 > /dev/null 2> "$tmp/kill.stderr" &
tpid=$!                              # timeout's pid; mpirun is its child, the ranks mpirun's
victim=""
mpid=""
for _ in $(seq 1 100); do
    [ -n "$mpid" ] || mpid=$(pgrep -P "$tpid" -x mpirun)
    kids=$([ -n "$mpid" ] && pgrep -P "$mpid" -x moeprof | tr '\n' ' ')
    [ "$(echo $kids | wc -w)" -eq 2 ] && victim=$(echo $kids | cut -d' ' -f2) && break
    sleep 0.1
done
if [ -n "$victim" ]; then
    sleep 1
    others=$(pgrep -P "$mpid" -x moeprof | grep -vx "$victim" | tr '\n' ' ')
    t0=$(date +%s.%N)
    kill -KILL "$victim"
    wait "$tpid"
    rc=$?
    # mpirun's exit may come a moment before its ranks are gone: wait for them too.
    for _ in $(seq 1 100); do
        alive=0
        for p in $others; do
            [ -e "/proc/$p" ] && [ "$(cut -d' ' -f3 "/proc/$p/stat" 2> /dev/null)" != Z ] &&
                alive=$((alive + 1))
        done
        [ "$alive" -eq 0 ] && break
        sleep 0.1
    done
    dt=$(echo "$(date +%s.%N) - $t0" | bc)
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$alive" -eq 0 ] &&
        [ "$(echo "$dt < 10" | bc)" -eq 1 ]; then
        pass "killed rank: mpirun exit $rc after ${dt%???????} s, no rank left"
    else
        fail "killed rank: rc $rc after $dt s, $alive ranks alive"
    fi
else
    fail "killed rank: ranks did not start"; kill "$tpid" 2> /dev/null; wait "$tpid"
fi

echo "# e2e_moeprof: $npass passed, $nfail failed"
[ "$nfail" -eq 0 ]
