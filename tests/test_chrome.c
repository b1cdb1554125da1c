/* test_chrome.c: the trace writer's output is JSON that Python's strict parser reads,
 * with the events, times and strings that went in. Needs python3 on the PATH. */
#include <CUnit/Basic.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "chrome.h"
#include "cu_run.h"

/* Needs every escape: quote, backslash, newline, tab, 0x01, 0x1f; '/' and UTF-8
 * ("é", "✓") are copied as they are. */
static const char TRICKY[] = "a\"b\\c/\n\t\x01\x1f \xc3\xa9 \xe2\x9c\x93";

/* The sample trace, hand-counted by "ph":
 *   M: 2 process_name + 2 process_sort_index + 2 thread_name + 1 thread_sort_index = 7
 *   X: 6 (F0 with args, the TRICKY name, one without args, two abutting, one before 0)
 *   b, e: 2 each (two overlapping flows, ids 1 and 2)
 *   C: 3
 * 20 events. Bad calls in between must write nothing. */
static int write_sample(FILE *f)
{
    struct chrome *c;
    int rc = chrome_open(&c, f);
    if (rc < 0)
        return rc;
    struct chrome_arg xa[2] = { { .key = "bytes", .num = 1048576 },
                                { .key = "op", .str = "dispatch" } };
    struct chrome_arg fa[1] = { { .key = "bytes", .num = 4096 } };
    struct chrome_arg ca[2] = { { .key = "nvl_tx", .num = 0.5 }, { .key = "nic_tx", .num = 0.25 } };
    struct chrome_arg tiny[2] = { { .key = "small", .num = 1.5e-5 }, { .key = "big", .num = 1e20 } };
    struct chrome_arg nan_arg[1] = { { .key = "x", .num = NAN } };
    struct chrome_arg str_series[1] = { { .key = "x", .str = "s" } };
    int bad = 0;
    rc = 0;
    rc |= chrome_process_name(c, 0, "gpu0");
    rc |= chrome_process_name(c, 1, "gpu1");
    rc |= chrome_process_sort(c, 0, 0);
    rc |= chrome_process_sort(c, 1, 1);
    rc |= chrome_thread_name(c, 0, 0, "compute");
    rc |= chrome_thread_name(c, 0, 1, "comm");
    rc |= chrome_thread_sort(c, 0, 1, 5);
    rc |= chrome_complete(c, 0, 0, "compute", "F0", 1.5e-6, 3.75e-6, xa, 2);
    rc |= chrome_complete(c, 0, 1, "esc", TRICKY, 4e-6, 5e-6, NULL, 0);
    rc |= chrome_complete(c, 1, 0, "compute", "B0", 0.001, 0.0015, NULL, 0);
    /* One track, abutting at 2.4 ns: start 0.6 ns -> 1, end 2.4 ns -> 2, so "dur" is 1 ns
     * (rounding the duration 1.8 ns apart would give 2 ns and end at 3, over the next
     * slice's start 2.4 ns -> 2). */
    rc |= chrome_complete(c, 1, 1, "compute", "A", 0.6e-9, 2.4e-9, NULL, 0);
    rc |= chrome_complete(c, 1, 1, "compute", "B", 2.4e-9, 3.2e-9, NULL, 0);
    rc |= chrome_complete(c, 1, 1, "compute", "neg", -1.5e-6, -1e-6, NULL, 0);
    rc |= chrome_async(c, 0, "net", "flow", 1, 1e-6, 5e-6, fa, 1);
    rc |= chrome_async(c, 0, "net", "flow", 2, 2e-6, 3e-6, NULL, 0);
    rc |= chrome_counter(c, 0, "link util", 1e-6, ca, 2);
    rc |= chrome_counter(c, 0, "link util", 5e-6, ca, 1);
    rc |= chrome_counter(c, 1, "fixed", 6e-6, tiny, 2);
    bad += chrome_complete(c, 0, 0, "compute", "back", 1.0, 1.0 - 1e-9, NULL, 0) == -EINVAL;
    bad += chrome_complete(c, 0, 0, "compute", "nan", NAN, 1.0, NULL, 0) == -EINVAL;
    bad += chrome_complete(c, 0, 0, "compute", "inf", 1.0, INFINITY, NULL, 0) == -EINVAL;
    bad += chrome_complete(c, 0, 0, "compute", "far", 0, 1e10, NULL, 0) == -EINVAL;
    bad += chrome_complete(c, 0, 0, "compute", "nanarg", 1.0, 2.0, nan_arg, 1) == -EINVAL;
    bad += chrome_complete(c, 0, 0, NULL, "nocat", 1.0, 2.0, NULL, 0) == -EINVAL;
    bad += chrome_async(c, 0, "net", "back", 3, 2.0, 1.0, NULL, 0) == -EINVAL;
    bad += chrome_async(c, 0, "net", "bigid", 1ull << 53, 1.0, 2.0, NULL, 0) == -EINVAL;
    bad += chrome_counter(c, 0, "empty", 1.0, ca, 0) == -EINVAL;
    bad += chrome_counter(c, 0, "strval", 1.0, str_series, 1) == -EINVAL;
    bad += chrome_process_name(c, 2, NULL) == -EINVAL;
    int rc_close = chrome_close(c);
    if (rc != 0)
        return -1;
    if (bad != 11)
        return -2;
    return rc_close;
}

