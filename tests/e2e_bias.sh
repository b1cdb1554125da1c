#!/usr/bin/env bash
# e2e_bias.sh: `moesim run` applies the auxiliary-loss-free bias (balance.bias_gamma;
# DeepSeek-V3, arXiv:2412.19437, sec. 2.1.2) at the state `moesim balance` measures:
#  1. a layer run routes exactly as balance's last iteration (the oracle: `moesim
#     balance --expert-csv`, the same config and seed): every expert's demand equal;
#  2. so under Zipf(1.0) it lowers the expert max/mean load against bias_gamma = 0;
#  3. a step's first MoE layer (model layer 0, one stage of all GPUs) routes as balance
#     does on that stage (tokens_per_gpu = micro_batch_tokens), and every MoE layer's
#     max/mean falls (each layer has its own bias);
#     a sweep over bias_gamma gives those runs' rows;
#  4. the CSVs' bias_rounds says it (iterations; 0 without a bias or for a replayed trace,
#     whose counts no bias can move: that run is the unbiased one), the summary has a bias
#     line only with bias_gamma > 0; same seed, same bytes;
#  5. the limits count the extra rounds: an event limit the unbiased run passes refuses
#     the biased one (exit 2) with the hand-counted estimate.
#
# Run from the repository root: MOESIM=build/bin/moesim bash tests/e2e_bias.sh
set -u

