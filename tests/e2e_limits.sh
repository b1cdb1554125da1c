#!/usr/bin/env bash
# e2e_limits.sh: work and memory limits (sim/limits.h). A run whose estimate passes
# --max-events or --max-mem is refused before it starts: exit 2, one line on stderr
# naming the key that weighs most and the limit, nothing on stdout, no output file,
# in well under a second. The bundled configs pass the default limits with margin.
# The progress line is drawn on a terminal only.
#
# Run from the repository root: MOESIM=build/bin/moesim bash tests/e2e_limits.sh
set -u

MOESIM=${MOESIM:-build/bin/moesim}
case $MOESIM in /*) ;; *) MOESIM=$PWD/$MOESIM ;; esac
EX=configs/examples

tmp=$(mktemp -d "${TMPDIR:-/tmp}/moesim-limits.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
out=$tmp/out
mkdir "$out"

npass=0
nfail=0
pass() { echo "ok - $1"; npass=$((npass + 1)); }
fail() { echo "FAIL - $1"; nfail=$((nfail + 1)); }

# Milliseconds since the epoch.
now_ms() { local t=$EPOCHREALTIME; echo $(( ${t/[.,]/} / 1000 )); }

# refused NAME PREFIX SUBSTRING -- ARGS...: "moesim ARGS" under `timeout 5` exits 2 in
# under a second with one line on stderr starting with PREFIX and holding SUBSTRING,
# nothing on stdout, nothing in $out.
refused() {
    local name=$1 prefix=$2 sub=$3 why="" rc t0 ms line nl
    shift 4
    rm -rf "$out" && mkdir "$out"
    t0=$(now_ms)
    timeout 5 "$MOESIM" "$@" > "$tmp/stdout" 2> "$tmp/stderr"
    rc=$?
    ms=$(( $(now_ms) - t0 ))
    nl=$(wc -l < "$tmp/stderr")
    line=$(head -n 1 "$tmp/stderr")
    if [ "$rc" -ne 2 ]; then
        why="exit status $rc, expected 2"
    elif [ "$ms" -ge 1000 ]; then
        why="took $ms ms, expected under 1000"
    elif [ "$nl" -ne 1 ]; then
        why="stderr has $nl lines, expected one"
    elif [[ "$line" != "$prefix"* ]] || [[ "$line" != *"$sub"* ]]; then
        why="stderr is not '$prefix...$sub...'"
    elif [ -s "$tmp/stdout" ] || [ -n "$(ls -A "$out")" ]; then
        why="something was written"
    fi
    if [ -z "$why" ]; then
        pass "$name ($ms ms)"
    else
        fail "$name: $why"
        sed 's/^/#   stderr: /' "$tmp/stderr" | head -n 3
    fi
}

OUTS=(--csv "$out/run.csv" --gpu-csv "$out/gpu.csv")

# ---- absurd configs, each refused under the default limits, naming its key ----

refused "schedule.microbatches = 1048576" "moesim run: schedule.microbatches = 1048576: " \
    "the run needs about" -- run $EX/default.ini --set schedule.microbatches=1048576 "${OUTS[@]}"
refused "routing.tokens_per_gpu = 1e8" "moesim run: routing.tokens_per_gpu = 100000000: " \
    "(--max-events)" -- run $EX/mixtral-1node.ini --set routing.tokens_per_gpu=100000000 "${OUTS[@]}"
# 1e9 tokens per GPU passes the config's own bound (2^33 token-expert assignments in a
# layer) before any estimate: refused by the config, naming the key.
refused "routing.tokens_per_gpu = 1e9" "--set: routing.tokens_per_gpu: " \
    "more than 2^33" -- run $EX/mixtral-1node.ini --set routing.tokens_per_gpu=1000000000 "${OUTS[@]}"
refused "model.layers = 100000" "moesim run: model.layers = 100000: " "the run needs about" -- \
    run $EX/default.ini --set model.layers=100000 "${OUTS[@]}"
refused "balance.iterations = 1000000" "moesim balance: balance.iterations = 1000000: " \
    "(--max-events)" -- balance $EX/balance-deepseek-v3.ini --set balance.iterations=1000000 \
    --csv "$out/bal.csv"
# 65536 GPUs: 8 G^2-byte matrices of 34 GB each (refused for memory unless the machine
# has hundreds of GB; then for their 4e9 flows or 2.7e8 routed tokens).
refused "65536 GPUs" "moesim run: cluster.nodes = 8192: " "the run needs about" -- \
    run $EX/mixtral-1node.ini --set cluster.nodes=8192 "${OUTS[@]}"
refused "65536 GPUs, all-to-all" "moesim run: cluster.nodes = 8192: " "the run needs about" -- \
    run $EX/alltoall-64.ini --set cluster.nodes=8192 "${OUTS[@]}"
refused "a step on 100000 layers" "moesim run: model.layers = 100000: " "" -- \
    run $EX/deepseek-v3-train.ini --set model.layers=100000 "${OUTS[@]}"

# ---- small limits refuse normal configs; bad values of the flags ----

refused "--max-events 1000" "moesim run: " "more than the limit of 1e+03 (--max-events)" -- \
    run $EX/default.ini --max-events 1000 "${OUTS[@]}"
refused "--max-mem 1M" "moesim run: " "more than the limit of 1 MB (--max-mem)" -- \
    run $EX/mixtral-1node.ini --max-mem 1M "${OUTS[@]}"
refused "--max-mem 512KiB with --trace" "moesim run: " "(--max-mem) with --trace" -- \
    run $EX/mixtral-1node.ini --max-mem 512KiB --trace "$out/t.json"
refused "balance --max-events 1e3" "moesim balance: " "(--max-events)" -- \
    balance $EX/balance-deepseek-v3.ini --max-events 1e3
refused "balance --max-mem 2M" "moesim balance: " "(--max-mem)" -- \
    balance $EX/balance-deepseek-v3.ini --max-mem 2M
for v in 0 -1 8x 8g "" 1e999 "2 G"; do
    refused "--max-mem '$v'" "moesim run: --max-mem: '$v' is not a size" "" -- \
        run $EX/mixtral-1node.ini --max-mem "$v"
done
for v in 0 -5 abc 2e8x 1k nan; do
    refused "--max-events '$v'" "moesim balance: --max-events: '$v' is not a positive number" "" -- \
        balance $EX/balance-deepseek-v3.ini --max-events "$v"
done
refused "--max-events without a value" "moesim run: option '--max-events' needs a value" "" -- \
    run $EX/mixtral-1node.ini --max-events

# A raised limit lets the refused run go: 1e3 events refused above, 1e7 runs.
if "$MOESIM" run $EX/default.ini --max-events 1e7 --max-mem 2GB > "$tmp/stdout" 2>&1 &&
   grep -q "step time" "$tmp/stdout"; then
    pass "--max-events 1e7 --max-mem 2GB runs the default step"
else
    fail "--max-events 1e7 --max-mem 2GB: $(head -n 1 "$tmp/stdout")"
fi

# ---- the bundled configs pass the defaults with margin ----
# The refusal line says the estimate: with --max-events 1 the events, with --max-mem 1
# the bytes. Margin: events under a quarter of the default 2e8, memory under 1 GB, so a
# machine with 2 GB runs them all.
estimate() {   # estimate events|bytes ARGS...: the number (bytes in MB), or "-"
    local what=$1
    shift
    if [ "$what" = events ]; then
        "$MOESIM" "$@" --max-events 1 --max-mem 1T 2>&1 >/dev/null |
            sed -n 's/.*needs about \([0-9.e+]*\) events.*/\1/p'
    else
        "$MOESIM" "$@" --max-mem 1 2>&1 >/dev/null |
            sed -n 's/.*needs about \([0-9.e+]*\) \([kMGT]*B\) of memory.*/\1 \2/p' |
            awk '{ m = $2 == "GB" ? 1000 : $2 == "TB" ? 1e6 : $2 == "kB" ? 1e-3 : $2 == "B" ? 1e-6 : 1; print $1 * m }'
    fi
}
margin() {     # margin NAME ARGS...
    local name=$1 ev mb
    shift
    ev=$(estimate events "$@")
    mb=$(estimate bytes "$@")
    if [ -z "$ev" ] || [ -z "$mb" ]; then
        fail "$name: no estimate said"
    elif awk -v e="$ev" -v m="$mb" 'BEGIN { exit !(e < 5e7 && m < 1000) }'; then
        pass "$name: $ev events, $mb MB"
    else
        fail "$name: $ev events, $mb MB: too close to the defaults"
    fi
}
for f in $EX/*.ini configs/models/*.ini; do
    case $f in */balance-*) continue ;; esac
    margin "run $f" run "$f"
    margin "run $f --trace" run "$f" --trace "$out/t.json"
