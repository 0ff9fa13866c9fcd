/* drain.c - the drain loop, the one hot loop of pysock.
 *
 * Read and discard until the socket would block: on Linux recv(MSG_TRUNC)
 * discards in the kernel without copying, elsewhere into one 64 KiB buffer.
 * No allocation, no clock read: the waiting (poll, deadlines, idle timer)
 * is reap.c's, one clock read per wait.
 */
#include "platform.h"

/* Written by the kernel, never read: sharing it between threads is
 * harmless, and it keeps the loop free of allocation.  With MSG_TRUNC a TCP
 * recv writes nothing, so on Linux the buffer is large (untouched .bss pages
 * cost no memory) to discard a full receive buffer in few system calls; it
 * is still real memory because Linux ignores MSG_TRUNC on AF_UNIX streams
 * and copies. */
static char ps_discard[PS_SYS_ZERO_COPY ? 1024 * 1024 : 64 * 1024];
#define PS_DRAIN_CHUNK sizeof ps_discard

/* Reads per burst: a peer that floods faster than we discard must not keep
 * the loop from its deadlines (the level-triggered wait reports the socket
 * again at once). */
#define PS_BURST_CALLS 64

/* 0: would block (or the budget is spent); 1: over (res.reason is eof,
 * reset or max_bytes). */
int ps_drain_burst(ps_op *op)
{
    ps_sock s = (ps_sock)op->fd;
    int calls;
    for (calls = 0;; calls++) {
        size_t want = PS_DRAIN_CHUNK;
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
        n = ps_sys_recv_discard(s, ps_discard, want);
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
        if (e == PS_OS_EINTR)
            continue;
        /* Any other receive error is the connection failing (RST,
         * keepalive timeout, unreachable): it ends like a reset. */
        op->res.reason = PS_REASON_RESET;
        ps_set_error(&op->res.err, e, PS_STEP_RECV);
        return 1;
    }
}
