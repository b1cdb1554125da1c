#!/usr/bin/env bash
# e2e_serve_layout.sh: an inference step's parallel layout (sim/serve.h) through
# `moesim run`: attention tensor parallelism (serve.attn_tp) refused with one line naming
# the key and exit 2 where it cannot apply; attn_tp = 1 is the default, byte for byte; with
# TP the summary says so, the trace holds the SP all-gathers and reduce-scatters, and an
# MLA model's KV cache per GPU grows by the group's size.
#
# Run from the repository root: MOESIM=build/bin/moesim bash tests/e2e_serve_layout.sh
set -u

source "$(dirname "$0")/lib_serve.sh" serve-layout

# 2 nodes x 4 GPUs, a small MLA MoE model.
cat > "$tmp/dec.ini" <<'INI'
[cluster]
nodes = 2
gpus_per_node = 4
[model]
hidden = 1024
experts = 16
top_k = 4
shared_experts = 1
expert_ffn_hidden = 512
ffn_hidden = 4096
layers = 4
first_dense_layers = 1
seq_len = 4096
vocab = 8192
heads = 8
attention = mla
kv_lora_rank = 512
qk_nope_head_dim = 64
qk_rope_head_dim = 64
v_head_dim = 64
[routing]
distribution = zipf
zipf_s = 1
[schedule]
kind = decode
[serve]
batch = 16
context_len = 2048
INI

# rows.py: a --csv's one row, a --trace's complete slices' names (for the checks below).
cat > "$tmp/rows.py" <<'PY'
import csv, json
def row(path):
    return next(csv.DictReader(open(path)))
def slice_names(path):
    ev = json.load(open(path))
    ev = ev["traceEvents"] if isinstance(ev, dict) else ev
    return [e.get("name", "") for e in ev if e.get("ph") == "X"]
PY

expect_bad "attn_tp not dividing gpus_per_node" "serve.attn_tp" "$tmp/dec.ini" \
    --set serve.attn_tp=3
expect_bad "attn_tp beyond a node" "serve.attn_tp" "$tmp/dec.ini" --set serve.attn_tp=8
expect_bad "attn_tp not dividing ep" "serve.attn_tp" "$tmp/dec.ini" --set parallel.ep=2 \
    --set serve.attn_tp=4
expect_bad "attn_tp not dividing heads" "serve.attn_tp" "$tmp/dec.ini" --set model.heads=6 \
    --set serve.attn_tp=4
expect_bad "attn_tp in a training step" "serve.attn_tp" "$tmp/dec.ini" \
    --set schedule.kind=gpipe --set serve.attn_tp=2
expect_bad "attn_tp 0" "serve.attn_tp" "$tmp/dec.ini" --set serve.attn_tp=0
expect_bad "shared_as_routed without shared experts" "serve.shared_as_routed" "$tmp/dec.ini" \
    --set model.shared_experts=0 --set serve.shared_as_routed=on
slots="--set balance.placement=eplb-global --set balance.redundant_experts=7"
expect_bad "shared_as_routed with capacity" "serve.shared_as_routed" "$tmp/dec.ini" $slots \
    --set balance.capacity_factor=1.25 --set serve.shared_as_routed=on
expect_bad "shared_as_routed with a trace" "serve.shared_as_routed" "$tmp/dec.ini" $slots \
    --set routing.distribution=trace --set routing.trace=none.csv --set serve.shared_as_routed=on
expect_bad "shared_as_routed in a training step" "serve.shared_as_routed" "$tmp/dec.ini" \
    --set schedule.kind=gpipe --set serve.shared_as_routed=on
expect_bad "shared_as_routed: slots not a multiple of ep" "serve.shared_as_routed" \
    "$tmp/dec.ini" --set serve.shared_as_routed=on

# attn_tp = 1 is the default: the same outputs.
run() { "$MOESIM" run "$tmp/dec.ini" --no-timing "$@"; }
if run --csv "$tmp/d.csv" --gpu-csv "$tmp/dg.csv" > "$tmp/d.out" &&
   run --set serve.attn_tp=1 --csv "$tmp/one.csv" --gpu-csv "$tmp/oneg.csv" > "$tmp/one.out" &&
   cmp -s "$tmp/d.csv" "$tmp/one.csv" && cmp -s "$tmp/dg.csv" "$tmp/oneg.csv" &&
   cmp -s "$tmp/d.out" "$tmp/one.out"; then
    pass "attn_tp = 1: outputs identical to the default"
else
    fail "attn_tp = 1 differs from the default"
fi

