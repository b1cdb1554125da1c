#!/usr/bin/env bash
# e2e_links.sh: achievable link rates (cluster.nvlink_efficiency, cluster.nic_efficiency).
#
#   - the summary of `moesim run` shows, per tier, line rate x efficiency = achieved, for
#     a MoE layer ("# links" line) and for a training step ("links" line); the expected
#     figures are the presets' keys multiplied here, not copied from the output;
#   - a 2-GPU all-to-all times lat + S / (e x line rate) on the tier it crosses (NVLink
#     inside a node, the NICs across two nodes), as sim/topo.h states;
#   - efficiency 1 (the default) gives byte-identical CSVs to a config without the keys;
#   - 0, above 1, nan and a non-number are refused: exit 2, one line naming the key.
#
# Run from the repository root: MOESIM=build/bin/moesim bash tests/e2e_links.sh
set -u

MOESIM=${MOESIM:-build/bin/moesim}
case $MOESIM in /*) ;; *) MOESIM=$PWD/$MOESIM ;; esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/moesim-links.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

npass=0
nfail=0
pass() { echo "ok - $1"; npass=$((npass + 1)); }
fail() { echo "FAIL - $1"; nfail=$((nfail + 1)); }

# key FILE KEY: the value of KEY in an INI file (first match, comments skipped).
key() { sed -n "s/^$2 *= *\([^ ;]*\).*/\1/p" "$1" | head -n 1; }

# The three figures per tier, as the summary prints them (%g): line, efficiency, product.
figures() {
    python3 -c 'import sys
nl, ne, cl, ce = map(float, sys.argv[1:])
print("NVLink %g GB/s x %g = %g GB/s, NIC %g GB/s x %g = %g GB/s" % (nl, ne, nl * ne, cl, ce, cl * ce))' "$@"
}

# ---- the summary line, MoE layer (H100 preset) ----
h100=configs/clusters/h100-sxm-8x.ini
want=$(figures "$(key $h100 nvlink_GBps)" "$(key $h100 nvlink_efficiency)" \
               "$(key $h100 nic_GBps)" "$(key $h100 nic_efficiency)")
if "$MOESIM" run configs/examples/deepseek-v3-layer-64.ini --no-timing --set cluster.nodes=2 \
    --set parallel.ep=16 --set routing.tokens_per_gpu=256 > "$tmp/layer.out" 2> "$tmp/err" &&
    grep -qxF "# links    $want (line rate x efficiency = achieved, per GPU per direction)" \
        "$tmp/layer.out"; then
    pass "layer summary: # links    $want"
else
    fail "layer summary lacks '$want': $(grep links "$tmp/layer.out") $(head -c 300 "$tmp/err")"
fi

# ---- the summary line, training step (H800 preset) ----
h800=configs/clusters/h800-deepseek-v3.ini
want=$(figures "$(key $h800 nvlink_GBps)" "$(key $h800 nvlink_efficiency)" \
               "$(key $h800 nic_GBps)" "$(key $h800 nic_efficiency)")
case $want in "NVLink 200 GB/s x 0.836 = 167.2 GB/s, NIC 50 GB/s x 0.98 = 49 GB/s") ;;
*) fail "h800 preset figures changed: $want" ;; esac
if "$MOESIM" run configs/examples/deepseek-v3-train.ini --no-timing --set cluster.nodes=4 \
    --set parallel.pp=2 --set parallel.ep=16 --set schedule.kind=1f1b \
    --set schedule.microbatches=2 --set schedule.micro_batch_tokens=256 --set model.layers=4 \
    --set model.first_dense_layers=0 > "$tmp/step.out" 2> "$tmp/err" &&
    grep -qxF "  links            $want (line rate x efficiency = achieved, per GPU per direction)" \
        "$tmp/step.out"; then
    pass "step summary:  links  $want"
else
    fail "step summary lacks '$want': $(grep links "$tmp/step.out") $(head -c 300 "$tmp/err")"
fi

# The H800's usable HBM, 84,943,110,144 B = 79.109... GiB, printed to 4 digits.
if grep -q "GiB of 79.11 GiB" "$tmp/step.out"; then
    pass "step summary: H800 memory 84943110144 B = 79.11 GiB"
else
    fail "step summary memory: $(grep memory "$tmp/step.out")"
fi

