/* fuzz_sweep.c: libFuzzer entry point for the sweep file expansion (sweep_load, sim/sweep.c
 * with sweepaxes.c and sweepwhere.c); how to build and run it: README.md.
 * fuzz_cli leaves `moesim sweep` out (it makes folders, forks workers, takes locks and
 * looks for MPI); this harness reaches the same parser without any of that.
 *
 * Input: one sweep file (a config with a [sweep] section), written to a temporary folder
 * and expanded; after a "\0\0" the rest is --set strings, one per NUL-separated piece (at
 * most 8). The folder also holds layer.ini (a small MoE layer) and step.ini (a small
 * training step), for `include =` or `base =` lines to name.
 * Promises checked (sweep.h):
 *   0, -EINVAL or -ENOMEM; on error a message of one line starting with a file that
 *   exists (or "--set:", "default:"), as config_load's, and *s zeroed;
 *   on 0: 1..SWEEP_AXES_MAX axes, each of 1..SWAX_VALUES_MAX values of at most
 *   SWAX_VALUE_LEN - 1 bytes; zipped axes (one dim) of equal lengths; every point's value
 *   indices inside their axes; as many points as the dims' product when there is no
 *   filter (no more with one); point p's sets are "key=value" of the axes in order; the
 *   same input loads again to the same points and hash; the first and last point's
 *   config loads (0, and every range and cross-key check holds) or is refused with such a
 *   message.
 * swax_count is wrapped (-Wl,--wrap) to refuse more than FUZZ_POINTS points, as it
 * refuses more than SWAX_POINTS_MAX, so that one input takes milliseconds; the message
 * then names the real limit. A broken promise prints why and aborts, so libFuzzer keeps
 * the input. */
#include "config.h"
#include "sweep.h"
#include "../fuzz_oracle.h"
#include "fuzz_input.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_SETS 8
#define FUZZ_POINTS 1024

int64_t __real_swax_count(const int *size, int ndims);

int64_t __wrap_swax_count(const int *size, int ndims)
{
    int64_t n = __real_swax_count(size, ndims);
    return n > FUZZ_POINTS ? -E2BIG : n;
}

static const char layer_ini[] =
    "[cluster]\nnodes = 2\ngpus_per_node = 4\n"
    "[model]\nhidden = 256\nexperts = 8\ntop_k = 2\nexpert_ffn_hidden = 512\n"
    "[routing]\ntokens_per_gpu = 64\n";
static const char step_ini[] =
    "include = layer.ini\n"
    "[model]\nlayers = 4\nseq_len = 256\nheads = 4\nvocab = 1000\n"
    "[parallel]\npp = 2\nep = 4\n"
    "[schedule]\nkind = 1f1b\nmicrobatches = 4\nmicro_batch_tokens = 64\n";

static char fuzz_path[CFG_PATH_MAX];   /* the input, in the folder (fuzz_input.h) */

static void broken(const char *why, int rc, const char *msg)
{
    fprintf(stderr, "fuzz_sweep: rc %d: %s\n  msg: %.*s\n", rc, why,
            (int)strnlen(msg, CFG_ERR_MAX), msg);
    abort();
}

/* NULL, or the promise of sweep.h that a loaded s breaks. */
static const char *sweep_broken(const struct sweep *s)
{
    char buf[SWEEP_AXES_MAX][SWEEP_SET_LEN];
    const char *sets[SWEEP_AXES_MAX];
    int64_t product = 1;
    if (s->naxes < 1 || s->naxes > SWEEP_AXES_MAX || s->ndims < 1 || s->ndims > s->naxes)
        return "axes or dims out of range";
    for (int d = 0; d < s->ndims; d++) {
        int len = -1;
        for (int a = 0; a < s->naxes; a++)
            if (s->axis[a].dim == d && len >= 0 && s->axis[a].v.n != len)
                return "zipped axes of unequal lengths";
            else if (s->axis[a].dim == d)
                len = s->axis[a].v.n;
        if (len != s->dim_size[d])
            return "a dim's size is not its axes' length";
        product *= len;
    }
    for (int a = 0; a < s->naxes; a++) {
        if (s->axis[a].dim < 0 || s->axis[a].dim >= s->ndims || s->axis[a].v.n < 1 ||
            s->axis[a].v.n > SWAX_VALUES_MAX)
            return "an axis's dim or length out of range";
        for (int i = 0; i < s->axis[a].v.n; i++)
            if (strnlen(s->axis[a].v.v[i], SWAX_VALUE_LEN) == SWAX_VALUE_LEN)
                return "an axis value without its NUL";
    }
    if (s->npoints < 1 || s->npoints > product || (!s->nfilters && s->npoints != product))
        return "points not the product of the dims (or fewer, with filters)";
    for (int p = 0; p < s->npoints; p++) {
        for (int d = 0; d < s->ndims; d++)
            if (s->digit[(size_t)p * s->ndims + d] < 0 ||
                s->digit[(size_t)p * s->ndims + d] >= s->dim_size[d])
                return "a point's value index outside its axis";
        if (sweep_point_sets(s, p, buf, sets) != s->naxes)
            return "sweep_point_sets does not give one set per axis";
        for (int a = 0; a < s->naxes; a++) {
            size_t k = strlen(s->axis[a].key);
            if (strncmp(sets[a], s->axis[a].key, k) || sets[a][k] != '=' ||
                strcmp(sets[a] + k + 1, sweep_value(s, p, a)))
                return "a point's set is not key=value of its axis";
        }
    }
    return NULL;
}

