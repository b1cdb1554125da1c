/* hwtopo.c: hwloc discovery, the tree, the [cluster] fragment, binding (hwtopo.h). */
#include "hwtopo.h"

#include <errno.h>
#include <hwloc.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

struct hwt {
    hwloc_topology_t topo;
    struct hwt_info info;
    hwloc_obj_t gpu_obj[HWT_DEV_MAX], nic_obj[HWT_DEV_MAX];   /* their PCI devices */
};

/* PCI class 0x0302: 3D controller (PCI Code and ID Assignment, base class 03h). */
#define PCI_CLASS_3D 0x0302

static bool is_gpu_osdev(hwloc_obj_t o)
{
    return o->attr->osdev.type == HWLOC_OBJ_OSDEV_GPU ||
           o->attr->osdev.type == HWLOC_OBJ_OSDEV_COPROC;
}

static bool is_nic_osdev(hwloc_obj_t o)
{
    return o->attr->osdev.type == HWLOC_OBJ_OSDEV_NETWORK ||
           o->attr->osdev.type == HWLOC_OBJ_OSDEV_OPENFABRICS;
}

/* The first OS device under PCI device pci that pred accepts, or NULL. */
static hwloc_obj_t first_osdev(hwloc_obj_t pci, bool (*pred)(hwloc_obj_t))
{
    for (hwloc_obj_t c = pci->io_first_child; c; c = c->next_sibling)
        if (c->type == HWLOC_OBJ_OS_DEVICE && pred(c))
            return c;
    return NULL;
}

/* A set as a list ("0-3,8"); "-" when empty. */
static void set_list(char *s, size_t n, hwloc_const_bitmap_t set)
{
    if (!set || hwloc_bitmap_iszero(set))
        snprintf(s, n, "-");
    else
        hwloc_bitmap_list_snprintf(s, n, set);
}

/* The NUMA nodes whose memory is local to cpus, as a list of logical indexes. */
static int numa_list(hwloc_topology_t t, hwloc_const_cpuset_t cpus, char *s, size_t n)
{
    hwloc_bitmap_t idx = hwloc_bitmap_alloc();
    if (!idx)
        return -ENOMEM;
    hwloc_obj_t o = NULL;
    while ((o = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_NUMANODE, o)))
        if (o->cpuset && hwloc_bitmap_intersects(o->cpuset, cpus))
            hwloc_bitmap_set(idx, o->logical_index);
    set_list(s, n, idx);
    hwloc_bitmap_free(idx);
    return 0;
}

static int fill_dev(struct hwt *h, struct hwt_dev *d, hwloc_obj_t pci, hwloc_obj_t os)
{
    struct hwloc_pcidev_attr_s *a = &pci->attr->pcidev;
    snprintf(d->pci, sizeof(d->pci), "%04x:%02x:%02x.%01x", a->domain, a->bus, a->dev,
             a->func);
    if (os) {
        snprintf(d->name, sizeof(d->name), "%s", os->name ? os->name : "?");
        snprintf(d->kind, sizeof(d->kind), "%s", os->subtype ? os->subtype
                 : os->attr->osdev.type == HWLOC_OBJ_OSDEV_NETWORK ? "Network"
                 : os->attr->osdev.type == HWLOC_OBJ_OSDEV_OPENFABRICS ? "OpenFabrics" : "GPU");
    } else {
        snprintf(d->name, sizeof(d->name), "pci%02x:%02x.%01x", a->bus, a->dev, a->func);
        snprintf(d->kind, sizeof(d->kind), "PCI");
    }
    hwloc_obj_t anc = hwloc_get_non_io_ancestor_obj(h->topo, pci);
    set_list(d->cpus, sizeof(d->cpus), anc ? anc->cpuset : NULL);
    d->near_nic = -1;
    return anc ? numa_list(h->topo, anc->cpuset, d->numa, sizeof(d->numa))
               : (snprintf(d->numa, sizeof(d->numa), "-"), 0);
}

/* Depth of the deepest common ancestor of a and b. */
static int common_depth(hwloc_topology_t t, hwloc_obj_t a, hwloc_obj_t b)
{
    hwloc_obj_t c = hwloc_get_common_ancestor_obj(t, a, b);
    int d = 0;
    for (; c && c->parent; c = c->parent)
        d++;
    return d;
}

