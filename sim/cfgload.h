/* cfgload.h: the inside of one config_load call, shared by config.c (schema, reading,
 * where and when each key was set) and cfgcheck.c (rules between keys). Private to
 * those two files; the API is config.h.
 */
#ifndef MOESIM_CFGLOAD_H
#define MOESIM_CFGLOAD_H

#include "config.h"

/* One config_load call (config.c): the config read so far, where and when each key was
 * set, and the first error. Opaque outside config.c. */
struct cfg_loader;

/* The config being loaded; borrowed from ld, which owns it. */
struct config *cfg_conf(struct cfg_loader *ld);

/* Fails the load with "where: section.key: what" ("where: key: what" for section ""),
 * control characters escaped; the first error wins and later ones are dropped.
 * Returns -EINVAL, or the error already held. */
__attribute__((format(printf, 5, 6)))
int cfg_fail(struct cfg_loader *ld, const char *where, const char *sec, const char *key,
             const char *fmt, ...);

/* Where section.key was last set: "file:line", "--set" or "default" (also for a name
 * that is no key). Borrowed from ld. */
const char *cfg_where(const struct cfg_loader *ld, const char *sec, const char *key);

/* Of the n keys in names ("section", "key" pairs), the index of the one set last: a rule
 * on several keys of equal standing blames the one the user changed most recently. All
 * at their defaults: the first. Names that are no key are passed over (0 if all are). */
int cfg_latest(const struct cfg_loader *ld, const char *const *names, int n);

/* As cfg_fail, blaming the key of names set last (cfg_latest); a message that starts
 * "<first key> = <value>" drops that repeat when blaming the first key (cfgcheck.c). */
__attribute__((format(printf, 4, 5)))
int cfg_fail_rule(struct cfg_loader *ld, const char *const *names, int n, const char *fmt, ...);

/* cfgcheck.c: the rules between keys, once every file and --set is read. Fills in the
 * derived zeros (parallel.dp, parallel.ep, model.kv_heads, model.head_dim; config.h).
 * Returns 0, or -EINVAL after cfg_fail. */
int cfg_check(struct cfg_loader *ld);

/* Fills in the derived zeros as far as the values allow, checking no rule: dp when pp
 * divides the GPUs, ep = dp, kv_heads and head_dim (config_read, config.h). */
void cfg_derive(struct cfg_loader *ld);

#endif
