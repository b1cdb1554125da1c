#!/usr/bin/env bash
# e2e_serve.sh: `moesim run` on an inference step (schedule.kind prefill | decode;
# sim/serve.h): bad input refused with one line naming the key and exit 2; the CSV's
# stable columns; each GPU's breakdown adding up to the step; byte-identical outputs for
# the same seed; the bundled DeepSeek-V3 prefill and decode examples (shrunk) run, and
# their KV cache per GPU is the hand-derived figure.
#
# Run from the repository root: MOESIM=build/bin/moesim bash tests/e2e_serve.sh
set -u

source "$(dirname "$0")/lib_serve.sh" serve

# 2 nodes x 4 GPUs, a small GQA MoE model.
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
kv_heads = 2
[routing]
distribution = zipf
zipf_s = 1
[schedule]
kind = decode
[serve]
batch = 16
context_len = 2048
INI
grep -v '^context_len' "$tmp/dec.ini" > "$tmp/pre.ini"
printf 'prompt_len = 1024\n' >> "$tmp/pre.ini"
sed -i 's/^kind = decode/kind = prefill/' "$tmp/pre.ini"

expect_bad "batch 0" "serve.batch" "$tmp/dec.ini" --set serve.batch=0
expect_bad "context beyond seq_len" "serve.context_len" "$tmp/dec.ini" --set serve.context_len=4096
expect_bad "mtp past seq_len" "serve.mtp_tokens" "$tmp/dec.ini" --set serve.context_len=4095 \
    --set serve.mtp_tokens=1
expect_bad "ep not dividing the GPUs" "parallel.ep" "$tmp/dec.ini" --set parallel.ep=3
expect_bad "decode with prompt_len" "serve.prompt_len" "$tmp/dec.ini" --set serve.prompt_len=100
expect_bad "decode with cached_fraction" "serve.cached_fraction" "$tmp/dec.ini" \
    --set serve.cached_fraction=0.5
expect_bad "prefill with context_len" "serve.context_len" "$tmp/dec.ini" \
    --set schedule.kind=prefill
expect_bad "prompt beyond seq_len" "serve.prompt_len" "$tmp/pre.ini" \
    --set serve.prompt_len=5000
expect_bad "prefill with mtp_tokens" "serve.mtp_tokens" "$tmp/pre.ini" --set serve.mtp_tokens=1
expect_bad "pp 2" "parallel.pp" "$tmp/dec.ini" --set parallel.pp=2
expect_bad "two micro-batches of one token" "serve.microbatches" "$tmp/dec.ini" \
    --set serve.batch=1 --set serve.microbatches=2
expect_bad "shared_as_routed without shared experts" "serve.shared_as_routed" "$tmp/dec.ini" \
    --set model.shared_experts=0 --set serve.shared_as_routed=on
expect_bad "gemm_dtype fp16" "serve.gemm_dtype" "$tmp/dec.ini" --set serve.gemm_dtype=fp16
expect_bad "cached_fraction 1" "serve.cached_fraction" "$tmp/pre.ini" \
    --set serve.cached_fraction=1
expect_bad "ll_message_us without low_latency" "serve.ll_message_us" "$tmp/dec.ini" \
    --set serve.ll_message_us=1
expect_bad "a2a word" "serve.a2a" "$tmp/dec.ini" --set serve.a2a=fast

# ---- CSV columns, stable (README.md, Serving) ----
cols="phase,gpus,ep,batch,prompt_len,cached_fraction,context_len,mtp_tokens,gemm_dtype,kv_dtype,tokens_per_gpu,seed,step_s,ttft_s,tpot_s,tokens_per_s_gpu,tokens_per_s_node,compute_s,comm_s,exposed_comm_s,skew_wait_s,kv_cache_GiB,weights_GiB,gpu_mem_GiB,fits,expert_imbalance,gpu_imbalance,wall_s,model,cluster,experts,top_k,nodes,gpus_per_node,route,distribution,zipf_s,schedule,a2a,microbatches,microbatch_tokens,hidden_comm_s,attn_tp,shared_as_routed"
if "$MOESIM" run "$tmp/dec.ini" --no-timing --csv "$tmp/a.csv" --gpu-csv "$tmp/a_gpu.csv" \
        > "$tmp/a.txt" 2> "$tmp/err"; then
    pass "decode runs"
