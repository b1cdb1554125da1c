#!/usr/bin/env bash
# e2e_determinism.sh: "the same inputs and --seed give byte-identical outputs"
# (DESIGN.md, STYLE.md "Determinism"), --no-timing writes wall_s as 0 (main.c usage),
# and the seed does reach the routing (a zipf MoE layer changes with it).
#
# Run from the repository root: MOESIM=build/bin/moesim bash tests/e2e_determinism.sh
set -u

MOESIM=${MOESIM:-build/bin/moesim}
case $MOESIM in /*) ;; *) MOESIM=$PWD/$MOESIM ;; esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/moesim-determinism.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

npass=0
nfail=0
pass() { echo "ok - $1"; npass=$((npass + 1)); }
fail() { echo "FAIL - $1"; nfail=$((nfail + 1)); }

# A small but not trivial MoE layer: 2 nodes x 4 GPUs, pxn routing (relays and
# shared links), skewed (zipf) choice of top-4 of 16 experts: random routing.
cat > "$tmp/moe.ini" <<'EOF'
[cluster]
nodes = 2
gpus_per_node = 4
route = pxn
[model]
hidden = 256
experts = 16
top_k = 4
[parallel]
ep = 8
[routing]
tokens_per_gpu = 512
distribution = zipf
zipf_s = 1.2
dedup = true
[traffic]
pattern = moe
EOF

# run NAME ARGS...: writes $tmp/NAME.{csv,gpu.csv,json,out}.
run() {
    local name=$1
    shift
    if ! "$MOESIM" run "$tmp/moe.ini" "$@" --csv "$tmp/$name.csv" --gpu-csv "$tmp/$name.gpu.csv" \
        --trace "$tmp/$name.json" > "$tmp/$name.out" 2> "$tmp/$name.err"; then
        fail "run $name: moesim failed: $(head -n 1 "$tmp/$name.err")"
        return 1
    fi
}

# same A B FILE-SUFFIX WHAT: the two files are byte-identical.
same() {
    if cmp -s "$tmp/$1.$3" "$tmp/$2.$3"; then
        pass "$4"
    else
        fail "$4 ($(cmp "$tmp/$1.$3" "$tmp/$2.$3" 2>&1 | head -n 1))"
    fi
}

run a --seed 7 --no-timing
run b --seed 7 --no-timing
run c --seed 8 --no-timing
run t1 --seed 7
# The same run without --trace: recording the link series must not change the numbers.
"$MOESIM" run "$tmp/moe.ini" --seed 7 --no-timing --csv "$tmp/n.csv" --gpu-csv "$tmp/n.gpu.csv" \
    > "$tmp/n.out" 2> "$tmp/n.err" || fail "run n: moesim failed: $(head -n 1 "$tmp/n.err")"
run t2 --seed 7

# Same config, same seed, --no-timing: every output byte-identical.
same a b csv "same seed, --no-timing: --csv byte-identical"
same a b gpu.csv "same seed, --no-timing: --gpu-csv byte-identical"
same a b json "same seed, --no-timing: --trace byte-identical"
same a b out "same seed, --no-timing: summary on stdout byte-identical"

# Asking for a trace changes no number (a2a.h: the series only observes the network).
same a n csv "with vs without --trace: --csv byte-identical"
same a n gpu.csv "with vs without --trace: --gpu-csv byte-identical"
same a n out "with vs without --trace: summary byte-identical"

# A different seed routes other tokens: with zipf skew the per-GPU bytes differ.
if cmp -s "$tmp/a.gpu.csv" "$tmp/c.gpu.csv"; then
    fail "seed 7 vs seed 8: --gpu-csv differs (files are identical: the seed is not used)"
else
    pass "seed 7 vs seed 8: --gpu-csv differs"
fi

# With timing on, only the CSV's wall_s may change; --no-timing writes it as 0. The
# per-GPU CSV and the trace carry no wall-clock time: byte-identical to --no-timing.
python3 - "$tmp/a.csv" "$tmp/t1.csv" "$tmp/t2.csv" > "$tmp/py.out" 2> "$tmp/py.err" <<'EOF'
import csv, sys

def row(path):
    with open(path, newline="") as f:
        r = list(csv.DictReader(f))
    assert len(r) == 1, f"{path}: {len(r)} data rows, expected 1"
    return r[0]

a, t1, t2 = (row(p) for p in sys.argv[1:4])
ok = lambda c, m: print(("ok - " if c else "FAIL - ") + m)
ok(a["wall_s"] != "" and float(a["wall_s"]) == 0.0,
   f"--no-timing: wall_s is 0 (got {a['wall_s']})")
for name, r in (("timed run 1", t1), ("timed run 2", t2)):
    diff = [k for k in a if k != "wall_s" and a[k] != r.get(k)]
    ok(list(r) == list(a) and not diff,
       f"{name} vs --no-timing: CSV differs at most in wall_s (differs in: {diff or 'none'})")
    ok(float(r["wall_s"]) >= 0, f"{name}: wall_s = {r['wall_s']} is >= 0")
EOF
py_rc=$?
while IFS= read -r line; do
    case $line in
    "ok - "*) pass "${line#ok - }" ;;
    *) fail "${line#FAIL - }" ;;
    esac
done < "$tmp/py.out"
[ "$py_rc" -eq 0 ] || fail "CSV comparison stopped: $(tail -n 1 "$tmp/py.err")"
same t1 t2 gpu.csv "timed runs: --gpu-csv byte-identical"
same a t1 gpu.csv "timed vs --no-timing: --gpu-csv byte-identical"
same a t1 json "timed vs --no-timing: --trace byte-identical"

echo "# e2e_determinism: $npass passed, $nfail failed"
[ "$nfail" -eq 0 ]
