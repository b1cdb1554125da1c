/* args.h: the command line of `moeprof run` and the config it names.
 *
 *   moeprof run CONFIG... [--set section.key=value]... [--backend cpu|cuda]
 *               [--comm mpi|nccl] [--iters N] [--warmup N] [--layers N] [--seed N]
 *               [--aux-alpha A] [--bind none|gpu] [--out DIR]
 *               [--compare [--calibration FILE]...]
 * Every rank parses the same argv, so every rank reaches the same verdict; the
 * message is one line, "moeprof run: what is wrong" or config.h's "file:line:
 * section.key: what is wrong".
 */
#ifndef MOEPROF_ARGS_H
#define MOEPROF_ARGS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define ARGS_MAX 256
#define ARGS_CALIB_MAX 8

enum args_backend { ARGS_CPU, ARGS_CUDA };
enum args_comm { ARGS_MPI, ARGS_NCCL };

struct args {
    const char *files[ARGS_MAX];
    int nfiles;
    const char *sets[ARGS_MAX];
    int nsets;
    enum args_backend backend;
    enum args_comm comm;
    int iters, warmup, layers;      /* defaults 5, 2, 1 */
    uint64_t seed;                  /* default 1 */
    double aux_alpha;               /* --aux-alpha, default 0 (no aux loss) */
    int bind;                       /* --bind: bind.h's enum bind_mode, default BIND_AUTO */
    const char *out;                /* NULL: no files */
    int compare;                    /* --compare (needs --out): compare.h */
    const char *calib[ARGS_CALIB_MAX];  /* --calibration files, in order */
    int ncalib;
    int help;                       /* --help given: usage printed by the caller */
};

extern const char args_usage[];

/* 0 parsed; -EINVAL with msg (one line, no newline) for bad usage. */
int args_parse(struct args *a, int argc, char **argv, char *msg, size_t msg_n);

/* config_load_keys of a's files and sets: 0 with *keys (where each key was set, for
 * the run's own rules; config_keys_free), or -EINVAL / -ENOMEM with msg. */
int args_config(const struct args *a, struct config *c, struct cfg_loader **keys, char *msg,
                size_t msg_n);

/* s as a decimal integer in [lo, hi] (0 <= lo <= hi): digits only, no sign or space.
 * 0 and *out set, or -1. Every moeprof command's counts go through it. */
int args_uint(const char *s, long long lo, long long hi, long long *out);

#endif