# ---- closed form: one 2-GPU all-to-all per tier ----
# Line rates and latencies in file units; each pair moves S bytes, so each GPU sends one
# flow of S alone on its path: NVLink (1 node x 2 GPUs) 2 nvl + S / (e B); NICs (2 nodes x
# 1 GPU) 2 nic + 1 sw + S / (e nic).
S=1048576
cat > "$tmp/a2a.ini" <<EOF
[cluster]
nvlink_GBps = 400
nic_GBps = 40
nvlink_latency_us = 1.5
nic_latency_us = 2.5
switch_latency_us = 0.7
[traffic]
pattern = alltoall
bytes_per_pair = $S
EOF
# time_s NODES GPN EFF_KEY EFF: the dispatch_s column of the run CSV.
time_s() {
    "$MOESIM" run "$tmp/a2a.ini" --no-timing --set cluster.nodes="$1" \
        --set cluster.gpus_per_node="$2" --set cluster."$3"="$4" --csv "$tmp/a2a.csv" \
        > /dev/null 2> "$tmp/err" || { echo "run failed: $(head -c 200 "$tmp/err")"; return; }
    python3 -c 'import csv, sys
r = next(csv.DictReader(open(sys.argv[1])))
print(r["dispatch_s"])' "$tmp/a2a.csv"
}
# close GOT EXPR: |GOT - EXPR| <= 1e-6 |EXPR| (the CSV prints 10 significant digits).
close() { python3 -c 'import sys
got, want = float(sys.argv[1]), eval(sys.argv[2])
sys.exit(0 if abs(got - want) <= 1e-6 * abs(want) else 1)' "$1" "$2" 2> /dev/null; }
for e in 1 0.836 0.5; do
    got=$(time_s 1 2 nvlink_efficiency $e)
    expr="2 * 1.5e-6 + $S / ($e * 400e9)"
    if close "$got" "$expr"; then pass "NVLink pair, efficiency $e: $got s = $expr"
    else fail "NVLink pair, efficiency $e: $got s, expected $expr"; fi
    got=$(time_s 2 1 nic_efficiency $e)
    expr="2 * 2.5e-6 + 0.7e-6 + $S / ($e * 40e9)"
    if close "$got" "$expr"; then pass "NIC pair, efficiency $e: $got s = $expr"
    else fail "NIC pair, efficiency $e: $got s, expected $expr"; fi
done

# ---- efficiency 1 is the old model, byte for byte ----
# The layer example against a copy of it whose H100 preset has no efficiency keys (the
# preset as it was before them), with both efficiencies set to 1 by --set.
mkdir -p "$tmp/ex/examples" "$tmp/ex/clusters"
grep -v '_efficiency *=' $h100 > "$tmp/ex/clusters/h100-sxm-8x.ini"
sed "s|^include = \.\./models/|include = $PWD/configs/models/|" \
    configs/examples/deepseek-v3-layer-64.ini > "$tmp/ex/examples/layer.ini"
small=(--no-timing --set cluster.nodes=2 --set parallel.ep=16 --set routing.tokens_per_gpu=256)
"$MOESIM" run configs/examples/deepseek-v3-layer-64.ini "${small[@]}" \
    --set cluster.nvlink_efficiency=1 --set cluster.nic_efficiency=1 \
    --csv "$tmp/one.csv" --gpu-csv "$tmp/one_gpu.csv" > /dev/null 2> "$tmp/err"
"$MOESIM" run "$tmp/ex/examples/layer.ini" "${small[@]}" \
    --csv "$tmp/plain.csv" --gpu-csv "$tmp/plain_gpu.csv" > /dev/null 2>> "$tmp/err"
if [ -s "$tmp/one.csv" ] && cmp -s "$tmp/one.csv" "$tmp/plain.csv" &&
    cmp -s "$tmp/one_gpu.csv" "$tmp/plain_gpu.csv"; then
    pass "efficiency 1 = the preset without the keys: identical run and per-GPU CSVs"
else
    fail "efficiency 1 differs from the preset without the keys: $(head -c 300 "$tmp/err")"
fi

# ---- bad values: exit 2, one line naming the key, no output ----
mkdir "$tmp/outs"
# bad NAME PREFIX -- ARGS...
bad() {
    local name=$1 prefix=$2 rc
    shift 3
    rm -f "$tmp/outs/"*
    "$MOESIM" "$@" --csv "$tmp/outs/run.csv" > "$tmp/stdout" 2> "$tmp/stderr"
    rc=$?
    if [ $rc -eq 2 ] && [ "$(wc -l < "$tmp/stderr")" -eq 1 ] &&
        [[ "$(cat "$tmp/stderr")" == "$prefix"* ]] && [ ! -s "$tmp/stdout" ] &&
        [ -z "$(ls -A "$tmp/outs")" ]; then
        pass "$name: exit 2, $(cat "$tmp/stderr")"
    else
        fail "$name: rc $rc, stderr '$(head -c 200 "$tmp/stderr")', expected '$prefix...'"
    fi
}
for v in 0 1.5 -1 nan inf abc; do
    bad "nvlink_efficiency=$v" "--set: cluster.nvlink_efficiency: " -- \
        run "$tmp/a2a.ini" --set cluster.nvlink_efficiency=$v
    bad "nic_efficiency=$v" "--set: cluster.nic_efficiency: " -- \
        run "$tmp/a2a.ini" --set cluster.nic_efficiency=$v
done
printf '[cluster]\nnic_efficiency = 0\n[traffic]\npattern = alltoall\n' > "$tmp/zero.ini"
bad "nic_efficiency = 0 in a file" "$tmp/zero.ini:2: cluster.nic_efficiency: must be" -- \
    run "$tmp/zero.ini"

echo "# e2e_links: $npass passed, $nfail failed"
[ "$nfail" -eq 0 ]
