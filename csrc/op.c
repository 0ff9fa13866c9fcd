/* op.c - one connection's close, by policy: the state machine of an op
 * (ps_op_start, ps_op_step, ps_op_finish), the one-call closes (Graceful,
 * Abortive), shutdown and the SO_LINGER option, and ps_init.  The waiting
 * is engine.c's; the reading, drain.c's.
 *
 * Close discipline (after libuv): check that the handle is a socket before
 * anything else, so a descriptor that is not one is never closed; never
 * retry close (after EINTR the descriptor is gone on Linux); ignore EINVAL
 * from SO_LINGER on a socket already shut down (macOS, Solaris).
 */
#include <string.h>

#include "core.h"

int ps_init(void) { return ps_sys_init(); }

int ps_drain_zero_copy(void) { return PS_SYS_ZERO_COPY; }

int ps_set_linger(intptr_t fd, int enabled, int seconds, ps_error *err)
{
    memset(err, 0, sizeof *err);
    if (seconds < 0 || seconds > 65535)
        return ps_fail(err, PS_EINVAL, PS_STEP_ARGS);
    if (!ps_sys_handle_ok(fd) ||
        ps_sys_set_linger((ps_sock)fd, enabled, seconds) != 0)
        return ps_fail_last(err, PS_STEP_SETLINGER);
    return PS_DONE;
}

int ps_get_linger(intptr_t fd, int *enabled, int *seconds, ps_error *err)
{
    memset(err, 0, sizeof *err);
    if (!ps_sys_handle_ok(fd) ||
        ps_sys_get_linger((ps_sock)fd, enabled, seconds) != 0)
        return ps_fail_last(err, PS_STEP_GETLINGER);
    return PS_DONE;
}

int ps_shutdown(intptr_t fd, int how, ps_error *err)
{
    int type;
    memset(err, 0, sizeof *err);
    if (how < PS_SHUT_RECEIVE || how > PS_SHUT_BOTH)
        return ps_fail(err, PS_EINVAL, PS_STEP_ARGS);
    if (!ps_sys_handle_ok(fd) || ps_sys_socktype((ps_sock)fd, &type) != 0)
        return ps_fail_last(err, PS_STEP_SOCKTYPE);
    if (ps_sys_shutdown((ps_sock)fd, how) != 0)
        return ps_fail_last(err, PS_STEP_SHUTDOWN);
    return PS_DONE;
}

/* How release() leaves SO_LINGER before close. */
enum { LINGER_OFF, LINGER_ABORT, LINGER_AS_IS };

/* Free the handle: set SO_LINGER (the first call, so a descriptor that is
 * not a socket fails here and is never closed), record what the peer will
 * see, close.  `fin_sent`: shutdown(send) was done, so the FIN counts as
 * unacked. */
static int release(ps_sock s, ps_result *res, int linger, int fin_sent,
                   int tcp, double start)
{
    unsigned long n = 0;
    int e, input = 1, unacked = 1;

    if (linger != LINGER_AS_IS &&
        ps_sys_set_linger(s, linger == LINGER_ABORT, 0) != 0) {
        e = ps_sys_error();
        if (e != PS_OS_EINVAL) { /* EINVAL: already shut down (macOS) */
            return ps_fail_os(&res->err, e, PS_STEP_SETLINGER);
        }
    }
    /* A Graceful close of a TCP socket: one call says which of the two
     * questions below need asking (both queues empty, the common case: one
     * system call where there were two). */
    if (tcp && linger == LINGER_OFF && !fin_sent &&
        ps_sys_tcp_queues(s, &input, &unacked) == 0 && !unacked)
        res->acked = 1;
    /* After the peer's FIN was read (recv said 0) the receive queue is
     * empty, and stays so: nothing can follow a FIN.  So no FIONREAD. */
    if (linger == LINGER_ABORT)
        res->how = PS_HOW_ABORTIVE;
    else if (res->how == PS_HOW_GRACEFUL && PS_SYS_UNREAD_INPUT_RESETS &&
             !res->peer_eof && input && ps_sys_pending_input(s, &n) == 0 &&
             n > 0)
        res->how = PS_HOW_ABORTIVE; /* the OS answers with RST: say so */
    /* A Linger op that saw everything acknowledged after shutdown(send)
     * need not ask again: with nothing more to send, 0 unacked stays 0. */
    if (unacked && !(fin_sent && res->acked == 1))
        res->acked = ps_sys_unacked(s, fin_sent, &n) != 0 ? -1 : n == 0;
    if (ps_sys_close(s) != 0) {
        e = ps_sys_error();
        if (e == PS_OS_EBADF || e == PS_OS_ENOTSOCK ||
            e == PS_OS_EWOULDBLOCK) { /* the handle is still open */
            return ps_fail_os(&res->err, e, PS_STEP_CLOSE);
        }
        /* EINTR, EINPROGRESS, ECONNRESET...: the handle is gone; never
         * close again. */
    }
    res->closed = 1;
    res->elapsed = ps_sys_now() - start;
    return PS_DONE;
}

