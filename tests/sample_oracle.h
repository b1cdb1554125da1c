/* sample_oracle.h: the exact law of successive weighted draws without replacement, for
 * the routing and gating suites (the law their fast draws and Gumbel-top-k scores share). */
#ifndef SAMPLE_ORACLE_H
#define SAMPLE_ORACLE_H

#include <CUnit/Basic.h>
#include <stdlib.h>
#include <string.h>

/* Successive draws without replacement by exact enumeration over subsets:
 * P({}) = 1 and P(S + e) += P(S) p_e / (1 - p(S)); then P(e among the K) is the sum of
 * P(S) over |S| = K, e in S. O(2^E E): E <= 12 or so. */
static inline void inclusion_oracle(const double *p, int experts, int k, double *incl)
{
    size_t n = (size_t)1 << experts;
    double *prob = calloc(n, sizeof(*prob));

    CU_ASSERT_PTR_NOT_NULL_FATAL(prob);
    prob[0] = 1;
    memset(incl, 0, (size_t)experts * sizeof(*incl));
    for (size_t set = 0; set < n; set++) {
        double mass = 0;
        int size = 0;
        for (size_t b = set; b; b &= b - 1)
            size++;
        if (prob[set] == 0)
            continue;
        if (size == k) {
            for (int e = 0; e < experts; e++)
                if (set >> e & 1)
                    incl[e] += prob[set];
            continue;
        }
        for (int e = 0; e < experts; e++)
            if (set >> e & 1)
                mass += p[e];
        for (int e = 0; e < experts; e++)
            if (!(set >> e & 1))
                prob[set | (size_t)1 << e] += prob[set] * p[e] / (1 - mass);
    }
    free(prob);
}

#endif
