# lib_serve.sh: what the inference-step end-to-end scripts (e2e_serve.sh,
# e2e_serve_layout.sh) share; sourced, never run. Sets MOESIM (absolute), tmp (a fresh
# folder, removed on exit), npass and nfail; defines pass, fail and expect_bad.
# Usage: source tests/lib_serve.sh NAME (NAME names the temporary folder).

MOESIM=${MOESIM:-build/bin/moesim}
case $MOESIM in /*) ;; *) MOESIM=$PWD/$MOESIM ;; esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/moesim-$1.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

npass=0
nfail=0
pass() { echo "ok - $1"; npass=$((npass + 1)); }
fail() { echo "FAIL - $1"; nfail=$((nfail + 1)); }

# expect_bad NAME KEY ARGS...: `moesim run ARGS` exits 2 with one line on stderr naming
# KEY, and writes no CSV.
expect_bad() {
    local name=$1 key=$2
    shift 2
    rm -f "$tmp/bad.csv"
    "$MOESIM" run "$@" --csv "$tmp/bad.csv" > "$tmp/out" 2> "$tmp/err"
    local rc=$?
    if [ $rc -eq 2 ] && [ "$(wc -l < "$tmp/err")" -eq 1 ] && grep -q "$key" "$tmp/err" &&
       [ ! -e "$tmp/bad.csv" ]; then
        pass "$name: exit 2, $(cat "$tmp/err")"
    else
        fail "$name: rc $rc, stderr: $(cat "$tmp/err")"
    fi
}