static int discover(struct hwt *h)
{
    struct hwt_info *in = &h->info;
    hwloc_topology_t t = h->topo;
    in->packages = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_PACKAGE);
    in->numas = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_NUMANODE);
    in->cores = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_CORE);
    in->pus = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_PU);
    if (in->packages < 0 || in->numas < 0 || in->cores < 0 || in->pus < 0)
        return -EIO;
    int rc = 0;
    hwloc_obj_t p = NULL;
    while (!rc && (p = hwloc_get_next_pcidev(t, p))) {
        hwloc_obj_t g = first_osdev(p, is_gpu_osdev), nc = first_osdev(p, is_nic_osdev);
        if (g || p->attr->pcidev.class_id == PCI_CLASS_3D) {
            if (in->gpus < HWT_DEV_MAX) {
                h->gpu_obj[in->gpus] = p;
                rc = fill_dev(h, &in->gpu[in->gpus], p, g);
            }
            in->gpus++;
        } else if (nc) {
            if (in->nics < HWT_DEV_MAX) {
                h->nic_obj[in->nics] = p;
                rc = fill_dev(h, &in->nic[in->nics], p, nc);
            }
            in->nics++;
        }
    }
    int ng = in->gpus < HWT_DEV_MAX ? in->gpus : HWT_DEV_MAX;
    int nn = in->nics < HWT_DEV_MAX ? in->nics : HWT_DEV_MAX;
    for (int i = 0; i < ng; i++) {
        int best = -1, best_d = -1;
        for (int j = 0; j < nn; j++) {
            int d = common_depth(t, h->gpu_obj[i], h->nic_obj[j]);
            if (d > best_d) {
                best = j;
                best_d = d;
            }
        }
        in->gpu[i].near_nic = best;
    }
    return rc;
}

int hwt_create(struct hwt **out)
{
    *out = NULL;
    struct hwt *h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    if (hwloc_topology_init(&h->topo)) {
        free(h);
        return -EIO;
    }
    int rc = -EIO;
    if (hwloc_topology_set_io_types_filter(h->topo, HWLOC_TYPE_FILTER_KEEP_IMPORTANT) ||
        hwloc_topology_load(h->topo))
        goto out_free;
    if ((rc = discover(h)))
        goto out_free;
    *out = h;
    return 0;

out_free:
    hwloc_topology_destroy(h->topo);
    free(h);
    return rc;
}

void hwt_free(struct hwt *h)
{
    if (!h)
        return;
    hwloc_topology_destroy(h->topo);
    free(h);
}

const struct hwt_info *hwt_info(const struct hwt *h)
{
    return &h->info;
}

static const char *plural(int n, const char *one, const char *many)
{
    return n == 1 ? one : many;
}

/* The cores whose PUs lie in cpus, one line each: "core L: pu P[,P]". */
static void print_cores(FILE *f, hwloc_topology_t t, hwloc_const_cpuset_t cpus,
                        const char *indent)
{
    char s[HWT_STR_MAX];
    hwloc_obj_t c = NULL;
    while ((c = hwloc_get_next_obj_inside_cpuset_by_type(t, cpus, HWLOC_OBJ_CORE, c))) {
        set_list(s, sizeof(s), c->cpuset);
        fprintf(f, "%score %u: pu %s\n", indent, c->logical_index, s);
    }
}

static void print_dev(FILE *f, const struct hwt_info *in, const struct hwt_dev *d,
                      const char *what, int i, bool gpu)
{
    fprintf(f, "  %s %d: %s (%s), pci %s, cpus %s, numa %s", what, i, d->name, d->kind,
            d->pci, d->cpus, d->numa);
    if (gpu)
        fprintf(f, ", nearest nic %s", d->near_nic < 0 ? "-" : in->nic[d->near_nic].name);
    fprintf(f, "\n");
}