else
    fail "decode runs: $(cat "$tmp/err")"
fi
[ "$(head -1 "$tmp/a.csv")" = "$cols" ] && pass "CSV header" || fail "CSV header: $(head -1 "$tmp/a.csv")"
grep -qF "$cols" README.md && pass "README states the CSV columns" ||
    fail "README lacks the CSV columns"

# The decode row: tokens_per_gpu = batch x 1, KV cache = 16 x 2048 x 4 layers x 2 x 2 KV
# heads x 128 (1024 / 8) x 2 B = 128 MiB = 0.125 GiB; tpot = step; tokens/s per GPU = 16 / step.
python3 - "$tmp/a.csv" <<'PY' && pass "decode figures" || fail "decode figures"
import csv, sys
r = next(csv.DictReader(open(sys.argv[1])))
step = float(r["step_s"])
assert r["tokens_per_gpu"] == "16" and r["phase"] == "decode", r
assert abs(float(r["kv_cache_GiB"]) - 0.125) < 1e-12, r["kv_cache_GiB"]
assert abs(float(r["tpot_s"]) - step) <= 1e-9 * step, r
assert abs(float(r["tokens_per_s_gpu"]) - 16 / step) <= 1e-6 * 16 / step, r
assert abs(float(r["tokens_per_s_node"]) - 4 * float(r["tokens_per_s_gpu"])) < 1e-3, r
assert r["ttft_s"] == "" and r["prompt_len"] == "" and r["fits"] == "1", r
PY

# Each GPU: compute + skew wait + exposed comm + idle = the step (one stage, no bubble).
python3 - "$tmp/a.csv" "$tmp/a_gpu.csv" <<'PY' && pass "per-GPU breakdown adds up" || fail "per-GPU breakdown"
import csv, sys
step = float(next(csv.DictReader(open(sys.argv[1])))["step_s"])
rows = list(csv.DictReader(open(sys.argv[2])))
assert len(rows) == 8
for r in rows:
    s = sum(float(r[k]) for k in ("compute_s", "skew_wait_s", "exposed_comm_s", "idle_s"))
    assert abs(s - step) <= 1e-9 * step, (r, s, step)
PY

"$MOESIM" run "$tmp/dec.ini" --no-timing --csv "$tmp/b.csv" --gpu-csv "$tmp/b_gpu.csv" > "$tmp/b.txt" 2>&1
cmp -s "$tmp/a.csv" "$tmp/b.csv" && cmp -s "$tmp/a_gpu.csv" "$tmp/b_gpu.csv" &&
    cmp -s "$tmp/a.txt" "$tmp/b.txt" && pass "same seed, same bytes" || fail "outputs differ"

# Prefill of the same model: TTFT = the step; a longer prompt costs more.
"$MOESIM" run "$tmp/pre.ini" --no-timing --set serve.batch=2 --csv "$tmp/p1.csv" > /dev/null 2>&1
"$MOESIM" run "$tmp/pre.ini" --no-timing --set serve.batch=2 --set serve.prompt_len=2048 \
    --csv "$tmp/p2.csv" > /dev/null 2>&1
python3 - "$tmp/p1.csv" "$tmp/p2.csv" <<'PY' && pass "prefill: TTFT = step, grows with the prompt" || fail "prefill figures"
import csv, sys
a = next(csv.DictReader(open(sys.argv[1])))
b = next(csv.DictReader(open(sys.argv[2])))
assert a["ttft_s"] == a["step_s"] and a["tpot_s"] == "" and a["tokens_per_gpu"] == "2048"
assert float(b["step_s"]) > float(a["step_s"])
PY

