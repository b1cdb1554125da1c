/* test_fuzz.c: a deterministic mutation fuzzer for the three input parsers, config_load
 * (sim/config.c), matrix_load (traces/matrix.c) and rtrace_load (traces/rtrace.c). Seeds:
 * the files under configs/ and traces/samples/ (run from the repository root) and a few
 * written here; each mutant goes to a file in a mkdtemp folder and is loaded. What every
 * input must give (config.h, matrix.h, rtrace.h):
 *   - 0 or -EINVAL, nothing else, and no crash or hang (ASan/UBSan catch memory errors);
 *   - on -EINVAL one non-empty line (no '\n') of at most CFG_ERR_MAX-1 bytes starting with
 *     the file's name ("path:" or "path:line:"), "--set" or "default"; a matrix or trace
 *     left zeroed;
 *   - on 0, a config within every range of the schema and every check of cfg_check(), a
 *     matrix equal to the lines of the file (a pair not listed: 0 bytes), or a routing
 *     trace with the header's dimensions (and the wanted ones) and the entries' counts
 *     (an entry not listed: 0) that rtrace_write writes out and loads back the same; and
 *     input with no control byte but tab (a '\r' may end a line) and no line over the
 *     limit (CFG_LINE_MAX; 4096 bytes for the traces, traces/FORMAT.md).
 * FUZZ_ITERS (mutants per parser: 5000, 3000 under ASan) and FUZZ_SEED change the run; a
 * failure prints both and its iteration: FUZZ_ITERS=iteration+1 replays up to it. */
#include "config.h"
#include "cu_run.h"
#include "fuzz_oracle.h"
#include "matrix.h"
#include "rtrace.h"
#include "traffic.h"

#include <CUnit/Basic.h>

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef __SANITIZE_ADDRESS__       /* gcc's ASan; clang builds run the full count */
#define FUZZ_DEFAULT_ITERS 3000
#else
#define FUZZ_DEFAULT_ITERS 5000
#endif
#define FUZZ_SLOTS 4      /* config mutants rotate over c0..c3.ini, so they include each other */
#define FUZZ_SHOW 10      /* failures printed in full */
#define FUZZ_SEEDS 64
#define FUZZ_KEYS 96      /* the schema's keys in the seeds, plus the wrong ones */

struct buf { char *p; size_t n, cap; };
struct corpus { struct buf v[FUZZ_SEEDS]; int n; };
/* The parsers fed files; each value is xor'ed into its mutants' generator seeds. */
enum fuzz_kind { FUZZ_MATRIX, FUZZ_CONFIG, FUZZ_RTRACE };
static const char *const kind_name[] = { "matrix", "config", "routing trace" };

/* Suite state: CUnit tests take no arguments. */
static char tmp_dir[64];
static uint64_t fuzz_seed = 0x6d6f6573696d2121ull;
static int fuzz_iters = FUZZ_DEFAULT_ITERS;
static struct corpus cfg_seeds, mat_seeds, rt_seeds;
static char set_keys[FUZZ_KEYS][48]; /* "section.key" of the seeds, and a few wrong ones */
static int n_set_keys, n_bad;
/* The cluster presets give 64 or 2048 GPUs, which the default EP (dp: all GPUs at pp 1)
 * does not fit with the default 8 experts; EP 8 fits every seed. */
static const char *const ep8[] = { "parallel.ep=8" };

/* splitmix64 (Steele, Lea, Flood, OOPSLA 2014; the constants of Vigna's reference code). */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static size_t rng_below(uint64_t *s, size_t n) { return n ? (size_t)(rng_next(s) % n) : 0; }

/* ---- byte buffers (NUL-terminated too, so --set strings read as C strings) ---- */

static void buf_insert(struct buf *b, size_t at, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        b->cap = 2 * (b->n + n + 1);
        if (!(b->p = realloc(b->p, b->cap)))
            abort();              /* a test out of memory has nothing to report */
    }
    memmove(b->p + at + n, b->p + at, b->n - at);
    memcpy(b->p + at, s, n);
    b->p[b->n += n] = '\0';
}