static long slurp(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
    return (long)n;
}

/* Python: strict JSON parse; counts by ph as in write_sample; each "b" has an "e" with
 * the same id, name and cat and a later or equal ts; the "esc" slice's name is written
 * to argv[2] as UTF-8 bytes for the C side to compare. Exit 0 when all holds. */
static const char PY[] =
    "import json, sys\n"
    "d = json.load(open(sys.argv[1], encoding=\"utf-8\"))\n"
    "ev = d[\"traceEvents\"]\n"
    "n = {}\n"
    "for e in ev: n[e[\"ph\"]] = n.get(e[\"ph\"], 0) + 1\n"
    "ok = d[\"displayTimeUnit\"] == \"ms\" and n == {\"M\": 7, \"X\": 6, \"b\": 2, \"e\": 2, \"C\": 3}\n"
    "b = {e[\"id\"]: e for e in ev if e[\"ph\"] == \"b\"}\n"
    "en = {e[\"id\"]: e for e in ev if e[\"ph\"] == \"e\"}\n"
    "ok = ok and sorted(b) == [1, 2] and sorted(en) == [1, 2]\n"
    "ok = ok and all(b[i][\"name\"] == en[i][\"name\"] and b[i][\"cat\"] == en[i][\"cat\"]"
    " and en[i][\"ts\"] >= b[i][\"ts\"] for i in b)\n"
    "x = [e for e in ev if e[\"ph\"] == \"X\" and e[\"name\"] == \"F0\"][0]\n"
    "ok = ok and x[\"args\"] == {\"bytes\": 1048576, \"op\": \"dispatch\"}\n"
    "esc = [e[\"name\"] for e in ev if e.get(\"cat\") == \"esc\"]\n"
    "open(sys.argv[2], \"wb\").write(esc[0].encode(\"utf-8\") if esc else b\"\")\n"
    "print(\"# python: counts\", sorted(n.items()), \"ok\" if ok else \"MISMATCH\")\n"
    "sys.exit(0 if ok else 3)\n";