static int close_now(intptr_t fd, int abortive, int tcp, ps_result *res)
{
    double start = ps_sys_now();
    memset(res, 0, sizeof *res);
    res->reason = PS_REASON_CLOSED;
    if (!ps_sys_handle_ok(fd))
        return ps_fail_last(&res->err, PS_STEP_SETLINGER);
    return release((ps_sock)fd, res, abortive ? LINGER_ABORT : LINGER_OFF, 0,
                   tcp, start);
}

int ps_close_now(intptr_t fd, int abortive, ps_result *res)
{
    return close_now(fd, abortive, 0, res);
}

int ps_close_fast(intptr_t fd, int flags, ps_result *res)
{
    if (close_now(fd, flags & PS_CLOSE_ABORTIVE, (flags & PS_CLOSE_TCP) != 0,
                  res) != PS_DONE)
        return PS_FAIL;
    return res->how | (res->acked + 1) << 1;
}

/* check_type: ask SO_TYPE (is it an open socket? a stream?).  Without it
 * the caller vouches for a stream socket, and the op's first system call on
 * the handle fails on one that is not an open socket, before anything is
 * shut down or closed: getpeername (ioctlsocket first on Windows) in
 * setup(), setsockopt(SO_LINGER) in release() for Graceful and Abortive. */
static int start(ps_op *op, intptr_t fd, int kind, double timeout,
                 double idle, uint64_t max_bytes, int check_type)
{
    int type = 0;

    memset(op, 0, sizeof *op);
    op->fd = fd;
    op->kind = kind;
    op->start = ps_sys_now();
    op->res.reason = PS_REASON_CLOSED;
    op->res.acked = -1;
    op->backoff_ms = 1;
    op->phase = PS_FAIL;
    if (kind < PS_GRACEFUL || kind > PS_DRAIN_ONLY)
        return ps_fail(&op->res.err, PS_EINVAL, PS_STEP_ARGS);
    if (kind >= PS_LINGER) {
        /* !(x > 0) is also true for NaN. */
        if (!(timeout > 0) || timeout > 1e9 || idle < 0 || idle != idle ||
            idle > 1e9)
            return ps_fail(&op->res.err, PS_EINVAL, PS_STEP_ARGS);
        op->deadline = op->start + timeout;
        op->idle = idle;
        op->idle_deadline = op->start + idle;
        op->max_bytes = max_bytes;
    }
    if (!ps_sys_handle_ok(fd))
        return ps_fail_last(&op->res.err, PS_STEP_SOCKTYPE);
    if (check_type) {
        if (ps_sys_socktype((ps_sock)fd, &type) != 0)
            return ps_fail_last(&op->res.err, PS_STEP_SOCKTYPE);
        if (kind >= PS_LINGER && !ps_sys_is_stream(type))
            return ps_fail(&op->res.err, PS_ENOTSTREAM, PS_STEP_SOCKTYPE);
    }
    if (kind == PS_ABORTIVE)
        op->res.how = PS_HOW_ABORTIVE;
    op->phase = kind <= PS_ABORTIVE ? PS_CLOSING : PS_PENDING;
    return op->phase;
}

int ps_op_start(ps_op *op, intptr_t fd, int kind, double timeout,
                double idle, uint64_t max_bytes)
{
    return start(op, fd, kind, timeout, idle, max_bytes, 1);
}

int ps_op_start_stream(ps_op *op, intptr_t fd, int kind, double timeout,
                       double idle, uint64_t max_bytes)
{
    return start(op, fd, kind, timeout, idle, max_bytes, 0);
}

/* The first step of a Linger or Drain: is it connected? shutdown(send).
 * A connection that ended before the close began is told apart: reset by
 * the peer (also after its FIN), never connected (or a listener), or closed
 * by both sides with input still to read.  For Linger and Drain the
 * shutdown is the connected check (one system call where getpeername and
 * shutdown were two): it fails with ENOTCONN on a socket that is not
 * connected - never connected, reset, closed by both sides - and does
 * nothing else there (Linux, a listener: it succeeds, and the first recv
 * says ENOTCONN: drain.c).  drain() makes no shutdown: getpeername. */