static void buf_erase(struct buf *b, size_t at, size_t n)
{
    n = n > b->n - at ? b->n - at : n;
    memmove(b->p + at, b->p + at + n, b->n - at - n);
    b->p[b->n -= n] = '\0';
}

/* [*start, *end) is the line around at, without its '\n'. */
static void line_at(const struct buf *b, size_t at, size_t *start, size_t *end)
{
    size_t s = at > b->n ? b->n : at, e = s;
    while (s && b->p[s - 1] != '\n')
        s--;
    while (e < b->n && b->p[e] != '\n')
        e++;
    *start = s;
    *end = e;
}

static int write_buf(const char *path, const struct buf *b)
{
    unlink(path);     /* ext4 syncs a file truncated and rewritten: 4x slower without this */
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(b->p, 1, b->n, f);
    return (fclose(f) || w != b->n) ? -1 : 0;
}

/* ---- mutations ---- */

/* Values at the edges of every parser path: signs, overflow of int/int64/uint64,
 * non-finite and out-of-range doubles, suffixes, enum words, syntax pieces. */
static const char *const tokens[] = {
    "", " ", "-0", "nan", "inf", "-inf", "1e999", "-1e999", "1e-999", "4.9e-324",
    "1.7976931348623157e308", "0", "1", "-1", "+5", "0x10", "1.5", "1e3", "007",
    "2147483647", "2147483648", "-2147483649", "1048577", "9223372036854775807",
    "9223372036854775808", "18446744073709551615", "18446744073709551616",
    "99999999999999999999999999999", "1 K", "16GiB", "3KB", "7 MiB", "true", "off",
    "zipf", "hierarchical", "pxn", "matrix", "alltoall", "moe", "=", ":", ";x", " #x",
    "[cluster]\n", "[model]\n", "[parallel]\n", "[routing]\n", "[traffic]\n", "[]\n",
    "[nosuch]\n", "[cluster\n", "\n", "\r\n", "include = ", "nodes = ", "ep = ",
    "top_k = ", "pattern = matrix\n", "matrix = m.txt\n", "\t", "\v", "\f", "\xef\xbb\xbf",
    "[schedule]\n", "[calibration]\n", "kind = ", "pp = ", "vpp = ", "dp = ", "none", "gpipe",
    "1f1b", "interleaved-1f1b", "zb1p", "dualpipe", "dualpipev", "gqa", "mla", "ring", "tree",
    "kind = dualpipe\n", "attention = mla\n", "heads = ", "132", "16777216", "16777217",
    "fp8", "bf16", "dispatch_dtype = ", "combine_grad_dtype = ", "fp8_block = ",
};
#define NTOKENS (sizeof(tokens) / sizeof(tokens[0]))
/* Half the routing trace's tokens come from here: the header's pieces, its limits. */
static const char *const rt_tokens[] = {
    "moesim-routing-trace", "moesim-routing-trace 1 layers=1 iterations=1 gpus=1 experts=1\n",
    "layers=", "iterations=", "gpus=", "experts=", "experts=16", "layers=1 ", "2", "16", "17",
    "65536", "16384", "268435456", "268435457", "0 0 0 0 1\n", "1 1 7 15 5\n", "1 0 2 3 0\n",
};
#define NRT_TOKENS (sizeof(rt_tokens) / sizeof(rt_tokens[0]))
static const char specials[] = "\0\r\n\\=[];#: \t.-";       /* the NUL is one of them */
static const char *const includes[] = {
    "c0.ini", "c1.ini", "c2.ini", "c3.ini", "missing.ini", "", "/", "./c1.ini", "../x.ini",
};

