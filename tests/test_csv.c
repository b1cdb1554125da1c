/* test_csv.c: CUnit suite for sim/csv.c, the fields of every moesim CSV. Each expected
 * text is worked by hand from csv.h's rules: round to 12 significant digits, write them
 * in fixed notation without trailing zeros; |v| < 1e-12 is 0; non-finite is empty. */
#include "cu_run.h"
#include "csv.h"
#include "ini_text.h"

#include <CUnit/Basic.h>

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void expect(double v, const char *want)
{
    char buf[CSV_NUM_MAX];
    int n = csv_format(buf, sizeof(buf), v);
    CU_ASSERT_STRING_EQUAL(buf, want);
    CU_ASSERT_EQUAL(n, (int)strlen(want));
    if (strcmp(buf, want))
        fprintf(stderr, "\n  %.17g: got '%s', want '%s'\n", v, buf, want);
}

static void test_plain(void)
{
    expect(0.25, "0.25");
    expect(-2.5, "-2.5");
    expect(1500, "1500");
    expect(1, "1");
    expect(0.1, "0.1");                   /* not the binary 0.1000000000000000055... */
    expect(1.0 / 3, "0.333333333333");    /* 12 threes */
    expect(2.0 / 3, "0.666666666667");    /* ...6666|67 rounds up */
}

static void test_no_exponent(void)
{
    /* %g wrote 2.52924e+06; 12 digits of 2529240.518413 are 2529240.51841|3 */
    expect(2529240.518413, "2529240.51841");
    expect(2.52924e6, "2529240");
    expect(1e20, "100000000000000000000");
    expect(123456789012345.0, "123456789012000");   /* 12 digits, then zeros */
    expect(5e-7, "0.0000005");
    expect(1.25e-9, "0.00000000125");
    expect(1e-12, "0.000000000001");      /* CSV_ZERO itself is kept */
    expect(1.176705120e-03, "0.00117670512");
}

static void test_rounding_carry(void)
{
    /* 9.99999999999|96 rounds up to 10.0000000000: "10", not "9.99999999999" or "10." */
    expect(9.9999999999996, "10");
    expect(-0.099999999999996, "-0.1");
    expect(999999.9999999, "1000000");
}

static void test_zero(void)
{
    expect(0.0, "0");
    expect(-0.0, "0");                    /* no "-0" */
    expect(-1.6e-15, "0");                /* a difference of equal times */
    expect(9.9e-13, "0");
    expect(-9.9e-13, "0");
}

static void test_non_finite(void)
{
    expect(NAN, "");
    expect(INFINITY, "");
    expect(-INFINITY, "");
}

static void test_extremes(void)
{
    char buf[CSV_NUM_MAX];
    /* DBL_MAX = 1.7976931348623157e308: 12 digits 179769313486|23 then 297 zeros */
    int n = csv_format(buf, sizeof(buf), -DBL_MAX);
    CU_ASSERT_EQUAL(n, 310);
    CU_ASSERT_EQUAL(strncmp(buf, "-179769313486", 13), 0);
    CU_ASSERT_EQUAL(strspn(buf + 13, "0"), 297u);
    /* too small a buffer: -ENOSPC and an empty string, never a cut number */
    char small[4];
    CU_ASSERT_EQUAL(csv_format(small, sizeof(small), 12345), -ENOSPC);
    CU_ASSERT_STRING_EQUAL(small, "");
    CU_ASSERT_EQUAL(csv_format(small, sizeof(small), 0.5), 3);   /* "0.5" fits in 4 */
    CU_ASSERT_STRING_EQUAL(small, "0.5");
}

/* A row written to a memory stream. */
static void test_row(void)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    struct csv w;
    csv_begin(&w, f);
    csv_str(&w, "a,b");
    csv_str(&w, "say \"hi\"");
    csv_int(&w, -3);
    csv_u64(&w, 18446744073709551615ull);
    csv_num(&w, NAN);
    csv_num(&w, 0.5);
    CU_ASSERT_EQUAL(csv_end(&w), 0);
    csv_str(&w, "x");
    CU_ASSERT_EQUAL(csv_end(&w), 0);
    fclose(f);
    CU_ASSERT_STRING_EQUAL(text, "\"a,b\",\"say \"\"hi\"\"\",-3,18446744073709551615,,0.5\nx\n");
    free(text);
}

/* The identifying columns: those the file's own columns hold are not repeated. */
static void test_ident(void)
{
    static const char ini[] =
        "[cluster]\nname = c,1\nnodes = 2\ngpus_per_node = 4\nroute = pxn\n"
        "[model]\nname = m\nexperts = 16\ntop_k = 2\n"
        "[routing]\ndistribution = zipf\nzipf_s = 0.75\n";
    struct config c;
    CU_ASSERT_EQUAL_FATAL(ini_text_load(&c, ini, NULL, 0), 0);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    const char *cols = "pattern,route,gpus";
    csv_header(f, cols);
    struct csv w;
    csv_begin(&w, f);
    csv_str(&w, "moe");
    csv_str(&w, "pxn");
    csv_int(&w, 8);
    csv_ident(&w, cols, &c);
    csv_end(&w);
    /* a plain all-to-all has no model: its model fields are empty */
    c.traffic.pattern = PATTERN_ALLTOALL;
    csv_begin(&w, f);
    csv_ident(&w, "schedule", &c);
    csv_end(&w);
    fclose(f);
    CU_ASSERT_STRING_EQUAL(text,
        "pattern,route,gpus,model,cluster,experts,top_k,nodes,gpus_per_node,distribution,"
        "zipf_s,schedule\n"
        "moe,pxn,8,m,\"c,1\",16,2,2,4,zipf,0.75,none\n"
        ",\"c,1\",,,2,4,pxn,,\n");
    free(text);
}

int main(void)
{
    static const struct cu_test tests[] = {
        { "plain numbers", test_plain },
        { "fixed notation, never an exponent", test_no_exponent },
        { "rounding carries into a new digit", test_rounding_carry },
        { "near zero is 0", test_zero },
        { "non-finite is an empty field", test_non_finite },
        { "largest double; buffer too small", test_extremes },
        { "row: separators, quoting, integers", test_row },
        { "identifying columns", test_ident },
    };
    return cu_run("csv", NULL, NULL, tests, sizeof(tests) / sizeof(tests[0]));
}
