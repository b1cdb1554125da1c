#!/bin/bash
# e2e_layers.sh: tests/check_layers.sh passes on the tree and catches a broken arrow:
# on a temporary copy, each bad include injected in turn must fail with exactly one
# line naming file:line, and an allowed one must pass.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
check="$here/tests/check_layers.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "e2e_layers: $*" >&2; exit 1; }

bash "$check" "$here" || fail "the tree itself breaks an arrow"

fresh() {
    rm -rf "$tmp/t"; mkdir "$tmp/t"
    cp -r "$here/kernels" "$here/traces" "$here/sim" "$here/profile" "$tmp/t/"
}

# expect_bad FILE INCLUDE WANT: appending INCLUDE to FILE gives one line "FILE:N: ..."
# (N the appended line) containing WANT, exit 1.
expect_bad() {
    fresh
    printf '#include "%s"\n' "$2" >> "$tmp/t/$1"
    n=$(wc -l < "$tmp/t/$1")
    set +e; out=$(bash "$check" "$tmp/t" 2>&1); rc=$?; set -e
    [ "$rc" = 1 ] || fail "$1 + $2: exit $rc, expected 1"
    [ "$(printf '%s\n' "$out" | wc -l)" = 1 ] || fail "$1 + $2: not one line: $out"
    case "$out" in "$1:$n: "*"$3"*) ;; *) fail "$1 + $2: got '$out'" ;; esac
}
expect_bad traces/chrome.c config.h "traces/ may not use sim/"
expect_bad traces/matrix.h ../sim/traffic.h "traces/ may not use sim/"
expect_bad kernels/moe.h report.h "kernels/ may not use sim/"
expect_bad kernels/moe_cpu.c args.h "kernels/ may not use profile/"
expect_bad kernels/gate_cpu.c chrome.h "kernels/ may not use traces/"
expect_bad traces/rtrace.c timer.h "traces/ may not use profile/"
expect_bad sim/config.c clock.h "sim/ may not use profile/"

# allowed arrows: sim -> traces and kernels, profile -> anything
fresh
printf '#include "chrome.h"\n#include "moe.h"\n' >> "$tmp/t/sim/pq.c"
printf '#include "config.h"\n#include "rtrace.h"\n#include "moe.h"\n' >> "$tmp/t/profile/args.c"
bash "$check" "$tmp/t" || fail "an allowed include was refused"
echo "e2e_layers: ok"
