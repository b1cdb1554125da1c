# Expert load balance over iterations, from `moesim balance ... --iter-csv FILE`.
# Usage: gnuplot -e "csv='iter.csv'; out='bias.png'" plots/bias_convergence.gp
# One line per policy: the max/mean expert load of each iteration (1 = perfectly even).
# The aux-loss-free bias brings it down over the iterations; policies without updates
# stay flat (their iterations differ only by the routing noise and any drift).
if (!exists("csv")) csv = 'iter.csv'
if (!exists("out")) out = 'bias.png'
set terminal pngcairo size 1000,500 noenhanced font ",10"
set output out
set datafile separator ","
set title sprintf("expert load max/mean per iteration (%s)", csv)
set xlabel "iteration"
set ylabel "max / mean expert load"
set key top right
set grid
set logscale y
# the policies in the file, in order of first appearance
policies = system(sprintf("awk -F, 'NR > 1 && !seen[$1]++ { printf \"%%s \", $1 }' '%s'", csv))
plot for [p in policies] csv skip 1 using ($2):(strcol(1) eq p ? $3 : 1/0) with lines lw 2 title p
