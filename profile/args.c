/* args.c: `moeprof run`'s options (see args.h). */
#include "args.h"
#include "bind.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char args_usage[] =
    "usage: moeprof run CONFIG... [--set section.key=value]... [--backend cpu|cuda]\n"
    "                   [--comm mpi|nccl] [--iters N] [--warmup N] [--layers N]\n"
    "                   [--seed N] [--aux-alpha A] [--bind none|gpu] [--out DIR]\n"
    "                   [--compare [--calibration FILE]...]\n"
    "\n"
    "Runs a real expert-parallel MoE layer, forward and backward, on every rank\n"
    "(start it with mpirun -np N), times every phase and records the routing and the\n"
    "traffic. The config is moesim's: [model] hidden, experts, top_k, shared_experts,\n"
    "expert_ffn_hidden; [parallel] ep (ranks per EP group; the ranks must be a\n"
    "multiple of it); [routing] tokens_per_gpu (tokens per rank), scoring,\n"
    "distribution (uniform; zipf: the gate's selection bias calibrated to moesim's\n"
    "expert shares; trace: the token-expert counts of routing.trace forced, iteration\n"
    "after iteration); [balance] placement.\n"
    "\n"
    "  --iters N     timed iterations (5), each paired with an untimed one to\n"
    "                measure the instrumentation overhead\n"
    "  --warmup N    untimed iterations first (2)\n"
    "  --layers N    MoE layers stacked, each its own weights (1); layer l+1 takes\n"
    "                layer l's input + output, the backward runs last to first\n"
    "  --seed N      weights, tokens and skew (1)\n"
    "  --aux-alpha A the balance loss alpha sum_e f_e P_e (0: off), f and P over\n"
    "                each EP group's batch (not with distribution = trace)\n"
    "  --bind        gpu: each rank on the CPUs nearest its GPU and NIC (hwloc; no\n"
    "                GPU: its share of the node's cores, in rank order); none: where\n"
    "                mpirun put it. Default gpu where the node has a GPU, else none\n"
    "  --out DIR     write phases.csv, trace.json, routing.trace and the dispatch and\n"
    "                combine byte matrices there (DIR is created if missing)\n"
    "  --compare     after measuring, rank 0 runs moesim on the same config, layout,\n"
    "                placement and recorded routing and prints predicted against\n"
    "                measured per phase; DIR/compare.csv, and trace.json gains the\n"
    "                predicted timeline (needs --out)\n"
    "  --calibration FILE  config read after CONFIG... for the prediction only\n"
    "                (moeprof topo's and calibrate's fragments); repeatable\n"
    "  --backend     cpu (fp32, the kernels' oracle) or cuda (bf16, one rank per GPU;\n"
    "                where nvcc and NCCL were found at build time)\n"
    "  --comm        mpi (MPI_Alltoall / MPI_Alltoallv; with cpu) or nccl (grouped\n"
    "                ncclSend / ncclRecv of the tokens; with cuda)\n";

int args_uint(const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    if (!s || !*s || s[strspn(s, "0123456789")])
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || v < (unsigned long long)lo || v > (unsigned long long)hi)
        return -1;
    *out = (long long)v;
    return 0;
}

