/* fuzz_cli.c: libFuzzer entry point for the moesim command line (sim/main.c, compiled
 * with -Dmain=moesim_main); how to build and run it: README.md.
 *
 * Input: byte 0 picks a config that goes right after the command (b % 4: 0 layer.ini,
 * a small MoE layer; 1 step.ini, a small training step; 2 none; 3 layer.ini and
 * step.ini); the rest, split at NULs, is the argument vector after "moesim" (at most
 * FUZZ_ARGS pieces). So "\0run\0--set\0cluster.nodes=1" runs
 * `moesim run layer.ini --set cluster.nodes=1`. The commands sweep and plot are skipped
 * (they fork, exec and make folders; see below, and fuzz_sweep.c).
 * Promises checked (sim/main.c, STYLE.md "Errors"): the status is 0, 1 or 2; on 2
 * standard error is exactly one non-empty line whose only control character is its
 * final '\n' and which does not end in ':' or ': ' (an empty message), and nothing went
 * to standard output; on 1 the message is not EINVAL's (bad input found late and
 * reported as a runtime failure); on 0 nothing went to standard error. ASan, UBSan and
 * LeakSanitizer catch the rest. A broken promise prints why and aborts, so libFuzzer
 * keeps the input.
 *
 * Where it runs: one mkdtemp folder per process (fuzz_input.h), the working directory
 * while the command runs, holding the configs, a matrix (m.txt) and a routing trace
 * (rt.txt) that --set may name. Nothing may be written outside it: open, fopen, mkstemp,
 * rename and unlink are wrapped (-Wl,--wrap) and, while the command runs, refuse (EACCES)
 * any write that does not land in that folder, and any write over the files above, so
 * that every input sees the same folder; the files an input wrote are removed after it.
 * Standard output goes to /dev/null (fd 1), and the command's stdout and stderr streams
 * are memory streams. A config larger than the caps below loads as an error (config_load
 * is wrapped too), so that one input takes milliseconds, not minutes. Crash files go
 * where libFuzzer would put them (see LLVMFuzzerInitialize).
 * FUZZ_CLI_SHOW=1 in the environment prints each input's status, argv and stderr. */
#define _XOPEN_SOURCE 700       /* realpath */
#include "config.h"
#include "fuzz_input.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FUZZ_ARGS 64

int moesim_main(int argc, char **argv);

/* ---- the folder, and the files every input finds in it ---- */

static const char layer_ini[] =
    "[cluster]\nnodes = 2\ngpus_per_node = 4\n"
    "[model]\nhidden = 256\nexperts = 8\ntop_k = 2\nexpert_ffn_hidden = 512\nlayers = 2\n"
    "seq_len = 256\nheads = 4\n"
    "[routing]\ntokens_per_gpu = 64\n";
static const char step_ini[] =
    "[cluster]\nnodes = 2\ngpus_per_node = 4\n"
    "[model]\nhidden = 256\nexperts = 8\ntop_k = 2\nexpert_ffn_hidden = 512\nlayers = 4\n"
    "seq_len = 256\nheads = 4\nvocab = 1000\n"
    "[parallel]\npp = 2\nep = 4\n"
    "[routing]\ntokens_per_gpu = 64\n"
    "[schedule]\nkind = 1f1b\nmicrobatches = 4\nmicro_batch_tokens = 64\n";
static const char matrix_txt[] = "# src dst bytes\n0 1 1000\n1 0 2000\n7 3 5k\n";
static const char rtrace_txt[] =
    "moesim-routing-trace 1 layers=1 iterations=1 gpus=8 experts=8\n"
    "0 0 0 0 64\n0 0 1 1 64\n0 0 2 2 64\n0 0 3 3 64\n"
    "0 0 4 4 64\n0 0 5 5 64\n0 0 6 6 64\n0 0 7 7 64\n";

/* To add a file: a row here; the wrappers then protect it and cleanup keeps it. */
static const struct { const char *name, *text; } base_files[] = {
    { "layer.ini", layer_ini }, { "step.ini", step_ini },
    { "m.txt", matrix_txt },    { "rt.txt", rtrace_txt },
};
#define NBASE (int)(sizeof(base_files) / sizeof(base_files[0]))

static char dir[PATH_MAX];          /* the folder, symlinks resolved */
static bool guarding;               /* true while moesim_main runs */

static bool is_base(const char *name)
{
    for (int i = 0; i < NBASE; i++)
        if (!strcmp(name, base_files[i].name))
            return true;
    return false;
}

/* Whether a write to path lands in dir, on a file that is not a base file. A path that
 * exists is resolved whole (symlinks followed); a new one by its folder. */
static bool writable(const char *path)
{
    char real[PATH_MAX], copy[PATH_MAX], copy2[PATH_MAX];
    size_t n = strlen(dir);
    if (!path || strlen(path) >= sizeof(copy))
        return false;
    if (!realpath(path, real)) {
        strcpy(copy, path);
        strcpy(copy2, path);
        const char *leaf = basename(copy2);
        if (!realpath(dirname(copy), real) ||
            snprintf(real + strlen(real), sizeof(real) - strlen(real), "/%s", leaf) >=
                (int)(sizeof(real) - strlen(real)))
            return false;
    }
    return !strncmp(real, dir, n) && real[n] == '/' && !strchr(real + n + 1, '/') &&
           !is_base(real + n + 1);
}