# ---- the bundled examples, shrunk to run in a blink ----
for f in prefill decode; do
    ini=configs/examples/deepseek-v3-$f.ini
    if [ $f = prefill ]; then shrink="--set serve.prompt_len=256"; else shrink="--set serve.batch=4"; fi
    if "$MOESIM" run "$ini" --no-timing $shrink --csv "$tmp/$f.csv" > "$tmp/$f.txt" 2> "$tmp/err"; then
        pass "$ini runs"
    else
        fail "$ini: $(cat "$tmp/err")"
    fi
done
# DeepSeek-V3 KV cache: 61 layers x (512 + 64) x 2 B = 70,272 B a token; prefill 1 x 256
# tokens, decode 4 x 2048 tokens.
python3 - "$tmp/prefill.csv" "$tmp/decode.csv" <<'PY' && pass "DeepSeek-V3 KV cache per GPU by hand" || fail "DeepSeek-V3 KV cache"
import csv, sys
p = next(csv.DictReader(open(sys.argv[1])))
d = next(csv.DictReader(open(sys.argv[2])))
per = 61 * 576 * 2
for r, toks in ((p, 256), (d, 4 * 2048)):
    want = toks * per / 2**30
    assert abs(float(r["kv_cache_GiB"]) - want) <= 1e-9 * want, (r["kv_cache_GiB"], want)
assert p["gpus"] == "32" and p["ep"] == "32" and d["gpus"] == "144" and d["ep"] == "144"
PY

# Mixtral 8x7B on one H100 node (GQA): 32 layers x 2 x 8 KV heads x 128 x 2 B = 128 KiB a
# token, x 128 sequences x 4096 tokens = 64 GiB per GPU; Qwen3-235B's example runs.
"$MOESIM" run configs/examples/mixtral-8x7b-decode.ini --no-timing --csv "$tmp/mix.csv" > /dev/null 2>&1
python3 - "$tmp/mix.csv" <<'PY' && pass "Mixtral 8x7B KV cache per GPU by hand" || fail "Mixtral KV cache"
import csv, sys
r = next(csv.DictReader(open(sys.argv[1])))
assert float(r["kv_cache_GiB"]) == 64.0 and r["gpus"] == "8" and r["ep"] == "8", r
PY
if "$MOESIM" run configs/examples/qwen3-235b-decode.ini --no-timing > /dev/null 2> "$tmp/err"; then
    pass "configs/examples/qwen3-235b-decode.ini runs"
else
    fail "qwen3-235b-decode.ini: $(cat "$tmp/err")"
fi

# A KV cache past gpu_mem_GiB is said so.
"$MOESIM" run configs/examples/deepseek-v3-decode.ini --no-timing --set serve.batch=512 \
    --set serve.context_len=4000 --set cluster.nodes=2 --set parallel.ep=16 \
    --set balance.redundant_experts=0 > "$tmp/big.txt" 2>&1
grep -q "DOES NOT FIT" "$tmp/big.txt" && pass "a KV cache past the GPU's memory is reported" ||
    fail "no DOES NOT FIT: $(cat "$tmp/big.txt")"

# EPLB with more slots than ep divides experts: 40 experts + 24 redundant on EP 32 (two
# slots a GPU), and DeepSeek-V3's 256 + 32 on EP 144 above. The measuring pass of the
# eplb placement routes on EP groups of gcd(ep, experts) GPUs (balance.c).
if "$MOESIM" run "$PWD/configs/examples/default.ini" --no-timing --set parallel.pp=1 \
        --set schedule.kind=none --set parallel.ep=0 --set model.experts=40 \
        --set balance.placement=eplb --set balance.expert_groups=8 \
        --set balance.redundant_experts=24 > "$tmp/eplb.txt" 2> "$tmp/err"; then
    pass "eplb: 40 + 24 experts on EP 32"
