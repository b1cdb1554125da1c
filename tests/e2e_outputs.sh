#!/usr/bin/env bash
# e2e_outputs.sh: outputs never replace what they should not (DESIGN.md "Errors",
# sim/ofile.h), every write error is an error, signals leave no temporary file:
#   - a FIFO output is written in place and is still a FIFO after; a symlink's target
#     gets the content and the link stays a link; `-` writes to stdout (and nothing else
#     does then: the summary is left out); an existing user file NAME.tmp survives;
#   - an output naming an input (config file, include, traffic matrix; directly, by a
#     symlink or a hard link) or another output: exit 2, one line, every file in the
#     folder byte-identical after; so do bad output paths and an output flag given twice;
#   - SIGINT, SIGTERM, SIGHUP while a big trace is written (and while an output blocks
#     on a FIFO nobody reads): no temporary left, exit 130, 143, 129 (128 + the signal);
#   - write failures without a device: a file-size limit (ulimit -f; SIGXFSZ ignored by
#     the shell or not) and a FIFO whose reader leaves early: non-zero exit, one line,
#     no temporary, no new file; the summary to a closed stdout or a pipe nobody reads:
#     non-zero exit, one line; the summary to a file past its size limit: the same;
#   - every error line of `moesim balance` starts with "moesim balance:".
# The reference for content is the same run written to a plain new file: the contract
# is that where the bytes go changes nothing about them (--no-timing: byte-identical).
#
# Run from the repository root: MOESIM=build/bin/moesim bash tests/e2e_outputs.sh
set -u

