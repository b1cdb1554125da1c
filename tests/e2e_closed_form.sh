#!/usr/bin/env bash
# e2e_closed_form.sh: moesim's times and byte counts against answers worked by hand.
#
# Every expected value below is a formula written out in this script and evaluated
# by python3; none is copied from the program's output. The model the formulas
# follow is the one sim/topo.h and sim/a2a.h state:
#   - a flow starts sharing bandwidth after its path's latency, then the flows share
#     links max-min fairly (fluid model);
#   - latency: same node 2 nvl; rail-direct 2 nic + 1 sw (3 sw across leaves);
#     pxn = NVLink to the GPU on the destination's rail, then rail-direct;
#     hierarchical = rail-direct to the same-index GPU of the destination node, then
#     NVLink; a forwarding leg adds 2 nvl (for a matrix; MoE traffic under
#     hierarchical is two-level, case (g));
#   - every GPU has NVLink tx/rx and NIC tx/rx links of nvlink_GBps / nic_GBps
#     (1 GB = 1e9 B); a leaf's uplink is nodes_per_leaf * gpus_per_node * nic / oversub.
# Times are compared with relative tolerance TOL = 1e-6 (well inside 1e-3; the CSV
# prints 10 significant digits); byte counts exactly.
#
# Run from the repository root: MOESIM=build/bin/moesim bash tests/e2e_closed_form.sh
set -u