MOESIM=${MOESIM:-build/bin/moesim}
case $MOESIM in /*) ;; *) MOESIM=$PWD/$MOESIM ;; esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/moesim-bias.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

npass=0
nfail=0
pass() { echo "ok - $1"; npass=$((npass + 1)); }
fail() { echo "FAIL - $1"; nfail=$((nfail + 1)); }

# 4 nodes x 4 GPUs, one EP group of 16, 32 experts top-4, Zipf(1.0), sigmoid scores.
cat > "$tmp/w.ini" <<'EOF'
[cluster]
nodes = 4
gpus_per_node = 4
[model]
hidden = 512
experts = 32
top_k = 4
expert_ffn_hidden = 512
[parallel]
ep = 16
[routing]
tokens_per_gpu = 1024
distribution = zipf
zipf_s = 1.0
scoring = sigmoid
[balance]
iterations = 60
EOF
BIAS="balance.bias_gamma=0.004"

# col FILE COLUMN: the column of a one-row CSV
col() {
    awk -F, -v n="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == n) c = i }
                       NR == 2 { print (c ? $c : "MISSING") }' "$1"
}
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 < b + 0) }'; }
# demand FILE: "expert demand" lines of an --expert-csv (run: layer 0; balance: summed
# over its EP groups), sorted by expert
demand() {
    awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) { if ($i == "demand") d = i;
                                                   if ($i == "expert") e = i;
                                                   if ($i == "layer") l = i } next }
             !l || $l == 0 { s[$e] += $d } END { for (x in s) print x, s[x] }' "$1" | sort -n
}

run() {     # run NAME CONFIG SET...: moesim run with every output, --no-timing
    local name=$1 cfg=$2
    shift 2
    local sets=()
    for s in "$@"; do sets+=(--set "$s"); done
    "$MOESIM" run "$cfg" --no-timing "${sets[@]}" --csv "$tmp/$name.csv" \
        --expert-csv "$tmp/$name.exp.csv" > "$tmp/$name.out" 2> "$tmp/$name.err" ||
        fail "run $name: exit $? ($(head -n 1 "$tmp/$name.err"))"
}

# ---- 1, 2: one layer ----
run l0 "$tmp/w.ini"
run lb "$tmp/w.ini" "$BIAS"
run lb2 "$tmp/w.ini" "$BIAS"
"$MOESIM" balance "$tmp/w.ini" --no-timing --policy "b:$BIAS" --expert-csv "$tmp/bal.exp.csv" \
    --csv "$tmp/bal.csv" > /dev/null 2> "$tmp/bal.err" || fail "balance: $(head -n 1 "$tmp/bal.err")"
demand "$tmp/lb.exp.csv" > "$tmp/lb.d"
demand "$tmp/bal.exp.csv" > "$tmp/bal.d"
[ "$(wc -l < "$tmp/lb.d")" -eq 32 ] && cmp -s "$tmp/lb.d" "$tmp/bal.d" &&
    pass "layer: every expert's demand equals balance's last iteration" ||
    fail "layer: demand differs from balance's last iteration ($(diff "$tmp/lb.d" "$tmp/bal.d" | head -n 2 | tr '\n' ' '))"
m0=$(col "$tmp/l0.csv" expert_load_max_over_mean)
mb=$(col "$tmp/lb.csv" expert_load_max_over_mean)
mbal=$(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "expert_load_max_over_mean") c = i }
                NR == 2 { print $c }' "$tmp/bal.csv")
[ "$mb" = "$mbal" ] && pass "layer: expert max/mean $mb is balance's" ||
    fail "layer: expert max/mean $mb, balance says $mbal"
# Zipf(1.0) over 32 experts puts about 5.7 x the mean on the hottest (test_balance.c);
# the bias after 59 updates of 0.004 brings it below half of that.
lt "$mb" "$(awk -v a="$m0" 'BEGIN { print a / 2 }')" &&
    pass "layer: the bias lowers expert max/mean $m0 -> $mb" ||
    fail "layer: expert max/mean $m0 without bias, $mb with"
cmp -s "$tmp/lb.csv" "$tmp/lb2.csv" && cmp -s "$tmp/lb.exp.csv" "$tmp/lb2.exp.csv" &&
    cmp -s "$tmp/lb.out" "$tmp/lb2.out" && pass "layer: same seed, same bytes" ||
    fail "layer: two runs differ"

# ---- 4: what the outputs say ----
[ "$(col "$tmp/l0.csv" bias_rounds)" = 0 ] && [ "$(col "$tmp/lb.csv" bias_rounds)" = 60 ] &&
    pass "layer CSV: bias_rounds 0 and 60" ||
    fail "layer CSV: bias_rounds $(col "$tmp/l0.csv" bias_rounds), $(col "$tmp/lb.csv" bias_rounds)"
[ "$(head -n 1 "$tmp/lb.csv" | awk -F, '{ print $NF }')" = bias_rounds ] &&
    pass "layer CSV: bias_rounds is the last column" || fail "layer CSV: bias_rounds not last"
grep -q '^# bias .*gamma 0.004.*round 60 .*after 59 updates' "$tmp/lb.out" &&
    ! grep -q '^# bias' "$tmp/l0.out" && pass "layer summary: a bias line with the bias alone" ||
    fail "layer summary: $(grep '^# bias' "$tmp/lb.out" "$tmp/l0.out" | head -n 2 | tr '\n' ' ')"
# A replayed trace: the bias cannot move counts; the run is the unbiased one.
"$MOESIM" run "$tmp/w.ini" --no-timing --routing-trace "$tmp/rt.txt" > /dev/null 2>&1
run t0 "$tmp/w.ini" routing.distribution=trace "routing.trace=$tmp/rt.txt"
run tb "$tmp/w.ini" routing.distribution=trace "routing.trace=$tmp/rt.txt" "$BIAS"
[ "$(col "$tmp/tb.csv" bias_rounds)" = 0 ] && cmp -s "$tmp/t0.csv" "$tmp/tb.csv" &&
    cmp -s "$tmp/t0.exp.csv" "$tmp/tb.exp.csv" && grep -q '^# bias .*not applied' "$tmp/tb.out" &&
    pass "trace: bias not applied, said so, outputs the unbiased run's" ||
    fail "trace: bias_rounds $(col "$tmp/tb.csv" bias_rounds); $(grep '^# bias' "$tmp/tb.out")"

# A sweep over the bias: its rows are the runs' (not one row twice, as when the run
# ignored the bias).
cat > "$tmp/sw.ini" <<EOF
include = $tmp/w.ini
[sweep]
balance.bias_gamma = 0,0.004
EOF
if "$MOESIM" sweep "$tmp/sw.ini" -o "$tmp/sw" --no-timing > /dev/null 2> "$tmp/sw.err"; then
    s0=$(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "expert_load_max_over_mean") c = i }
                  NR > 1 { printf "%s ", $c }' "$tmp/sw/results.csv")
    [ "$s0" = "$m0 $mb " ] && pass "sweep: bias_gamma 0 and 0.004 rows are the runs' ($s0)" ||
        fail "sweep: expert max/mean '$s0', runs '$m0 $mb'"
else
    fail "sweep: $(head -n 1 "$tmp/sw.err")"
fi

# ---- 3: a step, each MoE layer its own bias ----
cat > "$tmp/s.ini" <<EOF
include = $PWD/configs/clusters/h100-sxm-8x.ini
include = $PWD/configs/models/deepseek-v2-lite.ini
[cluster]
nodes = 2
[model]
layers = 3
first_dense_layers = 0
[parallel]
pp = 1
ep = 16
[routing]
distribution = zipf
zipf_s = 1.0
scoring = sigmoid
[schedule]
kind = 1f1b
microbatches = 1
micro_batch_tokens = 512
[balance]
iterations = 40
EOF
SB="balance.bias_gamma=0.01"
run s0 "$tmp/s.ini"
"$MOESIM" run "$tmp/s.ini" --no-timing --set "$SB" --csv "$tmp/sb.csv" --expert-csv "$tmp/sb.exp.csv" \
    --layer-csv "$tmp/sb.layer.csv" > "$tmp/sb.out" 2> "$tmp/sb.err" || fail "step: $(head -n 1 "$tmp/sb.err")"
"$MOESIM" run "$tmp/s.ini" --no-timing --layer-csv "$tmp/s0.layer.csv" > /dev/null 2>&1
"$MOESIM" balance "$tmp/s.ini" --no-timing --set schedule.kind=none --set routing.tokens_per_gpu=512 \
    --policy "b:$SB" --expert-csv "$tmp/sbal.exp.csv" > /dev/null 2> "$tmp/sbal.err" ||
    fail "balance (stage): $(head -n 1 "$tmp/sbal.err")"
demand "$tmp/sb.exp.csv" > "$tmp/sb.d"
demand "$tmp/sbal.exp.csv" > "$tmp/sbal.d"
[ "$(wc -l < "$tmp/sb.d")" -eq 64 ] && cmp -s "$tmp/sb.d" "$tmp/sbal.d" &&
    pass "step: MoE layer 0's demand equals balance's last iteration on the stage" ||
    fail "step: layer 0 demand differs ($(diff "$tmp/sb.d" "$tmp/sbal.d" | head -n 2 | tr '\n' ' '))"
# every MoE layer (0, 1, 2): its own bias lowers its expert max/mean
if paste -d, "$tmp/s0.layer.csv" "$tmp/sb.layer.csv" | awk -F, -v n="$(head -n 1 "$tmp/s0.layer.csv" | tr , '\n' | grep -c .)" '
        NR == 1 { for (i = 1; i <= n; i++) if ($i == "expert_load_max_over_mean") c = i; next }
        { rows++; if (!($(c + n) < $c / 1.5)) bad++; printf "    layer %s: %s -> %s\n", $1, $c, $(c + n) }
        END { exit !(rows == 3 && !bad) }'; then
    pass "step: each MoE layer's expert max/mean falls by more than 1.5 x"
else
    fail "step: some MoE layer's expert max/mean did not fall"
fi
[ "$(col "$tmp/sb.csv" bias_rounds)" = 40 ] && [ "$(col "$tmp/s0.csv" bias_rounds)" = 0 ] &&
    grep -q "^  bias .*each MoE layer" "$tmp/sb.out" && pass "step: bias_rounds 40 and the bias line" ||
    fail "step: bias_rounds $(col "$tmp/sb.csv" bias_rounds), line: $(grep '^  bias' "$tmp/sb.out")"

# ---- 5: limits ----
# The unbiased layer routes 16 x 1024 tokens once: 16384 token events plus a start and an
# end of each of the 2 x 16 x 15 flows, 17344; the biased one 60 rounds: 60 x 16384 + 960
# = 984000, said as 9.84e+05.
"$MOESIM" run "$tmp/w.ini" --max-events 100000 > /dev/null 2>&1 &&
    pass "limits: the unbiased run fits 1e5 events" || fail "limits: the unbiased run refused"
"$MOESIM" run "$tmp/w.ini" --set "$BIAS" --max-events 100000 > /dev/null 2> "$tmp/lim.err"
rc=$?
[ $rc -eq 2 ] && [ "$(wc -l < "$tmp/lim.err")" -eq 1 ] && grep -q 'about 9.84e+05 events' "$tmp/lim.err" &&
    pass "limits: the biased run refused, its 60 rounds counted" ||
    fail "limits: exit $rc: $(head -n 1 "$tmp/lim.err")"

echo "# e2e_bias: $npass passed, $nfail failed"
[ "$nfail" -eq 0 ]