/* One to four random edits of b, a file for the parser `kind`; others gives splices. */
static void mutate(struct buf *b, uint64_t *r, const struct corpus *others, enum fuzz_kind kind)
{
    const bool cfg = kind == FUZZ_CONFIG;
    for (int ops = 1 + (int)rng_below(r, 4); ops > 0; ops--) {
        size_t at = rng_below(r, b->n + 1), s, e, s2, e2, n;
        char tmp[4200];
        bool swap;
        const struct buf *o = &others->v[rng_below(r, (size_t)others->n)];
        const char *t = tokens[rng_below(r, NTOKENS)];
        if (kind == FUZZ_RTRACE && rng_below(r, 2))
            t = rt_tokens[rng_below(r, NRT_TOKENS)];
        line_at(b, at, &s, &e);
        line_at(b, e + 1, &s2, &e2);
        switch (rng_below(r, 13)) {
        case 0: if (b->n) b->p[at % b->n] ^= (char)(1u << rng_below(r, 8)); break;
        case 1: if (b->n) b->p[at % b->n] = (char)rng_next(r); break;
        case 2: buf_insert(b, at, &specials[rng_below(r, sizeof(specials) - 1)], 1); break;
        case 3: buf_erase(b, at, 1 + rng_below(r, 16)); break;
        case 4: buf_insert(b, at, t, strlen(t)); break;
        case 5: /* a run: short, or across CFG_LINE_MAX (199), or across a 4 KiB buffer */
            n = rng_below(r, 4);
            n = n < 2 ? 1 + rng_below(r, 40) : n < 3 ? 195 + rng_below(r, 10)
                                                     : 4090 + rng_below(r, 20);
            memset(tmp, "a9 =#;"[rng_below(r, 6)], n);
            buf_insert(b, at, tmp, n);
            break;
        case 6: buf_erase(b, at, b->n - at); break;
        case 7: /* splice: our head, another seed's tail */
            buf_erase(b, at, b->n - at);
            n = rng_below(r, o->n + 1);
            buf_insert(b, at, o->p + n, o->n - n);
            break;
        case 8: /* swap the line with the next one, or repeat it: duplicate keys, pairs */
        case 9:
            n = e - s + 1;                              /* with its '\n' */
            if (e2 >= b->n || n > sizeof(tmp))        /* the next line must end in '\n' */
                break;
            memcpy(tmp, b->p + s, n);                   /* buf_insert may move b->p */
            if ((swap = rng_below(r, 2)))
                buf_erase(b, s, n);
            buf_insert(b, swap ? s + e2 - e : s, tmp, n);
            break;
        case 10: /* replace the value of a key (config), the last field (matrix), the last
                    field or the value of a header key (routing trace) */
        case 11:
            for (n = e; n > s && b->p[n - 1] != (cfg ? '=' : ' ') &&
                        (kind != FUZZ_RTRACE || b->p[n - 1] != '='); n--) {}
            if (n > s) {
                buf_erase(b, n, e - n);
                buf_insert(b, n, t, strlen(t));
            }
            break;
        default: /* an include line (config) or a pair line (matrix) at the top; an entry
                    line (routing trace) after the line holding at */
            if (cfg)
                snprintf(tmp, sizeof(tmp), "include = %s\n",
                         includes[rng_below(r, sizeof(includes) / sizeof(includes[0]))]);
            else if (kind == FUZZ_MATRIX) { /* one call per statement: a fixed order of draws */
                s = rng_below(r, 17);
                e = rng_below(r, 17);
                n = rng_below(r, 3) ? rng_below(r, 1000) : (size_t)rng_next(r);
                snprintf(tmp, sizeof(tmp), "%zu %zu %zu\n", s, e, n);
            } else {
                size_t l = rng_below(r, 3), it = rng_below(r, 3), g = rng_below(r, 17);
                size_t x = rng_below(r, 17);
                n = rng_below(r, 3) ? rng_below(r, 1000) : (size_t)rng_next(r);
                snprintf(tmp, sizeof(tmp), "%zu %zu %zu %zu %zu\n", l, it, g, x, n);
                if ((s = e < b->n ? e + 1 : b->n) == b->n && b->n && b->p[b->n - 1] != '\n')
                    buf_insert(b, s++, "\n", 1);
            }
            buf_insert(b, kind == FUZZ_RTRACE ? s : 0, tmp, strlen(tmp));
            break;
        }
    }
}

