#!/usr/bin/env bash
# e2e_trace.sh: the --trace timeline of a small MoE run is the Chrome Trace Event JSON
# that sim/timeline.c and traces/chrome.h describe, and agrees with the --csv row of
# the same run:
#   - valid JSON, {"traceEvents": [...]};
#   - one process_name metadata event per GPU (pid = GPU id);
#   - per flow and phase one "b"/"e" async pair on the sender (cat "send", args.dst)
#     and one on the receiver (cat "recv", args.src): flows x 2 phases pairs of each,
#     "flows" being the CSV's column (the dispatch's flows; the combine is its
#     transpose, so it has as many);
#   - every "e" at or after its "b";
#   - counter ("C") events, never above the link's capacity (max-min is feasible);
#   - per GPU an "X" slice "dispatch" on [0, dispatch_s] and "combine" on
#     [dispatch_s, dispatch_s + combine_s] (times in us, written "%.3f": 1 ns);
#   - every timestamp within [0, (dispatch_s + combine_s) * 1e6 + 1] us.
#
# Run from the repository root: MOESIM=build/bin/moesim bash tests/e2e_trace.sh
set -u

MOESIM=${MOESIM:-build/bin/moesim}
case $MOESIM in /*) ;; *) MOESIM=$PWD/$MOESIM ;; esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/moesim-trace.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

npass=0
nfail=0
pass() { echo "ok - $1"; npass=$((npass + 1)); }
fail() { echo "FAIL - $1"; nfail=$((nfail + 1)); }

# 2 nodes x 4 GPUs, one node per leaf with a 2:1 uplink (so the trace also has the
# fabric process and leaf counters), rail routing (every flow crosses NVLink or the
# network, never both: the bytes check below relies on it), zipf routing.
NVL_GBPS=450
NIC_GBPS=50
cat > "$tmp/moe.ini" <<EOF
[cluster]
nodes = 2
gpus_per_node = 4
nvlink_GBps = $NVL_GBPS
nic_GBps = $NIC_GBPS
nodes_per_leaf = 1
oversubscription = 2
route = rail
[model]
hidden = 128
experts = 16
top_k = 4
dispatch_bytes_per_elem = 1
combine_bytes_per_elem = 2
[parallel]
ep = 8
[routing]
tokens_per_gpu = 256
distribution = zipf
[traffic]
pattern = moe
EOF

if "$MOESIM" run "$tmp/moe.ini" --seed 3 --no-timing --csv "$tmp/run.csv" --trace "$tmp/trace.json" \
    > "$tmp/out" 2> "$tmp/err"; then
    pass "moesim run with --trace exits 0"
else
    fail "moesim run with --trace failed: $(head -n 1 "$tmp/err")"
fi

# Leaf up/down capacity: nodes_per_leaf * gpus_per_node * nic / oversubscription (topo.h).
python3 - "$tmp/trace.json" "$tmp/run.csv" 8 "$NVL_GBPS" "$NIC_GBPS" "$((1 * 4 * NIC_GBPS / 2))" \
    > "$tmp/py.out" 2> "$tmp/py.err" <<'EOF'
import csv, json, sys
from collections import Counter, defaultdict

trace_path, csv_path = sys.argv[1], sys.argv[2]
gpus = int(sys.argv[3])
cap = {"nvl_tx": float(sys.argv[4]), "nvl_rx": float(sys.argv[4]),
       "nic_tx": float(sys.argv[5]), "nic_rx": float(sys.argv[5])}
leaf_cap = float(sys.argv[6])
NS = 0.0015          # "%.3f" us: 0.5 ns rounding per value, two values compared

def check(cond, msg):
    print(("ok - " if cond else "FAIL - ") + msg)

try:
    with open(trace_path) as f:
        doc = json.load(f)
    check(True, "trace is valid JSON")
except (OSError, ValueError) as e:
    check(False, f"trace is valid JSON ({e})")
    sys.exit(0)
ev = doc.get("traceEvents") if isinstance(doc, dict) else None
check(isinstance(ev, list) and len(ev) > 0, "trace has a non-empty traceEvents list")
if not isinstance(ev, list):
    sys.exit(0)

with open(csv_path, newline="") as f:
    row = next(csv.DictReader(f))
flows = int(row["flows"])
disp_us = float(row["dispatch_s"]) * 1e6
comb_us = float(row["combine_s"]) * 1e6
end_us = disp_us + comb_us
remote = int(row["nvlink_bytes"]) + int(row["net_bytes"])

# One process_name per GPU.
names = Counter(e["pid"] for e in ev if e.get("ph") == "M" and e.get("name") == "process_name")
check(all(names[g] == 1 for g in range(gpus)),
      f"one process_name metadata event per GPU 0..{gpus - 1} "
      f"(got {[names[g] for g in range(gpus)]})")

# Async pairs: key (pid, cat, name, id) -> its "b" and "e".
pairs = defaultdict(lambda: {"b": [], "e": []})
for e in ev:
    if e.get("ph") in ("b", "e"):
        pairs[(e["pid"], e.get("cat"), e.get("name"), e.get("id"))][e["ph"]].append(e)
for cat in ("send", "recv"):
    nb = sum(1 for e in ev if e.get("ph") == "b" and e.get("cat") == cat)
    ne = sum(1 for e in ev if e.get("ph") == "e" and e.get("cat") == cat)
    check(nb == 2 * flows and ne == 2 * flows,
          f'"{cat}": {nb} "b" and {ne} "e" events, expected flows x 2 phases = {2 * flows}')
bad = [k for k, v in pairs.items() if len(v["b"]) != 1 or len(v["e"]) != 1]
check(not bad, f'every async id has exactly one "b" and one "e" ({len(bad)} do not)')
early = [k for k, v in pairs.items() if v["b"] and v["e"] and v["e"][0]["ts"] < v["b"][0]["ts"]]
check(not early, f'every "e" is at or after its "b" ({len(early)} are not)')

# The sender's and the receiver's views of each flow agree: (src, dst, bytes, t0, t1).
def view(cat, peer):
    out = Counter()
    for (pid, c, _, _), v in pairs.items():
        if c == cat and len(v["b"]) == 1 and len(v["e"]) == 1:
            b = v["b"][0]
            a = b.get("args", {})
            src, dst = (pid, a.get(peer)) if cat == "send" else (a.get(peer), pid)
            out[(src, dst, a.get("bytes"), b["ts"], v["e"][0]["ts"])] += 1
    return out
send, recv = view("send", "dst"), view("recv", "src")
check(send == recv and len(send) > 0,
      "each send (pid = src, args.dst) has its recv (pid = dst, args.src): same bytes and times")
check(all(s != d for (s, d, _, _, _) in send), "no flow from a GPU to itself")
# Rail routing: a flow crosses NVLink (same node) or the NICs (other node), once; the
# CSV's nvlink_bytes + net_bytes (dispatch + combine) is then all the bytes that moved.
moved = sum(k[2] * n for k, n in send.items())
check(moved == remote, f"bytes of all send slices = {moved}, CSV nvlink + net bytes = {remote}")
# Dispatch flows (written first, lower ids) lie in [0, dispatch]; combine in
# [dispatch, end]; the last of each ends with its phase.
sends = sorted(((v["b"][0]["id"], v["b"][0]["ts"], v["e"][0]["ts"]) for (p, c, _, _), v in pairs.items()
                if c == "send" and len(v["b"]) == 1 and len(v["e"]) == 1))
d, c = sends[:flows], sends[flows:]
check(d and all(-NS <= t0 and t1 <= disp_us + NS for _, t0, t1 in d)
      and abs(max(t1 for _, _, t1 in d) - disp_us) <= NS,
      f"dispatch flows within [0, {disp_us:.3f}] us, the last ending at dispatch_s")
check(c and all(disp_us - NS <= t0 and t1 <= end_us + NS for _, t0, t1 in c)
      and abs(max(t1 for _, _, t1 in c) - end_us) <= NS,
      f"combine flows within [{disp_us:.3f}, {end_us:.3f}] us, the last ending at the end")

# Counters: present, numeric, non-negative, never above the link's capacity.
cs = [e for e in ev if e.get("ph") == "C"]
check(len(cs) > 0, f'counter ("C") events present ({len(cs)})')
over = []
for e in cs:
    for v in e.get("args", {}).values():
        name = e.get("name", "")
        limit = cap.get(name, leaf_cap if name.startswith("leaf") else None)
        if not isinstance(v, (int, float)) or v < 0 or limit is None or v > limit * (1 + 1e-9):
            over.append((e["pid"], name, v))
check(not over, f"every counter value is in [0, link capacity] GB/s (bad: {over[:3]})")
check(all(e["pid"] in names for e in cs), "every counter is in a named process")

# Phase slices: per GPU one "dispatch" [0, dispatch_s] and one "combine" after it.
xs = [e for e in ev if e.get("ph") == "X"]
for phase, t0, dur in (("dispatch", 0.0, disp_us), ("combine", disp_us, comb_us)):
    got = {e["pid"]: e for e in xs if e.get("name") == phase}
    n = Counter(e["pid"] for e in xs if e.get("name") == phase)
    check(all(n[g] == 1 for g in range(gpus))
          and all(abs(got[g]["ts"] - t0) <= NS and abs(got[g]["dur"] - dur) <= NS
                  for g in range(gpus)),
          f'"X" slice "{phase}" on every GPU at {t0:.3f} us for {dur:.3f} us')
check(len(xs) == 2 * gpus, f'"X" slices: 2 per GPU ({len(xs)})')

# Every timestamp (and slice end) inside the run.
lo, hi = 0.0, end_us + 1
times = [e["ts"] for e in ev if "ts" in e] + [e["ts"] + e["dur"] for e in xs]
outside = [t for t in times if not (lo <= t <= hi)]
check(len(times) > 0 and not outside,
      f"all {len(times)} timestamps within [0, {hi:.3f}] us (outside: {outside[:3]})")
EOF
py_rc=$?
while IFS= read -r line; do
    case $line in
    "ok - "*) pass "${line#ok - }" ;;
    *) fail "${line#FAIL - }" ;;
    esac
done < "$tmp/py.out"
[ "$py_rc" -eq 0 ] || fail "trace checks stopped: $(tail -n 1 "$tmp/py.err")"

echo "# e2e_trace: $npass passed, $nfail failed"
[ "$nfail" -eq 0 ]
