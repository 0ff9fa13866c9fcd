/* drain.c - the drain loop, the one hot loop of pysock.
 *
 * Read and discard until the socket would block: on Linux recv(MSG_TRUNC)
 * discards in the kernel without copying, elsewhere into a 64 KiB buffer.
 * No allocation, no clock read: the waiting (poll, deadlines, idle timer)
 * is engine.c's, one clock read per wait.
 *
 * The discard buffer is the caller's (one per engine, engine.c): the kernel
 * writes into it wherever recv copies (everywhere but a Linux TCP socket
 * with MSG_TRUNC), so a buffer shared between threads - the reaper's
 * thread and Python threads draining at once - would be a data race.
 */
#include "core.h"

/* Reads per burst: a peer that floods faster than we discard must not keep
 * the loop from its deadlines (the level-triggered wait reports the socket
 * again at once). */
#define PS_BURST_CALLS 64

/* 0: would block, the wait timed out, or the budget is spent; 1: over
 * (res.reason is eof, reset or max_bytes); PS_DRAIN_INTR: a signal
 * interrupted the first read, when it waited.  wait: the first read blocks
 * (a blocking socket, its SO_RCVTIMEO bounding the wait: engine.c). */
int ps_drain_burst(ps_op *op, char *buf, size_t len, int wait)
{
    ps_sock s = (ps_sock)op->fd;
    int calls;
    for (calls = 0;; calls++) {
        size_t want = len;
        long n;
        int e;
        if (op->max_bytes) {
            uint64_t left = op->max_bytes - op->res.drained;
            if (left == 0) {
                op->res.reason = PS_REASON_MAX_BYTES;
                return 1;
            }
            if (left < want)
                want = (size_t)left;
        }
        if (calls == PS_BURST_CALLS)
            return 0;
        n = wait && calls == 0 ? ps_sys_recv_discard_wait(s, buf, want)
                               : ps_sys_recv_discard(s, buf, want);
        if (n > 0) {
            op->res.drained += (uint64_t)n;
            op->got_data = 1;
            /* A short read took all that was queued: wait rather than spend
             * a recv on EAGAIN.  Every readiness set here is level-triggered,
             * so a FIN queued behind the data still wakes the wait. */
            if ((size_t)n < want)
                return 0;
            continue;
        }
        if (n == 0) {
            op->res.peer_eof = 1;
            op->res.reason = PS_REASON_EOF;
            return 1;
        }
        e = ps_sys_error();
        if (e == PS_OS_EWOULDBLOCK || e == PS_OS_EAGAIN)
            return 0;
        if (e == PS_OS_EINTR) {
            if (wait && calls == 0)
                return PS_DRAIN_INTR; /* back to the caller's handlers */
            continue;
        }
        if (e == PS_OS_ENOTCONN && op->res.drained == 0 &&
            op->kind != PS_DRAIN_ONLY) {
            /* Never connected: a listener, whose shutdown(send) succeeded
             * (Linux), or a connect the shutdown cancelled. */
            op->res.reason = PS_REASON_NOT_CONNECTED;
            return 1;
        }
        /* Any other receive error is the connection failing (RST,
         * keepalive timeout, unreachable): it ends like a reset. */
        op->res.reason = PS_REASON_RESET;
        (void)ps_fail_os(&op->res.err, e, PS_STEP_RECV);
        return 1;
    }
}
