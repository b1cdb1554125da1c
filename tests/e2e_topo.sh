#!/usr/bin/env bash
# e2e_topo.sh: moeprof topo and --bind (hwloc), under mpirun (OpenMPI).
#  1. tests/mpi_test_hwtopo (np 1, 2): the counts equal hwloc's API, the fragment loads
#     in moesim's config, each rank's binding equals its sched_getaffinity, and with no
#     GPU the ranks of a node get disjoint CPUs.
#  2. `moeprof topo --out F`: F is the fragment printed; `moesim run F model.ini` takes
#     nodes and gpus_per_node from it (its cluster line says so); a second run replaces
#     F; bad usage (an unknown option, --out in a missing folder, a stray argument)
#     exits 2 with one line and writes nothing.
#  3. `moeprof run --bind gpu` (np 2) prints where each rank ran, and with no GPU on a
#     node of at least 2 PUs the two ranks' CPU lists differ; --bind bad exits 2.
# Run from the repository root: MOEPROF=build/bin/moeprof MOESIM=build/bin/moesim BUILD=build bash tests/e2e_topo.sh
set -u

MOEPROF=${MOEPROF:-build/bin/moeprof}
MOESIM=${MOESIM:-build/bin/moesim}
BUILD=${BUILD:-build}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
MPIRUN=(timeout 60 mpirun --oversubscribe -q)
[ "$(id -u)" -eq 0 ] && MPIRUN+=(--allow-run-as-root)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/topo-e2e.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

npass=0
nfail=0
pass() { echo "ok - $1"; npass=$((npass + 1)); }
fail() { echo "FAIL - $1"; nfail=$((nfail + 1)); }

# ---- 1. the unit checks under mpirun
for n in 1 2; do
    if "${MPIRUN[@]}" -np "$n" "$BUILD/tests/mpi_test_hwtopo" > "$tmp/hw$n.log" 2>&1 &&
        grep -q "^PASS: np=$n, 0 failures" "$tmp/hw$n.log"; then
        pass "hwtopo: counts = hwloc's, fragment loads, binding = sched_getaffinity, np=$n"
    else
        fail "hwtopo np=$n"; grep -v '^ *$' "$tmp/hw$n.log" | tail -20
    fi
done

# ---- 2. moeprof topo and moesim
cat > "$tmp/model.ini" <<'INI'
[model]
hidden = 256
experts = 8
top_k = 2
expert_ffn_hidden = 512
[parallel]
ep = 1
[routing]
tokens_per_gpu = 64
INI
if "$MOEPROF" topo --out "$tmp/cluster.ini" > "$tmp/topo.out" 2> "$tmp/topo.err"; then
    gpn=$(sed -n 's/^gpus_per_node = //p' "$tmp/cluster.ini")
    nodes=$(sed -n 's/^nodes = //p' "$tmp/cluster.ini")
    # The fragment printed is the file written.
    if sed -n '/^; moeprof topo:/,/^;   nic_GBps/p' "$tmp/topo.out" | cmp -s - "$tmp/cluster.ini"; then
        pass "topo: the fragment printed is the file written"
    else
        fail "topo: printed fragment differs from the file"
    fi
    if "$MOESIM" run "$tmp/cluster.ini" "$tmp/model.ini" > "$tmp/sim.out" 2>&1 &&
        grep -q "^# cluster  $nodes nodes x $gpn GPUs = $((nodes * gpn))," "$tmp/sim.out"; then
        pass "moesim run cluster.ini model.ini: $nodes node(s) x $gpn GPUs from the fragment"
    else
        fail "moesim run with the fragment"; head -5 "$tmp/sim.out"
    fi
    cores=$(sed -n 's/^# moeprof topo: hwloc API [0-9.]*; [0-9]* packages\{0,1\}, [0-9]* NUMA nodes\{0,1\}, \([0-9]*\) cores\{0,1\},.*/\1/p' "$tmp/topo.out")
    ncore=$(grep -c '^ *core [0-9]*: pu ' "$tmp/topo.out")
    if [ -n "$cores" ] && [ "$cores" -eq "$ncore" ]; then
        pass "topo: $cores cores stated, $ncore core lines in the tree"
    else
        fail "topo: cores stated '$cores', lines $ncore"
    fi
else
    fail "moeprof topo --out"; cat "$tmp/topo.err"
fi
echo "stale" > "$tmp/old.ini"
if "$MOEPROF" topo --out "$tmp/old.ini" > /dev/null 2>&1 && grep -q '^\[cluster\]' "$tmp/old.ini" &&
    [ -z "$(ls "$tmp" | grep '\.tmp\.')" ]; then
    pass "topo: --out replaces an existing file, no temporary left"
else
    fail "topo: --out over an existing file"
fi
bad() {   # bad NAME ARGS...: exit 2, one line on stderr, nothing new in $tmp/bad
    local name=$1; shift
    mkdir -p "$tmp/bad"
    "$@" > "$tmp/bad.out" 2> "$tmp/bad.err"
    local rc=$?
    if [ "$rc" -eq 2 ] && [ "$(wc -l < "$tmp/bad.err")" -eq 1 ] && [ -z "$(ls -A "$tmp/bad")" ]; then
        pass "$name: exit 2, '$(cat "$tmp/bad.err")'"
    else
        fail "$name: rc $rc"; cat "$tmp/bad.err"; ls -A "$tmp/bad"
    fi
}
bad "topo --frob" "$MOEPROF" topo --frob
bad "topo --out in a missing folder" "$MOEPROF" topo --out "$tmp/bad/no/such/c.ini"
bad "topo stray argument" "$MOEPROF" topo "$tmp/bad/c.ini"
bad "topo under mpirun -np 2, bad option" "${MPIRUN[@]}" -np 2 "$MOEPROF" topo --out
bad "run --bind bad" "${MPIRUN[@]}" -np 2 "$MOEPROF" run configs/examples/moeprof-cpu.ini \
    --bind cores --out "$tmp/bad"

# ---- 3. moeprof run --bind gpu
if "${MPIRUN[@]}" -np 2 "$MOEPROF" run configs/examples/moeprof-cpu.ini --iters 1 --warmup 0 \
    --bind gpu --set routing.tokens_per_gpu=128 > "$tmp/run.out" 2> "$tmp/run.err"; then
    c0=$(sed -n 's/^# rank 0: host [^,]*, cpus \([^,]*\), numa.*/\1/p' "$tmp/run.out")
    c1=$(sed -n 's/^# rank 1: host [^,]*, cpus \([^,]*\), numa.*/\1/p' "$tmp/run.out")
    gpus=$(grep -c '^ *gpu [0-9]*:' "$tmp/topo.out")
    pus=$(nproc)
    if [ -n "$c0" ] && [ -n "$c1" ] && { [ "$gpus" -gt 0 ] || [ "$pus" -lt 2 ] || [ "$c0" != "$c1" ]; }; then
        pass "run --bind gpu: rank 0 on cpus $c0, rank 1 on cpus $c1"
    else
        fail "run --bind gpu: '$c0' '$c1'"; grep '^# rank' "$tmp/run.out"
    fi
else
    fail "run --bind gpu"; cat "$tmp/run.err"
fi

echo "# e2e_topo: $npass passed, $nfail failed"
[ "$nfail" -eq 0 ]
