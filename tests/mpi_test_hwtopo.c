/* mpi_test_hwtopo.c: profile/hwtopo against hwloc's own API and the kernel's affinity.
 * Run under mpirun -np N (N >= 1); every rank runs the suite, rank 0 prints the verdict
 * "PASS: np=N, 0 failures" (tests/e2e_topo.sh).
 *  - The counts hwt_info gives, the counts hwt_print's first line states and the
 *    fragment's gpus_per_node equal what a topology the test loads itself reports
 *    through hwloc_get_nbobjs_by_type (cores, NUMA nodes, packages, PUs).
 *  - The fragment loads through moesim's config_load together with a model file, and
 *    gives nodes and gpus_per_node as written (GPUs, or cores without a GPU).
 *  - hwt_bind: the PU list it reports is sched_getaffinity's of the rank afterwards; with
 *    no GPU and at least as many PUs as ranks on the node, the ranks' sets are disjoint
 *    and together cover no PU twice; --bind none reports the affinity unchanged.
 */
#define _GNU_SOURCE
#include <CUnit/Basic.h>
#include <hwloc.h>
#include <mpi.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "cu_run.h"
#include "hwtopo.h"
#include "tmp_dir.h"

static char dir[256];
static struct hwt *h;
static hwloc_topology_t ref;      /* the test's own topology, no I/O */
static int rank, size, local, nlocal;

static int init(void)
{
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &local);
    MPI_Comm_size(node, &nlocal);
    MPI_Comm_free(&node);
    if (hwt_create(&h) || hwloc_topology_init(&ref) || hwloc_topology_load(ref))
        return -1;
    return tmp_dir_make(dir, sizeof(dir), "test_hwtopo");
}

static int clean(void)
{
    static const char *const names[] = { "cluster.ini", "model.ini" };
    hwt_free(h);
    hwloc_topology_destroy(ref);
    return tmp_dir_remove(dir, names, 2);
}

/* The counts, straight from hwloc. */
static void test_counts(void)
{
    const struct hwt_info *in = hwt_info(h);
    CU_ASSERT_EQUAL(in->cores, hwloc_get_nbobjs_by_type(ref, HWLOC_OBJ_CORE));
    CU_ASSERT_EQUAL(in->numas, hwloc_get_nbobjs_by_type(ref, HWLOC_OBJ_NUMANODE));
    CU_ASSERT_EQUAL(in->packages, hwloc_get_nbobjs_by_type(ref, HWLOC_OBJ_PACKAGE));
    CU_ASSERT_EQUAL(in->pus, hwloc_get_nbobjs_by_type(ref, HWLOC_OBJ_PU));
    CU_ASSERT(in->cores >= 1 && in->numas >= 1);

    /* The printed first line: "# moeprof topo: hwloc X.Y.Z; P packages, N NUMA nodes,
     * C cores, ..." (singular for 1). */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CU_ASSERT_FATAL(f != NULL);
    CU_ASSERT_EQUAL(hwt_print(f, h), 0);
    fclose(f);
    const char *semi = strchr(buf, ';');
    int p = -1, n = -1, c = -1;
    CU_ASSERT_FATAL(semi != NULL);
    CU_ASSERT_EQUAL(sscanf(semi, "; %d package%*[s,] %d NUMA node%*[s,] %d core", &p, &n, &c),
                    3);
    CU_ASSERT_EQUAL(p, hwloc_get_nbobjs_by_type(ref, HWLOC_OBJ_PACKAGE));
    CU_ASSERT_EQUAL(n, hwloc_get_nbobjs_by_type(ref, HWLOC_OBJ_NUMANODE));
    CU_ASSERT_EQUAL(c, hwloc_get_nbobjs_by_type(ref, HWLOC_OBJ_CORE));
    /* The tree has one "core L:" line per core. */
    int lines = 0;
    for (const char *s = buf; (s = strstr(s, "core ")); s++)
        lines += s[5] >= '0' && s[5] <= '9';
    CU_ASSERT_EQUAL(lines, hwloc_get_nbobjs_by_type(ref, HWLOC_OBJ_CORE));
    free(buf);
}

