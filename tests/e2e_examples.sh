#!/usr/bin/env bash
# e2e_examples.sh: every config of configs/examples run with every output it allows
# (--csv, --gpu-csv, --link-csv or --layer-csv, --trace, --routing-trace), and
# `moesim balance` on its example, then what a user must be able to trust in them:
#   - no inf or nan anywhere in a CSV or a trace (a missing metric is an empty field);
#   - no number in exponent form in a CSV or a trace;
#   - every run CSV carries the identifying columns (model ... schedule);
#   - no two slices of one track of a trace overlap (times read exactly, as decimals);
#   - the gnuplot scripts draw the CSV they are for and refuse the other --gpu-csv;
#   - the routing trace replays: run again with routing.trace = that file, the new
#     routing trace is byte-identical and so are the CSVs (all columns but those that
#     name the distribution and the token metrics a trace does not have); a run that has
#     no routing to write, or would write over the trace it replays, is refused.
# Runs use --no-timing and routing.dedup = false (a replay never deduplicates); the big
# examples run on fewer nodes, micro-batches or tokens so that the whole takes seconds.
#
# Run from the repository root: MOESIM=build/bin/moesim bash tests/e2e_examples.sh
set -u

MOESIM=${MOESIM:-build/bin/moesim}
case $MOESIM in /*) ;; *) MOESIM=$PWD/$MOESIM ;; esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/moesim-examples.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

npass=0
nfail=0
pass() { echo "ok - $1"; npass=$((npass + 1)); }
fail() { echo "FAIL - $1"; nfail=$((nfail + 1)); }

# check.py FILE...: the rules above for each CSV (*.csv) and trace (*.json); the
# identifying columns are required of every CSV but balance's --iter-csv and
# --expert-csv. Prints what is wrong; exit status 0 when nothing is.
cat > "$tmp/check.py" <<'EOF'
import csv, json, os, re, sys
from decimal import Decimal

IDENT = ["model", "cluster", "experts", "top_k", "nodes", "gpus_per_node", "route",
         "distribution", "zipf_s", "schedule"]
NONFINITE = re.compile(r"^[-+]?(nan|inf|infinity)$", re.I)
EXPONENT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")
# a JSON number with an exponent, outside strings (names hold no such text here)
JSON_EXPONENT = re.compile(r"[:,\[]\s*-?\d+(\.\d+)?[eE][-+]?\d+")
bad = []

def check_csv(path):
    rows = list(csv.reader(open(path, newline="")))
    if not rows:
        bad.append(f"{path}: empty")
        return
    head = rows[0]
    if os.path.basename(path) not in ("iter.csv", "expert.csv"):
        missing = [c for c in IDENT if c not in head]
        if missing:
            bad.append(f"{path}: identifying columns missing: {missing}")
    if len(set(head)) != len(head):
        bad.append(f"{path}: a column name twice: {head}")
    for n, row in enumerate(rows[1:], 2):
        if len(row) != len(head):
            bad.append(f"{path}:{n}: {len(row)} fields, the header has {len(head)}")
        for name, v in zip(head, row):
            if NONFINITE.match(v.strip()):
                bad.append(f"{path}:{n}: {name} = {v!r}")
            if EXPONENT.match(v.strip()):
                bad.append(f"{path}:{n}: {name} = {v!r} in exponent form")

def no_constant(c):
    raise ValueError(f"non-finite number {c}")

def check_trace(path):
    text = open(path).read()
    m = JSON_EXPONENT.search(text)
    if m:
        bad.append(f"{path}: number in exponent form: {m.group(0)!r}")
    try:
        d = json.loads(text, parse_float=Decimal, parse_constant=no_constant)
    except ValueError as e:
        bad.append(f"{path}: {e}")
        return
    tracks = {}
    for e in d["traceEvents"]:
        for k in ("ts", "dur"):
            if k in e and not isinstance(e[k], (int, Decimal)):
                bad.append(f"{path}: {k} {e[k]!r}")
        if e["ph"] == "X":
            if e["dur"] < 0:
                bad.append(f"{path}: negative duration {e}")
            tracks.setdefault((e["pid"], e["tid"]), []).append((e["ts"], e["ts"] + e["dur"]))
    overlaps = 0
    for key, v in tracks.items():
        v.sort()
        for a, b in zip(v, v[1:]):
            if b[0] < a[1]:
                overlaps += 1
                if overlaps <= 3:
                    bad.append(f"{path}: track {key}: [{a[0]}, {a[1]}] overlaps [{b[0]}, {b[1]}]")
    if overlaps > 3:
        bad.append(f"{path}: {overlaps} overlapping slices in all")
    if not tracks:
        bad.append(f"{path}: no slices")

for p in sys.argv[1:]:
    (check_trace if p.endswith(".json") else check_csv)(p)
for b in bad[:12]:
    print("   ", b)
sys.exit(1 if bad else 0)
EOF

# same.py A B: the two CSVs hold the same rows but for the columns a replayed trace
# changes (its distribution; the token metrics, which a trace has not).
cat > "$tmp/same.py" <<'EOF'
import csv, sys
SKIP = {"distribution", "zipf_s", "nodes_per_token", "experts_per_node_per_token"}
def cut(path):
    rows = list(csv.reader(open(path, newline="")))
    keep = [i for i, c in enumerate(rows[0]) if c not in SKIP]
    return [[r[i] for i in keep] for r in rows]
a, b = cut(sys.argv[1]), cut(sys.argv[2])
if a != b:
    for n, (x, y) in enumerate(zip(a, b), 1):
        if x != y:
            print(f"    line {n}: {x}\n    versus: {y}")
            break
sys.exit(0 if a == b else 1)
EOF

# Settings that keep the big examples to a second or two, the layout kept.
small() {
    case $1 in
    deepseek-v3-train)
        echo "--set cluster.nodes=32 --set parallel.ep=16 --set schedule.microbatches=32" \
             "--set schedule.micro_batch_tokens=1024" ;;
    deepseek-v3-prefill)
        echo "--set serve.prompt_len=1024" ;;
    deepseek-v3-decode)
        echo "--set serve.batch=16" ;;
    deepseek-v3-layer-64 | deepseek-v3-ep64-h800 | balance-deepseek-v3)
        echo "--set cluster.nodes=4 --set parallel.ep=32 --set routing.tokens_per_gpu=1024" ;;
    esac
}

step_gpu=
layer_gpu=
for ini in configs/examples/*.ini; do
    name=$(basename "$ini" .ini)
    d=$tmp/$name
    mkdir -p "$d/replay"
    read -r -a extra <<< "$(small "$name")"
    base=(run "$ini" --no-timing --set routing.dedup=false "${extra[@]}")
    outs=(--csv "$d/run.csv" --gpu-csv "$d/gpu.csv" --trace "$d/trace.json")
    # A training step, else a MoE layer, else a pattern without routing: an output the
    # run cannot write is refused before it starts.
    kind=
    if "$MOESIM" "${base[@]}" "${outs[@]}" --layer-csv "$d/layer.csv" \
        --routing-trace "$d/routing.txt" > "$d/out" 2> "$d/err"; then
        kind=step
    elif grep -q "only for a training step" "$d/err" &&
        "$MOESIM" "${base[@]}" "${outs[@]}" --link-csv "$d/link.csv" \
            --routing-trace "$d/routing.txt" > "$d/out" 2> "$d/err"; then
        kind=layer
    elif grep -q "has no routing" "$d/err" &&
        "$MOESIM" "${base[@]}" "${outs[@]}" --link-csv "$d/link.csv" > "$d/out" 2> "$d/err"; then
        kind=pattern
    fi
    if [ -z "$kind" ]; then
        fail "$name: did not run: $(head -c 300 "$d/err")"
        continue
    fi
    files=("$d"/*.csv "$d/trace.json")
    if python3 "$tmp/check.py" "${files[@]}"; then
        pass "$name ($kind): ${#files[@]} files: finite, no exponents, identifying columns, no overlapping slices"
    else
        fail "$name ($kind): outputs (above)"
    fi
    # (an inference step's --gpu-csv is its own: serverep.h)
    [ $kind = step ] && [ -z "$step_gpu" ] && head -n 1 "$d/gpu.csv" | grep -q '^gpu,stage,' &&
        step_gpu=$d/gpu.csv
    [ $kind = layer ] && [ -z "$layer_gpu" ] && layer_gpu=$d/gpu.csv
    [ $kind = pattern ] && continue
    # The routing trace replayed: the same routing trace, the same results.
    if "$MOESIM" "${base[@]}" --set routing.distribution=trace --set routing.trace="$d/routing.txt" \
        --csv "$d/replay/run.csv" --gpu-csv "$d/replay/gpu.csv" \
        --routing-trace "$d/replay/routing.txt" > /dev/null 2> "$d/err2" &&
        cmp -s "$d/routing.txt" "$d/replay/routing.txt" &&
        python3 "$tmp/same.py" "$d/run.csv" "$d/replay/run.csv" &&
        python3 "$tmp/same.py" "$d/gpu.csv" "$d/replay/gpu.csv" &&
        python3 "$tmp/check.py" "$d/replay/run.csv" "$d/replay/gpu.csv"; then
        pass "$name: routing trace ($(($(wc -l < "$d/routing.txt") - 2)) entries) replays to the same trace, CSV and per-GPU CSV"
    else
        fail "$name: routing trace replay: $(head -c 300 "$d/err2")"
    fi
done

# --routing-trace refused before the run (exit 2, one line naming it, no file): a pattern
# without routing, a step whose layers are all dense, the file the run replays.
# refused NAME WANT ARGS...: moesim ARGS exits 2 with one stderr line holding WANT.
refused() {
    local name=$1 want=$2
    shift 2
    "$MOESIM" "$@" > /dev/null 2> "$tmp/refused.err"
    local rc=$?
    if [ $rc -eq 2 ] && [ "$(wc -l < "$tmp/refused.err")" -eq 1 ] &&
        grep -q -- "$want" "$tmp/refused.err" && [ ! -e "$tmp/never.txt" ]; then
        pass "--routing-trace refused: $name: $(cat "$tmp/refused.err")"
    else
        fail "--routing-trace $name: rc $rc: $(head -c 300 "$tmp/refused.err")"
    fi
}
refused "all-to-all" "traffic.pattern alltoall has no routing" \
    run configs/examples/alltoall-64.ini --routing-trace "$tmp/never.txt"
refused "all layers dense" "model.first_dense_layers: all 32 layers are dense" \
    run configs/examples/default.ini --set model.first_dense_layers=32 \
    --set model.ffn_hidden=14336 --routing-trace "$tmp/never.txt"
cp "$tmp/mixtral-1node/routing.txt" "$tmp/in.txt"
refused "the trace it replays" "names an input of the run, the routing.trace" \
    run configs/examples/mixtral-1node.ini --set routing.distribution=trace \
    --set routing.trace="$tmp/in.txt" --routing-trace "$tmp/in.txt"
if cmp -s "$tmp/in.txt" "$tmp/mixtral-1node/routing.txt"; then
    pass "the refused run left its input trace as it was"
else
    fail "the input trace changed"
fi

# moesim balance on its example, fewer tokens.
b=$tmp/balance
mkdir -p "$b"
if "$MOESIM" balance configs/examples/balance-deepseek-v3.ini --no-timing \
    --set routing.tokens_per_gpu=128 --csv "$b/balance.csv" --iter-csv "$b/iter.csv" \
    --expert-csv "$b/expert.csv" > /dev/null 2> "$b/err" &&
    python3 "$tmp/check.py" "$b/balance.csv" "$b/iter.csv" "$b/expert.csv"; then
    pass "balance: CSVs finite, no exponents, identifying columns in --csv"
else
    fail "balance: $(head -c 300 "$b/err")"
fi

# plot SCRIPT CSV PNG: gnuplot's exit status; its stderr in $tmp/gp.err.
plot() {
    gnuplot -e "csv='$2'; out='$3'" "plots/$1" > /dev/null 2> "$tmp/gp.err"
}
# draws SCRIPT CSV: the script makes a non-empty PNG of the CSV it is for.
draws() {
    local png=$tmp/$1.png
    if plot "$1" "$2" "$png" && [ -s "$png" ]; then
        pass "$1 draws $(basename "$(dirname "$2")")/$(basename "$2")"
    else
        fail "$1 on $2: $(head -c 300 "$tmp/gp.err")"
    fi
}
# refuses SCRIPT CSV HINT: the script exits non-zero with a line holding HINT and
# writes no PNG.
refuses() {
    local png=$tmp/refused.png
    rm -f "$png"
    if ! plot "$1" "$2" "$png" && [ ! -e "$png" ] && grep -q "$3" "$tmp/gp.err"; then
        pass "$1 refuses $(basename "$(dirname "$2")")/$(basename "$2"): $(head -n 1 "$tmp/gp.err")"
    else
        fail "$1 on $2 was not refused with '$3': $(head -c 300 "$tmp/gp.err")"
    fi
}
if [ -n "$step_gpu" ] && [ -n "$layer_gpu" ]; then
    draws gpu_finish.gp "$layer_gpu"
    draws step_gpus.gp "$step_gpu"
    draws bias_convergence.gp "$b/iter.csv"
    refuses gpu_finish.gp "$step_gpu" "plots/step_gpus.gp"
    refuses step_gpus.gp "$layer_gpu" "plots/gpu_finish.gp"
    refuses bias_convergence.gp "$layer_gpu" "not a moesim balance --iter-csv"
    refuses gpu_finish.gp "$b/balance.csv" "not a layer run's --gpu-csv"
else
    fail "plots: no step ('$step_gpu') or no layer ('$layer_gpu') among the examples"
fi

echo "e2e_examples: $npass passed, $nfail failed"
[ "$nfail" -eq 0 ]