# TP 4: the summary names the layout; the trace has one all-gather and one reduce-scatter
# per layer and lane (1 lane of 8 GPUs, 4 layers); the MLA cache per GPU is 4x (each GPU
# holds its group's 4 x 16 sequences' latent); the SP collectives add communication.
if run --set serve.attn_tp=4 --csv "$tmp/tp.csv" --gpu-csv "$tmp/tpg.csv" \
       --trace "$tmp/tp.json" > "$tmp/tp.out" 2> "$tmp/err"; then
    grep -q "attention TP 4 + SP, DP 2" "$tmp/tp.out" && pass "TP 4: the summary names it" ||
        fail "TP 4: summary: $(head -1 "$tmp/tp.out")"
    python3 - "$tmp/d.csv" "$tmp/tp.csv" "$tmp/tp.json" "$tmp" <<'PY' && pass "TP 4: 4 gathers and 4 scatters, KV cache x4 (MLA), more communication" || fail "TP 4: trace or figures"
import sys
sys.path.insert(0, sys.argv[4])
from rows import row, slice_names
d, t, names = row(sys.argv[1]), row(sys.argv[2]), slice_names(sys.argv[3])
g = names.count("F attn_gather")
s = names.count("F attn_scatter")
assert g == 4 and s == 4, (g, s)
# 16 sequences x 2048 x 4 layers x (512 + 64) x 2 B = 150,994,944 B; x 4 with TP 4
kv1, kv4 = float(d["kv_cache_GiB"]), float(t["kv_cache_GiB"])
assert abs(kv1 * 2**30 - 150994944) < 2**30 * 1e-5, kv1
assert abs(kv4 - 4 * kv1) < 1e-5, (kv1, kv4)
assert float(t["comm_s"]) > float(d["comm_s"]), (d["comm_s"], t["comm_s"])
assert float(t["weights_GiB"]) < float(d["weights_GiB"])
assert (d["attn_tp"], t["attn_tp"]) == ("1", "4"), (d["attn_tp"], t["attn_tp"])
PY
else
    fail "TP 4 run: $(cat "$tmp/err")"
fi

# TP 4 with two micro-batches (decode's staged pair): each micro-batch gathers and scatters
# its own tokens (8 of each in the trace: 4 layers x 2), and the communication hidden plus
# exposed is all of it. (At this size, 16 tokens a GPU, the pair exposes more than one
# micro-batch: each pays the SP rings' latency, and the five decode stages have none for
# the reduce-scatter to hide in; README, Serving.)
if run --set serve.attn_tp=4 --set serve.microbatches=2 --csv "$tmp/tp2.csv" \
       --trace "$tmp/tp2.json" > /dev/null 2> "$tmp/err"; then
    python3 - "$tmp/tp.csv" "$tmp/tp2.csv" "$tmp/tp2.json" "$tmp" <<'PY' && pass "TP 4 x 2 micro-batches: 8 gathers, 8 scatters, hidden + exposed = comm" || fail "TP 4 x 2 micro-batches"
import sys
sys.path.insert(0, sys.argv[4])
from rows import row, slice_names
two, names = row(sys.argv[2]), slice_names(sys.argv[3])
assert names.count("F attn_gather") == 8 and names.count("F attn_scatter") == 8, names
h, e, c = (float(two[k]) for k in ("hidden_comm_s", "exposed_comm_s", "comm_s"))
assert abs(h + e - c) <= 1e-9 * max(c, 1e-30), (h, e, c)
assert (two["attn_tp"], two["microbatches"]) == ("4", "2")
PY
else
    fail "TP 4 x 2 micro-batches run: $(cat "$tmp/err")"
fi

# shared_as_routed: 16 + 1 shared + 7 redundant = 24 slots on 8 GPUs (eplb-global); every
# token also picks the shared expert, which no GPU runs locally any more: no shared
# slices in the trace, and the expert imbalance (over the routed experts) is unchanged.
if run --set balance.placement=eplb-global --set balance.redundant_experts=8 \
       --csv "$tmp/off.csv" > /dev/null 2> "$tmp/err" &&
   run --set balance.placement=eplb-global --set balance.redundant_experts=7 \
       --set serve.shared_as_routed=on --csv "$tmp/sr.csv" --trace "$tmp/sr.json" \
       > /dev/null 2>> "$tmp/err"; then
    python3 - "$tmp/off.csv" "$tmp/sr.csv" "$tmp/sr.json" "$tmp" <<'PY' && pass "shared_as_routed: no local shared op, routed imbalance unchanged" || fail "shared_as_routed: trace or figures"
import sys
sys.path.insert(0, sys.argv[4])
from rows import row, slice_names
off, on, names = row(sys.argv[1]), row(sys.argv[2]), slice_names(sys.argv[3])
assert "F shared" not in names and names.count("F experts") == 3, names
assert on["expert_imbalance"] == off["expert_imbalance"], (on, off)
assert float(on["weights_GiB"]) < float(off["weights_GiB"])
assert (off["shared_as_routed"], on["shared_as_routed"]) == ("0", "1")
PY
else
    fail "shared_as_routed run: $(cat "$tmp/err")"
fi

echo "# e2e_serve_layout: $npass passed, $nfail failed"
[ "$nfail" -eq 0 ]