int hwt_print(FILE *f, const struct hwt *h)
{
    const struct hwt_info *in = &h->info;
    hwloc_topology_t t = h->topo;
    char s[HWT_STR_MAX];
    fprintf(f, "# moeprof topo: hwloc API %u.%u.%u; %d %s, %d NUMA %s, %d %s, %d %s, %d %s, %d %s\n",
            hwloc_get_api_version() >> 16, (hwloc_get_api_version() >> 8) & 0xff,
            hwloc_get_api_version() & 0xff, in->packages, plural(in->packages, "package",
            "packages"), in->numas, plural(in->numas, "node", "nodes"), in->cores,
            plural(in->cores, "core", "cores"), in->pus, plural(in->pus, "PU", "PUs"),
            in->gpus, plural(in->gpus, "GPU", "GPUs"), in->nics, plural(in->nics, "NIC", "NICs"));
    hwloc_obj_t root = hwloc_get_root_obj(t);
    set_list(s, sizeof(s), root->cpuset);
    fprintf(f, "machine: cpus %s\n", s);
    hwloc_obj_t p = NULL;
    int np = 0;
    while ((p = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_PACKAGE, p))) {
        np++;
        set_list(s, sizeof(s), p->cpuset);
        fprintf(f, "  package %u: cpus %s\n", p->logical_index, s);
        hwloc_obj_t m = NULL;
        while ((m = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_NUMANODE, m))) {
            if (!m->cpuset || !hwloc_bitmap_isincluded(m->cpuset, p->cpuset) ||
                hwloc_bitmap_iszero(m->cpuset))
                continue;
            set_list(s, sizeof(s), m->cpuset);
            fprintf(f, "    numa %u: cpus %s, %.1f GiB\n", m->logical_index, s,
                    (double)m->attr->numanode.local_memory / (1024.0 * 1024 * 1024));
            print_cores(f, t, m->cpuset, "      ");
        }
    }
    if (!np)                                /* no package objects: cores under the machine */
        print_cores(f, t, root->cpuset, "    ");
    /* NUMA nodes no package contains (spanning packages, or memory without CPUs). */
    hwloc_obj_t m = NULL;
    while ((m = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_NUMANODE, m))) {
        hwloc_obj_t q = NULL;
        bool inside = false;
        while (!inside && (q = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_PACKAGE, q)))
            inside = m->cpuset && !hwloc_bitmap_iszero(m->cpuset) &&
                     hwloc_bitmap_isincluded(m->cpuset, q->cpuset);
        if (inside)
            continue;
        set_list(s, sizeof(s), m->cpuset);
        fprintf(f, "  numa %u: cpus %s, %.1f GiB\n", m->logical_index, s,
                (double)m->attr->numanode.local_memory / (1024.0 * 1024 * 1024));
    }
    int ng = in->gpus < HWT_DEV_MAX ? in->gpus : HWT_DEV_MAX;
    int nn = in->nics < HWT_DEV_MAX ? in->nics : HWT_DEV_MAX;
    fprintf(f, "gpus: %d%s\n", in->gpus, in->gpus ? "" : " (hwloc found no GPU OS device "
            "and no 3D-controller PCI device)");
    for (int i = 0; i < ng; i++)
        print_dev(f, in, &in->gpu[i], "gpu", i, true);
    fprintf(f, "nics: %d\n", in->nics);
    for (int i = 0; i < nn; i++)
        print_dev(f, in, &in->nic[i], "nic", i, false);
    return ferror(f) ? -EIO : 0;
}

int hwt_fragment(FILE *f, const struct hwt *h, int nodes)
{
    const struct hwt_info *in = &h->info;
    fprintf(f, "; moeprof topo: this node has %d %s, %d NUMA %s, %d %s, %d %s, %d %s\n",
            in->packages, plural(in->packages, "package", "packages"), in->numas,
            plural(in->numas, "node", "nodes"), in->cores, plural(in->cores, "core", "cores"),
            in->gpus, plural(in->gpus, "GPU", "GPUs"), in->nics, plural(in->nics, "NIC", "NICs"));
    fprintf(f, "; use it before the other files: moesim run cluster.ini model.ini\n");
    fprintf(f, "[cluster]\n");
    fprintf(f, "nodes = %d\n", nodes);
    if (in->gpus)
        fprintf(f, "gpus_per_node = %d\n", in->gpus);
    else
        fprintf(f, "; no GPU: moeprof's CPU backend runs one rank per core, so each of\n"
                "; moesim's GPUs stands for one rank on one core\n"
                "gpus_per_node = %d\n", in->cores > 0 ? in->cores : 1);
    fprintf(f, "; NICs: %d on this node; moesim models one NIC per GPU (nic_GBps each) and "
            "has no key for the count\n", in->nics);
    fprintf(f, "; left to moeprof calibrate (measured, not discovered):\n"
            ";   nvlink_GBps, nvlink_latency_us (between ranks of one node)\n"
            ";   nic_GBps, nic_latency_us (between nodes)\n");
    return ferror(f) ? -EIO : 0;
}

