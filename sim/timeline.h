/* timeline.h: a run as a Chrome Trace Event JSON timeline (Perfetto, chrome://tracing).
 * One process per GPU (pid = GPU id, named "gpu N (node n)"), plus one "fabric" process
 * for leaf uplinks when the fabric has leaves. In each GPU process:
 *   - a "phase" thread with one slice per collective (dispatch, combine, ...);
 *   - async slices "send" (on the source) and "recv" (on the destination), one per flow,
 *     from when its data starts flowing to when its last byte arrives; args: dst (on
 *     "send") or src (on "recv"), the peer's GPU id, and bytes;
 *   - counter tracks "nvl_tx", "nvl_rx", "nic_tx", "nic_rx": the link's total rate in GB/s.
 * Needs each phase run with series = true. */
#ifndef MOESIM_TIMELINE_H
#define MOESIM_TIMELINE_H

#include <stdio.h>

#include "report.h"

int timeline_write(FILE *f, const struct report *r);   /* 0, -EINVAL (no series), -EIO, -ENOMEM */

#endif