else
    fail "eplb: 40 + 24 experts on EP 32: $(cat "$tmp/err")"
fi

# serve.a2a: normal is the default (same bytes out); low_latency runs, and its cost per
# message lengthens the step.
"$MOESIM" run "$tmp/dec.ini" --no-timing --csv "$tmp/n0.csv" > "$tmp/n0.txt" 2>&1
"$MOESIM" run "$tmp/dec.ini" --no-timing --set serve.a2a=normal --csv "$tmp/n1.csv" \
    > "$tmp/n1.txt" 2>&1
cmp -s "$tmp/n0.csv" "$tmp/n1.csv" && cmp -s "$tmp/n0.txt" "$tmp/n1.txt" &&
    pass "serve.a2a = normal is the default" || fail "serve.a2a = normal differs from the default"
for us in 0 1; do
    "$MOESIM" run "$tmp/dec.ini" --no-timing --set serve.a2a=low_latency \
        --set serve.ll_message_us=$us --csv "$tmp/ll$us.csv" > /dev/null 2> "$tmp/err" ||
        fail "low_latency: $(cat "$tmp/err")"
done
python3 - "$tmp/ll0.csv" "$tmp/ll1.csv" <<'PY' && pass "low_latency: ll_message_us lengthens the step" || fail "low_latency: ll_message_us"
import csv, sys
a, b = (next(csv.DictReader(open(f)))for f in sys.argv[1:])
assert float(b["step_s"]) > float(a["step_s"]) and float(b["comm_s"]) > float(a["comm_s"]), (a, b)
PY

# serve.microbatches = 2: one micro-batch's compute beside the other's all-to-alls. On
# the decode and the prefill above, with either all-to-all: exposed communication no more
# than with one micro-batch, hidden + exposed = comm, the columns say the mode; an odd
# batch of 15 runs as micro-batches of 8 tokens (the second padded).
for f in dec pre; do
    for a2a in normal low_latency; do
        for mb in 1 2; do
            "$MOESIM" run "$tmp/$f.ini" --no-timing --set serve.a2a=$a2a \
                --set serve.microbatches=$mb --csv "$tmp/mb$f$a2a$mb.csv" > "$tmp/mb.txt" \
                2> "$tmp/err" || fail "$f $a2a microbatches $mb: $(cat "$tmp/err")"
        done
        python3 - "$tmp/mb${f}${a2a}1.csv" "$tmp/mb${f}${a2a}2.csv" "$a2a" <<'PY' &&
import csv, sys
one, two = (next(csv.DictReader(open(f))) for f in sys.argv[1:3])
for r, mb in ((one, "1"), (two, "2")):
    assert r["a2a"] == sys.argv[3] and r["microbatches"] == mb, r
    h, e, c = (float(r[k]) for k in ("hidden_comm_s", "exposed_comm_s", "comm_s"))
    assert abs(h + e - c) <= 1e-9 * c, r
assert float(two["exposed_comm_s"]) <= float(one["exposed_comm_s"]), (one, two)
assert int(two["microbatch_tokens"]) * 2 == int(one["microbatch_tokens"]), (one, two)
PY
        pass "$f, $a2a: 2 micro-batches expose no more than 1" ||
            fail "$f, $a2a: 2 micro-batches"
    done
done
"$MOESIM" run "$tmp/dec.ini" --no-timing --set serve.batch=15 --set serve.microbatches=2 \
        > "$tmp/odd.txt" 2>&1
grep -q "overlap  *2 micro-batches of 8 tokens per GPU" "$tmp/odd.txt" &&
    pass "an odd batch of 15: two micro-batches of 8 tokens" || fail "odd batch: $(cat "$tmp/odd.txt")"

echo "e2e_serve: $npass passed, $nfail failed"
[ "$nfail" -eq 0 ]