/* The rank's root: GPU i mod gpus's local object, or the machine; k and m: the rank's
 * place among the ranks sharing that root, and their count. */
static hwloc_obj_t bind_root(struct hwt *h, int i, int n, int *k, int *m, int *gpu)
{
    const int ng = h->info.gpus < HWT_DEV_MAX ? h->info.gpus : HWT_DEV_MAX;
    if (!ng) {
        *k = i, *m = n, *gpu = -1;
        return hwloc_get_root_obj(h->topo);
    }
    *gpu = i % ng;
    *k = i / ng;
    *m = n / ng + (*gpu < n % ng);
    hwloc_obj_t r = hwloc_get_non_io_ancestor_obj(h->topo, h->gpu_obj[*gpu]);
    return r ? r : hwloc_get_root_obj(h->topo);
}

/* The NIC whose local CPUs meet cpus (the first), or -1. */
static int nic_near(const struct hwt *h, hwloc_const_cpuset_t cpus)
{
    const int nn = h->info.nics < HWT_DEV_MAX ? h->info.nics : HWT_DEV_MAX;
    for (int j = 0; j < nn; j++) {
        hwloc_obj_t a = hwloc_get_non_io_ancestor_obj(h->topo, h->nic_obj[j]);
        if (a && hwloc_bitmap_intersects(a->cpuset, cpus))
            return j;
    }
    return -1;
}

int hwt_current(struct hwt *h, char *cpus, size_t n)
{
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    if (!set)
        return -ENOMEM;
    int rc = hwloc_get_cpubind(h->topo, set, HWLOC_CPUBIND_THREAD) ? -EIO : 0;
    if (!rc)
        set_list(cpus, n, set);
    hwloc_bitmap_free(set);
    return rc;
}

int hwt_bind(struct hwt *h, int i, int n, int bind, struct hwt_place *w)
{
    if (n < 1 || i < 0 || i >= n)
        return -EINVAL;
    memset(w, 0, sizeof(*w));
    int k, m, gpu, rc = 0;
    hwloc_obj_t root = bind_root(h, i, n, &k, &m, &gpu);
    hwloc_bitmap_t *sets = calloc((size_t)m, sizeof(*sets)), cur = hwloc_bitmap_alloc();
    if (!sets || !cur) {
        free(sets);
        hwloc_bitmap_free(cur);
        return -ENOMEM;
    }
    for (int j = 0; j < m && !rc; j++)
        rc = (sets[j] = hwloc_bitmap_alloc()) ? 0 : -ENOMEM;
    if (!rc && bind) {
        if (hwloc_distrib(h->topo, &root, 1, sets, (unsigned)m, INT_MAX, 0))
            rc = -EIO;
        /* The whole process, so threads a library starts later stay on these CPUs. */
        else if (hwloc_set_cpubind(h->topo, sets[k], HWLOC_CPUBIND_PROCESS) &&
                 hwloc_set_cpubind(h->topo, sets[k], HWLOC_CPUBIND_THREAD))
            rc = -EIO;
    }
    if (!rc && hwloc_get_cpubind(h->topo, cur, HWLOC_CPUBIND_THREAD))
        rc = -EIO;
    if (!rc) {
        set_list(w->cpus, sizeof(w->cpus), cur);
        rc = numa_list(h->topo, cur, w->numa, sizeof(w->numa));
        int nic = gpu >= 0 && bind ? h->info.gpu[gpu].near_nic : nic_near(h, cur);
        snprintf(w->gpu, sizeof(w->gpu), "%s", gpu >= 0 && bind ? h->info.gpu[gpu].name : "-");
        snprintf(w->nic, sizeof(w->nic), "%s", nic >= 0 ? h->info.nic[nic].name : "-");
        w->bound = bind;
    }
    for (int j = 0; j < m; j++)
        hwloc_bitmap_free(sets[j]);
    free(sets);
    hwloc_bitmap_free(cur);
    return rc;
}
