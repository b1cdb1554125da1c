# Expert load balance over iterations, from `moesim balance ... --iter-csv FILE`.
# Usage: gnuplot -e "csv='iter.csv'; out='bias.png'" plots/bias_convergence.gp
# The max/mean expert load of each iteration (1 = perfectly even): one line per policy
# that runs several iterations (the aux-loss-free bias brings it down over them; one
# without updates stays flat, moved only by routing noise and any drift), one point at
# iteration 0 per policy that runs one iteration.
if (!exists("csv")) csv = 'iter.csv'
if (!exists("out")) out = 'bias.png'
want = "policy,iteration,expert_load_max_over_mean,"
head = system(sprintf("head -n 1 '%s' 2>/dev/null", csv))
if (strstrt(head, want) != 1) {
    print sprintf("bias_convergence.gp: %s is not a moesim balance --iter-csv (its header must start '%s')", csv, want)
    exit status 2
}
set terminal pngcairo size 1000,500 noenhanced font ",10"
set output out
set datafile separator ","
set title sprintf("expert load max/mean per iteration (%s)", csv)
set xlabel "iteration"
set ylabel "max / mean expert load"
set key outside right top
set grid
set logscale y
set xrange [-1:*]
# The policies in the file, in order of first appearance, quoted (a name may hold
# blanks), split by how many iterations each has.
list(cond) = system(sprintf("awk -F, 'NR > 1 { if (!n[$1]++) order[++k] = $1 } " . \
    "END { for (i = 1; i <= k; i++) if (n[order[i]] %s) printf \"\\\"%%s\\\" \", order[i] }' '%s'", cond, csv))
# open shapes, so that policies with the same load show as nested markers
shapes = "6 4 8 10 12 14 1 2 3"
lines = list("> 1")
points = list("== 1")
plot for [p in lines] csv skip 1 using ($2):(strcol(1) eq p ? $3 : 1/0) with lines lw 2 title p, \
     for [i = 1:words(points)] csv skip 1 using ($2):(strcol(1) eq word(points, i) ? $3 : 1/0) \
         with points pt (word(shapes, (i - 1) % words(shapes) + 1) + 0) ps 1.5 lw 2 title word(points, i)
