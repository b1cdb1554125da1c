/* cmd_topo.h: `moeprof topo [--out FILE]`, under mpirun or alone.
 *
 * The lowest rank of each node (MPI_COMM_TYPE_SHARED) discovers its node (hwtopo.h);
 * rank 0 prints its node's tree and the [cluster] fragment, nodes = the nodes mpirun
 * spans, and writes the fragment to FILE (a temporary beside it, renamed when complete:
 * sim/ofile.h). Nodes that differ in GPUs or cores exit 2: moesim's cluster has one
 * gpus_per_node. Returns the exit status: 0, 1 (runtime failure), 2 (bad input: one
 * line from rank 0).
 */
#ifndef MOEPROF_CMD_TOPO_H
#define MOEPROF_CMD_TOPO_H

int cmd_topo(int argc, char **argv, int rank, int size);

#endif