/* ---- seeds ---- */

/* Appends the file dir/name to cp; a relative `include = x` becomes <cwd>/dir/x so the
 * presets load from the temporary folder too. Config keys go to set_keys. */
static int seed_add(struct corpus *cp, const char *dir, const char *name)
{
    char path[CFG_PATH_MAX], cwd[512], sec[24] = "", fixed[CFG_LINE_MAX + 2], *line = NULL;
    size_t cap = 0;
    ssize_t n;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = cp->n < FUZZ_SEEDS && getcwd(cwd, sizeof(cwd)) ? fopen(path, "r") : NULL;
    if (!f)
        return -1;
    struct buf *b = &cp->v[cp->n++];
    while ((n = getline(&line, &cap, f)) > 0) {
        char *v = line + strspn(line, " \t"), *eq = strchr(v, '=');
        size_t k = strspn(v, "abcdefghijklmnopqrstuvwxyz_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789");
        if (eq && !strncmp(v, "include", 7) && eq[1 + strspn(eq + 1, " \t")] != '/' &&
            snprintf(fixed, sizeof(fixed), "include = %s/%s/%s", cwd, dir,
                     eq + 1 + strspn(eq + 1, " \t")) < (int)sizeof(fixed))
            buf_insert(b, b->n, fixed, strlen(fixed));
        else
            buf_insert(b, b->n, line, (size_t)n);
        if (*v == '[' && strcspn(v, "]") < sizeof(sec))
            snprintf(sec, sizeof(sec), "%.*s", (int)strcspn(v + 1, "]"), v + 1);
        else if (k && k < 24 && *sec && eq && n_set_keys < FUZZ_KEYS) {
            int i = 0;
            snprintf(set_keys[n_set_keys], sizeof(set_keys[0]), "%s.%.*s", sec, (int)k, v);
            while (i < n_set_keys && strcmp(set_keys[i], set_keys[n_set_keys]))
                i++;
            n_set_keys += i == n_set_keys;              /* kept only when new */
        }
    }
    free(line);
    fclose(f);
    return 0;
}