/* NULL, or what is wrong with point p's config. */
static const char *point_broken(const struct sweep *s, int p)
{
    struct config c;
    struct cfg_err e;
    memset(&e, 'x', sizeof(e));
    int rc = sweep_config(s, p, &c, &e);
    return rc == 0 ? config_broken(&c) : rc == -EINVAL ? msg_broken(e.msg, NULL)
                                                       : rc == -ENOMEM ? NULL : "not 0 or -EINVAL";
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *files[1], *sets[FUZZ_SETS];
    char *copy = malloc(size + 2), path[CFG_PATH_MAX];
    int nsets = 0;
    size_t text = 0;
    if (!copy)
        return 0;
    if (!fuzz_path[0]) {
        fuzz_input_path(fuzz_path, sizeof(fuzz_path), "fuzz_sweep", "s.ini");
        fuzz_input_path(path, sizeof(path), "fuzz_sweep", "layer.ini");
        fuzz_input_write(path, layer_ini, strlen(layer_ini));
        fuzz_input_path(path, sizeof(path), "fuzz_sweep", "step.ini");
        fuzz_input_write(path, step_ini, strlen(step_ini));
    }
    memcpy(copy, data, size);
    copy[size] = copy[size + 1] = '\0';
    while (text + 1 < size && (copy[text] || copy[text + 1]))
        text++;
    text = text + 1 < size ? text : size;          /* the file: up to the first "\0\0" */
    for (size_t i = text + 2; i <= size && nsets < FUZZ_SETS; i += strlen(copy + i) + 1)
        sets[nsets++] = copy + i;
    fuzz_input_write(fuzz_path, data, text);
    files[0] = fuzz_path;

    struct sweep *s = calloc(2, sizeof(*s));
    struct cfg_err e;
    if (!s)
        abort();
    memset(&e, 'x', sizeof(e));                    /* a message left unterminated shows */
    int rc = sweep_load(&s[0], files, 1, sets, nsets, &e);
    const char *why = NULL;
    if (rc == -EINVAL || rc == -ENOMEM) {
        static const struct sweep zero;
        why = rc == -EINVAL ? msg_broken(e.msg, NULL) : NULL;
        if (!why && memcmp(&s[0], &zero, sizeof(zero)))
            why = "*s not zeroed on error";
    } else if (rc) {
        why = "not 0, -EINVAL or -ENOMEM";
    } else if (!(why = sweep_broken(&s[0]))) {
        int rc2 = sweep_load(&s[1], files, 1, sets, nsets, &e);
        if (rc2 == 0 && (s[1].npoints != s[0].npoints || s[1].hash != s[0].hash ||
                         memcmp(s[1].digit, s[0].digit,
                                (size_t)s[0].npoints * s[0].ndims * sizeof(int))))
            why = "the same input loads to other points";
        else if (rc2 == -EINVAL)
            why = "the same input loads once, then is refused";
        sweep_free(&s[1]);
        if (!why && !(why = point_broken(&s[0], 0)))
            why = point_broken(&s[0], s[0].npoints - 1);
    }
    if (why)
        broken(why, rc, rc ? e.msg : "");
    sweep_free(&s[0]);
    free(s);
    free(copy);
    return 0;
}
