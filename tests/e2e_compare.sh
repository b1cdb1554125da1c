#!/usr/bin/env bash
# e2e_compare.sh: moeprof run --compare, under mpirun (OpenMPI).
#  1. tests/mpi_test_compare: on a synthetic 2-layer run (no clock) with a calibration
#     made from its own phases and bytes, moesim's prediction equals the measurement
#     within 1e-9 in every modelled phase of each layer and of their sum; bad
#     calibrations and layouts are refused.
#  2. A real 2-rank, 2-layer run with --compare and moeprof topo's fragment as
#     calibration: compare.csv has its stated columns and one row per printed table
#     row, 17 rows for each layer and 17 for their sum (layer = all), the modelled rows
#     carry a prediction and the others none, the sum's predictions are the layers'
#     added, trace.json holds both "rank k" and "predicted rank k" processes, the
#     latter with slices of both layers.
#  3. Bad input, every time exit 2, one line, nothing in --out DIR: a missing or bad
#     calibration file (the bad table named file:line), --compare without --out,
#     --calibration without --compare, eplb placement from a popularity.
# Run from the repository root: MOEPROF=build/bin/moeprof BUILD=build bash tests/e2e_compare.sh
set -u

MOEPROF=${MOEPROF:-build/bin/moeprof}
BUILD=${BUILD:-build}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
MPIRUN=(timeout 60 mpirun --oversubscribe -q)
[ "$(id -u)" -eq 0 ] && MPIRUN+=(--allow-run-as-root)
CFG=configs/examples/moeprof-cpu.ini
SMALL=(--iters 2 --warmup 1 --set routing.tokens_per_gpu=128)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/compare-e2e.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

npass=0
nfail=0
pass() { echo "ok - $1"; npass=$((npass + 1)); }
fail() { echo "FAIL - $1"; nfail=$((nfail + 1)); }

# ---- 1. the synthetic run
if "${MPIRUN[@]}" -np 1 "$BUILD/tests/mpi_test_compare" > "$tmp/unit.log" 2>&1 &&
    grep -q "^PASS: np=1, 0 failures" "$tmp/unit.log"; then
    pass "compare: predicted = measured within 1e-9 when calibrated from the run; refusals"
else
    fail "compare unit"; grep -v '^ *$' "$tmp/unit.log" | tail -20
fi