static int suite_init(void)
{
    static const char *const dirs[] = { "configs/models", "configs/clusters", "configs/examples" };
    static const char *const texts[] = {
        "[cluster]\nname = tiny\nnodes = 2\ngpus_per_node = 4\nnvlink_GBps = 1.5e2\nnic_GBps = 25\n"
        "oversubscription = 2\nnodes_per_leaf = 1\nroute = pxn\n[model]\nexperts = 8\ntop_k = 8\n"
        "layers = 4\nfirst_dense_layers = 4\n[parallel]\nep = 8\n[routing]\ntokens_per_gpu = 0\n"
        "distribution = zipf\nzipf_s = 0\ndedup = off\n[traffic]\npattern = alltoall\n"
        "bytes_per_pair = 1 KiB\ncombine = no\n",
        "; comment\n# comment\n[traffic]\npattern = matrix\nmatrix = m.txt ; x\n",
        "[model]\n  hidden = 7168\nexperts=256\ntop_k : 8\n[parallel]\nep = 0\r\n",
        /* a training step, every key of [schedule] and [calibration]: 16 GPUs, pp 2 -> dp 8 */
        "[cluster]\nnodes = 2\ngpu_tflops_bf16 = 989\nhbm_GBps = 3350\nsms = 132\n"
        "gemm_efficiency = 0.75\ngemm_half_rows = 64\nhbm_efficiency = 0.8\ngpu_mem_GiB = 80\n"
        "[model]\nexperts = 16\ntop_k = 4\nlayers = 8\nfirst_dense_layers = 1\n"
        "ffn_hidden = 1024\nexpert_ffn_hidden = 512\nseq_len = 4096\nvocab = 32000\n"
        "attention = mla\nheads = 16\nkv_heads = 8\nhead_dim = 128\nq_lora_rank = 0\n"
        "kv_lora_rank = 512\nqk_nope_head_dim = 128\nqk_rope_head_dim = 64\nv_head_dim = 128\n"
        "[parallel]\npp = 2\ndp = 8\nvpp = 2\n[schedule]\nkind = interleaved-1f1b\n"
        "microbatches = 4\nmicro_batch_tokens = 4096\noverlap = on\ncomm_sms = 20\n"
        "dp_reduce = tree\ngrad_bytes_per_param = 2\n[calibration]\nexpert_table = t.csv\n",
        /* the bytes add up to 2^63, the most a matrix may hold (matrix.h) */
        "0 1 5\n\t1 0\t7   # reply\r\n\n# c\n2 2 0\n3 0 9223372036854775796\n",
        "# only comments\n\n   \n", "",
        /* dense (nccl-tests' alltoallv_perf): 8 rows of 8, comments, a tab, CRLF; 2^63 bytes */
        "# dense\n0 16 32 48 64 80 96 112\n16 0 16 16 16 16 16 16\r\n0 0 0 0 0 0 0 0\n"
        "1 2 3 4 5 6 7 8 # c\n9\t9 9 9 9 9 9 9\n0 0 0 0 0 0 0 4096\n\n7 7 7 7 7 7 7 7\n"
        "0 0 0 0 0 0 0 9223372036854770988\n",
    };
    static const char *const wrong_keys[] = { "cluster.bogus", "nosuch.nodes", "include",
                                              ".nodes", "cluster.", "cluster.nodes.x" };
    static const char *const rt_texts[] = {
        /* 2^33 tokens, the most a layer and iteration may hold (rtrace.h) */
        "moesim-routing-trace 1 layers=1 iterations=1 gpus=1 experts=1\n0 0 0 0 "
        "8589934592\n",
        "# c\r\n\tmoesim-routing-trace\t1 layers=3 iterations=2 gpus=4 experts=5 # h\r\n\n"
        "2 1 3 4 7\r\n0 0 0 0 0 # zero\n1 1 1 1 1\n",
        "moesim-routing-trace 1 layers=2 iterations=2 gpus=8 experts=16",
        "# every entry of 1 x 2 x 2 x 4, tabs and zeros\nmoesim-routing-trace 1 layers=1 "
        "iterations=2 gpus=2 experts=4\n0 0 0 0 4\n0 0 0 1 0\n0 0 0 2 3\n0 0 0 3 1\n"
        "0 0 1 0 0\n0 0 1 1 4\n0 0 1 2 0\n0 0 1 3 4\n0 1 0 0 4\n0 1 0 1 4\n0 1 0 2 0\n"
        "0 1 0 3 0\n0\t1\t1\t0\t2\n0 1 1 1 0\n0 1 1 2 4\n0 1 1 3 2\n",
    };
    snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/test_fuzz.XXXXXX");
    if (!mkdtemp(tmp_dir) || seed_add(&mat_seeds, "configs/examples", "matrix-8gpu.txt") ||
        seed_add(&rt_seeds, "traces/samples", "routing-2x2x8x16.txt"))
        return -1;
    for (size_t i = 0; i < sizeof(rt_texts) / sizeof(rt_texts[0]); i++)
        buf_insert(&rt_seeds.v[rt_seeds.n++], 0, rt_texts[i], strlen(rt_texts[i]));
    for (size_t d = 0; d < sizeof(dirs) / sizeof(dirs[0]); d++) {
        struct dirent **e;
        int n = scandir(dirs[d], &e, NULL, alphasort), rc = n < 0 ? -1 : 0;
        for (int i = 0; i < n; i++) {
            size_t l = strlen(e[i]->d_name);
            if (!rc && l > 4 && !strcmp(e[i]->d_name + l - 4, ".ini"))
                rc = seed_add(&cfg_seeds, dirs[d], e[i]->d_name);
            free(e[i]);
        }
        free(n < 0 ? NULL : e);
        if (rc)
            return -1;
    }
    for (int i = 0; i < 8; i++) {                   /* texts[0..3]: INI, [4..7]: matrix */
        struct corpus *cp = i < 4 ? &cfg_seeds : &mat_seeds;
        if (cp->n == FUZZ_SEEDS)
            return -1;
        buf_insert(&cp->v[cp->n++], 0, texts[i], strlen(texts[i]));
    }
    for (size_t i = 0; i < sizeof(wrong_keys) / sizeof(wrong_keys[0]) && n_set_keys < FUZZ_KEYS;
         i++)
        snprintf(set_keys[n_set_keys++], sizeof(set_keys[0]), "%s", wrong_keys[i]);
    return 0;
}

