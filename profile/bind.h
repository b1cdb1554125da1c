/* bind.h: `moeprof run --bind none|gpu`: every rank placed on its node (hwtopo.h), and
 * where each ran, gathered on rank 0 for the summary.
 *
 * BIND_AUTO is gpu where the node has a GPU, else none. gpu: local rank i of n on the
 * node gets GPU i mod G (hwloc's PCI order, CUDA's with CUDA_DEVICE_ORDER=PCI_BUS_ID)
 * and a share of the CPUs local to it, with that GPU's nearest NIC; without a GPU, a
 * share of the node's cores in rank order (consecutive ranks on one package and NUMA
 * node first) and a NIC local to them. Collective over MPI_COMM_WORLD.
 */
#ifndef MOEPROF_BIND_H
#define MOEPROF_BIND_H

#include <stdio.h>

enum bind_mode { BIND_AUTO = 0, BIND_NONE, BIND_GPU };

struct bind_run {
    int ranks;
    enum bind_mode mode;        /* what ran: BIND_NONE or BIND_GPU */
    int gpus;                   /* GPUs on rank 0's node */
    char *lines;                /* rank 0: ranks x BIND_LINE, "host cpus numa gpu nic" */
};
#define BIND_LINE 1024

/* Places this rank. 0; -EIO (hwloc failed or could not bind), -ENOMEM: this rank's
 * error, the caller aborts the job. */
int bind_ranks(enum bind_mode mode, struct bind_run *out);

/* Rank 0: one "#" line per rank, "# rank 1: host h, cpus 1, numa 0, gpu -, nic eth0",
 * after a line saying what --bind did. */
void bind_print(FILE *f, const struct bind_run *b);
void bind_free(struct bind_run *b);   /* zeroed is a no-op */

#endif
