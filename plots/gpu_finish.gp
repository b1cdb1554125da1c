# Per-GPU finish times of a run, from `moesim run ... --gpu-csv FILE`.
# Usage: gnuplot -e "csv='gpus.csv'; out='gpus.png'" plots/gpu_finish.gp
# Bars: when each GPU's last incoming dispatch byte arrived (receive finish) and when its
# last outgoing byte left (send finish), in microseconds. The tallest bar is the straggler
# that sets the collective's time; a flat profile means balanced traffic.
if (!exists("csv")) csv = 'gpus.csv'
if (!exists("out")) out = 'gpus.png'
set terminal pngcairo size 1200,500 noenhanced font ",10"
set output out
set datafile separator ","
set title sprintf("dispatch finish time per GPU (%s)", csv)
set xlabel "GPU"
set ylabel "finish time (us)"
set key top left
set style fill solid 0.8 noborder
set boxwidth 0.4
set grid ytics
set yrange [0:*]
set xrange [-1:*]
plot csv skip 1 using ($1 - 0.2):($3 * 1e6) with boxes title "receive finish", \
     ''  skip 1 using ($1 + 0.2):($2 * 1e6) with boxes title "send finish"
