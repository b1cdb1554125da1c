# A sweep: one metric against one swept key, one line per value of another, from
# `moesim plot DIR -o OUT` (kind sweep), which writes the data and sets the variables:
#   dat, out, fmt (png or svg), title, subtitle (both wrapped to the canvas), xlabel,
#   ylabel, nlines, xcat (1: the key's values are names, placed at 0, 1, ...), xrot
#   (names: the longest name's length when they would overlap side by side, else 0),
#   xtics_cmd (names, or the numbers
#   swept), xlog (1: numbers spanning 8x or more, a log2 axis), keycols and keyrows (the
#   legend's grid below the plot), ptlabels (1: x is a result column, each point labelled
#   with the value of the swept key its line runs along)
# dat: one block per line, its title first (a quoted line), then "x y" rows by x ("x y
# label" with ptlabels).
# The canvas grows by the legend's rows, so the plot keeps its height however many lines.
height = 600 + 20 * keyrows
if (fmt eq 'svg') { set terminal svg size 1000,height noenhanced font ",11" background rgb "white" } \
else { set terminal pngcairo size 1000,height noenhanced font ",11" }
set output out
set title (subtitle eq '' ? title : title . "\n" . subtitle)
set xlabel xlabel
set ylabel ylabel
# the legend at the canvas's foot, the bottom margin (in character heights) holding the
# tics, the x label and the legend's rows apart
set key at screen 0.5, screen 0.01 center bottom horizontal maxcols keycols box
# names turned 30 degrees reach down half their length and left 0.87 of it (a
# character is about half a line high, a line 17 pixels); gnuplot's own margins for
# turned tics are too wide on the right and too short below
set bmargin 4 + keyrows + 1 + (xcat && xrot ? ceil(0.5 * 0.5 * xrot) : 0)
if (xcat && xrot) { set lmargin 0.87 * xrot + 2; set rmargin 4 }
set grid
set yrange [0:*]
# offsets: a margin beside the first and last x, where gnuplot drops a tic that falls on
# the end of a log axis
if (xcat) { set xrange [-0.5:ncat - 0.5] } else { set offsets graph 0.03, graph 0.03, 0, 0; \
    if (xlog) { set logscale x 2 } }
if (xtics_cmd ne '') { eval xtics_cmd }
if (xcat && xrot) { set xtics rotate by 30 right }
if (ptlabels) { \
    plot for [i = 0:nlines - 1] dat index i using 1:2 with linespoints lw 2 pt (i % 7 + 4) \
         ps 1.2 title columnheader(1), \
         for [i = 0:nlines - 1] dat index i every ::1 using 1:2:3 with labels offset char 0, 1 \
         notitle \
} else { \
    plot for [i = 0:nlines - 1] dat index i using 1:2 with linespoints lw 2 pt (i % 7 + 4) \
         ps 1.2 title columnheader(1) \
}
