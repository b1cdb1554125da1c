/* plot.h: `moesim plot FILE|DIR... -o OUT`: draws moesim's CSV files with gnuplot.
 *
 * Kinds, told by the CSV's header unless --kind says:
 *   sweep        a sweep's DIR/results.csv (header "point,<swept keys>,seed,status,..."):
 *                a metric (--y) against a swept key (--x), one line per value of --by
 *                (and of every other swept key that varies); against a result column
 *                (--x tpot_s), each line runs along the first swept key besides --by,
 *                whose values label its points
 *   gpu-util     `moesim run --util-csv`: GPU x time heatmaps, compute and comm busy
 *                fractions (and NVLink, NIC utilization where the run has them)
 *   link-util    the same file's link rows: link x time heatmaps, NVLink and network apart
 *   expert-load  `moesim run --expert-csv` (MoE layer x expert) or `moesim balance
 *                --expert-csv` (policy x expert), `--expert-iter-csv` (iteration x
 *                expert, a panel per policy): load / mean
 *   gantt        `moesim run --ops-csv`: the step's pipeline, lane x time, F / B / W /
 *                comm / send coloured
 * plot_csv_data (plotdata.c) turns the CSV into OUT.dat, the gnuplot data; plot.c reads
 * the arguments and runs gnuplot (an external program, found on PATH) on plots/KIND.gp
 * for OUT.png and OUT.svg. The scripts are found in --plots DIR, $MOESIM_PLOTS, beside
 * the program (../../plots from build/bin, ../share/moesim/plots), or ./plots.
 * Exit status: 0 done; 1 runtime failure, gnuplot missing or failing included (OUT.dat
 * is still written); 2 bad input (one line on stderr, nothing written).
 */
#ifndef MOESIM_PLOT_H
#define MOESIM_PLOT_H

#include <stdio.h>

#define PLOT_ERR_MAX 1280

enum plot_kind { PLOT_NONE = -1, PLOT_SWEEP, PLOT_GPU_UTIL, PLOT_LINK_UTIL, PLOT_EXPERT_LOAD,
                 PLOT_GANTT, PLOT_NKINDS };

/* A CSV file read whole: the header's cols names, then nrows rows of ncols fields each
 * (cell(t, row, col)); strings owned. */
struct plot_table {
    const char *path;                  /* borrowed, for messages */
    int ncols;
    char **col;
    long nrows;
    char **cells;                      /* nrows * ncols */
    char *buf;                         /* owns the strings */
};

/* What to draw: the kind, and a sweep's x key, y column and line key (NULL: the
 * default). */
struct plot_req {
    enum plot_kind kind;
    const char *x, *y, *by;
};

static inline const char *plot_cell(const struct plot_table *t, long row, int col)
{
    return t->cells[row * t->ncols + col];
}

/* Reads path into *t. 0; -EINVAL with err (one line: "path:line: what"), -ENOMEM, -EIO. */
int plot_table_read(struct plot_table *t, const char *path, char *err, size_t n);
void plot_table_free(struct plot_table *t);
/* Column index of name, or -1. */
int plot_col(const struct plot_table *t, const char *name);
/* The kind a header says, or PLOT_NONE. */
enum plot_kind plot_detect(const struct plot_table *t);
const char *plot_kind_name(enum plot_kind k);
enum plot_kind plot_kind_parse(const char *s);       /* PLOT_NONE when unknown */

/* Writes the data of req from the tables t[0..nt) (more than one: sweeps only, same
 * header) to dat (borrowed), and gnuplot assignments of the script's variables (title,
 * labels, counts; see plots/KIND.gp) to vars. 0; -EINVAL with err (a column asked for
 * that is not there, no data to draw); -ENOMEM; -EIO. */
int plot_csv_data(const struct plot_req *req, const struct plot_table *t, int nt, FILE *dat,
                  FILE *vars, char *err, size_t n);

/* The command: parses argv (argv[0] = "plot"), returns the exit status. */
int plot_main(int argc, char **argv);

#endif
