/* chrome.h: streaming writer of Chrome Trace Event JSON (the JSON Object Format),
 * which Perfetto (ui.perfetto.dev) and chrome://tracing open.
 *
 * Output: {"traceEvents":[ one event per line ],"displayTimeUnit":"ms"}. Events are
 * written as they are given, in that order (viewers sort by time). Format reference:
 * "Trace Event Format", Google, docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU
 *
 * Byte-deterministic: a time given in seconds is rounded to the nearest whole
 * nanosecond and written as microseconds with three decimals (1.500 for 1.5e-6 s). A
 * complete slice's start and end are rounded, and its duration written is the difference
 * of the two: slices that follow each other in seconds (t1 of one <= t0 of the next) never
 * overlap once written, as rounding start and duration apart would make them by 1 ns.
 * Other numbers are written with "%.15g" (integers exact up to 1e15), in fixed notation
 * where that would have an exponent (0.000015, not 1.5e-05). printf is assumed
 * to run in the "C" locale (the tools never call setlocale).
 * Strings (names, categories, keys, string args) must be UTF-8; '"', '\\' and bytes
 * below 0x20 are escaped (\" \\ \u00XX), other bytes are copied.
 *
 * Errors: functions return 0; -EINVAL for a NULL string, a non-finite time or number
 * (JSON has no NaN/Infinity: a trace never holds one), a time beyond 2^62 ns (146 years),
 * an end before its start, or an async id > 2^53 - 1 (viewers
 * read ids as JavaScript doubles); -EIO once the FILE has an error (see ferror).
 * Nothing is written for an event that fails with -EINVAL.
 */
#ifndef MOESIM_CHROME_H
#define MOESIM_CHROME_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct chrome;                                 /* opaque */

/* One entry of an "args" object: a number, or a string when str is not NULL. */
struct chrome_arg {
    const char *key;
    double num;
    const char *str;                           /* NULL: write num */
};

/* Start a trace on f (borrowed: the caller closes it, after chrome_close). Writes the
 * opening text. 0, -EINVAL, -ENOMEM, -EIO. */
int chrome_open(struct chrome **out, FILE *f);

/* Write the closing text, fflush f, free c. 0, or -EIO if f had an error at any time
 * (the trace is then incomplete). NULL is a no-op returning 0. */
int chrome_close(struct chrome *c);

/* Metadata ("M"): names a process (one per GPU/rank) or thread (one per stream or
 * link class), and orders the tracks (lower sort index first). */
int chrome_process_name(struct chrome *c, int pid, const char *name);
int chrome_process_sort(struct chrome *c, int pid, int sort_index);
int chrome_thread_name(struct chrome *c, int pid, int tid, const char *name);
int chrome_thread_sort(struct chrome *c, int pid, int tid, int sort_index);

/* Complete slice ("X") on thread (pid, tid) from t0_s to t1_s >= t0_s seconds (written
 * as "ts" and "dur", rounded as above); nargs entries of args (borrowed; args may be NULL
 * when nargs is 0) become its "args". */
int chrome_complete(struct chrome *c, int pid, int tid, const char *cat, const char *name,
                    double t0_s, double t1_s, const struct chrome_arg *args, size_t nargs);

/* Async slice: a "b"/"e" pair (nestable async, paired by pid, cat, name and id) from
 * t0_s to t1_s >= t0_s in process pid, not tied to a thread. Give each concurrent
 * slice its own id: slices of one name that overlap in time (flows sharing a link)
 * are then stacked as rows of one async track of the process. args go on "b". */
int chrome_async(struct chrome *c, int pid, const char *cat, const char *name, uint64_t id,
                 double t0_s, double t1_s, const struct chrome_arg *args, size_t nargs);

/* Counter ("C"): at t_s the counter `name` of process pid takes the values of the
 * nseries numeric entries of series (each one a line of the counter track). */
int chrome_counter(struct chrome *c, int pid, const char *name, double t_s,
                   const struct chrome_arg *series, size_t nseries);

#endif
