#!/usr/bin/env bash
# Benchmarks (make bench): event-engine rate, then wall time and peak memory of
# `moesim run` on the cases of docs/PERFORMANCE.md, one process at a time.
set -euo pipefail
MOESIM=${MOESIM:-build/bin/moesim}
BUILD=${BUILD:-build}
here=$(cd "$(dirname "$0")" && pwd)

echo "# event engine"
"$BUILD/tests/bench_des"

# wall seconds and peak resident KiB of one run; the summary goes to /dev/null
measure() {
    local label=$1; shift
    local out
    out=$( { /usr/bin/time -f "%e %M" "$MOESIM" run "$@" --no-timing >/dev/null; } 2>&1 | tail -1)
    local flows
    flows=$("$MOESIM" run "$@" --no-timing | awk '$1 == "dispatch" || $1 == "alltoall" {print $2; exit}')
    read -r wall kib <<<"$out"
    printf "%-34s %9s flows %8s s %10s KiB %8.1f B/flow\n" "$label" "$flows" "$wall" "$kib" \
        "$(awk -v k="$kib" -v f="$flows" 'BEGIN { print (f > 0 ? k * 1024 / f : 0) }')"
}

"$BUILD/tests/bench_routing"

echo "# moesim run: uniform all-to-all, 1 MiB per pair, 8 GPUs/node, rail, 450/50 GB/s"
for nodes in 1 8 32 128; do
    measure "alltoall $((nodes * 8)) GPUs" "$here/bench/alltoall.ini" --set cluster.nodes=$nodes
done
echo "# moesim run: skewed MoE dispatch, 256 GPUs, 256 experts, top-8, Zipf(1.2)"
measure "skewed dispatch 256 GPUs" "$here/bench/skewed-dispatch.ini"

echo "# moesim run: one DeepSeek-V3 training step, 2048 GPUs, PP16 x DP128, EP64, DualPipe, 120 micro-batches"
out=$( { /usr/bin/time -f "%e %M" "$MOESIM" run "$here/../configs/examples/deepseek-v3-train.ini" \
         --no-timing > "${TMPDIR:-/tmp}/moesim-bench-step.out"; } 2>&1 | tail -1)
read -r wall kib <<<"$out"
printf "%-34s %8s s %10s KiB  (%s)\n" "deepseek-v3 step" "$wall" "$kib" \
    "$(awk '/engine:/ { sub(/^ +/, ""); print }' "${TMPDIR:-/tmp}/moesim-bench-step.out")"
rm -f "${TMPDIR:-/tmp}/moesim-bench-step.out"

echo "# moesim run: DeepSeek-V3 inference steps, prefill EP32 on 4 nodes, decode EP144 on 18"
for phase in prefill decode; do
    out=$( { /usr/bin/time -f "%e %M" "$MOESIM" run \
             "$here/../configs/examples/deepseek-v3-$phase.ini" --no-timing > /dev/null; } 2>&1 |
           tail -1)
    read -r wall kib <<<"$out"
    printf "%-34s %8s s %10s KiB\n" "deepseek-v3 $phase step" "$wall" "$kib"
done

echo "# moesim run: DeepSeek-V3 decode with the low-latency all-to-all (20,592 pair flows per"
echo "# all-to-all), batched completions (cluster.flow_quantum; exact, 0, takes minutes)"
for q in 0.01 0.001; do
    out=$( { /usr/bin/time -f "%e %M" "$MOESIM" run "$here/../configs/examples/deepseek-v3-decode.ini" \
             --set serve.a2a=low_latency --set cluster.flow_quantum=$q --no-timing > /dev/null; } 2>&1 |
           tail -1)
    read -r wall kib <<<"$out"
    printf "%-34s %8s s %10s KiB\n" "decode low_latency, quantum $q" "$wall" "$kib"
done

echo "# moesim balance: the README's eight default policies, DeepSeek-V3 layer on 64 GPUs, Zipf(1.0)"
out=$( { /usr/bin/time -f "%e %M" "$MOESIM" balance "$here/../configs/examples/balance-deepseek-v3.ini" \
         --no-timing > /dev/null; } 2>&1 | tail -1)
read -r wall kib <<<"$out"
printf "%-34s %8s s %10s KiB\n" "balance, 8 policies" "$wall" "$kib"

echo "# MoE layer kernels, CPU reference (fp32, OpenBLAS)"
"$BUILD/tests/bench_moe_cpu"
if [ -x "$BUILD/tests/gpu_bench_moe" ]; then
    echo "# MoE layer kernels, CUDA"
    "$BUILD/tests/gpu_bench_moe"
fi

echo "# moeprof: a measured MoE layer on CPU ranks"
MOEPROF=${MOEPROF:-build/bin/moeprof} BUILD=$BUILD bash "$here/bench_moeprof.sh"

echo "# moesim sweep: points/s with 1 and 2 processes, against plain moesim run"
MOESIM=$MOESIM bash "$here/bench_sweep.sh"