/* The fragment, first of two files, through moesim's loader. */
static void test_fragment_loads(void)
{
    char frag[300], model[300];
    tmp_dir_path(frag, sizeof(frag), dir, "cluster.ini");
    tmp_dir_path(model, sizeof(model), dir, "model.ini");
    if (rank == 0) {
        FILE *f = fopen(frag, "w");
        CU_ASSERT_FATAL(f != NULL);
        CU_ASSERT_EQUAL(hwt_fragment(f, h, 3), 0);
        fclose(f);
        f = fopen(model, "w");
        CU_ASSERT_FATAL(f != NULL);
        fprintf(f, "[model]\nhidden = 256\nexperts = 8\ntop_k = 2\nexpert_ffn_hidden = 512\n"
                "[parallel]\nep = 1\n[routing]\ntokens_per_gpu = 64\n");
        fclose(f);
        const char *files[] = { frag, model };
        struct config c;
        struct cfg_err err;
        int rc = config_load(&c, files, 2, NULL, 0, &err);
        if (rc)
            printf("config_load: %s\n", err.msg);
        CU_ASSERT_EQUAL_FATAL(rc, 0);
        const struct hwt_info *in = hwt_info(h);
        CU_ASSERT_EQUAL(c.cluster.nodes, 3);
        CU_ASSERT_EQUAL(c.cluster.gpus_per_node, in->gpus ? in->gpus : in->cores);
    }
}

/* The kernel's affinity of this thread as a PU list, through hwloc's bitmap printer. */
static void affinity(char *s, size_t n, hwloc_bitmap_t out)
{
    cpu_set_t cs;
    CPU_ZERO(&cs);
    CU_ASSERT_EQUAL_FATAL(sched_getaffinity(0, sizeof(cs), &cs), 0);
    hwloc_bitmap_zero(out);
    for (int i = 0; i < CPU_SETSIZE; i++)
        if (CPU_ISSET(i, &cs))
            hwloc_bitmap_set(out, (unsigned)i);
    hwloc_bitmap_list_snprintf(s, n, out);
}

static void test_bind(void)
{
    struct hwt_place w;
    char s[HWT_STR_MAX];
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    CU_ASSERT_FATAL(set != NULL);

    /* none: nothing moves, the report is the affinity as it is. */
    affinity(s, sizeof(s), set);
    CU_ASSERT_EQUAL_FATAL(hwt_bind(h, local, nlocal, 0, &w), 0);
    CU_ASSERT_STRING_EQUAL(w.cpus, s);
    CU_ASSERT_EQUAL(w.bound, 0);

    CU_ASSERT_EQUAL_FATAL(hwt_bind(h, local, nlocal, 1, &w), 0);
    affinity(s, sizeof(s), set);
    CU_ASSERT_STRING_EQUAL(w.cpus, s);
    CU_ASSERT_EQUAL(w.bound, 1);
    CU_ASSERT_EQUAL(hwt_bind(h, nlocal, nlocal, 1, &w), -EINVAL);

    /* No GPU and a PU for every rank: the ranks' sets of one node do not overlap. */
    const struct hwt_info *in = hwt_info(h);
    unsigned long mask = 0, all = 0;
    int ok = 1;
    for (int i = 0; i < 64; i++)
        mask |= hwloc_bitmap_isset(set, (unsigned)i) ? 1ul << i : 0;
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
    unsigned long *masks = calloc((size_t)nlocal, sizeof(*masks));
    CU_ASSERT_FATAL(masks != NULL);
    MPI_Allgather(&mask, 1, MPI_UNSIGNED_LONG, masks, 1, MPI_UNSIGNED_LONG, node);
    MPI_Comm_free(&node);
    if (!in->gpus && in->pus >= nlocal && in->pus <= 64) {
        for (int k = 0; k < nlocal; k++) {
            ok &= masks[k] != 0 && !(all & masks[k]);
            all |= masks[k];
        }
        CU_ASSERT(ok);
    }
    free(masks);
    hwloc_bitmap_free(set);
}

int main(int argc, char **argv)
{
    static const struct cu_test tests[] = {
        { "counts equal hwloc's", test_counts },
        { "fragment loads in moesim", test_fragment_loads },
        { "binding equals sched_getaffinity", test_bind },
    };
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    int bad = cu_run("hwtopo", init, clean, tests, sizeof(tests) / sizeof(tests[0]));
    MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (rank == 0)
        printf("%s: np=%d, %d failures\n", bad ? "FAIL" : "PASS", size, bad);
    MPI_Finalize();
    return bad;
}
