#!/usr/bin/env bash
# gen_readme_plots.sh: the README's sweep plots, docs/img/NAME.png, from the bundled sweeps
# configs/sweeps/NAME.ini. Each file states the two commands that make its plot in its
# header comment (";   moesim sweep ..." and ";   moesim plot ..."); this script runs
# exactly those, with the sweep's folder in a fresh temporary folder (so that an old
# out/NAME is never resumed), and keeps the PNG (the SVG and the data are left out of
# the repository). tests/e2e_sweeps.sh checks that the README shows the same commands.
#
# Run from the repository root: bash tests/gen_readme_plots.sh [NAME...]
#   (MOESIM=build/bin/moesim by default; needs gnuplot)
set -eu

MOESIM=${MOESIM:-build/bin/moesim}
case $MOESIM in /*) ;; *) MOESIM=$PWD/$MOESIM ;; esac
export MOESIM_PLOTS=${MOESIM_PLOTS:-$PWD/plots}
JOBS=${JOBS:-2}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/moesim-readme.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# cmd NAME WHAT: the ";   moesim WHAT ..." line of configs/sweeps/NAME.ini, without ";   ".
cmd() {
    local line
    line=$(grep -m 1 "^;   moesim $2 " "configs/sweeps/$1.ini") ||
        { echo "configs/sweeps/$1.ini: no ';   moesim $2' line" >&2; exit 2; }
    echo "${line#;   }"
}

names=("$@")
[ ${#names[@]} -gt 0 ] || names=(topk experts schedules balance hierarchical serve-batch)
mkdir -p docs/img
for n in "${names[@]}"; do
    read -r -a sweep <<< "$(cmd "$n" sweep)"
    read -r -a plot <<< "$(cmd "$n" plot)"
    # the sweep into $tmp/NAME instead of out/NAME, as many jobs as asked
    sweep=("${sweep[@]//out\//$tmp/}")
    plot=("${plot[@]//out\//$tmp/}")
    plot=("${plot[@]//docs\/img\//$tmp/img-}")
    for i in "${!sweep[@]}"; do [ "${sweep[$i]}" = --jobs ] && sweep[i+1]=$JOBS; done
    echo "== $n: ${sweep[*]:1}" | sed "s#$tmp/#out/#g"
    start=$EPOCHREALTIME
    "$MOESIM" "${sweep[@]:1}" > /dev/null
    "$MOESIM" "${plot[@]:1}"
    cp "$tmp/img-$n.png" "docs/img/$n.png"
    printf '   %s points in %.1f s; docs/img/%s.png, %s bytes\n' \
        "$(($(wc -l < "$tmp/$n/results.csv") - 1))" \
        "$(awk "BEGIN { print $EPOCHREALTIME - $start }")" "$n" "$(wc -c < "docs/img/$n.png")"
done
