# The pipeline of one training step (lane x time), from `moesim plot OPS.csv -o OUT` on a
# `moesim run --ops-csv` file (kind gantt). One row per lane (a stage's EP group); its
# compute stream above the row's centre (F, B, W), its communication below (all-to-alls
# and DP reduce; thin: pipeline sends). Gaps in the upper half are the bubble.
# Variables: dat, out, fmt, title, subtitle, xlabel, lanes, ncat, cats (the categories
# present, 0 F, 1 B, 2 W, 3 comm, 4 send), tmax, ytics_cmd.
# dat: one block per category, its title first, rows "centre y half_width half_height".
if (fmt eq 'svg') { set terminal svg size 1200,(160 + 60 * (lanes < 16 ? lanes : 16)) noenhanced font ",11" background rgb "white" } \
else { set terminal pngcairo size 1200,(160 + 60 * (lanes < 16 ? lanes : 16)) noenhanced font ",11" }
set output out
set title (subtitle eq '' ? title : title . "\n" . subtitle)
set xlabel xlabel
set ylabel "stage: compute above, comm below"
set xrange [0:tmax]
set yrange [lanes - 0.5:-0.5]
if (ytics_cmd ne '') { eval ytics_cmd }
set key outside right top box
set grid xtics
colors = "#4e79a7 #59a14f #f28e2b #e15759 #9c9c9c"
plot for [i = 0:ncat - 1] dat index i using 1:2:3:4 with boxxyerror fs solid 0.9 noborder \
     lc rgb word(colors, word(cats, i + 1) + 1) title columnheader(1)
