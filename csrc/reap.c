/* reap.c - waiting on one or many closes at once.
 *
 * One readiness set (poll; WSAPoll on Windows) over every op still
 * pending, one clock read per wait: the wall time of closing N connections
 * is the slowest one's, not the sum.  ps_op_wait is the same loop with
 * N = 1.
 */
#include <math.h>
#include <stdlib.h>

#include "platform.h"

#define PS_STACK_FDS 64
#define PS_LINGER_MAX_BACKOFF_MS 16

int ps_ops_wait(ps_op *ops, size_t n, int slice_ms, ps_error *err)
{
    ps_pollfd stack_fds[PS_STACK_FDS];
    size_t stack_idx[PS_STACK_FDS];
    ps_pollfd *fds = stack_fds;
    size_t *idx = stack_idx;
    size_t i, m, pending = 0;
    double now, wake, slice_end = -1;
    int changed = 0, polled = 0, rc, ms;

    /* Ops not begun yet do their first non-blocking step now. */
    for (i = 0; i < n; i++) {
        if (ops[i].phase == PS_PENDING && !ops[i].setup &&
            ps_op_step(&ops[i]) != PS_PENDING)
            changed = 1;
    }
    if (n > PS_STACK_FDS) {
        fds = malloc(n * sizeof *fds);
        idx = malloc(n * sizeof *idx);
        if (fds == NULL || idx == NULL) {
            free(fds == stack_fds ? NULL : fds);
            free(idx == stack_idx ? NULL : idx);
            err->code = PS_ENOMEM;
            err->oserr = 0;
            err->step = PS_STEP_POLL;
            return PS_FAIL;
        }
    }
    for (;;) {
        now = ps_sys_now();
        if (slice_end < 0)
            slice_end = now + slice_ms / 1000.0;
        wake = slice_end;
        pending = m = 0;
        for (i = 0; i < n; i++) {
            ps_op *op = &ops[i];
            if (op->phase != PS_PENDING)
                continue;
            if (op->got_data) {
                op->got_data = 0;
                op->idle_deadline = now + op->idle;
            }
            if (now >= op->deadline) {
                ps_op_expire(op, PS_REASON_TIMEOUT);
                changed = 1;
                continue;
            }
            if (op->idle > 0 && now >= op->idle_deadline) {
                ps_op_expire(op, PS_REASON_IDLE);
                changed = 1;
                continue;
            }
            pending++;
            if (op->deadline < wake)
                wake = op->deadline;
            if (op->idle > 0 && op->idle_deadline < wake)
                wake = op->idle_deadline;
            if (op->kind == PS_LINGER &&
                now + op->backoff_ms / 1000.0 < wake)
                wake = now + op->backoff_ms / 1000.0;
            if (!op->res.peer_eof) {
                fds[m].fd = (ps_sock)op->fd;
                fds[m].events = PS_SYS_POLLIN;
                fds[m].revents = 0;
                idx[m++] = i;
            }
        }
        /* A slice of 0 still polls once, so ps_op_wait(op, 0) makes progress. */
        if (changed || pending == 0 || (polled && now >= slice_end))
            break;
        ms = (int)ceil((wake - now) * 1000.0);
        if (ms < 0)
            ms = 0;
        rc = m ? ps_sys_poll(fds, m, ms) : ps_sys_sleep(ms);
        polled = 1;
        if (rc < 0) {
            int e = ps_sys_error();
            if (e == PS_OS_EINTR)
                break; /* back to the caller, whose signal handlers run */
            ps_set_error(err, e, PS_STEP_POLL);
            pending = (size_t)-1;
            break;
        }
        for (i = 0; i < m && rc > 0; i++) {
            if (fds[i].revents && ps_op_step(&ops[idx[i]]) != PS_PENDING)
                changed = 1;
        }
        for (i = 0; i < n; i++) {
            ps_op *op = &ops[i];
            if (op->kind != PS_LINGER || op->phase != PS_PENDING)
                continue;
            if (ps_op_step(op) != PS_PENDING)
                changed = 1;
            else if (op->backoff_ms < PS_LINGER_MAX_BACKOFF_MS)
                op->backoff_ms *= 2;
        }
    }
    if (fds != stack_fds) {
        free(fds);
        free(idx);
    }
    if (pending == (size_t)-1)
        return PS_FAIL;
    /* Count again: the loop may have ended before its tally was final. */
    pending = 0;
    for (i = 0; i < n; i++)
        pending += ops[i].phase == PS_PENDING;
    return (int)pending;
}

int ps_op_wait(ps_op *op, int slice_ms)
{
    if (op->phase == PS_PENDING &&
        ps_ops_wait(op, 1, slice_ms, &op->res.err) == PS_FAIL)
        op->phase = PS_FAIL;
    return op->phase;
}

size_t ps_ops_finish(ps_op *ops, size_t n, size_t *freed)
{
    size_t i, k = 0;
    for (i = 0; i < n; i++) {
        if (ops[i].phase == PS_CLOSING && ps_op_finish(&ops[i]) == PS_DONE &&
            ops[i].res.closed)
            freed[k++] = i;
    }
    return k;
}