static int suite_clean(void)
{
    DIR *d = opendir(tmp_dir);
    struct dirent *e;
    char p[CFG_PATH_MAX];
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.' && snprintf(p, sizeof(p), "%s/%s", tmp_dir, e->d_name) > 0)
            unlink(p);
    if (d)
        closedir(d);
    for (int i = 0; i < FUZZ_SEEDS; i++) {
        free(cfg_seeds.v[i].p);
        free(mat_seeds.v[i].p);
        free(rt_seeds.v[i].p);
    }
    return rmdir(tmp_dir);
}

/* ---- what every result must satisfy ---- */

static void dump(const char *p, size_t n)
{
    for (size_t i = 0; i < n && i < 600; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch == '\n' || ch == '\\')
            fputs(ch == '\n' ? "\\n" : "\\\\", stderr);
        else
            fprintf(stderr, ch < 32 || ch > 126 ? "\\x%02x" : "%c", ch);
    }
    fputs(n > 600 ? "...\n" : "\n", stderr);
}

static void report(const char *what, int it, const char *why, int rc, const char *msg,
                   const struct buf *in)
{
    if (n_bad++ >= FUZZ_SHOW)
        return;
    fprintf(stderr, "\nfuzz %s: FUZZ_SEED=0x%016" PRIx64 " iteration %d: rc %d: %s\n  msg: ",
            what, fuzz_seed, it, rc, why);
    dump(msg, strnlen(msg, CFG_ERR_MAX));
    fprintf(stderr, "  input (%zu bytes): ", in->n);
    dump(in->p, in->n);
}

/* NULL, or what is wrong with the result of config_load. */
static const char *config_result(int rc, const struct config *c, const struct cfg_err *e)
{
    return rc == 0 ? config_broken(c) : rc == -EINVAL ? msg_broken(e->msg, NULL)
                                                      : "not 0 or -EINVAL";
}

/* ---- the tests ---- */

/* The mutant b, written to files[0], loaded by the parser `kind` (options drawn from r);
 * NULL, or what is wrong with the result, its rc in *rc and its message in msg. gpus: the
 * matrix's GPUs; a routing trace's want_gpus, a quarter of the time (0 for a seed: any). */
static const char *load_one(enum fuzz_kind kind, const struct buf *b, const char *const *files,
                            bool seed, int gpus, uint64_t *r, int *rc, char *msg)
{
    const char *why;
    if (kind == FUZZ_CONFIG) {
        int nfiles = 1 + (!seed && !rng_below(r, 8)), nsets = seed || rng_below(r, 2);
        struct config c;
        struct cfg_err e;
        memset(&e, 'x', sizeof(e));           /* a message left unterminated shows */
        *rc = config_load(&c, files, nfiles, ep8, nsets, &e);
        why = config_result(*rc, &c, &e);
        if (!why && *rc == 0)
            why = lines_broken(b->p, b->n, CFG_LINE_MAX);
        memcpy(msg, e.msg, CFG_ERR_MAX);
    } else if (kind == FUZZ_MATRIX) {
        struct matrix m;
        struct matrix_err te;
        memset(&te, 'x', sizeof(te));
        memset(&m, 0x5a, sizeof(m));
        *rc = matrix_load(&m, files[0], gpus, &te);
        why = *rc == 0 ? matrix_broken(&m, gpus, b->p, b->n)
            : *rc != -EINVAL ? "not 0 or -EINVAL"
            : m.gpus || m.bytes ? "*m not zeroed on error" : msg_broken(te.msg, files[0]);
        if (*rc == 0)
            matrix_free(&m);
        memcpy(msg, te.msg, MATRIX_ERR_MAX);
    } else {
        int want_gpus = seed || rng_below(r, 4) ? 0 : gpus;
        int want_experts = seed || rng_below(r, 4) ? 0 : rng_below(r, 2) ? 16
                         : (int)rng_below(r, 18) - 1;
        char rt_path[CFG_PATH_MAX];
        struct rtrace t;
        struct rtrace_err re;
        snprintf(rt_path, sizeof(rt_path), "%s/rt.txt", tmp_dir);
        memset(&re, 'x', sizeof(re));
        memset(&t, 0x5a, sizeof(t));
        *rc = rtrace_load(&t, files[0], want_gpus, want_experts, &re);
        why = rtrace_outcome_broken(*rc, &t, want_gpus, want_experts, b->p, b->n, files[0],
                                    re.msg, rt_path);
        if (*rc == 0)
            rtrace_free(&t);
        memcpy(msg, re.msg, CFG_ERR_MAX);
    }
    return why;
}

