#!/usr/bin/env bash
# e2e_sweeps.sh: the bundled sweeps of configs/sweeps/ still expand and run, so that a
# broken one (a key renamed, a rule tightened, an include moved) fails `make test`:
#  1. each file, shrunk with --set (fewer layers, tokens, micro-batches: keys no axis
#     sets), gives the number of rows its axes make (counted by hand from the file), the
#     header `point, the axes in order, seed, status`, and exactly the refused rows its
#     comment announces;
#  2. the plot command its header states (the one tests/gen_readme_plots.sh runs) draws
#     the shrunk results, one line per value the README describes, and the README shows
#     both of its commands;
#  3. two things the README reads off the plots hold by construction: GPipe and 1F1B
#     have one bubble, (p-1)/(m+p-1) (Narayanan et al., arXiv:2104.04473, sec. 2.2), so
#     the same step time, and 1F1B holds no more activations; the hierarchical
#     all-to-all never sends more network bytes than rail (a token crosses once per
#     remote node instead of once per remote GPU);
#  4. the throughput-latency plot of serve-batch.ini (x and y result columns, not swept
#     keys) draws each row's tpot_s and tokens_per_s_gpu, on the line of its MTP tokens,
#     in the order of its time per token, labelled with its batch.
#
# Run from the repository root: MOESIM=build/bin/moesim bash tests/e2e_sweeps.sh
set -u