static void test_json_valid(void)
{
    char dir[] = "/tmp/test_chrome.XXXXXX";
    CU_ASSERT_FATAL(mkdtemp(dir) != NULL);
    char trace[64], name_out[64], cmd[4096];
    snprintf(trace, sizeof(trace), "%s/t.json", dir);
    snprintf(name_out, sizeof(name_out), "%s/name.bin", dir);
    FILE *f = fopen(trace, "w");
    CU_ASSERT_FATAL(f != NULL);
    CU_ASSERT_EQUAL(write_sample(f), 0);
    CU_ASSERT_EQUAL(fclose(f), 0);

    int len = snprintf(cmd, sizeof(cmd), "python3 -c '%s' %s %s", PY, trace, name_out);
    CU_ASSERT_FATAL(len > 0 && (size_t)len < sizeof(cmd));
    int st = system(cmd);
    CU_ASSERT(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);

    /* Escaping round-trips: the name Python decoded is byte for byte the original. */
    char back[128];
    CU_ASSERT_EQUAL(slurp(name_out, back, sizeof(back)), (long)strlen(TRICKY));
    CU_ASSERT(memcmp(back, TRICKY, sizeof(TRICKY)) == 0);

    /* Exact text, worked by hand: 1.5e-6 s = 1.500 us, 2.25e-6 s = 2.250 us; the
     * integer 1048576 is exact under %.15g; the tricky name escaped as the header says. */
    static char text[8192];
    CU_ASSERT_FATAL(slurp(trace, text, sizeof(text)) > 0);
    CU_ASSERT(strncmp(text, "{\"traceEvents\":[\n", 17) == 0);
    CU_ASSERT(strstr(text, "{\"ph\":\"X\",\"pid\":0,\"tid\":0,\"cat\":\"compute\",\"name\":\"F0\","
                           "\"ts\":1.500,\"dur\":2.250,"
                           "\"args\":{\"bytes\":1048576,\"op\":\"dispatch\"}},\n") != NULL);
    CU_ASSERT(strstr(text, "\"name\":\"a\\\"b\\\\c/\\u000a\\u0009\\u0001\\u001f "
                           "\xc3\xa9 \xe2\x9c\x93\"") != NULL);
    /* 1 ms = 1000.000 us; 0.5 ms = 500.000 us. */
    CU_ASSERT(strstr(text, "\"ts\":1000.000,\"dur\":500.000}") != NULL);
    /* The abutting pair: A ends where B starts (0.001 + 0.001 = 0.002 us); -1.5 us. */
    CU_ASSERT(strstr(text, "\"name\":\"A\",\"ts\":0.001,\"dur\":0.001}") != NULL);
    CU_ASSERT(strstr(text, "\"name\":\"B\",\"ts\":0.002,\"dur\":0.001}") != NULL);
    CU_ASSERT(strstr(text, "\"name\":\"neg\",\"ts\":-1.500,\"dur\":0.500}") != NULL);
    CU_ASSERT(strstr(text, "{\"ph\":\"M\",\"pid\":0,\"tid\":1,\"name\":\"thread_sort_index\","
                           "\"args\":{\"sort_index\":5}}") != NULL);
    CU_ASSERT(strstr(text, "{\"ph\":\"C\",\"pid\":0,\"name\":\"link util\",\"ts\":1.000,"
                           "\"args\":{\"nvl_tx\":0.5,\"nic_tx\":0.25}}") != NULL);
    /* Numbers never in exponent form: 1.5e-5 and 1e20 in fixed notation. */
    CU_ASSERT(strstr(text, "\"args\":{\"small\":0.000015,\"big\":100000000000000000000}") != NULL);
    /* The last event has no trailing comma before the closing text. */
    size_t n = strlen(text);
    const char *tail = "}\n],\n\"displayTimeUnit\":\"ms\"}\n";
    CU_ASSERT(n > strlen(tail) && strcmp(text + n - strlen(tail), tail) == 0);

    remove(trace);
    remove(name_out);
    rmdir(dir);
}

/* Same calls, same bytes. */
static void test_deterministic(void)
{
    char *buf[2] = { NULL, NULL };
    size_t len[2] = { 0, 0 };
    for (int i = 0; i < 2; i++) {
        FILE *f = open_memstream(&buf[i], &len[i]);
        CU_ASSERT_FATAL(f != NULL);
        CU_ASSERT_EQUAL(write_sample(f), 0);
        fclose(f);
    }
    CU_ASSERT(len[0] > 0 && len[0] == len[1]);
    CU_ASSERT(memcmp(buf[0], buf[1], len[0]) == 0);
    free(buf[0]);
    free(buf[1]);
}

/* An empty trace is valid too: {"traceEvents":[\n\n],...}. A full device (/dev/full:
 * every write fails with ENOSPC) makes close report -EIO. */
static void test_empty_and_io_error(void)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CU_ASSERT_FATAL(f != NULL);
    struct chrome *c;
    CU_ASSERT_FATAL(chrome_open(&c, f) == 0);
    CU_ASSERT_EQUAL(chrome_close(c), 0);
    fclose(f);
    CU_ASSERT_STRING_EQUAL(buf, "{\"traceEvents\":[\n\n],\n\"displayTimeUnit\":\"ms\"}\n");
    free(buf);
    CU_ASSERT_EQUAL(chrome_close(NULL), 0);
    CU_ASSERT_EQUAL(chrome_open(&c, NULL), -EINVAL);

    f = fopen("/dev/full", "w");
    if (!f) {
        printf("skipped: no /dev/full ");
        return;
    }
    CU_ASSERT_FATAL(chrome_open(&c, f) == 0);  /* buffered: the error shows at flush */
    CU_ASSERT_EQUAL(chrome_process_name(c, 0, "gpu0"), 0);
    CU_ASSERT_EQUAL(chrome_close(c), -EIO);
    fclose(f);
}

int main(void)
{
    static const struct cu_test tests[] = {
        { "valid JSON, counts, escaping", test_json_valid },
        { "byte-deterministic", test_deterministic },
        { "empty trace, I/O error", test_empty_and_io_error },
    };
    return cu_run("chrome", NULL, NULL, tests, sizeof(tests) / sizeof(tests[0]));
}
