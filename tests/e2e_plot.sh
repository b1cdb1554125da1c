#!/usr/bin/env bash
# e2e_plot.sh: the data behind the plots and `moesim plot`.
#   --util-csv: busy fractions in [0,1] whose integrals over the bins are the step's
#     compute and comm seconds of --gpu-csv (a layer run: each collective's span up to
#     the GPU's last byte); a link's rate integrates to its bytes of --link-csv, its
#     utilization never passes 1; a GPU's NVLink figure is the mean of its two links';
#     the same seed gives the same bytes; bad --util-bins is refused.
#   --expert-csv: per MoE layer and expert, the demand of the run's --routing-trace.
#   --ops-csv: a lane's compute sub-ops add up to its GPUs' compute + straggler seconds.
#   moesim plot: every kind renders under gnuplot with nothing on stderr, a PNG that is
#     a PNG, an SVG holding the axis labels and legend entries asked for; without gnuplot
#     one line, exit 1, the data file written; unknown files and columns refused (exit 2,
#     nothing written).
#
# Run from the repository root: MOESIM=build/bin/moesim bash tests/e2e_plot.sh
set -u

MOESIM=${MOESIM:-build/bin/moesim}
case $MOESIM in /*) ;; *) MOESIM=$PWD/$MOESIM ;; esac
export MOESIM_PLOTS=$PWD/plots

tmp=$(mktemp -d "${TMPDIR:-/tmp}/moesim-plot.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

npass=0
nfail=0
pass() { echo "ok - $1"; npass=$((npass + 1)); }
fail() { echo "FAIL - $1"; nfail=$((nfail + 1)); }
check() { if eval "$2"; then pass "$1"; else fail "$1"; fi; }

# A step: 4 stages of one node of 4 GPUs, EP 4, skewed routing; 1f1b.
cat > "$tmp/step.ini" <<'EOF'
[cluster]
nodes = 4
gpus_per_node = 4
[model]
hidden = 1024
experts = 16
top_k = 4
shared_experts = 1
expert_ffn_hidden = 512
ffn_hidden = 4096
layers = 6
first_dense_layers = 1
seq_len = 1024
vocab = 8192
heads = 8
[parallel]
pp = 4
ep = 4
[routing]
distribution = zipf
zipf_s = 1.0
[schedule]
kind = 1f1b
microbatches = 6
micro_batch_tokens = 2048
EOF
# A MoE layer over 2 nodes (2 leaves), EP 8.
cat > "$tmp/layer.ini" <<'EOF'
[cluster]
nodes = 2
gpus_per_node = 4
nodes_per_leaf = 1
[model]
hidden = 1024
experts = 16
top_k = 4
[parallel]
ep = 8
[routing]
distribution = zipf
zipf_s = 1.0
EOF

# ---- --util-csv of a step ----
s="$tmp/s"
"$MOESIM" run "$tmp/step.ini" --util-csv "$s.util.csv" --util-bins 37 --gpu-csv "$s.gpu.csv" \
    --ops-csv "$s.ops.csv" --expert-csv "$s.exp.csv" --routing-trace "$s.rt" > /dev/null 2>&1
check "step: --util-csv, --ops-csv, --expert-csv written" \
    '[ -s "$s.util.csv" ] && [ -s "$s.ops.csv" ] && [ -s "$s.exp.csv" ]'
check "step: the header as documented" \
    '[ "$(head -1 "$s.util.csv" | cut -d, -f1-13)" = "kind,id,name,tier,bin,t0_s,t1_s,compute,comm,nvlink,nic,util,GBps" ]'
check "step: 16 GPUs x 37 bins of gpu rows, 37 link rows for each of the GPUs' 64 links and more" \
    'n=$(grep "^link," "$s.util.csv" | cut -d, -f2 | sort -u | wc -l)
     [ "$(grep -c "^gpu," "$s.util.csv")" -eq $((16 * 37)) ] && [ "$n" -ge 64 ] &&
     [ "$(grep -c "^link," "$s.util.csv")" -eq $((n * 37)) ]'
# integrals: sum over bins of fraction x width = --gpu-csv's compute_s, comm_s
check "step: busy fractions in [0,1], integrals = --gpu-csv compute_s and comm_s (1e-9 rel)" \
    'awk -F, "NR == FNR { if (FNR > 1) { c[\$1] = \$4; m[\$1] = \$6 }; next }
        FNR > 1 && \$1 == \"gpu\" { w = \$7 - \$6; ic[\$2] += \$8 * w; im[\$2] += \$9 * w
            if (\$8 < 0 || \$8 > 1 + 1e-12 || \$9 < 0 || \$9 > 1 + 1e-12) bad++ }
        function d(a, b) { x = a - b; return x < 0 ? -x : x }
        END { for (g in c) if (d(ic[g], c[g]) > 1e-9 * c[g] || d(im[g], m[g]) > 1e-9 * m[g]) bad++
              if (length(c) != 16 || c[0] <= 0 || m[0] <= 0) bad++
              exit bad > 0 }" "$s.gpu.csv" "$s.util.csv"'
check "step: bins tile the step: first starts at 0, last ends at step_s" \
    'T=$("$MOESIM" run "$tmp/step.ini" --csv - | awk -F, "NR == 1 { for (i = 1; i <= NF; i++) if (\$i == \"step_s\") c = i } NR == 2 { print \$c }")
     awk -F, -v T="$T" "\$1 == \"gpu\" && \$2 == 0 { if (\$5 == 0 && \$6 != 0) bad++; if (\$5 == 36 && \$7 != T) bad++ } END { exit bad > 0 }" "$s.util.csv"'
# one EP group per stage (ep = dp = 4): a link serves one lane's collectives, one at a
# time; each stage is one node, so its all-to-alls and DP reduce stay on NVLink (the
# pipeline sends between stages are not counted)
check "step: link utilization in [0, 1 + 1e-12], NVLink busy, the NICs idle" \
    'awk -F, "\$1 == \"link\" { if (\$12 < 0 || \$12 > 1 + 1e-12) bad++; if (\$12 > 0) busy[\$4]++ }
        END { exit bad > 0 || !busy[\"nvlink\"] || busy[\"net\"] }" "$s.util.csv"'
check "step: a GPU's nvlink and nic = the means of its two links' utilization" \
    'awk -F, "\$1 == \"gpu\" { v[\$2 \" nvl \" \$5] = \$10; v[\$2 \" nic \" \$5] = \$11 }
        \$1 == \"link\" { split(\$3, p, \".\"); sub(/^gpu/, \"\", p[1]); sub(/_(tx|rx)\$/, \"\", p[2])
            u[p[1] \" \" p[2] \" \" \$5] += \$12 / 2; n++ }
        END { for (k in v) { x = v[k] - u[k]; if (x < 0) x = -x; if (x > 1e-9) bad++ }
              exit bad > 0 || n == 0 || length(v) != 2 * 16 * 37 }" "$s.util.csv"'
"$MOESIM" run "$tmp/step.ini" --util-csv "$s.util2.csv" --util-bins 37 > /dev/null 2>&1
check "step: same seed, byte-identical --util-csv" 'cmp -s "$s.util.csv" "$s.util2.csv"'

# --ops-csv: a lane's compute sub-ops (stream compute) add up to its GPUs' busy compute
# stream, compute_s + straggler_s of --gpu-csv (any GPU of the lane: they meet there)
check "step: --ops-csv compute per lane = compute_s + straggler_s of its first GPU" \
    'awk -F, "NR == FNR { if (FNR > 1) b[\$1] = \$4 + \$5; next }
        FNR > 1 && \$5 == \"compute\" { s[\$4] += \$12 - \$11 }
        END { n = 0; for (g in s) { n++; x = s[g] - b[g]; if (x < 0) x = -x; if (x > 1e-9 * b[g]) bad++ }
              exit bad > 0 || n != 4 }" "$s.gpu.csv" "$s.ops.csv"'
check "step: --ops-csv has F, B, comm and send sub-ops" \
    'for k in ",compute,F," ",compute,B," ",comm,F,dispatch," ",p2p,"; do grep -q "$k" "$s.ops.csv" || exit 1; done'

# --expert-csv: demand per (MoE layer, expert) = the routing trace's tokens summed over
# GPUs; shares add up to 1 per layer
check "step: --expert-csv demand = the routing trace's, per MoE layer and expert" \
    'awk -F, "FNR == NR { if (\$0 !~ /^#/ && \$1 !~ /moesim/) t[\$1 \" \" \$4] += \$5; next }
        FNR > 1 { k = \$2 \" \" \$3; if (t[k] != \$4) bad++; n++; sh[\$2] += \$5 }
        END { for (l in sh) if (sh[l] < 1 - 1e-9 || sh[l] > 1 + 1e-9) bad++; exit bad > 0 || n != 5 * 16 }" \
        FS=" " "$s.rt" FS=, "$s.exp.csv"'

# ---- --util-csv of a layer run ----
l="$tmp/l"
"$MOESIM" run "$tmp/layer.ini" --util-csv "$l.util.csv" --gpu-csv "$l.gpu.csv" \
    --link-csv "$l.link.csv" --expert-csv "$l.exp.csv" > /dev/null 2>&1
check "layer: 8 GPUs x 200 bins (the default), 36 links x 200 bins" \
    '[ "$(grep -c "^gpu," "$l.util.csv")" -eq 1600 ] && [ "$(grep -c "^link," "$l.util.csv")" -eq 7200 ]'
# comm: from each collective's start to the GPU's last byte: sum over the two phases of
# max(send_finish, recv_finish)
check "layer: comm integral = sum over phases of max(send, recv finish) of --gpu-csv" \
    'awk -F, "NR == FNR { if (FNR > 1) f[\$1] = (\$2 > \$3 ? \$2 : \$3) + (\$6 > \$7 ? \$6 : \$7); next }
        FNR > 1 && \$1 == \"gpu\" { i[\$2] += \$9 * (\$7 - \$6); if (\$8 != 0) bad++ }
        END { for (g in f) { x = i[g] - f[g]; if (x < 0) x = -x; if (x > 1e-9 * f[g]) bad++ } exit bad > 0 }" \
        "$l.gpu.csv" "$l.util.csv"'
check "layer: link utilization in [0, 1 + 1e-12], some link near 1" \
    'awk -F, "\$1 == \"link\" { if (\$12 < 0 || \$12 > 1 + 1e-12) bad++; if (\$12 > m) m = \$12 }
        END { exit bad > 0 || m < 0.9 }" "$l.util.csv"'
check "layer: a link's rate integrates to its bytes of --link-csv (both phases)" \
    'awk -F, "NR == FNR { if (FNR > 1) b[\$3] += \$7; next }
        \$1 == \"link\" { i[\$3] += \$13 * 1e9 * (\$7 - \$6) }
        END { n = 0; for (k in b) { n++; x = i[k] - b[k]; if (x < 0) x = -x; if (x > 1e-9 * b[k] + 1e-3) bad++ }
              exit bad > 0 || n < 10 }" "$l.link.csv" "$l.util.csv"'
check "layer: a GPU's nvlink = the mean of its nvl_tx and nvl_rx utilization" \
    'awk -F, "\$1 == \"link\" && \$3 ~ /nvl_/ { split(\$3, a, \".\"); u[a[1] \" \" \$5] += \$12 / 2 }
        \$1 == \"gpu\" { g[\$3 \" \" \$5] = \$10 }
        END { for (k in g) { x = g[k] - u[k]; if (x < 0) x = -x; if (x > 1e-9) bad++ } exit bad > 0 }" "$l.util.csv"'
check "layer: --expert-csv: 16 experts of one layer, loads/mean average 1" \
    'awk -F, "NR > 1 { n++; s += \$6 } END { exit n != 16 || s < 16 - 1e-9 || s > 16 + 1e-9 }" "$l.exp.csv"'

# ---- moesim balance --expert-iter-csv ----
# 2 policies x 4 iterations x 1 EP group x 16 experts; every iteration routes 512 tokens
# on each of 8 GPUs to top-4 experts: 16384 token-expert assignments, before drops
b="$tmp/bal"
"$MOESIM" balance "$tmp/layer.ini" --set routing.tokens_per_gpu=512 --set balance.iterations=4 \
    --policy "rr:balance.placement=round-robin" --policy "bias:balance.bias_gamma=0.001" \
    --expert-csv "$b.exp.csv" --expert-iter-csv "$b.iter.csv" > /dev/null 2>&1
check "balance --expert-iter-csv: header, 2 x 4 x 16 rows" \
    '[ "$(head -1 "$b.iter.csv")" = "policy,iteration,ep_group,expert,demand,kept,load_over_mean" ] &&
     [ "$(tail -n +2 "$b.iter.csv" | wc -l)" -eq $((2 * 4 * 16)) ]'
check "balance --expert-iter-csv: each iteration's demand sums to 16384, kept <= demand" \
    'awk -F, "NR > 1 { s[\$1 \" \" \$2] += \$5; if (\$6 > \$5) bad++ }
        END { for (k in s) if (s[k] != 16384) bad++; exit bad > 0 || length(s) != 8 }" "$b.iter.csv"'
check "balance --expert-iter-csv: the last iteration = --expert-csv's rows" \
    'diff <(awk -F, "NR > 1 && \$2 == 3 { print \$1, \$3, \$4, \$5, \$6, \$7 }" "$b.iter.csv") \
          <(awk -F, "NR > 1 { print \$1, \$2, \$3, \$5, \$6, \$9 }" "$b.exp.csv") > /dev/null'
check "balance --expert-iter-csv: the bias policy's loads move over the iterations" \
    '[ "$(awk -F, "\$1 == \"bias\" { print \$3, \$4, \$5 }" "$b.iter.csv" | sort -u | wc -l)" -gt 16 ]'

# ---- bad --util-bins ----
for v in 0 -3 100001 12x ""; do
    out=$("$MOESIM" run "$tmp/layer.ini" --util-csv "$tmp/bad.csv" --util-bins "$v" 2>&1 >/dev/null)
    rc=$?
    check "--util-bins '$v': exit 2, one line naming it, no file" \
        '[ $rc -eq 2 ] && [ "$(printf "%s\n" "$out" | wc -l)" -eq 1 ] && [[ $out == *"--util-bins"* ]] && [ ! -e "$tmp/bad.csv" ]'
done
out=$("$MOESIM" run "$tmp/layer.ini" --util-bins 10 2>&1 >/dev/null)
check "--util-bins without --util-csv: exit 2" '[ $? -eq 2 ] && [[ $out == *"only with --util-csv"* ]]'
out=$("$MOESIM" run "$tmp/layer.ini" --ops-csv "$tmp/bad.csv" 2>&1 >/dev/null)
check "--ops-csv of a layer run: exit 2, steps only" '[ $? -eq 2 ] && [ ! -e "$tmp/bad.csv" ]'

# ---- a sweep's results.csv, as moesim sweep writes it: point, swept keys, seed, status,
# then moesim run --csv's columns (one refused point) ----
mkdir -p "$tmp/sweep"
n=0
for k in 1 2 4; do
    for sk in 1f1b zb1p gpipe; do
        "$MOESIM" run "$tmp/step.ini" --set model.top_k=$k --set schedule.kind=$sk --no-timing \
            --csv "$tmp/p.csv" > /dev/null 2>&1
        [ $n -eq 0 ] && echo "point,model.top_k,schedule.kind,seed,status,$(head -1 "$tmp/p.csv")" > "$tmp/sweep/results.csv"
        echo "$n,$k,$sk,1,ok,$(sed -n 2p "$tmp/p.csv")" >> "$tmp/sweep/results.csv"
        n=$((n + 1))
    done
done
echo "$n,32,1f1b,1,\"model.top_k: 32 is more than the experts (16)\",$(sed -n 2p "$tmp/p.csv" | tr -cd ,)" \
    >> "$tmp/sweep/results.csv"

# plotted KIND NAME OUT ARGS...: moesim plot ARGS -o OUT: exit 0, nothing on stderr, the
# PNG signature, SVG and data present
plotted() {
    local what=$1 out=$2
    shift 2
    "$MOESIM" plot "$@" -o "$out" > "$tmp/plot.out" 2> "$tmp/plot.err"
    local rc=$?
    check "plot $what: exit 0, stderr empty, PNG signature, SVG and data written" \
        '[ $rc -eq 0 ] && [ ! -s "$tmp/plot.err" ] && [ "$(head -c 8 "$out.png" | od -An -tx1 | tr -d " \n")" = "89504e470d0a1a0a" ] && [ -s "$out.svg" ] && [ -s "$out.dat" ]'
    [ -s "$tmp/plot.err" ] && sed 's/^/#   /' "$tmp/plot.err"
    return 0
}
# svg_has OUT TEXT...: the SVG holds every TEXT
svg_has() {
    local out=$1
    shift
    for t in "$@"; do
        grep -qF -- "$t" "$out.svg" || { echo "#   missing in $out.svg: $t"; return 1; }
    done
}

if command -v gnuplot > /dev/null; then
    plotted "sweep (defaults)" "$tmp/sw" "$tmp/sweep"
    check "plot sweep: x top_k, y step_s, one line per schedule, the config in the title" \
        'svg_has "$tmp/sw" "model.top_k" "step_s (s)" "kind=1f1b" "kind=zb1p" "kind=gpipe" "nodes 4" "experts 16"'
    check "plot sweep: the refused point is left out (9 points in 3 lines)" \
        '[ "$(grep -c "^[0-9]" "$tmp/sw.dat")" -eq 9 ] && [ "$(grep -c "^\"" "$tmp/sw.dat")" -eq 3 ]'
    plotted "sweep (--x schedule.kind --y mfu --by model.top_k)" "$tmp/sw2" "$tmp/sweep/results.csv" \
        --x schedule.kind --y mfu --by model.top_k
    check "plot sweep: named x values, the legend per top_k" \
        'svg_has "$tmp/sw2" "schedule.kind" "mfu (fraction)" "top_k=1" "top_k=4" "zb1p"'
    plotted "gpu-util (step)" "$tmp/gu" "$s.util.csv"
    check "plot gpu-util: axis labels and panel titles" \
        'svg_has "$tmp/gu" "time (ms)" "GPU" "compute busy fraction" "comm busy fraction" "fraction of the bin"'
    plotted "gpu-util (layer: 4 panels)" "$tmp/gl" "$l.util.csv"
    check "plot gpu-util of a layer run: NVLink and NIC panels" \
        'svg_has "$tmp/gl" "NVLink utilization" "NIC utilization"'
    plotted "link-util (step)" "$tmp/lus" --kind link-util "$s.util.csv"
    check "plot link-util of a step: both tiers, links named" \
        'svg_has "$tmp/lus" "NVLink tier" "network tier" "gpu15.nvl_tx" "gpu15.nic_tx"'
    plotted "link-util" "$tmp/lu" --kind link-util "$l.util.csv"
    check "plot link-util: the two tiers, links named" \
        'svg_has "$tmp/lu" "NVLink tier" "network tier" "gpu3.nvl_rx" "leaf1.up" "utilization (rate / capacity)"'
    plotted "expert-load (step)" "$tmp/el" "$s.exp.csv"
    check "plot expert-load: axes and colour scale" \
        'svg_has "$tmp/el" "expert" "MoE layer" "load / mean (1 = even)"'
    plotted "expert-load (layer run: one layer)" "$tmp/el1" "$l.exp.csv"
    "$MOESIM" balance "$tmp/layer.ini" --policy "rr:balance.placement=round-robin" \
        --policy "cap:balance.capacity_factor=1.0" --expert-csv "$tmp/bal.csv" > /dev/null 2>&1
    plotted "expert-load (moesim balance)" "$tmp/eb" "$tmp/bal.csv"
    check "plot expert-load of balance: the policies name the rows" \
        'svg_has "$tmp/eb" "policy" ">rr<" ">cap<"'
    plotted "expert-load (moesim balance, over the iterations)" "$tmp/ei" "$b.iter.csv"
    check "plot expert-load of balance iterations: a panel per policy, iteration axis" \
        'svg_has "$tmp/ei" "policy rr" "policy bias" "iteration" "expert" "load / mean (1 = even)"'
    plotted "gantt" "$tmp/ga" "$s.ops.csv"
    check "plot gantt: legend F / B / comm / send, stages named" \
        'svg_has "$tmp/ga" "F (forward)" "B (backward)" "comm (all-to-all, DP reduce)" "send (pipeline p2p)" "stage 0" "stage 3" "time (ms)"'
    "$MOESIM" run "$tmp/step.ini" --set schedule.kind=zb1p --ops-csv "$tmp/zb.csv" > /dev/null 2>&1
    plotted "gantt (zb1p: W)" "$tmp/gz" "$tmp/zb.csv"
    check "plot gantt of zb1p: W in the legend" 'svg_has "$tmp/gz" "W (weight gradients)"'
else
    echo "# gnuplot not found: the rendering checks are skipped"
fi

# ---- without gnuplot ----
out=$(PATH=/nonexistent "$MOESIM" plot "$s.util.csv" -o "$tmp/ng" 2>&1)
rc=$?
check "no gnuplot on PATH: exit 1, one line saying so, OUT.dat written, no picture" \
    '[ $rc -eq 1 ] && [ "$(printf "%s\n" "$out" | wc -l)" -eq 1 ] && [[ $out == *"gnuplot not found"* ]] && [ -s "$tmp/ng.dat" ] && [ ! -e "$tmp/ng.png" ] && [ ! -e "$tmp/ng.svg" ]'

# ---- refused ----
refused() {
    local what=$1 want=$2
    shift 2
    local out
    out=$("$MOESIM" plot "$@" -o "$tmp/no" 2>&1)
    local rc=$?
    check "plot refuses $what: exit 2, one line, nothing written" \
        '[ $rc -eq 2 ] && [ "$(printf "%s\n" "$out" | wc -l)" -eq 1 ] && [[ $out == *"$want"* ]] && ! ls "$tmp"/no.* > /dev/null 2>&1'
}
refused "a CSV of another kind" "not a CSV that moesim plot knows" "$s.gpu.csv"
refused "a missing file" "cannot open" "$tmp/missing.csv"
refused "--y naming no column" "no column 'nope'" "$tmp/sweep" --y nope
refused "--kind unknown" "--kind 'pie'" --kind pie "$s.util.csv"
refused "--kind sweep on a util file" "not sweep" --kind sweep "$s.util.csv"
refused "--x on a non-sweep" "for sweeps" --x a "$s.util.csv"
grep -v "^link," "$s.util.csv" > "$tmp/nolinks.csv"
refused "link-util of a file without link rows" "no link rows" --kind link-util "$tmp/nolinks.csv"
refused "two files of a non-sweep kind" "several only for sweeps" "$s.exp.csv" "$s.exp.csv"
printf 'point,a,seed,status\n0,"x,1,ok\n' > "$tmp/badq.csv"
refused "an unclosed quote" "badq.csv:2: a quoted field is not closed" "$tmp/badq.csv"
cp "$s.util.csv" "$tmp/in.dat"
out=$("$MOESIM" plot "$tmp/in.dat" -o "$tmp/in" 2>&1)
check "plot: OUT.dat naming the input is refused" \
    '[ $? -eq 2 ] && [[ $out == *"is an input"* ]] && cmp -s "$s.util.csv" "$tmp/in.dat" && [ ! -e "$tmp/in.png" ]'

echo "# e2e_plot: $npass passed, $nfail failed"
[ "$nfail" -eq 0 ]