MOESIM=${MOESIM:-build/bin/moesim}
case $MOESIM in /*) ;; *) MOESIM=$PWD/$MOESIM ;; esac
export MOESIM_PLOTS=$PWD/plots

tmp=$(mktemp -d "${TMPDIR:-/tmp}/moesim-sweeps.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

npass=0
nfail=0
pass() { echo "ok - $1"; npass=$((npass + 1)); }
fail() { echo "FAIL - $1"; nfail=$((nfail + 1)); }

# cmd NAME WHAT: the ";   moesim WHAT ..." line of configs/sweeps/NAME.ini, without ";   ".
cmd() {
    local line
    line=$(grep -m 1 "^;   moesim $2 " "configs/sweeps/$1.ini") && echo "${line#;   }"
}

# bundled NAME ROWS REFUSED HEADER SET...: runs configs/sweeps/NAME.ini with the SETs into
# $tmp/NAME and checks its rows, refused rows and the header's start.
bundled() {
    local n=$1 rows=$2 refused=$3 head=$4
    shift 4
    local sets=()
    for s in "$@"; do sets+=(--set "$s"); done
    if ! "$MOESIM" sweep "configs/sweeps/$n.ini" -o "$tmp/$n" --no-timing "${sets[@]}" \
            > /dev/null 2> "$tmp/$n.err"; then
        fail "$n.ini: sweep exit $? ($(head -n 1 "$tmp/$n.err"))"
        return
    fi
    local csv=$tmp/$n/results.csv
    local got=$(($(wc -l < "$csv") - 1))
    local bad=$(tail -n +2 "$csv" | awk -F, '$0 !~ /,ok,/' | wc -l)
    [ "$got" -eq "$rows" ] && pass "$n.ini: $rows points" || fail "$n.ini: $got points, not $rows"
    [ "$bad" -eq "$refused" ] && pass "$n.ini: $refused refused" ||
        fail "$n.ini: $bad refused, not $refused ($(tail -n +2 "$csv" | grep -v ',ok,' | head -n 1))"
    head -n 1 "$csv" | grep -q "^point,$head,seed,status," && pass "$n.ini: header $head" ||
        fail "$n.ini: header $(head -n 1 "$csv" | cut -c 1-120)"
}

# ---- 1: every bundled file, shrunk ----
[ "$(ls configs/sweeps/*.ini | wc -l)" -eq 6 ] && pass "six bundled sweeps" ||
    fail "configs/sweeps holds $(ls configs/sweeps/*.ini | wc -l) files: add the new one here"
# 4 top_k x 4 expert counts; 8 experts cannot spread over EP 16 (4 rows)
bundled topk 16 4 model.top_k,model.experts routing.tokens_per_gpu=64
# 5 zipped expert sizes x 2 EP degrees; 8 experts over EP 16 refused (1 row)
bundled experts 10 1 model.experts,model.expert_ffn_hidden,model.top_k,parallel.ep \
    model.layers=2 schedule.microbatches=4 schedule.micro_batch_tokens=256
grep -q '^1,8,14336,2,16,1,.*does not divide model.experts = 8' "$tmp/experts/results.csv" &&
    pass "experts.ini: the refused row is 8 experts on EP 16" || fail "experts.ini: refused row"
# 6 zipped schedules x 4 micro-batch counts
bundled schedules 24 0 schedule.kind,parallel.vpp,schedule.microbatches \
    model.layers=8 schedule.micro_batch_tokens=256
# 6 zipped placements x 3 capacity factors
bundled balance 18 0 balance.placement,balance.redundant_experts,balance.capacity_factor \
    model.layers=2 schedule.microbatches=1 schedule.micro_batch_tokens=256
# 3 routes x 2 distributions x 4 node counts
bundled hierarchical 24 0 cluster.route,routing.distribution,cluster.nodes \
    routing.tokens_per_gpu=16
# 2 MTP settings x 6 batch sizes (inference steps; one MoE layer instead of 58)
bundled serve-batch 12 0 serve.mtp_tokens,serve.batch model.layers=4

# ---- 2: the plot each file states, and the README's commands ----
have_gnuplot=0
command -v gnuplot > /dev/null && have_gnuplot=1
# lines NAME N: the file's plot command on the shrunk results draws N lines.
lines() {
    local n=$1 want=$2 plot
    read -r -a plot <<< "$(cmd "$n" plot)"
    plot=("${plot[@]//out\//$tmp/}")
    plot=("${plot[@]//docs\/img\//$tmp/img-}")
    "$MOESIM" "${plot[@]:1}" > /dev/null 2> "$tmp/$n.plot.err"
    local rc=$?
    if [ $rc -ne 0 ] && ! { [ $rc -eq 1 ] && [ $have_gnuplot -eq 0 ]; }; then
        fail "$n.ini: its plot command: exit $rc ($(head -n 1 "$tmp/$n.plot.err"))"
        return
    fi
    local got=$(grep -c '^"' "$tmp/img-$n.dat")
    [ "$got" -eq "$want" ] && pass "$n.ini: the plot draws $want lines" ||
        fail "$n.ini: the plot draws $got lines, not $want"
    grep -qF "$(cmd "$n" sweep)" README.md && grep -qF "$(cmd "$n" plot)" README.md &&
        pass "$n.ini: README shows its sweep and plot commands" ||
        fail "$n.ini: README lacks '$(cmd "$n" sweep)' or '$(cmd "$n" plot)'"
}
lines topk 3            # 16, 32, 64 experts
lines experts 2         # EP 8 and 16; width and top_k move with the expert count
lines schedules 6       # one per schedule
lines balance 6         # 0 or 16 redundant experts x 3 capacity factors
lines hierarchical 6    # 3 routes x 2 distributions
lines serve-batch 2     # 0 or 1 MTP token; the batch runs along each line
grep -q '^"ep=8"$' "$tmp/img-experts.dat" && grep -q '^"ep=16"$' "$tmp/img-experts.dat" &&
    pass "experts: the zipped width and top_k do not split the lines" ||
    fail "experts: lines $(grep '^"' "$tmp/img-experts.dat" | head -n 3 | tr '\n' ' ')"

# ---- 3: what the README reads off them ----
# col CSV NAME: the column number of NAME in CSV's header.
col() { head -n 1 "$1" | tr ',' '\n' | grep -nx "$2" | head -n 1 | cut -d: -f1; }
S=$tmp/schedules/results.csv
st=$(col "$S" step_s) act=$(col "$S" peak_activation_GiB)
bad=$(awk -F, -v st="$st" -v act="$act" 'NR > 1 { k = $4; if ($2 == "gpipe") { g[k] = $st; ga[k] = $act }
    if ($2 == "1f1b") { o[k] = $st; oa[k] = $act } }
    END { n = 0; for (k in g) { if (!(k in o) || g[k] != o[k] || oa[k] > ga[k]) n++ }; print n + (length(g) != 4) }' "$S")
[ "$bad" = 0 ] && pass "schedules: GPipe and 1F1B take the same step time, 1F1B no more activations" ||
    fail "schedules: GPipe and 1F1B differ at $bad micro-batch counts"
H=$tmp/hierarchical/results.csv
nb=$(col "$H" net_bytes)
bad=$(awk -F, -v nb="$nb" 'NR > 1 { k = $3 "," $4; if ($2 == "rail") r[k] = $nb; if ($2 == "hierarchical") h[k] = $nb }
    END { n = 0; for (k in r) if (!(k in h) || h[k] > r[k]) n++; print n + (length(r) != 8) }' "$H")
[ "$bad" = 0 ] && pass "hierarchical: never more network bytes than rail" ||
    fail "hierarchical: more network bytes than rail at $bad points"

# ---- 4: the throughput-latency plot's data, rebuilt from results.csv ----
V=$tmp/serve-batch/results.csv
tp=$(col "$V" tpot_s) tk=$(col "$V" tokens_per_s_gpu)
# per MTP value (a block in the order swept), rows by tpot_s: "x y "batch"" (CSV numbers
# have 12 significant digits, as the .dat's %.12g)
for m in 0 1; do
    echo "\"mtp_tokens=$m\""
    awk -F, -v m="$m" -v tp="$tp" -v tk="$tk" 'NR > 1 && $2 == m { printf "%s %s \"%s\"\n", $tp, $tk, $3 }' \
        "$V" | sort -g -k1,1
    printf '\n\n'
done > "$tmp/serve-batch.want.dat"
if cmp -s "$tmp/serve-batch.want.dat" "$tmp/img-serve-batch.dat"; then
    pass "serve-batch: the plot's x = tpot_s, y = tokens_per_s_gpu of every row, labelled by batch"
else
    fail "serve-batch: the plot's data differ ($(diff "$tmp/serve-batch.want.dat" "$tmp/img-serve-batch.dat" | head -n 2 | tr '\n' ' '))"
fi

echo "# e2e_sweeps: $npass passed, $nfail failed"
[ "$nfail" -eq 0 ]