# ---- 2. a real run
"$MOEPROF" topo --out "$tmp/cluster.ini" > /dev/null 2>&1
if "${MPIRUN[@]}" -np 2 "$MOEPROF" run "$CFG" "${SMALL[@]}" --layers 2 --out "$tmp/out" --compare \
    --calibration "$tmp/cluster.ini" > "$tmp/run.out" 2> "$tmp/run.err"; then
    csv=$tmp/out/compare.csv
    head -1 "$csv" | grep -q '^phase,modelled,measured_median_s,predicted_s,error_pct,slowest_rank,slowest_measured_s,slowest_predicted_s,slowest_error_pct,wait_median_s,samples,layer,' &&
        pass "compare.csv: the stated columns" || fail "compare.csv header: $(head -1 "$csv")"
    table=$(sed -n '/^# compare:/,$p' "$tmp/run.out" | grep -c '^  [fb]wd\.')
    rows=$(($(wc -l < "$csv") - 1))
    [ "$table" -eq "$rows" ] && [ "$rows" -eq 51 ] &&
        pass "compare.csv: $rows rows, as the table" || fail "table $table rows, csv $rows"
    per=$(awk -F, 'NR > 1 { n[$12]++ } END { printf "%d %d %d %d", n["0"], n["1"], n["all"], length(n) }' "$csv")
    [ "$per" = "17 17 17 3" ] && pass "compare.csv: 17 rows each for layers 0, 1 and all" ||
        fail "compare.csv rows per layer (0, 1, all, values): $per"
    blocks=$(grep -c '^# layer [01]: \|^# all 2 layers' "$tmp/run.out")
    [ "$blocks" -eq 3 ] && pass "table: a block per layer and one for the sum" ||
        fail "table: $blocks layer blocks"
    # The sum's prediction of each modelled row is the layers' (per rank, then the median
    # over 2 ranks: a mean, so it adds) within print precision.
    badsum=$(awk -F, 'NR > 1 && $2 == 1 { p[$12 "," $1] = $4 }
        END { for (k in p) { split(k, a, ","); if (a[1] != "all") continue
              s = p["0," a[2]] + p["1," a[2]]; d = p[k] - s; if (d < 0) d = -d
              if (d > 1e-9 * (s > 0 ? s : 1) + 1e-15) print a[2] } }' "$csv")
    [ -z "$badsum" ] && pass "compare.csv: every modelled prediction of the sum = layer 0's + layer 1's" ||
        fail "sum rows: $badsum"
    # modelled = 1 exactly for dispatch, experts, combine and the sums, with a prediction.
    bad=$(awk -F, 'NR > 1 { split($1, p, "."); m = (p[2] ~ /^(dispatch|experts|combine|modelled)$/);
                   if ($2 != m || (m && $4 == "") || (!m && $4 != "")) print $1 }' "$csv")
    [ -z "$bad" ] && pass "compare.csv: predictions exactly where moesim models the phase" ||
        fail "compare.csv modelled rows: $bad"
    n=$(grep -o '"name":"predicted rank [01]"' "$tmp/out/trace.json" | sort -u | wc -l)
    nl=$(grep -o '"layer":[01]' "$tmp/out/trace.json" | sort -u | wc -l)
    [ "$nl" -eq 2 ] && pass "trace.json: predicted slices of both layers" ||
        fail "trace.json: predicted slices of $nl layer(s)"
    m=$(grep -o '"name":"rank [01]"' "$tmp/out/trace.json" | sort -u | wc -l)
    [ "$n" -eq 2 ] && [ "$m" -eq 2 ] && python3 -c "import json,sys; json.load(open(sys.argv[1]))" "$tmp/out/trace.json" &&
        pass "trace.json: valid, measured and predicted processes of both ranks" ||
        fail "trace.json: $m measured, $n predicted processes"
else
    fail "run --compare"; cat "$tmp/run.err"
fi

# ---- 3. bad input
printf 'tokens,fwd_us\n64,10\n32,5\n' > "$tmp/bad.csv"
printf '[calibration]\nexpert_table = bad.csv\n' > "$tmp/badcal.ini"
bad() {   # bad NAME PATTERN ARGS...: exit 2, one line matching PATTERN, DIR empty or absent
    local name=$1 pat=$2; shift 2
    rm -rf "$tmp/bad"
    "${MPIRUN[@]}" -np 2 "$MOEPROF" run "$CFG" "${SMALL[@]}" "$@" > "$tmp/bad.out" 2> "$tmp/bad.err"
    local rc=$?
    if [ "$rc" -eq 2 ] && [ "$(wc -l < "$tmp/bad.err")" -eq 1 ] && grep -q -- "$pat" "$tmp/bad.err" &&
        [ -z "$(ls -A "$tmp/bad" 2> /dev/null)" ]; then
        pass "$name: exit 2, '$(cat "$tmp/bad.err")'"
    else
        fail "$name: rc $rc"; cat "$tmp/bad.err"; ls -A "$tmp/bad" 2> /dev/null
    fi
}
bad "missing calibration" "nope.ini" --out "$tmp/bad" --compare --calibration "$tmp/nope.ini"
bad "bad expert table" "bad.csv:3" --out "$tmp/bad" --compare --calibration "$tmp/badcal.ini"
bad "--compare without --out" "needs --out" --compare
bad "--calibration without --compare" "only with --compare" --out "$tmp/bad" \
    --calibration "$tmp/cluster.ini"
bad "eplb from a popularity" "balance.placement = eplb" --out "$tmp/bad" --compare \
    --set balance.placement=eplb

echo "# e2e_compare: $npass passed, $nfail failed"
[ "$nfail" -eq 0 ]
