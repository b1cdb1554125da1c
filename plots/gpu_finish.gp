# Per-GPU finish times of one MoE layer, from `moesim run LAYER.ini --gpu-csv FILE`
# (a run without [schedule] kind; a training step's --gpu-csv is plots/step_gpus.gp's).
# Usage: gnuplot -e "csv='gpus.csv'; out='gpus.png'" plots/gpu_finish.gp
# Two panels, dispatch above, combine below. Bars: when each GPU's last incoming byte
# arrived (receive finish) and when its last outgoing byte left (send finish), in
# microseconds from the start of that collective (the CSV's finish times are each phase's).
# The tallest bar is the straggler that sets the collective's time; a flat profile means
# balanced traffic. A run without the combine (traffic.combine = false) has zeros below.
if (!exists("csv")) csv = 'gpus.csv'
if (!exists("out")) out = 'gpus.png'
# The columns are read by position: refuse any other file before drawing anything.
want = "gpu,send_finish_s,recv_finish_s,send_bytes,recv_bytes,combine_send_finish_s,combine_recv_finish_s"
head = system(sprintf("head -n 1 '%s' 2>/dev/null", csv))
if (strstrt(head, want) != 1) {
    if (strstrt(head, "gpu,stage,ep_group,") == 1) {
        print sprintf("gpu_finish.gp: %s is a training step's --gpu-csv; plot it with plots/step_gpus.gp", csv)
    } else {
        print sprintf("gpu_finish.gp: %s is not a layer run's --gpu-csv (its header must start '%s')", csv, want)
    }
    exit status 2
}
set terminal pngcairo size 1200,800 noenhanced font ",10"
set output out
set datafile separator ","
set multiplot layout 2,1 title sprintf("finish time per GPU (%s)", csv)
set xlabel "GPU"
set ylabel "finish time (us)"
set key top left
set style fill solid 0.8 noborder
set boxwidth 0.4
set grid ytics
set yrange [0:*]
set xrange [-1:*]
set title "dispatch"
plot csv skip 1 using ($1 - 0.2):($3 * 1e6) with boxes title "receive finish", \
     ''  skip 1 using ($1 + 0.2):($2 * 1e6) with boxes title "send finish"
set title "combine"
plot csv skip 1 using ($1 - 0.2):($7 * 1e6) with boxes title "receive finish", \
     ''  skip 1 using ($1 + 0.2):($6 * 1e6) with boxes title "send finish"
unset multiplot
