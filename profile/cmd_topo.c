/* cmd_topo.c: `moeprof topo` (cmd_topo.h). */
#include "cmd_topo.h"

#include <errno.h>
#include <getopt.h>
#include <mpi.h>
#include <stdio.h>
#include <string.h>

#include "hwtopo.h"
#include "ofile.h"

static const char usage[] =
    "usage: moeprof topo [--out FILE]   (alone, or under mpirun: one rank per node is enough)\n"
    "\n"
    "Discovers this node through hwloc: packages, NUMA nodes, cores, PUs, GPUs and NICs\n"
    "with their PCIe locality (local CPUs, NUMA node, each GPU's nearest NIC). Prints the\n"
    "tree and a [cluster] fragment moesim reads as its first config file:\n"
    "  moesim run cluster.ini model.ini\n"
    "nodes = the nodes mpirun spans; gpus_per_node = the GPUs found (none: the cores,\n"
    "one CPU rank each). The link bandwidths and latencies are left to calibrate.\n"
    "\n"
    "  --out FILE    write the fragment to FILE (replaced only when complete)\n";

/* Parses argv (argv[0] = "topo"). 0; 1 help; -EINVAL with msg. */
static int parse(int argc, char **argv, const char **out, char *msg, size_t n)
{
    static const struct option opts[] = {
        { "out", required_argument, NULL, 'o' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    *out = NULL;
    opterr = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, ":o:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'o':
            if (*out)
                return snprintf(msg, n, "moeprof topo: --out given twice ('%s' and '%s')",
                                *out, optarg), -EINVAL;
            *out = optarg;
            break;
        case 'h':
            return 1;
        case ':':
            return snprintf(msg, n, "moeprof topo: option '%s' needs a value",
                            argv[optind - 1]), -EINVAL;
        default:
            return snprintf(msg, n, "moeprof topo: unknown option '%s' (see moeprof topo "
                            "--help)", argv[optind - 1]), -EINVAL;
        }
    }
    if (optind < argc)
        return snprintf(msg, n, "moeprof topo: unexpected argument '%s'", argv[optind]),
               -EINVAL;
    return 0;
}

/* Rank 0's verdict for everyone: the highest status any rank reached. */
static int agree(int st)
{
    MPI_Allreduce(MPI_IN_PLACE, &st, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return st;
}

static int write_fragment(const char *path, const struct hwt *h, int nodes, char *msg,
                          size_t n)
{
    struct ofile o;
    int rc = ofile_open(&o, path);
    if (rc)
        return snprintf(msg, n, "moeprof topo: --out %s: %s", path, strerror(-rc)), 1;
    rc = hwt_fragment(o.f, h, nodes);
    if (rc) {
        ofile_abort(&o);
        return snprintf(msg, n, "moeprof topo: --out %s: %s", path, strerror(-rc)), 1;
    }
    rc = ofile_commit(&o);
    if (rc)
        return snprintf(msg, n, "moeprof topo: --out %s: %s", path, strerror(-rc)), 1;
    return 0;
}

int cmd_topo(int argc, char **argv, int rank, int size)
{
    char msg[1024] = "";
    const char *out = NULL;
    int rc = parse(argc, argv, &out, msg, sizeof(msg));
    if (rc == 1) {
        if (rank == 0)
            fputs(usage, stdout);
        return 0;
    }
    struct ofile probe;
    int pr = rc || !out ? 0 : ofile_probe(&probe, out);
    if (!rc && pr) {
        snprintf(msg, sizeof(msg), "moeprof topo: --out %s: %s", out, strerror(-pr));
        rc = -EINVAL;
    }
    if (agree(rc ? 2 : 0)) {
        if (rank == 0 && msg[0])
            fprintf(stderr, "%s\n", msg);
        return 2;
    }

    /* One discovery per node; every node's (leader, gpus, cores) to rank 0. */
    MPI_Comm node_comm;
    int local = 0, nodes = 0;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node_comm);
    MPI_Comm_rank(node_comm, &local);
    MPI_Comm_free(&node_comm);
    struct hwt *h = NULL;
    int e = local == 0 ? hwt_create(&h) : 0;
    if (agree(e ? 1 : 0)) {
        if (e)
            fprintf(stderr, "moeprof topo: rank %d: hwloc discovery failed: %s\n", rank,
                    strerror(-e));
        hwt_free(h);
        return 1;
    }
    int mine[3] = { local == 0, h ? hwt_info(h)->gpus : 0, h ? hwt_info(h)->cores : 0 };
    int all[3 * 4096], *a = size <= 4096 ? all : NULL;
    int st = 0;
    if (rank == 0 && !a)
        st = 1, snprintf(msg, sizeof(msg), "moeprof topo: more than 4096 ranks");
    if (agree(st)) {
        if (rank == 0)
            fprintf(stderr, "%s\n", msg);
        hwt_free(h);
        return 1;
    }
    MPI_Gather(mine, 3, MPI_INT, all, 3, MPI_INT, 0, MPI_COMM_WORLD);
    if (rank == 0) {
        for (int k = 0; k < size; k++) {
            if (!all[3 * k])
                continue;
            nodes++;
            if (!st && (all[3 * k + 1] != mine[1] || all[3 * k + 2] != mine[2]))
                st = 2, snprintf(msg, sizeof(msg), "moeprof topo: the node of rank %d has %d "
                                 "GPUs and %d cores, rank 0's %d and %d: moesim's cluster "
                                 "has one gpus_per_node", k, all[3 * k + 1], all[3 * k + 2],
                                 mine[1], mine[2]);
        }
        if (!st && (hwt_print(stdout, h) || printf("\n") < 0 ||
                    hwt_fragment(stdout, h, nodes)))
            st = 1, snprintf(msg, sizeof(msg), "moeprof topo: standard output: %s",
                             strerror(EIO));
        if (!st && out) {
            st = write_fragment(out, h, nodes, msg, sizeof(msg));
            if (!st)
                printf("# wrote %s\n", out);
        }
        fflush(stdout);
        if (st)
            fprintf(stderr, "%s\n", msg);
    }
    hwt_free(h);
    return agree(st);
}
