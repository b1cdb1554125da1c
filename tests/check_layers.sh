#!/bin/bash
# check_layers.sh [ROOT]: the include arrows between the source folders
# (docs/ARCHITECTURE.md, "Layers"). Every #include "..." of kernels/, traces/, sim/ and
# profile/ is resolved as the compiler does (the including file's folder, then
# -iquote sim traces kernels profile, the Makefile's order) and must point along an arrow:
#   kernels/ -> kernels/        traces/ -> traces/
#   sim/     -> sim/, traces/, kernels/
#   profile/ -> profile/, sim/, traces/, kernels/
# A broken arrow: one line "file:line: ..." per include on stderr, exit 1. All fine:
# silent, exit 0. An include found in none of the folders (a system header in quotes,
# a CUDA one) is not ours and is skipped.
set -u
root=${1:-.}
cd "$root" || { echo "check_layers: cannot enter $root" >&2; exit 2; }

allowed() {   # allowed FROM TO
    case "$1:$2" in
        kernels:kernels | traces:traces) return 0 ;;
        sim:sim | sim:traces | sim:kernels) return 0 ;;
        profile:*) return 0 ;;
    esac
    return 1
}

bad=0
for dir in kernels traces sim profile; do
    [ -d "$dir" ] || continue
    for f in "$dir"/*.c "$dir"/*.h "$dir"/*.cu "$dir"/*.cuh; do
        [ -f "$f" ] || continue
        while IFS=: read -r line name; do
            to=""
            for d in "$dir" sim traces kernels profile; do
                if [ -f "$d/$name" ]; then
                    to=$(cd "$(dirname "$d/$name")" && pwd -P)
                    break
                fi
            done
            [ -n "$to" ] || continue
            top=$(pwd -P)
            rel=${to#"$top"/}
            target=${rel%%/*}
            case "$target" in kernels | traces | sim | profile) ;; *) continue ;; esac
            if ! allowed "$dir" "$target"; then
                echo "$f:$line: includes $target/$(basename "$name"): $dir/ may not use $target/ (docs/ARCHITECTURE.md, Layers)" >&2
                bad=1
            fi
        done < <(awk '{ if (match($0, /^[ \t]*#[ \t]*include[ \t]*"[^"]*"/)) {
                                 s = substr($0, RSTART, RLENGTH); sub(/^[^"]*"/, "", s); sub(/"$/, "", s);
                                 print FNR ":" s } }' "$f")
    done
done
exit $bad