/* The seeds of one parser as they are (they must load: configs with EP 8, matrices for 8
 * GPUs, routing traces wanting any dimensions), then their mutants. Configs: c<i>.ini
 * alone or then c<i+1>.ini (the mutant before), half of them with EP 8. Matrices: for 1
 * to 16 GPUs (1 in 64: 0 or -1). Routing traces: as load_one says. */
static void fuzz_files(enum fuzz_kind kind)
{
    static const int gpus_of[] = { 1, 2, 3, 4, 8, 8, 8, 16 };
    static const char *const slot_name[] = { "%s/m%d.txt", "%s/c%d.ini", "%s/r%d.txt" };
    const struct corpus *cp = kind == FUZZ_CONFIG ? &cfg_seeds
                            : kind == FUZZ_MATRIX ? &mat_seeds : &rt_seeds;
    char path[FUZZ_SLOTS][CFG_PATH_MAX], msg[CFG_ERR_MAX];
    int bad0 = n_bad, ok = 0;
    for (int i = 0; i < FUZZ_SLOTS; i++) {
        snprintf(path[i], sizeof(path[i]), slot_name[kind], tmp_dir, i);
        CU_ASSERT_EQUAL_FATAL(write_buf(path[i], &cp->v[i]), 0);
    }
    for (int it = 0; it < fuzz_iters; it++) {
        uint64_t r = fuzz_seed ^ ((uint64_t)it << 32) ^ (uint64_t)kind;
        bool seed = it < cp->n;
        const struct buf *s = &cp->v[seed ? (size_t)it : rng_below(&r, (size_t)cp->n)];
        const char *files[] = { path[it % FUZZ_SLOTS], path[(it + 1) % FUZZ_SLOTS] }, *why;
        struct buf b = { 0 };
        int rc, gpus = seed ? 8 : rng_below(&r, 64) ? gpus_of[rng_below(&r, 8)]
                                                    : -(int)rng_below(&r, 2);
        buf_insert(&b, 0, s->p, s->n);
        if (!seed)
            mutate(&b, &r, cp, kind);
        CU_ASSERT_EQUAL_FATAL(write_buf(files[0], &b), 0);
        why = load_one(kind, &b, files, seed, gpus, &r, &rc, msg);
        if (!why && seed && rc)
            why = "a seed does not load";
        if (why)
            report(kind_name[kind], it, why, rc, !rc ? "" : msg, &b);
        ok += rc == 0;
        free(b.p);
    }
    printf("\n# %s: %d seeds and mutants, %d accepted\n", kind_name[kind], fuzz_iters, ok);
    CU_ASSERT_EQUAL(n_bad, bad0);
}

static void test_config_mutants(void) { fuzz_files(FUZZ_CONFIG); }
static void test_matrix_mutants(void) { fuzz_files(FUZZ_MATRIX); }
static void test_rtrace_mutants(void) { fuzz_files(FUZZ_RTRACE); }

