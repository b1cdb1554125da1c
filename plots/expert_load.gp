# Per-expert load as a heatmap, from `moesim plot EXPERT.csv -o OUT` on `moesim run
# --expert-csv` (MoE layer x expert), `moesim balance --expert-csv` (policy x expert) or
# `moesim balance --expert-iter-csv` (iteration x expert, one panel per policy).
# The colour is an expert's tokens over the mean per expert of its row: 1 is even, a hot
# expert is far above.
# Variables: dat, out, fmt, title, subtitle, ylabel, ytics_cmd (policy names), experts,
# rows, panels (0: one heatmap; else that many, block p of dat each, titled
# policies[p]). dat: rows "expert row load_over_mean", one row of the heatmap after
# another.
n = panels > 0 ? panels : 1
h = panels > 0 ? 120 + 14 * (rows < 30 ? rows : 30) : 18 * (rows < 40 ? rows : 40)
if (fmt eq 'svg') { set terminal svg size 1100,(200 + n * h) noenhanced font ",11" background rgb "white" } \
else { set terminal pngcairo size 1100,(200 + n * h) noenhanced font ",11" }
set output out
set xlabel "expert"
set ylabel ylabel
set cblabel "load / mean (1 = even)"
set xrange [-0.5:experts - 0.5]
stats dat using 2 nooutput
set yrange [STATS_min - 0.5:STATS_max + 0.5]
stats dat using 3 nooutput
cbmax = STATS_max > 2 ? STATS_max : 2
set cbrange [0:cbmax]
if (ytics_cmd ne '') { eval ytics_cmd }
# white at 1 (an even load), blue below, red above
eval sprintf("set palette defined (0 '#2166ac', 1 'white', %g '#b2182b')", cbmax)
set tics out
head = (subtitle eq '' ? title : title . "\n" . subtitle)
if (panels > 0) {
    set multiplot layout panels,1 title head
    do for [p = 0:panels - 1] {
        set title sprintf("policy %s", policies[p + 1])
        if (experts >= 2 && rows >= 2) {
            plot dat index p using 1:2:3 with image notitle
        } else {
            plot dat index p using 1:2:(0.5):(0.5):3 with boxxyerror fs solid noborder lc palette notitle
        }
    }
    unset multiplot
} else {
    set title head
    if (experts >= 2 && rows >= 2) {
        plot dat using 1:2:3 with image notitle
    } else {
        plot dat using 1:2:(0.5):(0.5):3 with boxxyerror fs solid noborder lc palette notitle
    }
}
