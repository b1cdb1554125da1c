/* hwtopo.h: this node's hardware through hwloc's C API, and where a rank runs on it.
 *
 * Discovery keeps hwloc's important I/O objects (PCI bridges, PCI devices, OS devices),
 * so that GPUs and NICs come with their PCIe locality. A GPU is a PCI device with a GPU
 * or co-processor OS device under it (hwloc's CUDA, NVML, OpenCL, RSMI or Level Zero
 * backends, where the installed hwloc has them), or, without any, a PCI device of class
 * 0x0302 (3D controller: a compute GPU whose driver backend hwloc lacks). A NIC is a PCI
 * device with a network or OpenFabrics OS device under it ("eth0", "mlx5_0"); a device
 * with several OS devices (a ConnectX's netdev and its verbs device) counts once. A
 * device's locality is the cpuset of its nearest non-I/O ancestor (hwloc's "local
 * CPUs"); a GPU's nearest NIC is the one whose common ancestor with it in the tree is
 * deepest (same PCIe switch before same package before the machine), ties by order.
 * Errors are negative errnos: -EIO when hwloc fails, -ENOMEM.
 */
#ifndef MOEPROF_HWTOPO_H
#define MOEPROF_HWTOPO_H

#include <stdio.h>

#define HWT_DEV_MAX 64          /* GPUs, and NICs, kept; more are counted, not listed */
#define HWT_STR_MAX 256

struct hwt_dev {
    char name[32];              /* its first OS device ("cuda0", "eth0"), or "pciBB:DD.F" */
    char kind[16];              /* that OS device's backend: "CUDA", "NVML", "OpenCL",
                                 * "Network", "OpenFabrics", ...; "PCI" when none */
    char pci[16];               /* "dddd:bb:dd.f" */
    char cpus[HWT_STR_MAX];     /* local CPUs (PU list, "0-15,32-47") */
    char numa[HWT_STR_MAX];     /* NUMA nodes of those CPUs ("0") */
    int near_nic;               /* GPUs: index of the nearest NIC; -1: no NIC */
};

/* What was found. Counts are hwloc's objects of each type in the whole machine. */
struct hwt_info {
    int packages, numas, cores, pus;
    int gpus, nics;             /* devices found; the first HWT_DEV_MAX are listed */
    struct hwt_dev gpu[HWT_DEV_MAX], nic[HWT_DEV_MAX];
};

struct hwt;                     /* opaque: the hwloc topology and its hwt_info */

/* Discovers this machine. 0, -EIO, -ENOMEM; *out is NULL on failure. */
int hwt_create(struct hwt **out);
void hwt_free(struct hwt *h);                   /* NULL is a no-op */
const struct hwt_info *hwt_info(const struct hwt *h);

/* The tree: machine, packages, their NUMA nodes (memory), cores with their PUs, then
 * the GPUs (PCI address, local CPUs and NUMA nodes, nearest NIC) and the NICs. Every
 * line starts with "#" except the tree's. 0 or -EIO. */
int hwt_print(FILE *f, const struct hwt *h);

/* A [cluster] INI fragment moesim reads (`moesim run cluster.ini model.ini`): nodes,
 * gpus_per_node (the GPUs found; with none, the cores: the CPU backend runs one rank
 * per core and moesim's "GPU" is a rank), the NIC count as a comment (moesim has one
 * NIC per GPU, no key), and the link keys `moeprof calibrate` measures as comments.
 * 0 or -EIO. */
int hwt_fragment(FILE *f, const struct hwt *h, int nodes);

/* Where a rank was bound: PU list, NUMA nodes, GPU and NIC names ("-": none). */
struct hwt_place {
    char cpus[HWT_STR_MAX];
    char numa[HWT_STR_MAX];
    char gpu[32], nic[32];
    int bound;                  /* 0: --bind none (cpus: where the OS lets it run) */
};

/* Binds the calling process (every thread) for the rank of local index i among n ranks
 * on this node. With GPUs: GPU i mod gpus, the CPUs local to it shared out among the
 * ranks given that GPU (hwloc_distrib), its nearest NIC. Without: the machine's cores
 * shared out among the n ranks in rank order (hwloc_distrib: consecutive ranks on
 * one package and NUMA node before the next), the NIC whose local CPUs meet them.
 * bind = 0 binds nothing and reports the current binding. 0, -EINVAL (i, n),
 * -EIO (hwloc could not bind), -ENOMEM. */
int hwt_bind(struct hwt *h, int i, int n, int bind, struct hwt_place *where);

/* The calling thread's CPUs now (sched_getaffinity's view through hwloc) as a PU
 * list. 0, -EIO, -ENOMEM. */
int hwt_current(struct hwt *h, char *cpus, size_t n);

#endif
