# Link utilization over time as heatmaps (link x time), NVLink and network tiers apart, from
# `moesim plot UTIL.csv --kind link-util -o OUT` on a layer run's `--util-csv`.
# Variables: dat, out, fmt, title, subtitle, xlabel, nvl_links, net_links, bins, tmax,
# nvl_tics, net_tics (ytics naming the links, empty when too many to name).
# dat: block 0 the NVLink links, block 1 the network's (NICs, leaf up/downlinks), rows
# "time link utilization", y the link's place in its tier.
if (fmt eq 'svg') { set terminal svg size 1100,900 noenhanced font ",11" background rgb "white" } \
else { set terminal pngcairo size 1100,900 noenhanced font ",11" }
set output out
set multiplot layout 2,1 title (subtitle eq '' ? title : title . "\n" . subtitle)
set xlabel xlabel
set xrange [0:tmax]
set cbrange [0:1]
set cblabel "utilization (rate / capacity)"
set palette defined (0 "white", 0.25 "#fdd0a2", 0.5 "#fd8d3c", 0.75 "#d94801", 1 "#7f2704")
set tics out
dx = tmax / (2.0 * bins)
do for [k = 0:1] {
    n = k == 0 ? nvl_links : net_links
    set title (k == 0 ? "NVLink tier (each GPU's egress and ingress)" : "network tier (NIC egress and ingress, leaf uplinks)")
    set ylabel (k == 0 ? "NVLink link" : "network link")
    set yrange [-0.5:(n > 0 ? n : 1) - 0.5]
    if (k == 0 && nvl_tics ne '') { eval nvl_tics } 
    if (k == 1 && net_tics ne '') { eval net_tics }
    if ((k == 0 && nvl_tics eq '') || (k == 1 && net_tics eq '')) { set ytics autofreq }
    if (n >= 2 && bins >= 2) {
        plot dat index k using 1:2:3 with image notitle
    } else {
        plot dat index k using 1:2:(dx):(0.5):3 with boxxyerror fs solid noborder lc palette notitle
    }
}
unset multiplot
