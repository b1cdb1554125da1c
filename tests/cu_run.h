/* cu_run.h: the one main() every CUnit test program shares: one suite, run verbosely. */
#ifndef CU_RUN_H
#define CU_RUN_H

#include <CUnit/Basic.h>
#include <stddef.h>

struct cu_test {
    const char *name;
    CU_TestFunc fn;
};

/* Runs tests[0..n) in order in one suite; init and clean may be NULL. Returns nonzero
 * when any assertion failed, init or clean failed, or CUnit could not run, so main()
 * can `return cu_run(...)`. */
static inline int cu_run(const char *suite, CU_InitializeFunc init, CU_CleanupFunc clean,
                         const struct cu_test *tests, size_t n)
{
    int bad = 1;

    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite(suite, init, clean);
    for (size_t i = 0; s && i < n; i++)
        if (!CU_add_test(s, tests[i].name, tests[i].fn))
            s = NULL;
    if (s) {
        CU_basic_set_mode(CU_BRM_VERBOSE);
        bad = CU_basic_run_tests() != CUE_SUCCESS || CU_get_number_of_failures() != 0 ||
              CU_get_number_of_suites_failed() != 0;
    }
    CU_cleanup_registry();
    return bad;
}

#endif
