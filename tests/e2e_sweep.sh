#!/usr/bin/env bash
# e2e_sweep.sh: moesim sweep (sim/cmd_sweep.c, sweep.h, sweepdir.h) end to end:
#  1. each row's run columns are what `moesim run --csv` writes for that point;
#  2. results.csv is byte-identical serially, with --jobs 2 and under mpirun -np 3;
#  3. nothing is lost: a sweep killed (kill -9 of the parent, of a worker, of a rank) and
#     run again gives the uninterrupted CSV byte for byte, and so does a journal with a
#     torn last line; a changed sweep against the folder is refused (exit 2);
#  4. bad sweep files exit 2 with one line naming file:line and the key, and write no
#     folder (a sweep of inference and training steps together among them);
#  5. inference steps (schedule.kind prefill | decode): the header is point, the axes,
#     seed, status and then exactly `moesim run --csv`'s header; every row's run columns
#     are `moesim run --csv` of its point; serial = --jobs 2 = mpirun -np 3 = resumed;
#     prefill and decode points may share a sweep (the decode point with a prompt key is
#     a refused row).
#
# Run from the repository root: MOESIM=build/bin/moesim bash tests/e2e_sweep.sh
set -u

MOESIM=${MOESIM:-build/bin/moesim}
case $MOESIM in /*) ;; *) MOESIM=$PWD/$MOESIM ;; esac
ROOT=$PWD

tmp=$(mktemp -d "${TMPDIR:-/tmp}/moesim-sweep.XXXXXX") || exit 1
bg=""
trap '[ -n "$bg" ] && kill -9 $bg 2>/dev/null; rm -rf "$tmp"' EXIT

npass=0
nfail=0
pass() { echo "ok - $1"; npass=$((npass + 1)); }
fail() { echo "FAIL - $1"; nfail=$((nfail + 1)); }

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader
MPIRUN=(timeout 120 mpirun --oversubscribe -q)

# same A B WHAT: two files are byte-identical.
same() {
    if cmp -s "$1" "$2"; then pass "$3"; else fail "$3 ($(cmp "$1" "$2" 2>&1 | head -n 1))"; fi
}

# sweep DIR ARGS...: runs a sweep into $tmp/DIR; fails the test if it does not exit 0.
sweep() {
    local d=$1
    shift
    "$MOESIM" sweep "$@" -o "$tmp/$d" --no-timing > "$tmp/$d.out" 2> "$tmp/$d.err" ||
        fail "sweep $d: exit $? ($(head -n 1 "$tmp/$d.err"))"
}

# ---- 1, 2: the bundled example: rows = moesim run, serial = --jobs 2 = mpirun -np 3 ----
TOPK=$ROOT/configs/sweeps/topk.ini
sweep topk "$TOPK"
n=$(($(wc -l < "$tmp/topk/results.csv") - 1))
[ "$n" -eq 16 ] && pass "topk.ini: 4 top_k x 4 expert counts = 16 rows" || fail "topk.ini: $n rows"
# point 6 is top_k 2 (second of 4), experts 32 (third of 8..64*2): row 2 * 4 + 2 = 6
row=$(grep '^6,' "$tmp/topk/results.csv")
case $row in 6,2,32,1,ok,*) pass "point 6 is top_k 2, experts 32, seed 1, ok" ;;
             *) fail "point 6: $row" ;; esac
"$MOESIM" run "$TOPK" --set model.top_k=2 --set model.experts=32 --no-timing --csv - |
    tail -n 1 > "$tmp/run6.csv"
echo "$row" | cut -d, -f6- > "$tmp/row6.csv"
same "$tmp/run6.csv" "$tmp/row6.csv" "point 6's run columns = moesim run --csv of its values"
# 8 experts cannot spread over EP 16: a row with the refusal, empty metrics
row=$(grep '^4,' "$tmp/topk/results.csv")
case $row in 4,2,8,1,*"does not divide model.experts = 8",,,*) pass "refused point 4: status says why" ;;
             *) fail "refused point 4: $row" ;; esac
head -n 1 "$tmp/topk/results.csv" | grep -q '^point,model.top_k,model.experts,seed,status,pattern,' &&
    pass "header: point, the axes, seed, status, the run's columns" || fail "header"

sweep topk-j2 "$TOPK" --jobs 2
same "$tmp/topk/results.csv" "$tmp/topk-j2/results.csv" "--jobs 2 = serial"
"${MPIRUN[@]}" -np 3 "$MOESIM" sweep "$TOPK" -o "$tmp/topk-mpi" --no-timing > /dev/null 2>&1
same "$tmp/topk/results.csv" "$tmp/topk-mpi/results.csv" "mpirun -np 3 = serial"

# ---- 3: nothing lost ----
# 12 points of a few tenths of a second each: long enough to be killed midway.
cat > "$tmp/slow.ini" <<'EOF'
[cluster]
nodes = 4
gpus_per_node = 8
[model]
hidden = 1024
experts = 64
top_k = 4
[routing]
tokens_per_gpu = 65536
distribution = zipf
[traffic]
pattern = moe
[sweep]
model.top_k = 2,4,6,8
routing.zipf_s = 0.5,1.0,1.5
EOF
SLOW=$tmp/slow.ini
sweep ref "$SLOW"

# rows DIR: lines in DIR's journal (0 if none).
rows() { [ -f "$tmp/$1/journal" ] && wc -l < "$tmp/$1/journal" || echo 0; }
# wait_rows DIR N: until the journal holds N rows (at most 60 s).
wait_rows() {
    for _ in $(seq 600); do
        [ "$(rows "$1")" -ge "$2" ] && return 0
        sleep 0.1
    done
    return 1
}

# kill -9 of the parent (with workers), then the same command again
"$MOESIM" sweep "$SLOW" -o "$tmp/kp" --no-timing --jobs 2 > /dev/null 2>&1 &
bg=$!
wait_rows kp 2
kill -9 $bg 2>/dev/null
wait $bg 2>/dev/null
bg=""
k=$(rows kp)
[ "$k" -lt 12 ] && pass "parent killed with $k of 12 rows journaled" || fail "parent finished first"
sweep kp "$SLOW" --jobs 2
grep -q "$k from the journal" "$tmp/kp.out" && pass "resume took the $k journaled rows" ||
    fail "resume: $(head -n 1 "$tmp/kp.out")"
same "$tmp/ref/results.csv" "$tmp/kp/results.csv" "parent killed, resumed = uninterrupted"

# kill -9 of one worker: its point runs again, the sweep ends by itself
"$MOESIM" sweep "$SLOW" -o "$tmp/kw" --no-timing --jobs 2 > /dev/null 2> "$tmp/kw.err" &
bg=$!
wait_rows kw 1
worker=$(pgrep -P $bg | head -n 1)
[ -n "$worker" ] && kill -9 "$worker"
wait $bg
rc=$?
bg=""
[ -n "$worker" ] && [ $rc -eq 0 ] && pass "a worker killed: the sweep still ends, exit 0" ||
    fail "worker kill: worker '$worker', exit $rc"
same "$tmp/ref/results.csv" "$tmp/kw/results.csv" "a worker killed: its point rerun, CSV = uninterrupted"

# a rank killed: mpirun ends the job; the same command again finishes it
"${MPIRUN[@]}" -np 3 "$MOESIM" sweep "$SLOW" -o "$tmp/kr" --no-timing > /dev/null 2>&1 &
bg=$!
wait_rows kr 2
rank=$(pgrep -f "moesim sweep $SLOW -o $tmp/kr" | grep -v "^$bg\$" | tail -n 1)
[ -n "$rank" ] && kill -9 "$rank"
wait $bg 2>/dev/null
rc=$?
bg=""
[ -n "$rank" ] && [ $rc -ne 0 ] && [ "$(rows kr)" -lt 12 ] &&
    pass "a rank killed: mpirun fails (exit $rc) with $(rows kr) of 12 rows" ||
    fail "rank kill: rank '$rank', mpirun exit $rc, $(rows kr) rows"
"${MPIRUN[@]}" -np 3 "$MOESIM" sweep "$SLOW" -o "$tmp/kr" --no-timing > /dev/null 2>&1
same "$tmp/ref/results.csv" "$tmp/kr/results.csv" "a rank killed, mpirun again = uninterrupted"

# a torn last line (a crash mid-write) and a damaged one are dropped and rerun
mkdir -p "$tmp/torn"
cp "$tmp/ref/sweep.manifest" "$tmp/torn/"
head -n 5 "$tmp/ref/journal" > "$tmp/torn/journal"
sed -n 6p "$tmp/ref/journal" | sed 's/ok,/OK,/' >> "$tmp/torn/journal"   # hash fails
sed -n 7p "$tmp/ref/journal" | head -c 40 >> "$tmp/torn/journal"          # no newline
sweep torn "$SLOW"
grep -q "5 from the journal" "$tmp/torn.out" && pass "torn journal: 5 sound rows kept" ||
    fail "torn journal: $(head -n 1 "$tmp/torn.out")"
same "$tmp/ref/results.csv" "$tmp/torn/results.csv" "torn journal, resumed = uninterrupted"

# a changed sweep (file, --set or --seed) against the folder: refused, exit 2, one line
sed 's/2,4,6,8/2,4,6/' "$SLOW" > "$tmp/slow2.ini"
for args in "$tmp/slow2.ini" "$SLOW --set model.hidden=2048" "$SLOW --seed 2"; do
    # shellcheck disable=SC2086
    "$MOESIM" sweep $args -o "$tmp/ref" --no-timing > /dev/null 2> "$tmp/changed.err"
    rc=$?
    if [ $rc -eq 2 ] && [ "$(wc -l < "$tmp/changed.err")" -eq 1 ] &&
        grep -q "holds another sweep" "$tmp/changed.err"; then
        pass "changed sweep refused: ${args#"$tmp"/}"
    else
        fail "changed sweep ${args#"$tmp"/}: exit $rc, $(head -n 1 "$tmp/changed.err")"
    fi
done

# ---- 4: bad sweep files ----
# bad NAME 'SWEEP LINES' EXPECTED: s.ini = a base + the lines; exit 2, one line, that text.
bad() {
    printf '[model]\nexperts = 16\n[sweep]\n%b' "$2" > "$tmp/$1.ini"
    "$MOESIM" sweep "$tmp/$1.ini" -o "$tmp/$1.d" > /dev/null 2> "$tmp/$1.err"
    local rc=$?
    if [ $rc -eq 2 ] && [ "$(wc -l < "$tmp/$1.err")" -eq 1 ] &&
        grep -qF "$tmp/$1.ini:$3" "$tmp/$1.err" && [ ! -e "$tmp/$1.d" ]; then
        pass "bad file $1: exit 2, '$3'"
    else
        fail "bad file $1: exit $rc, $(head -n 1 "$tmp/$1.err")"
    fi
}
bad unknown-key 'model.topk = 1,2\n' "4: model.topk: unknown key; did you mean model.top_k?"
bad empty-axis 'model.top_k =\n' "4: model.top_k: empty axis"
bad bad-range 'cluster.nodes = 2..64*1\n' "4: cluster.nodes: bad range '2..64*1': the factor"
bad bad-value 'model.top_k = 1,two\n' "4: model.top_k: 'two' is not"
bad zip-lengths 'model.experts = 8,16\nmodel.expert_ffn_hidden = 1,2,3\nzip = model.experts model.expert_ffn_hidden\n' \
    "6: zip: model.expert_ffn_hidden: 3 values, but model.experts has 2"
bad bad-filter 'model.top_k = 1,2\nwhere = model.top_k 2\n' "5: where: expected an operator"
bad mixed-kinds 'schedule.kind = none,1f1b\n' "4: schedule.kind: the sweep mixes"
bad mixed-serve 'schedule.kind = decode,1f1b\n' \
    "4: schedule.kind: the sweep mixes inference steps (prefill, decode) and training steps"
# a base that does not open is named at its line (found by tests/fuzz/fuzz_sweep.c)
bad missing-base 'base = nothere.ini\nmodel.top_k = 1,2\n' "4: base: nothere.ini: cannot open"

# ---- 5: inference steps ----
# Mixtral-8x7B decode on one H100 node: 3 batch sizes x 2 context lengths
MIX=$ROOT/configs/examples/mixtral-8x7b-decode.ini
printf 'include = %s\n[sweep]\nserve.batch = 16..64*2\nserve.context_len = 1024,4096\n' \
    "$MIX" > "$tmp/dec.ini"
sweep dec "$tmp/dec.ini"
D=$tmp/dec/results.csv
run_head=$("$MOESIM" run "$MIX" --no-timing --csv - | head -n 1)
[ "$(head -n 1 "$D")" = "point,serve.batch,serve.context_len,seed,status,$run_head" ] &&
    pass "decode sweep: header = point, axes, seed, status, moesim run --csv's header" ||
    fail "decode sweep: header $(head -n 1 "$D" | cut -c 1-120)"
n=0
same_rows=0
for b in 16 32 64; do
    for k in 1024 4096; do
        "$MOESIM" run "$MIX" --set serve.batch=$b --set serve.context_len=$k --no-timing \
            --csv - | tail -n 1 > "$tmp/dec.want"
        grep "^$n,$b,$k,1,ok," "$D" | cut -d, -f6- > "$tmp/dec.got"
        cmp -s "$tmp/dec.want" "$tmp/dec.got" && same_rows=$((same_rows + 1))
        n=$((n + 1))
    done
done
[ "$same_rows" -eq 6 ] && [ "$(wc -l < "$D")" -eq 7 ] &&
    pass "decode sweep: each of the 6 rows = moesim run --csv of its batch and context" ||
    fail "decode sweep: $same_rows of 6 rows match moesim run, $(($(wc -l < "$D") - 1)) rows"
sweep dec-j2 "$tmp/dec.ini" --jobs 2
same "$D" "$tmp/dec-j2/results.csv" "decode sweep: --jobs 2 = serial"
"${MPIRUN[@]}" -np 3 "$MOESIM" sweep "$tmp/dec.ini" -o "$tmp/dec-mpi" --no-timing > /dev/null 2>&1
same "$D" "$tmp/dec-mpi/results.csv" "decode sweep: mpirun -np 3 = serial"
mkdir -p "$tmp/dec-r"
cp "$tmp/dec/sweep.manifest" "$tmp/dec-r/"
head -n 2 "$tmp/dec/journal" > "$tmp/dec-r/journal"
sweep dec-r "$tmp/dec.ini"
grep -q "2 from the journal" "$tmp/dec-r.out" && same "$D" "$tmp/dec-r/results.csv" \
    "decode sweep: resumed from 2 journaled rows = uninterrupted" ||
    fail "decode sweep: resume: $(head -n 1 "$tmp/dec-r.out")"

# prefill and decode in one sweep: one kind of CSV; the decode point keeps the base's
# serve.prompt_len and is refused in its row
printf '%s\n' "include = $ROOT/configs/clusters/h100-sxm-8x.ini" \
    "include = $ROOT/configs/models/mixtral-8x7b.ini" "[cluster]" "nodes = 1" "[parallel]" \
    "ep = 8" "[schedule]" "kind = prefill" "[serve]" "batch = 2" "prompt_len = 1024" \
    "[sweep]" "schedule.kind = prefill,decode" > "$tmp/pf.ini"
sweep pf "$tmp/pf.ini"
"$MOESIM" run "$tmp/pf.ini" --no-timing --csv - | tail -n 1 > "$tmp/pf.want"
grep '^0,prefill,1,ok,' "$tmp/pf/results.csv" | cut -d, -f5- > "$tmp/pf.got"
same "$tmp/pf.want" "$tmp/pf.got" "prefill point = moesim run --csv"
grep -q '^1,decode,1,".*serve.prompt_len: a prefill key, but schedule.kind = decode",' \
    "$tmp/pf/results.csv" && pass "the decode point with a prompt key: a refused row" ||
    fail "decode point: $(grep '^1,' "$tmp/pf/results.csv" | cut -c 1-120)"

echo "e2e_sweep: $npass passed, $nfail failed"
[ "$nfail" -eq 0 ]
