# Where each GPU's step time goes, from `moesim run STEP.ini --gpu-csv FILE`.
# Usage: gnuplot -e "csv='gpus.csv'; out='step.png'" plots/step_gpus.gp
# One stacked bar per GPU, in seconds: compute (its own kernels), waiting for the
# slowest GPU of its EP group at the expert GEMMs (stragglers), communication that no
# compute hides (exposed comm), and idle time waiting on the pipeline (bubble). Every
# bar is the step time; GPUs of one stage sit side by side.
if (!exists("csv")) csv = 'gpus.csv'
if (!exists("out")) out = 'step.png'
set terminal pngcairo size 1200,500 noenhanced font ",10"
set output out
set datafile separator ","
set title sprintf("step time per GPU (%s)", csv)
set xlabel "GPU"
set ylabel "seconds"
set key outside right top
set style data histograms
set style histogram rowstacked
set style fill solid 0.85 noborder
set boxwidth 0.9
set grid ytics
set yrange [0:*]
set xtics nomirror autofreq
set xrange [-1:*]
plot csv skip 1 using 4 title "compute", \
     ''  skip 1 using 5 title "stragglers", \
     ''  skip 1 using 7 title "exposed comm", \
     ''  skip 1 using 8 title "bubble"