MOESIM=${MOESIM:-build/bin/moesim}
case $MOESIM in /*) ;; *) MOESIM=$PWD/$MOESIM ;; esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/moesim-outputs.XXXXXX") || exit 1
bg=""                                       # a background moesim to kill if we stop early
trap '[ -n "$bg" ] && kill -KILL "$bg" 2>/dev/null; rm -rf "$tmp"' EXIT

npass=0
nfail=0
pass() { echo "ok - $1"; npass=$((npass + 1)); }
fail() { echo "FAIL - $1"; nfail=$((nfail + 1)); }
check() { if eval "$2"; then pass "$1"; else fail "$1"; fi; }

# The configs, copied so that a broken refusal could only ever overwrite copies.
cp -r configs "$tmp/configs"
cfg=$tmp/configs/examples/default.ini       # a training step; includes two presets
inc=$tmp/configs/models/mixtral-8x7b.ini    # one of them
mcfg=$tmp/configs/examples/matrix.ini       # a traffic matrix run
matrix=$tmp/configs/examples/matrix-8gpu.txt
w=$tmp/w                                    # outputs go here
mkdir "$w"
run() { "$MOESIM" run "$cfg" --no-timing "$@"; }

# Reference outputs, each to a plain new file.
run --csv "$tmp/ref.csv" --gpu-csv "$tmp/ref.gpu.csv" > "$tmp/ref.out" 2>&1 ||
    fail "reference run failed: $(head -n 1 "$tmp/ref.out")"

# snap: one line per file under $tmp but $m (name and checksum), links as their target.
m=$tmp/meta
mkdir "$m"
snap() { (cd "$tmp" && find . -path ./meta -prune -o -type f -print0 | sort -z |
          xargs -0 md5sum; find . -path ./meta -prune -o -type l -printf '%p -> %l\n' | sort); }

# refused NAME PREFIX SUBSTRING -- ARGS: exit 2, one line on stderr starting with PREFIX
# and holding SUBSTRING, nothing on stdout, and no file under $tmp changed, added or
# removed.
refused() {
    local name=$1 prefix=$2 sub=$3 why="" rc
    shift 4
    snap > "$m/before"
    "$MOESIM" "$@" > "$m/stdout" 2> "$m/stderr"
    rc=$?
    snap > "$m/after"
    local line
    line=$(head -n 1 "$m/stderr")
    if [ "$rc" -ne 2 ]; then
        why="exit status $rc, expected 2"
    elif [ "$(wc -l < "$m/stderr")" -ne 1 ]; then
        why="stderr has $(wc -l < "$m/stderr") lines, expected one"
    elif [[ "$line" != "$prefix"* ]] || [[ "$line" != *"$sub"* ]]; then
        why="stderr '$line' is not '$prefix...$sub...'"
    elif [ -s "$m/stdout" ]; then
        why="stdout is not empty"
    elif ! cmp -s "$m/before" "$m/after"; then
        why="files changed: $(diff "$m/before" "$m/after" | grep '^[<>]' | head -n 3)"
    fi
    rm -f "$m"/*
    if [ -z "$why" ]; then pass "$name"; else fail "$name: $why"; fi
}

# tmps DIR: the temporaries (NAME.tmp.XXXXXX) left in DIR, one per line.
tmps() { find "$1" -maxdepth 1 -name '*.tmp.??????' | sort; }

# one_line FILE: exactly one '\n'-terminated line.
one_line() { [ "$(wc -l < "$1")" -eq 1 ] && [ -z "$(tail -c 1 "$1")" ]; }

# ---- where the bytes go ----

# A FIFO: a reader (bounded by timeout) gets the CSV; the FIFO is still a FIFO.
mkfifo "$w/fifo"
timeout 60 cat "$w/fifo" > "$w/fifo.got" &
reader=$!
timeout 60 "$MOESIM" run "$cfg" --no-timing --csv "$w/fifo" > /dev/null 2> "$w/err"
rc=$?
wait "$reader"
check "FIFO output: exit 0" '[ $rc -eq 0 ]'
check "FIFO output: the reader got the CSV" 'cmp -s "$w/fifo.got" "$tmp/ref.csv"'
check "FIFO output: still a FIFO, nothing beside it" \
    '[ -p "$w/fifo" ] && [ "$(ls "$w")" = "$(printf "err\nfifo\nfifo.got")" ]'
rm -f "$w"/*

# A symlink to an existing file, and one into another folder to a file not there yet:
# the targets get the content, the links stay links, the temporaries went beside the
# targets (no other file appears).
echo old > "$w/real.csv"
ln -s real.csv "$w/link.csv"
mkdir "$w/sub"
ln -s sub/far.gpu.csv "$w/far"
run --csv "$w/link.csv" --gpu-csv "$w/far" > /dev/null
check "symlink output: exit 0" '[ $? -eq 0 ]'
check "symlink output: the links stay links" '[ -L "$w/link.csv" ] && [ -L "$w/far" ]'
check "symlink output: the targets hold the content" \
    'cmp -s "$w/real.csv" "$tmp/ref.csv" && cmp -s "$w/sub/far.gpu.csv" "$tmp/ref.gpu.csv"'
check "symlink output: no other file" \
    '[ "$(ls "$w" | tr "\n" " ")" = "far link.csv real.csv sub " ] && [ "$(ls "$w/sub")" = far.gpu.csv ]'
rm -rf "${w:?}"/*

# "-": the CSV alone on stdout, byte for byte (the summary is left out then).
run --csv - > "$w/stdout" 2> "$w/err"
check "'-' writes the CSV to stdout" '[ $? -eq 0 ] && cmp -s "$w/stdout" "$tmp/ref.csv" && [ ! -s "$w/err" ]'
rm -f "$w"/*

# A user's own NAME.tmp is neither used nor removed; no temporary stays.
echo mine > "$w/out.csv.tmp"
run --csv "$w/out.csv" > /dev/null
check "a user's out.csv.tmp survives" \
    '[ "$(cat "$w/out.csv.tmp")" = mine ] && cmp -s "$w/out.csv" "$tmp/ref.csv" && [ -z "$(tmps "$w")" ]'
rm -f "$w"/*

# A replaced file keeps its mode (0600 here; a new one would get 0666 & ~umask).
echo old > "$w/keep.csv"
chmod 600 "$w/keep.csv"
run --csv "$w/keep.csv" > /dev/null
check "a replaced file keeps its mode" \
    '[ "$(stat -c %a "$w/keep.csv")" = 600 ] && cmp -s "$w/keep.csv" "$tmp/ref.csv"'
rm -f "$w"/*

# ---- refused before the run: exit 2, one line, every file as it was ----

echo "precious" > "$w/s.csv"
mkdir "$w/sub"
ln -s ../configs/examples/default.ini "$w/cfg-link.ini"
ln "$inc" "$w/hard.ini"
refused "output = the config file" "moesim run: --csv" "an input" -- \
    run "$cfg" --csv "$cfg"
refused "output = an include of the config" "moesim run: --trace" "included by" -- \
    run "$cfg" --trace "$inc"
refused "output = a hard link to an include" "moesim run: --gpu-csv" "an input" -- \
    run "$cfg" --gpu-csv "$w/hard.ini"
refused "output = a symlink to the config" "moesim run: --csv" "an input" -- \
    run "$cfg" --csv "$w/cfg-link.ini"
refused "output = the traffic matrix" "moesim run: --csv" "traffic.matrix" -- \
    run "$mcfg" --csv "$matrix"
echo "trace" > "$w/routing.txt"
refused "output = the routing trace a --set names" "moesim run: --csv" "routing.trace (--set)" -- \
    run "$cfg" --set routing.trace="$w/routing.txt" --csv "$w/routing.txt"
refused "output = the calibration table a --set names" "moesim run: --gpu-csv" \
    "calibration.expert_table" -- \
    run "$cfg" --set calibration.expert_table="$w/routing.txt" --gpu-csv "$w/../w/routing.txt"
refused "output = another output (existing file)" "moesim run: --gpu-csv" "--csv" -- \
    run "$cfg" --csv "$w/s.csv" --gpu-csv "$w/./s.csv"
refused "output = another output (new file)" "moesim run: --csv" "--trace" -- \
    run "$cfg" --csv "$w/new.csv" --trace "$w/sub/../new.csv"
refused "two outputs to stdout" "moesim run: --gpu-csv" "--csv" -- \
    run "$cfg" --csv - --gpu-csv -
refused "output flag given twice" "moesim run: --csv given twice" "" -- \
    run "$cfg" --csv "$w/a.csv" -c "$w/b.csv"
refused "--trace given twice" "moesim run: --trace given twice" "" -- \
    run "$cfg" --trace "$w/a.json" --trace "$w/a.json"
refused "output in a missing folder" "moesim run: --csv" "no such folder" -- \
    run "$cfg" --csv "$w/no/such/x.csv"
refused "empty output name" "moesim run: --csv" "empty file name" -- \
    run "$cfg" --csv ""
refused "output name too long" "moesim run: --csv" "name too long" -- \
    run "$cfg" --csv "$w/$(printf 'n%.0s' $(seq 300))"
refused "output is a folder" "moesim run: --csv" "is a folder" -- \
    run "$cfg" --csv "$w"
rm -rf "${w:?}"/*

# ---- signals: no temporary left, death by the signal ----

# kill_mid_write SIG NUMBER WHAT ARGS: starts moesim ARGS in the background (job
# control on: a background job of a script would otherwise ignore SIGINT), waits up to
# 60 s for a temporary to appear in $w, sends SIG, and checks exit 128 + NUMBER, no
# temporary, and big.json still the "old" it was.
kill_mid_write() {
    local sig=$1 num=$2 what=$3 rc i
    shift 3
    echo old > "$w/big.json"
    set -m
    "$MOESIM" "$@" > /dev/null 2>&1 &
    bg=$!
    set +m
    for ((i = 0; i < 6000; i++)); do
        [ -n "$(tmps "$w")" ] && break
        kill -0 "$bg" 2>/dev/null || break
        sleep 0.01
    done
    if [ -z "$(tmps "$w")" ]; then
        kill -KILL "$bg" 2>/dev/null
        wait "$bg" 2>/dev/null
        bg=""
        fail "SIG$sig $what: no temporary appeared to interrupt"
        return
    fi
    kill -"$sig" "$bg"
    wait "$bg" 2>/dev/null
    rc=$?
    bg=""
    check "SIG$sig $what: exit $((128 + num))" '[ $rc -eq $((128 + num)) ]'
    check "SIG$sig $what: no temporary left, big.json untouched" \
        '[ -z "$(tmps "$w")" ] && [ "$(cat "$w/big.json")" = old ]'
    rm -f "$w"/*
}

# A big trace: 2048 micro-batches of the default step, about 95 MB of JSON, written for
# about a second (longer under sanitizers).
for s in "INT 2" "TERM 15" "HUP 1"; do
    set -- $s
    kill_mid_write "$1" "$2" "while a big trace is written" \
        run "$cfg" --set schedule.microbatches=2048 --trace "$w/big.json"
done
# Deterministic: the CSV's temporary is written first, then the open of a FIFO nobody
# reads blocks until the signal comes.
mkfifo "$tmp/nobody"
for s in "INT 2" "TERM 15" "HUP 1"; do
    set -- $s
    kill_mid_write "$1" "$2" "while blocked on a FIFO" \
        run "$cfg" --csv "$w/big.json" --trace "$tmp/nobody"
done

# ---- write failures: non-zero exit, one line, no temporary, no new file ----

# failed NAME SUBSTRING: $rc, $w/err, $w as the last command left them.
failed() {
    local name=$1 sub=$2
    check "$name: non-zero exit, one line with '$sub'" \
        '[ $rc -ne 0 ] && one_line "$w/err" && grep -q -- "$sub" "$w/err"'
    check "$name: no temporary, no output file" '[ "$(ls "$w")" = err ]'
    rm -f "$w"/*
}

# A 20 KiB file-size limit (ulimit -f counts 1024-byte blocks), the trace is megabytes.
(ulimit -f 20; trap '' XFSZ; exec "$MOESIM" run "$cfg" --trace "$w/t.json" --csv "$w/c.csv") \
    > /dev/null 2> "$w/err"
rc=$?
failed "file-size limit, SIGXFSZ ignored by the caller" "File too large"
(ulimit -f 20; exec "$MOESIM" run "$cfg" --trace "$w/t.json" --csv "$w/c.csv") \
    > /dev/null 2> "$w/err"
rc=$?
failed "file-size limit, SIGXFSZ as inherited" "File too large"

# A FIFO whose reader leaves after 100 bytes of the trace (more than a pipe holds is
# written): the CSV's temporary, written first, goes too; the FIFO stays a FIFO.
timeout 60 head -c 100 "$tmp/nobody" > /dev/null &
reader=$!
timeout 60 "$MOESIM" run "$cfg" --trace "$tmp/nobody" --csv "$w/c.csv" > /dev/null 2> "$w/err"
rc=$?
wait "$reader"
check "FIFO reader leaving early: still a FIFO" '[ -p "$tmp/nobody" ]'
failed "FIFO reader leaving early" "Broken pipe"

# The summary to a closed stdout, and to a pipe whose reader is gone (python3 holds the
# write end of a pipe whose read end it closed; the child gets SIGPIPE's default).
no_reader() {
    python3 -c 'import os, subprocess, sys
r, w = os.pipe(); os.close(r)
sys.exit(subprocess.run(sys.argv[1:], stdout=w).returncode)' "$@"
}
"$MOESIM" run "$cfg" --csv "$w/c.csv" >&- 2> "$w/err"
rc=$?
check "summary to a closed stdout: exit 1, one line" \
    '[ $rc -eq 1 ] && one_line "$w/err" && grep -q "^moesim run: standard output:" "$w/err"'
rm -f "$w"/*
# A full disk, played by a file-size limit of 0 on stdout's file; stderr is a pipe,
# which the limit does not touch.
(ulimit -f 0; exec "$MOESIM" run "$cfg" > "$w/stdout") 2>&1 | cat > "$m/err"
rc=${PIPESTATUS[0]}
check "summary to a full file: exit 1, one line" \
    '[ $rc -eq 1 ] && one_line "$m/err" && grep -q "^moesim run: standard output: File too large" "$m/err"'
rm -f "$w"/* "$m"/*
no_reader "$MOESIM" run "$cfg" 2> "$w/err"
rc=$?
check "summary to a pipe nobody reads: exit 1, one line" \
    '[ $rc -eq 1 ] && one_line "$w/err" && grep -q "Broken pipe" "$w/err"'
rm -f "$w"/*
no_reader "$MOESIM" run "$cfg" --csv - --trace "$w/t.json" 2> "$w/err"
rc=$?
failed "'-' to a pipe nobody reads" "moesim run: --csv '-': write failed: Broken pipe"

# ---- moesim balance: every error line starts with "moesim balance:" ----

bcfg=$tmp/b.ini
printf '[cluster]\nnodes = 1\ngpus_per_node = 8\n[model]\nexperts = 16\n' > "$bcfg"
printf '[cluster]\nnodes = 1\n[model]\nexpertz = 16\n' > "$tmp/bbad.ini"
refused "balance: a bad key of the base config" "moesim balance: $tmp/bbad.ini:4: model.expertz" "" -- \
    balance "$tmp/bbad.ini" --csv "$w/b.csv"
refused "balance: a missing config" "moesim balance: $tmp/none.ini:" "" -- \
    balance "$tmp/none.ini"
refused "balance: a bad --set" "moesim balance: --set: model.experts" "" -- \
    balance "$bcfg" --set model.experts=0
refused "balance: a bad policy" "moesim balance: policy p:" "" -- \
    balance "$bcfg" --policy p:balance.capacity_factor=-1
refused "balance: a bad option" "moesim balance: unknown option" "" -- \
    balance "$bcfg" --frobnicate
refused "balance: an output flag given twice" "moesim balance: --iter-csv given twice" "" -- \
    balance "$bcfg" --iter-csv "$w/i.csv" --iter-csv "$w/j.csv"
refused "balance: output = the config" "moesim balance: --expert-csv" "an input" -- \
    balance "$bcfg" --expert-csv "$bcfg"
refused "balance: output = another output" "moesim balance: --iter-csv" "--csv" -- \
    balance "$bcfg" --csv "$w/b.csv" --iter-csv "$w/b.csv"
refused "balance: output in a missing folder" "moesim balance: --csv" "no such folder" -- \
    balance "$bcfg" --csv "$w/no/b.csv"

echo "e2e_outputs: $npass passed, $nfail failed"
[ "$nfail" -eq 0 ]
