/* core.h - internal to the C core: what its .c files share, and the calls
 * the C test programs make beyond the public pysock.h.
 *
 * Who calls whom (no cycle): reaper.c -> engine.c -> op.c -> drain.c, and
 * reaper.c -> op.c.  The helpers below are inline, so no .c file calls
 * into another for them.
 */
#ifndef PYSOCK_CORE_H
#define PYSOCK_CORE_H

#include <stdlib.h>

#include "pysock.h"
#include "sys.h"

/* An index that names nothing: not in a list, no slot. */
#define PS_NONE ((size_t)-1)

/* ------------------------------------------------------------- errors
 * Every ps_error the core fills is filled here.  Each returns PS_FAIL. */

/* The OS said no: its error, the portable code for it, the step. */
static inline int ps_fail_os(ps_error *err, int oserr, int step)
{
    err->code = ps_sys_portable(oserr);
    err->oserr = oserr;
    err->step = step;
    return PS_FAIL;
}

/* The same with the calling thread's last OS error (errno, WSA). */
static inline int ps_fail_last(ps_error *err, int step)
{
    return ps_fail_os(err, ps_sys_error(), step);
}

/* The core said no, without an OS error: a bad argument (PS_EINVAL,
 * PS_STEP_ARGS), out of memory (PS_ENOMEM, PS_STEP_ALLOC), not a stream
 * (PS_ENOTSTREAM, PS_STEP_SOCKTYPE). */
static inline int ps_fail(ps_error *err, int code, int step)
{
    err->code = code;
    err->oserr = 0;
    err->step = step;
    return PS_FAIL;
}

/* ------------------------------------------------------ index arrays */

/* Grow *a to n entries (realloc; the first ones are kept).  0, or -1 out
 * of memory, *a then unchanged. */
static inline int ps_grow_indices(size_t **a, size_t n)
{
    size_t *p = realloc(*a, n * sizeof *p);
    if (p == NULL)
        return -1;
    *a = p;
    return 0;
}

/* --------------------------------------------------------------- op.c */

/* Graceful (abortive 0) or Abortive (1) close in one call: PS_DONE or
 * PS_FAIL, res filled; ps_close_fast is the same with a packed result. */
int ps_close_now(intptr_t fd, int abortive, ps_result *res);
/* Progress of a pending op, reading into buf (len bytes: an engine's own
 * discard buffer).  wait: the op's first read may block (see drain.c).
 * Returns the phase, or PS_DRAIN_INTR if a signal interrupted that wait. */
enum { PS_DRAIN_INTR = -2 };
int ps_op_step(ps_op *op, char *buf, size_t len, int wait);
/* The deadline, idle timer or byte cap ended it (`reason`). */
void ps_op_expire(ps_op *op, int reason);
/* Free the handle of an op in PS_CLOSING; returns the phase. */
int ps_op_finish(ps_op *op);

/* ------------------------------------------------------------ drain.c */

int ps_drain_burst(ps_op *op, char *buf, size_t len, int wait);

/* ----------------------------------------------------------- engine.c */

/* One op: wait in slices of at most slice_ms (returns PS_PENDING on a
 * signal or at the end of a slice, so the caller can run signal handlers),
 * then ps_op_finish frees the handle. */
int ps_op_wait(ps_op *op, int slice_ms);
/* Many ops with one wait, until one of them leaves PS_PENDING, a signal
 * arrives or slice_ms pass.  Returns the number of ops still PS_PENDING
 * (ops ready to be freed are left in PS_CLOSING for ps_ops_finish), or
 * PS_FAIL with err filled if the wait itself failed. */
int ps_ops_wait(ps_op *ops, size_t n, int slice_ms, ps_error *err);
/* Frees every op in PS_CLOSING, writing the index of each op it freed to
 * freed[] (room for n); returns how many. */
size_t ps_ops_finish(ps_op *ops, size_t n, size_t *freed);
/* For a long-lived engine (a reaper): ops[i], started with ps_op_start, is
 * begun by the next run (instead of all ops at the first run).  A wake
 * socket, when readable, makes run return at once so the caller can add
 * ops; the caller empties it.  With a wake socket, run waits out its slice
 * even when nothing is pending. */
int ps_engine_add(ps_engine *e, size_t i, ps_error *err);
int ps_engine_set_wake(ps_engine *e, intptr_t fd, ps_error *err);
size_t ps_engine_pending(const ps_engine *e);
/* End pending op i now with `reason` (PS_REASON_TIMEOUT at a reaper's own
 * deadline, PS_REASON_RECLAIMED to make room): RST, and its handle is
 * freed before this returns.  From the thread that runs the engine. */
int ps_engine_abort(ps_engine *e, size_t i, int reason, ps_error *err);
/* 1 if this engine waits with epoll, 0 with poll/WSAPoll. */
int ps_engine_uses_epoll(const ps_engine *e);
/* Grow a long-lived engine to n ops over `ops` (the caller's array, moved
 * by realloc, its first ops unchanged): indices stay valid, so the
 * readiness set is kept as it is.  PS_FAIL (PS_ENOMEM) leaves it unchanged
 * but for the ops pointer. */
int ps_engine_grow(ps_engine *e, ps_op *ops, size_t n, ps_error *err);

/* ----------------------------------------------------------- reaper.c */

/* Abort the n oldest closes in flight (RST, PS_REASON_RECLAIMED) and
 * return how many, once their handles are freed. */
size_t ps_reaper_reclaim(ps_reaper *r, size_t n);
/* Change the cap (0 = none); a lower cap is applied at once. */
void ps_reaper_set_max_in_flight(ps_reaper *r, size_t max_in_flight);

#endif