static int setup(ps_op *op)
{
    ps_sock s = (ps_sock)op->fd;
    int pending_error = 0, e, c;

    op->setup = 1;
    if (ps_sys_nonblocking(s) != 0)
        return ps_fail_last(&op->res.err, PS_STEP_IOCTL);
    if (op->kind != PS_DRAIN_ONLY) {
        if (ps_sys_shutdown(s, PS_SHUT_SEND) == 0)
            return PS_PENDING;
        e = ps_sys_error();
        if (ps_sys_is_reset(e)) {
            op->res.reason = PS_REASON_RESET;
            op->res.how = PS_HOW_ABORTIVE;
            return PS_CLOSING;
        }
        if (e != PS_OS_ENOTCONN)
            return ps_fail_os(&op->res.err, e, PS_STEP_SHUTDOWN);
        pending_error = ps_sys_pending_error(s);
    } else {
        c = ps_sys_connected(s, &pending_error);
        if (c < 0)
            return ps_fail_last(&op->res.err, PS_STEP_SHUTDOWN);
        if (c > 0)
            return PS_PENDING;
    }
    switch (ps_sys_ended(s, pending_error)) {
    case PS_ENDED_RESET:
        op->res.reason = PS_REASON_RESET;
        op->res.how = PS_HOW_ABORTIVE;
        return op->kind == PS_DRAIN_ONLY ? PS_DONE : PS_CLOSING;
    case PS_ENDED_CLOSED:
        return PS_PENDING; /* read what is left, then EOF */
    default:
        if (op->kind == PS_DRAIN_ONLY)
            return ps_fail_os(&op->res.err, PS_OS_ENOTCONN, PS_STEP_SHUTDOWN);
        op->res.reason = PS_REASON_NOT_CONNECTED;
        return PS_CLOSING;
    }
}

/* An op that failed leaves the socket open: on Windows back in blocking mode
 * (Winsock cannot report the mode it had; the Python layer re-applies a
 * socket object's own timeout). */
static int failed(ps_op *op)
{
    if (op->setup)
        (void)ps_sys_blocking((ps_sock)op->fd);
    return op->phase = PS_FAIL;
}

/* A drain-only op is over: the socket stays open, and on Windows back in
 * blocking mode (Winsock cannot report the mode it had; the Python layer
 * re-applies a socket object's own timeout). */
static int drain_only_done(ps_op *op)
{
    (void)ps_sys_blocking((ps_sock)op->fd);
    op->res.elapsed = ps_sys_now() - op->start;
    return op->phase = PS_DONE;
}

/* The deadline, idle timer or byte cap ended it: Drain and Linger abort. */
void ps_op_expire(ps_op *op, int reason)
{
    op->res.reason = reason;
    if (op->kind == PS_DRAIN_ONLY) {
        drain_only_done(op);
        return;
    }
    op->res.how = PS_HOW_ABORTIVE;
    op->phase = PS_CLOSING;
}

/* Non-blocking progress (but for a wait the engine asks for); sets and
 * returns op->phase. */
int ps_op_step(ps_op *op, char *buf, size_t len, int wait)
{
    int r;
    unsigned long n = 0;

    if (op->phase != PS_PENDING)
        return op->phase;
    if (!op->setup) {
        r = setup(op);
        if (r == PS_DONE)
            return drain_only_done(op);
        if (r == PS_FAIL)
            return failed(op);
        if (r != PS_PENDING)
            return op->phase = r;
    }
    r = op->res.peer_eof ? 0 : ps_drain_burst(op, buf, len, wait);
    if (r == PS_DRAIN_INTR)
        return PS_DRAIN_INTR;
    if (r == 1 && (op->kind != PS_LINGER || op->res.reason != PS_REASON_EOF)) {
        /* eof, reset or max_bytes: Drain is over */
        if (op->kind == PS_DRAIN_ONLY)
            return drain_only_done(op);
        if (op->res.reason != PS_REASON_EOF &&
            op->res.reason != PS_REASON_NOT_CONNECTED)
            op->res.how = PS_HOW_ABORTIVE;
        return op->phase = PS_CLOSING;
    }
    if (op->kind == PS_LINGER) {
        /* Done when our data and FIN are acknowledged. */
        op->res.reason = PS_REASON_CLOSED;
        if (ps_sys_unacked((ps_sock)op->fd, 1, &n) != 0) {
            /* The OS cannot tell: the kernel lingers at close instead. */
            op->res.acked = -1;
            return op->phase = PS_CLOSING;
        }
        if (n == 0) {
            op->res.acked = 1;
            return op->phase = PS_CLOSING;
        }
    }
    return PS_PENDING;
}

int ps_op_finish(ps_op *op)
{
    ps_sock s = (ps_sock)op->fd;
    int linger = LINGER_OFF;

    if (op->phase != PS_CLOSING)
        return op->phase;
    if (op->res.how == PS_HOW_ABORTIVE && op->res.reason != PS_REASON_RESET) {
        linger = LINGER_ABORT;
    } else if (op->kind == PS_LINGER && op->res.acked == -1 &&
               op->res.reason == PS_REASON_CLOSED) {
        /* No TCP info (old Windows): a blocking kernel linger for the whole
         * seconds left, so the close itself waits, never WSAEWOULDBLOCK. */
        double left = op->deadline - ps_sys_now();
        int secs = left <= 1 ? 1 : left >= 65535 ? 65535 : (int)(left + 0.999);
        if (ps_sys_blocking(s) == 0 && ps_sys_set_linger(s, 1, secs) == 0)
            linger = LINGER_AS_IS;
    }
    op->phase = release(s, &op->res, linger, op->setup, 0, op->start);
    return op->phase == PS_FAIL ? failed(op) : op->phase;
}
