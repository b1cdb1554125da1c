/* cmd_calib.h: `moeprof calibrate`, under mpirun, after MPI_Init (the caller finalizes).
 *
 *   moeprof calibrate CONFIG... [--set section.key=value]... [--out FILE] [--reps N]
 *                     [--buffers hot|cold] [--backend cpu|cuda] [--seed N]
 * Measures the expert FFN against tokens per expert and the messages of each network
 * tier (calib.h), fits latency + bytes / bandwidth per tier (fit.h), prints the tables
 * and, with --out, writes FILE (the INI fragment) and FILE's name less ".ini" plus
 * ".csv" (the expert table) beside it (caltab.h).
 * argv[0] is "calibrate". Returns the exit status: 0 done, 2 bad input (one line from
 * rank 0; nothing written), 1 a runtime failure (one line from the failing rank; a
 * failure inside a collective aborts the job).
 */
#ifndef MOEPROF_CMD_CALIB_H
#define MOEPROF_CMD_CALIB_H

int cmd_calibrate(int argc, char **argv);

#endif
