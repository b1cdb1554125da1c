/* sweep.h: a sweep file and the points it expands to.
 *
 * A sweep file is a config file (config.h) with a [sweep] section, which config_load
 * passes over: its other sections and includes are the base config of every point. The
 * [sweep] section of each file given holds:
 *   section.key = VALUES   an axis over any config key: a list or ranges (sweepaxes.h),
 *                          model.top_k = 1,2,4,8   cluster.nodes = 2..64*2
 *   zip = KEY KEY...       those axes advance together (equal lengths), as one axis at
 *                          the place of the first written (repeatable)
 *   where = FILTER         points where FILTER fails are dropped (sweepwhere.h):
 *                          parallel.ep divides parallel.dp and model.top_k <= 4
 *                          (repeatable; all must hold)
 *   base = FILE...         config files read before this one, relative to its folder
 * Points expand like nested loops over the axes in the order written, the last varying
 * fastest. A point's config is the files (bases first), the caller's --set overrides,
 * then its axis values, applied as --set would apply them. Its filters read the point's
 * values as the files and overrides set them, derived zeros filled in (config_read), so
 * they see a point the rules between keys refuse; those points stay, and their run
 * reports the refusal.
 * Every axis value is checked against its key's type and range when the file is loaded,
 * and all points must be of one kind, as their CSV columns are: training steps
 * (schedule.kind a pipeline schedule), inference steps (prefill or decode) or layer runs.
 * Errors are one line, "file:line: section.key: what is wrong", as config_load's.
 */
#ifndef MOESIM_SWEEP_H
#define MOESIM_SWEEP_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "sweepaxes.h"
#include "sweepwhere.h"

#define SWEEP_FILES_MAX 64            /* sweep files and their bases */
#define SWEEP_AXES_MAX 32
#define SWEEP_SETS_MAX 256            /* the caller's --set overrides */
#define SWEEP_WHERE_MAX 16            /* where lines */
#define SWEEP_KEY_LEN (2 * CFG_NAME_MAX)
#define SWEEP_SET_LEN (SWEEP_KEY_LEN + SWAX_VALUE_LEN + 1)   /* "section.key=value" */

struct sweep_axis {
    char key[SWEEP_KEY_LEN];          /* "section.key" */
    char where[CFG_PATH_MAX + 16];    /* "file:line" of its line */
    struct swax_values v;
    int dim;                          /* the expanded axis it is part of (zipped: shared) */
};

struct sweep {
    char *files[SWEEP_FILES_MAX];     /* owned: the config files of every point, in order */
    int nfiles;
    const char *const *sets;          /* the caller's --set overrides, borrowed */
    int nsets;
    struct sweep_axis axis[SWEEP_AXES_MAX];
    int naxes;
    int ndims;                        /* axes once zipped ones count as one */
    int dim_size[SWEEP_AXES_MAX];
    struct {
        struct swhere w;
        char where[CFG_PATH_MAX + 16];
    } filter[SWEEP_WHERE_MAX];
    int nfilters;
    int npoints;                      /* kept by the filters */
    int *digit;                       /* npoints x ndims: the value index of each dim */
    bool step;                        /* the points are steps (training or inference), not
                                       * layer runs */
    bool serve;                       /* the points are inference steps (config_serving) */
    struct config *first;             /* owned: a config of the points' kind (config_read of
                                       * the first point where the points were read, else
                                       * the base): what the run CSV's header is made of */
    uint64_t hash;                    /* of the base config and every point's values */
};

/* Reads the sweep files[0..nfiles) with the overrides sets[0..nsets) (borrowed; they
 * must outlive s) and expands the points into *s (zeroed by the caller, or freed).
 * 0; -EINVAL with err->msg one line (bad input); -ENOMEM. */
int sweep_load(struct sweep *s, const char *const *files, int nfiles,
               const char *const *sets, int nsets, struct cfg_err *err);
void sweep_free(struct sweep *s);                 /* NULL and zeroed are fine */

/* Point p's axis values as "section.key=value" into buf[0..naxes), in the order the axes
 * were written; sets[i] = buf[i]. Returns naxes. */
int sweep_point_sets(const struct sweep *s, int p, char (*buf)[SWEEP_SET_LEN],
                     const char **sets);

/* The value of axis a at point p (borrowed from s). */
const char *sweep_value(const struct sweep *s, int p, int a);

/* Point p's config (config_load of the files, the caller's sets, the point's): 0,
 * -EINVAL with err->msg (the rules refuse it), -ENOMEM. */
int sweep_config(const struct sweep *s, int p, struct config *c, struct cfg_err *err);

#endif