done
margin "balance $EX/balance-deepseek-v3.ini" balance $EX/balance-deepseek-v3.ini

# ---- the progress line ----

"$MOESIM" run $EX/default.ini > /dev/null 2> "$tmp/stderr"
if [ ! -s "$tmp/stderr" ]; then pass "no progress when stderr is a file"; else
    fail "stderr to a file holds: $(head -c 80 "$tmp/stderr")"; fi
n=$("$MOESIM" run $EX/default.ini 2>&1 > /dev/null | wc -c)
if [ "$n" -eq 0 ]; then pass "no progress when stderr is a pipe"; else
    fail "stderr to a pipe holds $n bytes"; fi

# Under a pseudo-terminal (util-linux script): "moesim run: step N% (layer i/32)" lines
# redrawn with '\r', then blanked (a run of spaces between two '\r') before the summary.
if script --version 2>/dev/null | grep -q util-linux; then
    script -qec "'$MOESIM' run $EX/default.ini > '$tmp/summary'" /dev/null < /dev/null \
        > "$tmp/tty" 2>&1
    tr '\r' '\n' < "$tmp/tty" > "$tmp/lines"
    if grep -Eq '^moesim run: step [0-9]+% \(layer [0-9]+/32\) *$' "$tmp/lines" &&
       grep -Eq '^ +$' "$tmp/lines" && grep -q "step time" "$tmp/summary"; then
        pass "progress line on a terminal, cleared at the end"
    else
        fail "progress line on a terminal: $(head -c 120 "$tmp/tty" | tr '\r' '|')"
    fi
else
    echo "ok - SKIP progress line on a terminal: util-linux script is not installed"
fi

echo "# e2e_limits: $npass passed, $nfail failed"
[ "$nfail" -eq 0 ]
