#!/usr/bin/env bash
# e2e_balance.sh: `moesim balance` compares policies on one workload: the CSV's stable
# columns, one row per policy, what each policy must do to the load (EPLB replicas lower
# the GPU max/mean; capacity drops tokens; the bias lowers the expert max/mean), the
# convergence CSV, determinism, and bad --policy input.
#
# Run from the repository root: MOESIM=build/bin/moesim bash tests/e2e_balance.sh
set -u

MOESIM=${MOESIM:-build/bin/moesim}
case $MOESIM in /*) ;; *) MOESIM=$PWD/$MOESIM ;; esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/moesim-balance.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

npass=0
nfail=0
pass() { echo "ok - $1"; npass=$((npass + 1)); }
fail() { echo "FAIL - $1"; nfail=$((nfail + 1)); }

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
EOF

# val FILE POLICY COLUMN
val() {
    awk -F, -v p="$2" -v n="$3" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == n) c = i }
                                 NR > 1 && $1 == p { print (c ? $c : "MISSING") }' "$1"
}
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 < b + 0) }'; }

run() {
    local name=$1
    shift
    if ! "$MOESIM" balance "$tmp/w.ini" --no-timing "$@" --csv "$tmp/$name.csv" \
        --iter-csv "$tmp/$name.iter.csv" > "$tmp/$name.out" 2> "$tmp/$name.err"; then
        fail "balance $name: $(head -n 1 "$tmp/$name.err")"
        return 1
    fi
}

run d && run d2
head -n 1 "$tmp/d.csv" | tr , '\n' > "$tmp/cols"
for c in policy drop_rate expert_load_max_over_mean gpu_load_max_over_mean \
         node_load_max_over_mean nodes_per_token experts_per_node_per_token; do
    grep -qx "$c" "$tmp/cols" && pass "CSV column $c" || fail "CSV column $c missing"
done
rows=$(($(wc -l < "$tmp/d.csv") - 1))
[ "$rows" -ge 7 ] && pass "default comparison: $rows policies" || fail "default comparison: $rows rows"
for f in csv iter.csv out; do
    cmp -s "$tmp/d.$f" "$tmp/d2.$f" && pass "same seed, identical $f" || fail "$f differs"
done

g0=$(val "$tmp/d.csv" as-configured gpu_load_max_over_mean)
g1=$(val "$tmp/d.csv" eplb gpu_load_max_over_mean)
lt "$g1" "$g0" && pass "eplb lowers GPU max/mean ($g0 -> $g1)" || fail "eplb: $g0 -> $g1"
d0=$(val "$tmp/d.csv" as-configured drop_rate)
d1=$(val "$tmp/d.csv" capacity-1.0 drop_rate)
lt "$d0" "$d1" && [ "$d0" = 0 ] && pass "capacity 1.0 drops ($d1), dropless does not" \
    || fail "drops: $d0 / $d1"
e0=$(val "$tmp/d.csv" as-configured expert_load_max_over_mean)
e1=$(val "$tmp/d.csv" bias expert_load_max_over_mean)
lt "$e1" "$e0" && pass "bias lowers expert max/mean ($e0 -> $e1)" || fail "bias: $e0 -> $e1"
n1=$(val "$tmp/d.csv" node-limited nodes_per_token)
lt "$n1" 2.000001 && pass "node-limited: nodes per token $n1 <= 2" || fail "node-limited: $n1"
it=$(awk -F, '$1 == "bias"' "$tmp/d.iter.csv" | wc -l)
[ "$it" -eq 40 ] && pass "convergence CSV: 40 bias iterations" || fail "convergence CSV: $it rows"

# Per-expert loads: the dropped assignments add up to the policy's drop rate, and the
# replicas to experts + redundant experts (32 + 16 for eplb).
"$MOESIM" balance "$tmp/w.ini" --no-timing --policy "cap:balance.capacity_factor=1.0" \
    --policy "eplb:balance.placement=eplb,balance.redundant_experts=16" \
    --csv "$tmp/x.csv" --expert-csv "$tmp/x.exp.csv" > /dev/null 2>&1
dr=$(val "$tmp/x.csv" cap drop_rate)
if awk -F, -v want="$dr" '$1 == "cap" { d += $7; n += $5 }
        END { r = d / n; exit !(n > 0 && r - want < 1e-9 && want - r < 1e-9) }' "$tmp/x.exp.csv"; then
    pass "expert CSV: dropped / demand = drop_rate ($dr)"
else
    fail "expert CSV: drops do not add up to $dr"
fi
reps=$(awk -F, '$1 == "eplb" { r += $4 } END { print r }' "$tmp/x.exp.csv")
[ "$reps" = 48 ] && pass "expert CSV: eplb replicas add up to 48" || fail "expert CSV: replicas $reps"

# User policies replace the defaults; a bad one is refused before anything runs.
run u --policy "rr:balance.placement=round-robin" --policy "cap:balance.capacity_factor=1.25"
[ "$(($(wc -l < "$tmp/u.csv") - 1))" -eq 2 ] && pass "--policy: two rows" || fail "--policy rows"
for p in "nocolon" "x:" ":balance.iterations=2" "x:balance.nokey=1" "x:balance.capacity_factor=-1"; do
    "$MOESIM" balance "$tmp/w.ini" --policy "$p" --csv "$tmp/bad.csv" > /dev/null 2> "$tmp/e"
    rc=$?
    if [ $rc -eq 2 ] && [ ! -e "$tmp/bad.csv" ] && [ "$(wc -l < "$tmp/e")" -eq 1 ]; then
        pass "bad --policy '$p': exit 2, one line"
    else
        fail "bad --policy '$p': rc $rc: $(cat "$tmp/e")"
    fi
done

echo "e2e_balance: $npass passed, $nfail failed"
[ "$nfail" -eq 0 ]
