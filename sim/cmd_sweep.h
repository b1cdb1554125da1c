/* cmd_sweep.h: `moesim sweep`, the command (main.c dispatches to it). */
#ifndef MOESIM_CMD_SWEEP_H
#define MOESIM_CMD_SWEEP_H

/* argv[0] is "sweep". Exit status: 0 done, 1 runtime failure, 2 bad input. */
int cmd_sweep(int argc, char **argv);

#endif
