# Utilization per GPU over time as heatmaps (GPU x time), from `moesim plot UTIL.csv -o OUT`
# on a `moesim run --util-csv` file (kind gpu-util). Panels: compute busy fraction, comm
# busy fraction, and NVLink and NIC utilization where the file has them (panels = 4).
# Variables: dat, out, fmt, title, subtitle, xlabel, gpus, bins, tmax, panels.
# dat: rows "time gpu compute comm nvlink nic", bin centres, one GPU after another.
if (fmt eq 'svg') { set terminal svg size 1100,(260 * panels + 80) noenhanced font ",11" background rgb "white" } \
else { set terminal pngcairo size 1100,(260 * panels + 80) noenhanced font ",11" }
set output out
set multiplot layout panels,1 title (subtitle eq '' ? title : title . "\n" . subtitle)
set xlabel xlabel
set ylabel "GPU"
set xrange [0:tmax]
set yrange [-0.5:gpus - 0.5]
set cbrange [0:1]
set cblabel "fraction of the bin"
set palette defined (0 "white", 0.25 "#c6dbef", 0.5 "#6baed6", 0.75 "#2171b5", 1 "#08306b")
set tics out
dx = tmax / (2.0 * bins)
do for [p = 1:panels] {
    set title sprintf("%s %s", word("compute comm NVLink NIC", p), \
        p <= 2 ? "busy fraction" : "utilization (both directions)")
    if (gpus >= 2 && bins >= 2) {
        plot dat using 1:2:(column(p + 2)) with image notitle
    } else {
        plot dat using 1:2:(dx):(0.5):(column(p + 2)) with boxxyerror fs solid noborder lc palette notitle
    }
}
unset multiplot
