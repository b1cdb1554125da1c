# Where each GPU's step time goes, from `moesim run STEP.ini --gpu-csv FILE` (a run with
# [schedule] kind; a layer run's --gpu-csv is plots/gpu_finish.gp's).
# Usage: gnuplot -e "csv='gpus.csv'; out='step.png'" plots/step_gpus.gp
# One stacked bar per GPU, in seconds: compute (its own kernels), waiting for the
# slowest GPU of its EP group at the expert GEMMs (stragglers), communication that no
# compute hides (exposed comm), and idle time waiting on the pipeline (bubble). Every
# bar is the step time; GPUs of one stage sit side by side.
if (!exists("csv")) csv = 'gpus.csv'
if (!exists("out")) out = 'step.png'
# The columns are read by position: refuse any other file before drawing anything.
want = "gpu,stage,ep_group,compute_s,straggler_s,comm_s,exposed_comm_s,bubble_s"
head = system(sprintf("head -n 1 '%s' 2>/dev/null", csv))
if (strstrt(head, want) != 1) {
    if (strstrt(head, "gpu,send_finish_s,") == 1) {
        print sprintf("step_gpus.gp: %s is a layer run's --gpu-csv (no [schedule] kind); plot it with plots/gpu_finish.gp", csv)
    } else {
        print sprintf("step_gpus.gp: %s is not a training step's --gpu-csv (its header must start '%s')", csv, want)
    }
    exit status 2
}
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