/* One to three section.key=value overrides over no file or one seed: keys from the seeds,
 * values from tokens[], random integers or random bytes; a quarter mutated on top. */
static void test_set_mutants(void)
{
    char path[CFG_PATH_MAX], val[32];
    struct config c;
    struct cfg_err e;
    int bad0 = n_bad, ok = 0;
    snprintf(path, sizeof(path), "%s/set.ini", tmp_dir);
    for (int it = 0; it < fuzz_iters; it++) {
        uint64_t r = fuzz_seed ^ ((uint64_t)it << 32) ^ 0x5e7;
        struct buf b[4] = { { 0 } };          /* b[3]: the sets joined, for the report */
        const char *files[] = { path }, *sets[3];
        int nsets = 1 + (int)rng_below(&r, 3), nfiles = (int)rng_below(&r, 2);
        CU_ASSERT_EQUAL_FATAL(write_buf(path, &cfg_seeds.v[rng_below(&r, (size_t)cfg_seeds.n)]), 0);
        for (int i = 0; i < nsets; i++) {
            const char *key = set_keys[rng_below(&r, (size_t)n_set_keys)], *v = val;
            const char *eq = rng_below(&r, 4) ? "=" : rng_below(&r, 2) ? " = " : "";
            size_t shift = rng_below(&r, 64);
            if (rng_below(&r, 3) == 0)
                snprintf(val, sizeof(val), "%" PRIu64, rng_next(&r) >> shift);
            else if (rng_below(&r, 2))
                v = tokens[rng_below(&r, NTOKENS)];
            else
                for (size_t j = 0, n = rng_below(&r, sizeof(val)); j < sizeof(val); j++)
                    val[j] = j < n ? (char)(1 + rng_below(&r, 255)) : '\0';
            buf_insert(&b[i], 0, key, strlen(key));
            buf_insert(&b[i], b[i].n, eq, strlen(eq));
            buf_insert(&b[i], b[i].n, v, strlen(v));
            if (rng_below(&r, 4) == 0)
                mutate(&b[i], &r, &cfg_seeds, FUZZ_CONFIG);
            sets[i] = b[i].p;                   /* read up to its first NUL, if any */
            buf_insert(&b[3], b[3].n, b[i].p, strlen(b[i].p));
            buf_insert(&b[3], b[3].n, " | ", 3);
        }
        memset(&e, 'x', sizeof(e));
        int rc = config_load(&c, files, nfiles, sets, nsets, &e);
        const char *why = config_result(rc, &c, &e);
        for (int i = 0; i < nsets && !why && rc == 0; i++)
            for (const char *p = sets[i]; *p && !why; p++)
                why = forbidden((unsigned char)*p) ? "accepted a control character" : NULL;
        if (why)
            report("--set", it, why, rc, rc ? e.msg : "", &b[3]);
        ok += rc == 0;
        for (int i = 0; i < 4; i++)
            free(b[i].p);
    }
    printf("\n# --set: %d loads, %d accepted\n", fuzz_iters, ok);
    CU_ASSERT_EQUAL(n_bad, bad0);
}

int main(void)
{
    static const struct cu_test tests[] = {
        { "config mutants", test_config_mutants },
        { "--set mutants", test_set_mutants },
        { "matrix mutants", test_matrix_mutants },
        { "routing trace mutants", test_rtrace_mutants },
    };
    const char *v;
    if ((v = getenv("FUZZ_ITERS")))
        fuzz_iters = atoi(v);
    if ((v = getenv("FUZZ_SEED")))
        fuzz_seed = strtoull(v, NULL, 0);
    printf("# fuzz: FUZZ_SEED=0x%016" PRIx64 " FUZZ_ITERS=%d\n", fuzz_seed, fuzz_iters);
    alarm(600);               /* a hang ends the run (SIGALRM) instead of stalling `make test` */
    return cu_run("fuzz", suite_init, suite_clean, tests, sizeof(tests) / sizeof(tests[0]));
}