int args_parse(struct args *a, int argc, char **argv, char *msg, size_t msg_n)
{
    enum { O_BACKEND = 256, O_COMM, O_ITERS, O_WARMUP, O_LAYERS, O_SEED, O_OUT, O_AUX, O_BIND,
           O_COMPARE, O_CALIB };
    static const struct option opts[] = {
        { "set", required_argument, NULL, 's' },
        { "backend", required_argument, NULL, O_BACKEND },
        { "comm", required_argument, NULL, O_COMM },
        { "iters", required_argument, NULL, O_ITERS },
        { "warmup", required_argument, NULL, O_WARMUP },
        { "layers", required_argument, NULL, O_LAYERS },
        { "seed", required_argument, NULL, O_SEED },
        { "out", required_argument, NULL, O_OUT },
        { "aux-alpha", required_argument, NULL, O_AUX },
        { "bind", required_argument, NULL, O_BIND },
        { "compare", no_argument, NULL, O_COMPARE },
        { "calibration", required_argument, NULL, O_CALIB },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    memset(a, 0, sizeof(*a));
    a->iters = 5;
    a->warmup = 2;
    a->layers = 1;
    a->seed = 1;
    opterr = 0;
    optind = 1;
    int ch;
    long long v;
    while ((ch = getopt_long(argc, argv, ":s:h", opts, NULL)) != -1) {
        switch (ch) {
        case 's':
            if (a->nsets == ARGS_MAX)
                goto too_many;
            a->sets[a->nsets++] = optarg;
            break;
        case O_BACKEND:
            if (strcmp(optarg, "cpu") && strcmp(optarg, "cuda")) {
                snprintf(msg, msg_n, "moeprof run: --backend: '%s' is not cpu or cuda", optarg);
                return -EINVAL;
            }
            a->backend = strcmp(optarg, "cpu") ? ARGS_CUDA : ARGS_CPU;
            break;
        case O_COMM:
            if (strcmp(optarg, "mpi") && strcmp(optarg, "nccl")) {
                snprintf(msg, msg_n, "moeprof run: --comm: '%s' is not mpi or nccl", optarg);
                return -EINVAL;
            }
            a->comm = strcmp(optarg, "mpi") ? ARGS_NCCL : ARGS_MPI;
            break;
        case O_ITERS:
        case O_WARMUP:
        case O_LAYERS: {
            const char *name = ch == O_ITERS ? "iters" : ch == O_WARMUP ? "warmup" : "layers";
            long long lo = ch == O_WARMUP ? 0 : 1;
            if (args_uint(optarg, lo, 1 << 20, &v)) {
                snprintf(msg, msg_n, "moeprof run: --%s: '%s' is not an integer in %lld..%d",
                         name, optarg, lo, 1 << 20);
                return -EINVAL;
            }
            *(ch == O_ITERS ? &a->iters : ch == O_WARMUP ? &a->warmup : &a->layers) = (int)v;
            break;
        }
        case O_SEED:
            if (args_uint(optarg, 0, (1ll << 62), &v)) {
                snprintf(msg, msg_n, "moeprof run: --seed: '%s' is not a non-negative integer",
                         optarg);
                return -EINVAL;
            }
            a->seed = (uint64_t)v;
            break;
        case O_AUX: {
            char *end;
            errno = 0;
            double d = strtod(optarg, &end);
            if (!*optarg || *end || errno || !(d >= 0.0 && d <= 1e6)) {
                snprintf(msg, msg_n, "moeprof run: --aux-alpha: '%s' is not a number in 0..1e6",
                         optarg);
                return -EINVAL;
            }
            a->aux_alpha = d;
            break;
        }
        case O_BIND:
            if (strcmp(optarg, "none") && strcmp(optarg, "gpu")) {
                snprintf(msg, msg_n, "moeprof run: --bind: '%s' is not none or gpu", optarg);
                return -EINVAL;
            }
            a->bind = strcmp(optarg, "none") ? BIND_GPU : BIND_NONE;
            break;
        case O_COMPARE:
            a->compare = 1;
            break;
        case O_CALIB:
            if (a->ncalib == ARGS_CALIB_MAX) {
                snprintf(msg, msg_n, "moeprof run: more than %d --calibration files",
                         ARGS_CALIB_MAX);
                return -EINVAL;
            }
            a->calib[a->ncalib++] = optarg;
            break;
        case O_OUT:
            if (a->out) {
                snprintf(msg, msg_n, "moeprof run: --out given twice ('%s' and '%s')", a->out,
                         optarg);
                return -EINVAL;
            }
            a->out = optarg;
            break;
        case 'h':
            a->help = 1;
            return 0;
        case ':':
            snprintf(msg, msg_n, "moeprof run: option '%s' needs a value", argv[optind - 1]);
            return -EINVAL;
        default:
            snprintf(msg, msg_n, "moeprof run: unknown option '%s' (see moeprof run --help)",
                     argv[optind - 1]);
            return -EINVAL;
        }
    }
    for (int i = optind; i < argc; i++) {
        if (a->nfiles == ARGS_MAX)
            goto too_many;
        a->files[a->nfiles++] = argv[i];
    }
    if (a->nfiles == 0) {
        snprintf(msg, msg_n, "moeprof run: no CONFIG file given (see moeprof run --help)");
        return -EINVAL;
    }
    if (a->ncalib && !a->compare) {
        snprintf(msg, msg_n, "moeprof run: --calibration %s: only with --compare", a->calib[0]);
        return -EINVAL;
    }
    if (a->compare && !a->out) {
        snprintf(msg, msg_n, "moeprof run: --compare: needs --out DIR (compare.csv, the "
                 "routing moesim replays)");
        return -EINVAL;
    }
    return 0;

too_many:
    snprintf(msg, msg_n, "moeprof run: more than %d CONFIG files or --set options", ARGS_MAX);
    return -EINVAL;
}

int args_config(const struct args *a, struct config *c, struct cfg_loader **keys, char *msg,
                size_t msg_n)
{
    struct cfg_err err;
    int rc = config_load_keys(c, keys, a->files, a->nfiles, a->sets, a->nsets, &err);
    if (rc)
        snprintf(msg, msg_n, "%s", err.msg);
    return rc;
}