static int refuse(void)
{
    errno = EACCES;
    return -1;
}

int __real_open(const char *path, int flags, ...);
int __real_mkstemp(char *tmpl);
int __real_rename(const char *from, const char *to);
int __real_unlink(const char *path);
FILE *__real_fopen(const char *path, const char *mode);
int __real_config_load(struct config *c, const char *const *files, int nfiles,
                       const char *const *sets, int nsets, struct cfg_err *err);

int __wrap_open(const char *path, int flags, ...)
{
    mode_t mode = 0;
    if (flags & O_CREAT) {
        va_list ap;
        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    if (guarding && (flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC)) && !writable(path))
        return refuse();
    return __real_open(path, flags, mode);
}

FILE *__wrap_fopen(const char *path, const char *mode)
{
    if (guarding && strpbrk(mode, "wa+") && !writable(path)) {
        errno = EACCES;
        return NULL;
    }
    return __real_fopen(path, mode);
}

int __wrap_mkstemp(char *tmpl)
{
    return guarding && !writable(tmpl) ? refuse() : __real_mkstemp(tmpl);
}

int __wrap_rename(const char *from, const char *to)
{
    return guarding && !(writable(from) && writable(to)) ? refuse() : __real_rename(from, to);
}

int __wrap_unlink(const char *path)
{
    return guarding && !writable(path) ? refuse() : __real_unlink(path);
}

/* Caps on what one input may simulate; a config past them is refused with a message
 * that main prints as bad input. To cap another key, add a line. */
int __wrap_config_load(struct config *c, const char *const *files, int nfiles,
                       const char *const *sets, int nsets, struct cfg_err *err)
{
    int rc = __real_config_load(c, files, nfiles, sets, nsets, err);
    const char *big = NULL;
    if (rc)
        return rc;
    if (config_gpus(c) > 64)
        big = "more than 64 GPUs";
    else if (c->model.experts > 256 || c->model.layers > 16 || c->model.top_k > 16)
        big = "more than 256 experts, 16 layers or top_k 16";
    else if (c->routing.tokens_per_gpu > 4096 || c->schedule.micro_batch_tokens > 4096)
        big = "more than 4096 tokens";
    else if (c->schedule.microbatches > 32 || c->parallel.vpp > 4 || c->balance.iterations > 16)
        big = "more than 32 micro-batches, vpp 4 or 16 balance iterations";
    else if (c->routing.tokens_per_gpu * config_gpus(c) * c->model.top_k *
                 c->balance.iterations > (1 << 16))
        big = "more than 2^16 token-expert choices (tokens, GPUs, top_k, iterations)";
    if (!big)
        return 0;
    snprintf(err->msg, sizeof(err->msg), "fuzz_cli: %s", big);
    return -EINVAL;
}

/* Removes what the last input wrote: every file in dir but the base files. */
static void clean_dir(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[PATH_MAX + 256];
    if (!d)
        abort();
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && !is_base(e->d_name)) {
            snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
            __real_unlink(path);
        }
    closedir(d);
}

/* ---- setup: the folder, and where libFuzzer writes a crash ---- */

static int home = -1;               /* the working directory libFuzzer runs in */

/* The command runs with dir as its working directory; so does a crash report inside it.
 * So libFuzzer's artifact paths are made absolute: -artifact_prefix= and
 * -exact_artifact_path= relative to the working directory, and -artifact_prefix=<it>/
 * added when neither is given. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char *const flags[] = { "-artifact_prefix=", "-exact_artifact_path=" };
    char cwd[PATH_MAX], path[2 * PATH_MAX];
    char **v = calloc((size_t)*argc + 2, sizeof(*v));
    bool given = false;
    if (!v || !getcwd(cwd, sizeof(cwd)))
        abort();
    for (int i = 0; i < *argc; i++) {
        const char *a = (*argv)[i];
        v[i] = (*argv)[i];
        for (int f = 0; f < 2 && i > 0; f++) {
            size_t n = strlen(flags[f]);
            if (strncmp(a, flags[f], n))
                continue;
            given = true;
            if (a[n] != '/') {
                snprintf(path, sizeof(path), "%s%s/%s", flags[f], cwd, a + n);
                v[i] = strdup(path);
            }
        }
        if (!v[i])
            abort();
    }
    if (!given) {
        snprintf(path, sizeof(path), "-artifact_prefix=%s/", cwd);
        if (!(v[(*argc)++] = strdup(path)))
            abort();
    }
    *argv = v;                                   /* kept for the life of the process */

    fuzz_input_path(path, sizeof(path), "fuzz_cli", "x");
    if (!realpath(dirname(path), dir) || (home = __real_open(".", O_RDONLY)) < 0)
        abort();
    for (int i = 0; i < NBASE; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, base_files[i].name);
        fuzz_input_write(path, base_files[i].text, strlen(base_files[i].text));
    }
    int null = __real_open("/dev/null", O_WRONLY);
    if (null < 0 || dup2(null, STDOUT_FILENO) < 0)
        abort();
    close(null);
    return 0;
}