MOESIM=${MOESIM:-build/bin/moesim}
case $MOESIM in /*) ;; *) MOESIM=$PWD/$MOESIM ;; esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/moesim-closed.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

TOL=1e-6

# The cluster constants of every case, in file units; latencies are distinct so that
# a wrong count of hops cannot be hidden by another term.
NVL_GBPS=450        # B  = 450e9 B/s
NIC_GBPS=50         # nic = 50e9 B/s
NVL_US=1.5          # L  = 1.5e-6 s per NVLink hop
NIC_US=2.5          # per NIC crossed
SW_US=0.7           # per fabric switch crossed
B=${NVL_GBPS}e9
NIC=${NIC_GBPS}e9
L=${NVL_US}e-6
NL=${NIC_US}e-6
SW=${SW_US}e-6
S=1048576           # 1 MiB per pair

npass=0
nfail=0
pass() { echo "ok - $1"; npass=$((npass + 1)); }
fail() { echo "FAIL - $1"; nfail=$((nfail + 1)); }

# check NAME CSV ROW COLUMN EXPR [TOL]: queued in $tmp/checks.tsv; check_all runs them
# all in one python3 process at the end (python3 starts slowly here: one start per
# check would cost seconds).
#   ROW:  0 for the one-row run CSV; for the per-GPU CSV the gpu id (matched on the
#         "gpu" column), or "A-B": gpu A's value minus gpu B's.
#   EXPR: a Python arithmetic expression, the hand-worked formula (min, max allowed).
#   TOL:  "exact" (integers) or a relative tolerance; default $TOL.
: > "$tmp/checks.tsv"
check() {
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "${6:-$TOL}" >> "$tmp/checks.tsv"
}

cat > "$tmp/check.py" <<'EOF'
import csv, sys

npass = nfail = 0
for spec in open(sys.argv[1]):
    name, path, row, col, expr, tol = spec.rstrip("\n").split("\t")
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        if rows and "gpu" in rows[0]:
            by_gpu = {r["gpu"]: r for r in rows}
            vals = [by_gpu[g][col] for g in row.split("-")]
        else:
            vals = [rows[int(row)][col]]
    except (OSError, IndexError, KeyError, ValueError) as e:
        print(f"FAIL - {name}: no {col} in row {row} of {path} ({e!r})")
        nfail += 1
        continue
    try:
        want = eval(expr, {"__builtins__": {}, "min": min, "max": max}, {})
    except Exception as e:
        print(f"FAIL - {name}: cannot evaluate {expr}: {e!r}")
        nfail += 1
        continue
    if tol == "exact":
        got = int(vals[0]) - sum(int(v) for v in vals[1:])
        ok = got == int(want)
    else:
        got = float(vals[0]) - sum(float(v) for v in vals[1:])
        ok = abs(got - want) <= float(tol) * abs(want)
    print(f"{'ok' if ok else 'FAIL'} - {name}: {col} = {got!r}, expected {expr} = {want!r}")
    npass += ok
    nfail += not ok
with open(sys.argv[2], "w") as f:
    print(npass, nfail, file=f)
EOF

check_all() {
    local p=0 f=1
    python3 "$tmp/check.py" "$tmp/checks.tsv" "$tmp/counts" && read -r p f < "$tmp/counts" ||
        echo "FAIL - the checker did not run"
    npass=$((npass + p))
    nfail=$((nfail + f))
}

# cluster_ini NODES [extra lines...]: the [cluster] section of every case.
cluster_ini() {
    local nodes=$1
    shift
    printf '[cluster]\nnodes = %s\ngpus_per_node = 8\nnvlink_GBps = %s\nnic_GBps = %s\n' \
        "$nodes" "$NVL_GBPS" "$NIC_GBPS"
    printf 'nvlink_latency_us = %s\nnic_latency_us = %s\nswitch_latency_us = %s\n' \
        "$NVL_US" "$NIC_US" "$SW_US"
    for line in "$@"; do printf '%s\n' "$line"; done
}

# sim NAME ARGS...: runs moesim, writing $tmp/NAME.csv and $tmp/NAME.gpu.csv.
sim() {
    local name=$1
    shift
    if "$MOESIM" run "$@" --no-timing --csv "$tmp/$name.csv" --gpu-csv "$tmp/$name.gpu.csv" \
        > "$tmp/$name.out" 2> "$tmp/$name.err"; then
        pass "$name: moesim run exits 0"
    else
        fail "$name: moesim run failed: $(head -n 1 "$tmp/$name.err")"
    fi
}

# ---- (a) uniform all-to-all on one node of G = 8 GPUs ----
# Each GPU's NVLink tx carries its 7 outgoing flows and its rx 7 incoming: every link
# has 7 flows, so each gets B/7 and all 56 finish together after the 2-hop latency:
#   time = 2L + (G-1) S / B.
{ cluster_ini 1; printf '[traffic]\npattern = alltoall\nbytes_per_pair = %s\n' "$S"; } > "$tmp/a.ini"
sim a "$tmp/a.ini"
check "(a) one-node all-to-all time" "$tmp/a.csv" 0 dispatch_s "2*$L + 7*$S/$B"
check "(a) gpu 5 receive finish" "$tmp/a.gpu.csv" 5 recv_finish_s "2*$L + 7*$S/$B"
# 8*7 ordered pairs, all over NVLink; the 8 diagonal entries stay local.
check "(a) flows" "$tmp/a.csv" 0 flows "8*7" exact
check "(a) nvlink bytes" "$tmp/a.csv" 0 nvlink_bytes "8*7*$S" exact
check "(a) net bytes" "$tmp/a.csv" 0 net_bytes "0" exact
check "(a) local bytes" "$tmp/a.csv" 0 local_bytes "8*$S" exact

# ---- (b) all-to-all over 4 nodes x 8 GPUs, rail-direct, non-blocking fabric ----
# Each GPU sends 24 flows of S to the other nodes through its NIC tx (and each NIC rx
# takes 24): 24 flows per NIC link, nic/24 each, all equal, so all end together:
#   time = 2 nic_lat + sw_lat + 24 S / nic.
# Its 7 NVLink flows end at 2L + 7 S / B = 19.3 us, well before (508 us): NIC bound.
{ cluster_ini 4 "route = rail"; printf '[traffic]\npattern = alltoall\nbytes_per_pair = %s\n' "$S"; } \
    > "$tmp/b.ini"
sim b "$tmp/b.ini"
check "(b) 4-node rail all-to-all time (NIC bound)" "$tmp/b.csv" 0 dispatch_s "2*$NL + $SW + 24*$S/$NIC"
check "(b) gpu 31 receive finish" "$tmp/b.gpu.csv" 31 recv_finish_s "2*$NL + $SW + 24*$S/$NIC"
check "(b) net bytes = 32 GPUs x 24 remote peers x S" "$tmp/b.csv" 0 net_bytes "32*24*$S" exact
check "(b) nvlink bytes = 32 GPUs x 7 local peers x S" "$tmp/b.csv" 0 nvlink_bytes "32*7*$S" exact

# ---- (c) one flow, gpu 0 -> gpu 9, 1e6 bytes, 2 nodes x 8 GPUs ----
# gpu 0 is local 0 of node 0, gpu 9 is local 1 of node 1: different rails.
BYTES=1000000
printf '# one flow\n0 9 %s\n' "$BYTES" > "$tmp/c.txt"
printf '0 8 %s\n' "$BYTES" > "$tmp/c_same_rail.txt"
for route in rail pxn hierarchical; do
    { cluster_ini 2 "route = $route"; printf '[traffic]\npattern = matrix\nmatrix = c.txt\n'; } \
        > "$tmp/c_$route.ini"
    sim "c_$route" "$tmp/c_$route.ini"
done
# rail: NIC 0 -> switch -> NIC 9; alone on its links, it runs at nic.
check "(c) rail single flow" "$tmp/c_rail.csv" 0 dispatch_s "2*$NL + $SW + $BYTES/$NIC"
check "(c) rail: no NVLink bytes" "$tmp/c_rail.csv" 0 nvlink_bytes "0" exact
check "(c) rail: net bytes" "$tmp/c_rail.csv" 0 net_bytes "$BYTES" exact
# pxn: NVLink 0 -> 1 (2 nvl), then gpu 1's NIC -> switch -> NIC 9; rate min(B, nic).
check "(c) pxn single flow" "$tmp/c_pxn.csv" 0 dispatch_s \
    "2*$L + 2*$NL + $SW + $BYTES/min($B, $NIC)"
check "(c) pxn: NVLink leg bytes" "$tmp/c_pxn.csv" 0 nvlink_bytes "$BYTES" exact
check "(c) pxn: net bytes" "$tmp/c_pxn.csv" 0 net_bytes "$BYTES" exact
check "(c) pxn: gpu 0 send finish" "$tmp/c_pxn.gpu.csv" 0 send_finish_s \
    "2*$L + 2*$NL + $SW + $BYTES/min($B, $NIC)"
check "(c) pxn: gpu 9 receive finish" "$tmp/c_pxn.gpu.csv" 9 recv_finish_s \
    "2*$L + 2*$NL + $SW + $BYTES/min($B, $NIC)"
# The same with NVLink slower than the NIC (25 GB/s, by --set): the NVLink leg is now
# the min, so the rate term is bytes / 25e9.
sim c_pxn_slow "$tmp/c_pxn.ini" --set cluster.nvlink_GBps=25
check "(c) pxn, NVLink 25 GB/s < NIC: NVLink-bound" "$tmp/c_pxn_slow.csv" 0 dispatch_s \
    "2*$L + 2*$NL + $SW + $BYTES/min(25e9, $NIC)"
# hierarchical: NIC 0 -> switch -> NIC 8, then NVLink 8 -> 9: same sum of terms.
check "(c) hierarchical single flow" "$tmp/c_hierarchical.csv" 0 dispatch_s \
    "2*$L + 2*$NL + $SW + $BYTES/min($B, $NIC)"
check "(c) hierarchical: NVLink leg bytes" "$tmp/c_hierarchical.csv" 0 nvlink_bytes "$BYTES" exact
check "(c) hierarchical: net bytes" "$tmp/c_hierarchical.csv" 0 net_bytes "$BYTES" exact
# A relay forwards, it does not receive: gpu 8 (the relay) receives nothing of its own.
check "(c) hierarchical: relay gpu 8 receives no bytes" "$tmp/c_hierarchical.gpu.csv" 8 recv_bytes "0" exact
# gpu 0 -> gpu 8 share rail 0: pxn falls back to rail-direct (topo.h), no NVLink leg.
{ cluster_ini 2 "route = pxn"; printf '[traffic]\npattern = matrix\nmatrix = c_same_rail.txt\n'; } \
    > "$tmp/c_same_rail.ini"
sim c_same_rail "$tmp/c_same_rail.ini"
check "(c) pxn, same rail: rail-direct" "$tmp/c_same_rail.csv" 0 dispatch_s "2*$NL + $SW + $BYTES/$NIC"
check "(c) pxn, same rail: no NVLink bytes" "$tmp/c_same_rail.csv" 0 nvlink_bytes "0" exact

# ---- (d) 2:1 oversubscribed leaves: 2 nodes, one node per leaf ----
# Leaf uplink = 1 node * 8 GPUs * 50 GB/s / 2 = 200 GB/s, carrying all 8*8 = 64 flows
# from node 0 to node 1 (and the downlink of the other leaf the same): 200/64 =
# 3.125 GB/s each, below the NIC's share 50/8 = 6.25: the uplink is the bottleneck,
# all 64 finish together. Path latency crosses leaf, spine, leaf: 2 nic + 3 sw.
#   time = 2 nic_lat + 3 sw_lat + 64 S / 200e9
{ cluster_ini 2 "nodes_per_leaf = 1" "oversubscription = 2";
  printf '[traffic]\npattern = alltoall\nbytes_per_pair = %s\n' "$S"; } > "$tmp/d.ini"
sim d "$tmp/d.ini"
check "(d) oversubscribed all-to-all time" "$tmp/d.csv" 0 dispatch_s \
    "2*$NL + 3*$SW + 64*$S/(1*8*$NIC/2)"
check "(d) gpu 3 receive finish" "$tmp/d.gpu.csv" 3 recv_finish_s \
    "2*$NL + 3*$SW + 64*$S/(1*8*$NIC/2)"

# ---- (e) one hot GPU on one node (hand-made matrix) ----
# Every GPU sends S to every other GPU; GPU 1..7 send X more to GPU 0 (pair i->0 is
# S + X). Max-min by hand, from t = 2L:
#   phase 1: every NVLink tx and rx link carries 7 flows, so every flow gets B/7 and
#            all links are full; the 49 flows of S end at 7S/B.
#   phase 2: only the 7 flows i->0 remain, each with X left; they share gpu 0's rx
#            (B/7 each; each sender's tx has just one): 7X/B more.
#   gpu 0 receive finish = 2L + 7S/B + 7X/B = 2L + (7S + 7X)/B  (all its bytes over
#   its ingress); every other GPU's receive finish = 2L + 7S/B; GPU i >= 1 sends its
#   last byte at 2L + 7(S+X)/B, GPU 0 at 2L + 7S/B.
# The hot GPU's extra time is exactly its extra bytes over its ingress: 7X/B.
X=3000000
{
    echo "# every pair S, plus X more from gpu 1..7 to gpu 0"
    for s in 0 1 2 3 4 5 6 7; do
        for d in 0 1 2 3 4 5 6 7; do
            [ "$s" -eq "$d" ] && continue
            if [ "$d" -eq 0 ]; then echo "$s $d $((S + X))"; else echo "$s $d $S"; fi
        done
    done
} > "$tmp/e.txt"
{ cluster_ini 1; printf '[traffic]\npattern = matrix\nmatrix = e.txt\n'; } > "$tmp/e.ini"
sim e "$tmp/e.ini"
check "(e) hot gpu 0 receive finish" "$tmp/e.gpu.csv" 0 recv_finish_s "2*$L + (7*$S + 7*$X)/$B"
check "(e) gpu 1 receive finish" "$tmp/e.gpu.csv" 1 recv_finish_s "2*$L + 7*$S/$B"
check "(e) gpu 7 receive finish" "$tmp/e.gpu.csv" 7 recv_finish_s "2*$L + 7*$S/$B"
check "(e) gpu 0 send finish" "$tmp/e.gpu.csv" 0 send_finish_s "2*$L + 7*$S/$B"
check "(e) gpu 4 send finish" "$tmp/e.gpu.csv" 4 send_finish_s "2*$L + 7*($S + $X)/$B"
check "(e) gpu 0 receive bytes" "$tmp/e.gpu.csv" 0 recv_bytes "7*($S + $X)" exact
check "(e) collective time = hot GPU's finish" "$tmp/e.csv" 0 dispatch_s "2*$L + (7*$S + 7*$X)/$B"
# The hot GPU's extra time over a cold one is its extra bytes over its ingress: 7X/B.
check "(e) hot GPU's extra time = 7X/B" "$tmp/e.gpu.csv" 0-1 recv_finish_s "7*$X/$B"

# ---- (f) token dedup: one node of 8 GPUs, ep 8, every token picks every expert ----
# T tokens per GPU, hidden H, dispatch 1 B/elem, combine 2 B/elem (traffic.h:
# dispatch[s][d] = tokens(s->d) * H * 1, combine the transpose * 2).
#   8 experts (one per GPU), top_k 8: with or without dedup, a token goes to each GPU
#     once: T*H per pair, dispatch; 2*T*H back.
#   16 experts (two per GPU), top_k 16: with dedup still T*H per pair; without, once per
#     chosen expert: 2*T*H per pair (and 4*T*H back).
# nvlink_bytes (dispatch + combine) = 56 pairs * per-pair dispatch * (1 + 2);
# local_bytes = 8 diagonal entries * the same. Times follow (a) with S = bytes per pair.
T=64
H=512
moe_ini() {   # moe_ini EXPERTS DEDUP DISTRIBUTION
    cluster_ini 1
    printf '[model]\nexperts = %s\ntop_k = %s\nhidden = %s\n' "$1" "$1" "$H"
    printf 'dispatch_bytes_per_elem = 1\ncombine_bytes_per_elem = 2\n'
    printf '[parallel]\nep = 8\n'
    printf '[routing]\ntokens_per_gpu = %s\ndedup = %s\ndistribution = %s\n' "$T" "$2" "$3"
    printf '[traffic]\npattern = moe\n'
}
moe_ini 8 true uniform > "$tmp/f8d.ini"
moe_ini 8 false uniform > "$tmp/f8n.ini"
moe_ini 16 true zipf > "$tmp/f16d.ini"
moe_ini 16 false zipf > "$tmp/f16n.ini"
sim f8d "$tmp/f8d.ini"
sim f8n "$tmp/f8n.ini"
sim f16d "$tmp/f16d.ini"
sim f16n "$tmp/f16n.ini"
check "(f) 8 experts, dedup: nvlink bytes" "$tmp/f8d.csv" 0 nvlink_bytes "56*$T*$H*(1 + 2)" exact
check "(f) 8 experts, no dedup: nvlink bytes" "$tmp/f8n.csv" 0 nvlink_bytes "56*$T*$H*(1 + 2)" exact
check "(f) 16 experts, dedup: nvlink bytes" "$tmp/f16d.csv" 0 nvlink_bytes "56*$T*$H*(1 + 2)" exact
check "(f) 16 experts, no dedup: nvlink bytes" "$tmp/f16n.csv" 0 nvlink_bytes "56*2*$T*$H*(1 + 2)" exact
check "(f) 8 experts, dedup: local bytes" "$tmp/f8d.csv" 0 local_bytes "8*$T*$H*(1 + 2)" exact
check "(f) 16 experts, no dedup: local bytes" "$tmp/f16n.csv" 0 local_bytes "8*2*$T*$H*(1 + 2)" exact
check "(f) one node: no network bytes" "$tmp/f16n.csv" 0 net_bytes "0" exact
check "(f) 8 experts, dedup: gpu 3 dispatch send bytes" "$tmp/f8d.gpu.csv" 3 send_bytes "7*$T*$H" exact
check "(f) 16 experts, no dedup: gpu 3 dispatch send bytes" "$tmp/f16n.gpu.csv" 3 send_bytes "7*2*$T*$H" exact
check "(f) 16 experts, dedup: dispatch time" "$tmp/f16d.csv" 0 dispatch_s "2*$L + 7*$T*$H*1/$B"
check "(f) 16 experts, dedup: combine time" "$tmp/f16d.csv" 0 combine_s "2*$L + 7*$T*$H*2/$B"
check "(f) 16 experts, no dedup: dispatch time" "$tmp/f16n.csv" 0 dispatch_s "2*$L + 7*2*$T*$H*1/$B"
check "(f) 16 experts, no dedup: combine time" "$tmp/f16n.csv" 0 combine_s "2*$L + 7*2*$T*$H*2/$B"
# The combine starts when the dispatch ends; the per-GPU CSV measures its finish times
# from the combine's own start (a2a.h: "last end ... - t0"), so the one-node form holds.
check "(f) 8 experts: gpu 2 combine receive finish" "$tmp/f8d.gpu.csv" 2 combine_recv_finish_s \
    "2*$L + 7*$T*$H*2/$B"

# ---- (g) two-level dispatch (route = hierarchical): 2 nodes x 8 GPUs, ep 16, every token
# picks every expert (16 experts, top_k 16, dedup), T tokens per GPU, hidden H; the
# dispatch in FP8 with one 4-byte scale per 128 elements, PD = H * (1 + 4/128) bytes per
# token; the combine in BF16, PC = 2H (traffic.h). Each token of GPU s reaches all 16
# GPUs: 7 NVLink copies to its node's peers, ONE network copy to the same-index GPU of
# the other node (not 8 as rail), which forwards it to its 7 peers. So every same-node
# pair carries 2T (its own T and T relayed for the other node's same-index GPU) and
# every same-index pair T:
#   nvlink bytes = 16 * 7 * 2T * P, net bytes = 16 * T * P, local = 16 * T * P;
#   the tiers share no link and run concurrently (NVLink tx/rx: 7 flows of 2TP, B/7
#   each; NIC: one flow of TP each):
#   time = max(2L + 14 T P / B, 2 nic_lat + sw_lat + T P / nic).
# The combine is the mirror at PC (the relays sum their node's outputs: one network
# copy per (token, node) again). Rail sends 8 network copies per token.
T=64
H=512
PD="$H*(1 + 4/128)"
PC="2*$H"
hier_ini() {   # hier_ini ROUTE
    cluster_ini 2 "route = $1"
    printf '[model]
experts = 16
top_k = 16
hidden = %s
' "$H"
    printf 'dispatch_dtype = fp8
combine_dtype = bf16
'
    printf '[parallel]
ep = 16
'
    printf '[routing]
tokens_per_gpu = %s
dedup = true
' "$T"
}
hier_ini hierarchical > "$tmp/g.ini"
hier_ini rail > "$tmp/g_rail.ini"
sim g "$tmp/g.ini"
sim g_rail "$tmp/g_rail.ini"
check "(g) hierarchical: dispatch net bytes, one copy per remote node" "$tmp/g.csv" 0 \
    net_bytes "16*$T*($PD + $PC)" exact
check "(g) hierarchical: nvlink bytes" "$tmp/g.csv" 0 nvlink_bytes "16*7*2*$T*($PD + $PC)" exact
check "(g) hierarchical: local bytes" "$tmp/g.csv" 0 local_bytes "16*$T*($PD + $PC)" exact
check "(g) hierarchical: dispatch time" "$tmp/g.csv" 0 dispatch_s \
    "max(2*$L + 14*$T*$PD/$B, 2*$NL + $SW + $T*$PD/$NIC)"
check "(g) hierarchical: combine time (the mirror)" "$tmp/g.csv" 0 combine_s \
    "max(2*$L + 14*$T*$PC/$B, 2*$NL + $SW + $T*$PC/$NIC)"
check "(g) hierarchical: relay gpu 0 receives 1 network + 7 x 2 NVLink copies" \
    "$tmp/g.gpu.csv" 0 recv_bytes "15*$T*$PD" exact
check "(g) rail: 8 network copies per token" "$tmp/g_rail.csv" 0 net_bytes \
    "16*8*$T*($PD + $PC)" exact
# With NVLink at 100 GB/s the relays' forwarding is the slower tier: 14TP/100e9 > TP/nic.
sim g_slow "$tmp/g.ini" --set cluster.nvlink_GBps=100
check "(g) hierarchical, NVLink 100 GB/s: NVLink-bound dispatch" "$tmp/g_slow.csv" 0 dispatch_s \
    "max(2*$L + 14*$T*$PD/100e9, 2*$NL + $SW + $T*$PD/$NIC)"

check_all
echo "# e2e_closed_form: $npass passed, $nfail failed"
[ "$nfail" -eq 0 ]
