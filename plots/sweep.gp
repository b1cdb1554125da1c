# A sweep: one metric against one swept key, one line per value of another, from
# `moesim plot DIR -o OUT` (kind sweep), which writes the data and sets the variables:
#   dat, out, fmt (png or svg), title, subtitle, xlabel, ylabel, nlines, xcat (1: the
#   key's values are names, placed at 0, 1, ...), xtics_cmd (names, or the numbers
#   swept), xlog (1: numbers spanning 8x or more, a log2 axis)
# dat: one block per line, its title first (a quoted line), then "x y" rows by x.
if (fmt eq 'svg') { set terminal svg size 1000,600 noenhanced font ",11" background rgb "white" } \
else { set terminal pngcairo size 1000,600 noenhanced font ",11" }
set output out
set title (subtitle eq '' ? title : title . "\n" . subtitle)
set xlabel xlabel
set ylabel ylabel
set key outside right top box
set grid
set yrange [0:*]
# offsets: a margin beside the first and last x, where gnuplot drops a tic that falls on
# the end of a log axis
if (xcat) { set xrange [-0.5:ncat - 0.5] } else { set offsets graph 0.03, graph 0.03, 0, 0; \
    if (xlog) { set logscale x 2 } }
if (xtics_cmd ne '') { eval xtics_cmd }
plot for [i = 0:nlines - 1] dat index i using 1:2 with linespoints lw 2 pt (i % 7 + 4) ps 1.2 \
     title columnheader(1)