/* ---- one input ---- */

static void broken(const char *why, int rc, char **argv, int argc, const char *err)
{
    fprintf(stderr, "fuzz_cli: status %d: %s\n  argv:", rc, why);
    for (int i = 0; i < argc; i++)
        fprintf(stderr, " [%s]", argv[i]);
    fprintf(stderr, "\n  stderr: [%s]\n", err);
    abort();
}

/* Why err (len bytes) is not one line of text ending in '\n' (nor one whose message is
 * empty: "moesim run: "), or NULL. */
static const char *not_one_line(const char *err, size_t len)
{
    if (len < 2 || err[len - 1] != '\n')
        return "stderr is not one non-empty line ending in a newline";
    if (err[len - 2] == ':' || (len > 2 && err[len - 2] == ' ' && err[len - 3] == ':'))
        return "stderr ends in ':', its message empty";
    for (size_t i = 0; i + 1 < len; i++)
        if ((unsigned char)err[i] < 0x20 || err[i] == 0x7f)
            return "stderr holds a control character before its end";
    return NULL;
}

/* Whether err (len bytes) ends in ": <strerror(EINVAL)>\n", the way main prints an errno
 * (an argument may hold the words too, but not at the end). */
static bool ends_with_einval(const char *err, size_t len)
{
    char tail[64];
    int n = snprintf(tail, sizeof(tail), ": %s\n", strerror(EINVAL));
    return n > 0 && len >= (size_t)n && !strcmp(err + len - (size_t)n, tail);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const pick[4][2] = { { "layer.ini" }, { "step.ini" }, { NULL },
                                            { "layer.ini", "step.ini" } };
    char *argv[FUZZ_ARGS + 4], *shown[FUZZ_ARGS + 4], *copy = malloc(size + 1);
    int argc = 0;
    if (!copy)
        return 0;
    if (size)
        memcpy(copy, data, size);
    copy[size] = '\0';
    argv[argc++] = "moesim";
    /* the pieces after byte 0; the config after the first one, the command */
    for (size_t i = 1; i <= size && argc < FUZZ_ARGS; i += strlen(copy + i) + 1) {
        argv[argc++] = copy + i;
        for (int k = 0; argc == 2 && k < 2 && pick[data[0] % 4][k]; k++)
            argv[argc++] = (char *)pick[data[0] % 4][k];
    }
    argv[argc] = NULL;
    memcpy(shown, argv, (size_t)(argc + 1) * sizeof(*argv));   /* getopt permutes argv */
    if (argc < 2) {                              /* `moesim` alone: usage, not one line */
        free(copy);
        return -1;
    }
    /* Left out: `moesim sweep` makes folders, forks worker processes, takes locks and
     * looks for an MPI launch, and `moesim plot` forks and execs gnuplot; none of that is
     * wrapped to stay in the folder. fuzz_sweep.c fuzzes the sweep file expansion, and
     * -1 keeps these inputs out of the corpus. */
    if (!strcmp(argv[1], "sweep") || !strcmp(argv[1], "plot")) {
        free(copy);
        return -1;
    }

    char *err = NULL, *out = NULL;
    size_t nerr = 0, nout = 0;
    FILE *saved_err = stderr, *saved_out = stdout;
    stderr = open_memstream(&err, &nerr);
    stdout = open_memstream(&out, &nout);
    if (!stderr || !stdout)
        abort();
    static char *const none[] = { "x", NULL };
    optind = 0;                      /* glibc's getopt forgets the last scan (its pointer */
    getopt(1, none, "");             /* into the freed argv) only when called at optind 0 */
    if (chdir(dir))
        abort();
    guarding = true;
    int rc = moesim_main(argc, argv);
    guarding = false;
    if (fchdir(home))
        abort();
    fclose(stderr);
    fclose(stdout);
    stderr = saved_err;
    stdout = saved_out;
    clean_dir();

    const char *why = NULL;
    if (rc < 0 || rc > 2)
        why = "exit status not 0, 1 or 2";
    else if (rc == 2 && (why = not_one_line(err, nerr)) == NULL && nout)
        why = "bad input, yet something went to stdout";
    else if (rc == 1 && ends_with_einval(err, nerr))
        why = "status 1 for EINVAL: bad input taken for a runtime failure";
    else if (rc == 0 && nerr)
        why = "status 0, yet something went to stderr";
    if (why)
        broken(why, rc, shown, argc, err);
    if (getenv("FUZZ_CLI_SHOW")) {               /* replaying by hand: what it did */
        fprintf(stderr, "status %d, %zu bytes on stdout; argv:", rc, nout);
        for (int i = 0; i < argc; i++)
            fprintf(stderr, " [%s]", shown[i]);
        fprintf(stderr, "\n  stderr: [%s]\n", err);
    }
    free(err);
    free(out);
    free(copy);
    return 0;
}
