/* test_core.c - checks of pysock's C core over real loopback TCP.
 *
 * Single-threaded: the peer's socket lives in this process, and every wait
 * for something real (the peer reading, a reset arriving) is a poll loop
 * with a bound.  Each check prints "ok - name" or "not ok - name (why)";
 * the last line is "N passed, M failed" and the exit status is 1 if M > 0.
 *
 * Under Wine (detected at run time) its known deviations from Windows are
 * reported as "ok - name # expected Wine deviation", for exactly the checks
 * that observe them, and only in the form Wine shows (so they still fail on
 * real Windows, and under Wine if anything else goes wrong):
 *  - a reset reads as EOF (recv returns 0 instead of failing with
 *    WSAECONNRESET);
 *  - a lingering closesocket on a non-blocking socket blocks instead of
 *    failing with WSAEWOULDBLOCK;
 *  - setsockopt and shutdown on a handle that is not a socket fail with
 *    WSAEOPNOTSUPP, not WSAENOTSOCK (Wine 8 passes them to the handle's own
 *    driver as AFD ioctls, which a pipe rejects as unsupported; its
 *    getsockopt does answer WSAENOTSOCK).  Windows documents WSAENOTSOCK
 *    ("The descriptor is not a socket") for both calls.  The handle is still
 *    refused and never closed: only the code differs;
 *  - no SIO_TCP_INFO (WSAIoctl fails with WSAEOPNOTSUPP), so Linger takes
 *    the core's fallback for Windows before 10 1703: a blocking kernel
 *    linger at close, acked unknown, instead of ending at its own deadline.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define RESPONSE_BYTES (256u * 1024u)
#define REQUEST_BYTES (16u * 1024u)
#define BIG_BYTES (1024u * 1024u)

/* Zero until something writes where it should not: on Linux/gcc it lies
 * in .bss after the core's discard buffer (see big_drain). */
static unsigned char g_canary[256 * 1024];

/* ------------------------------------------------------------- reporting */

static const char *reason_name(int r)
{
    static const char *names[] = {"closed", "eof",   "timeout",      "idle",
                                  "max_bytes", "reset", "not_connected"};
    return r >= 0 && r < 7 ? names[r] : "?";
}

static const char *status_name(int s)
{
    return s == PS_DONE      ? "DONE"
         : s == PS_PENDING   ? "PENDING"
         : s == PS_CLOSING   ? "CLOSING"
         : s == PS_FAIL      ? "FAIL"
                             : "?";
}

/* ------------------------------------------------------- socket helpers */

static unsigned char pattern(size_t i) { return (unsigned char)(i % 251u); }

static void fill_pattern(char *buf, size_t len)
{
    size_t i;
    for (i = 0; i < len; i++)
        buf[i] = (char)pattern(i);
}

static long rd(ps_sock s, char *buf, size_t len)
{
    return (long)recv(s, buf, (int)len, 0);
}

static long wr(ps_sock s, const char *buf, size_t len)
{
    return (long)send(s, buf, (int)len, 0);
}

static int would_block(int e)
{
    return ps_sys_portable(e) == PS_EWOULDBLOCK ||
           ps_sys_portable(e) == PS_EINTR;
}

/* One bounded recv on a blocking socket: *n the result, *err the OS error
 * when *n < 0; *n = -2 if nothing arrived within ms. */
static void recv_once(ps_sock s, int ms, long *n, int *err)
{
    char buf[512];
    *err = 0;
    if (!wait_readable(s, ms)) {
        *n = -2;
        return;
    }
    *n = rd(s, buf, sizeof buf);
    if (*n < 0)
        *err = ps_sys_error();
}

static int pair_or_fail(const char *name, ps_sock *ours, ps_sock *peer)
{
    if (tcp_pair(ours, peer) == 0)
        return 1;
    check(name, 0, "could not make a loopback pair: error %d", ps_sys_error());
    return 0;
}

/* After the core says it freed a handle: is it really gone?  (Nothing is
 * opened in between, so the number cannot have been reused.) */
static int handle_gone(ps_sock s)
{
    int type;
    return ps_sys_socktype(s, &type) != 0;
}

static void close_if_open(ps_sock s)
{
    if (s != BAD_SOCK)
        ps_sys_close(s);
}

/* The reading side of a test: a non-blocking socket, everything received
 * is checked against pattern(). */
typedef struct {
    ps_sock s;
    size_t got;
    int eof;
    int err;         /* OS error that ended reading, 0 if none */
    long bad_at;     /* offset of the first byte off the pattern, -1 if none */
} reader;

static void reader_init(reader *r, ps_sock s)
{
    r->s = s;
    r->got = 0;
    r->eof = 0;
    r->err = 0;
    r->bad_at = -1;
    (void)tp_set_nonblocking(s, 1);
}

/* Read everything available now; 1 if anything happened. */
static int reader_pump(reader *r)
{
    static char buf[65536];
    int progress = 0;
    while (!r->eof && !r->err) {
        long n = rd(r->s, buf, sizeof buf), i;
        if (n > 0) {
            for (i = 0; i < n && r->bad_at < 0; i++)
                if ((unsigned char)buf[i] != pattern(r->got + (size_t)i))
                    r->bad_at = (long)(r->got + (size_t)i);
            r->got += (size_t)n;
            progress = 1;
        } else if (n == 0) {
            r->eof = 1;
            progress = 1;
        } else {
            int e = ps_sys_error();
            if (!would_block(e))
                r->err = e;
            else
                break;
            progress = 1;
        }
    }
    return progress;
}

/* Send len bytes of pattern() from a non-blocking socket, reading the
 * other end meanwhile (r may be NULL: then stop when the buffers are
 * full).  Returns the count sent. */
static size_t send_pattern(ps_sock s, size_t len, reader *r, double seconds)
{
    static char buf[65536];
    size_t sent = 0;
    double end = ps_sys_now() + seconds;
    int stalls = 0;
    while (sent < len && ps_sys_now() < end) {
        size_t chunk = len - sent, i;
        long n;
        if (chunk > sizeof buf)
            chunk = sizeof buf;
        for (i = 0; i < chunk; i++)
            buf[i] = (char)pattern(sent + i);
        n = wr(s, buf, chunk);
        if (n > 0) {
            sent += (size_t)n;
            stalls = 0;
            continue;
        }
        if (n < 0 && !would_block(ps_sys_error()))
            break;
        if (r != NULL) {
            if (!reader_pump(r))
                wait_writable(s, 10);
        } else {
            /* Full only if it stays full: loopback moves data on at once. */
            if (++stalls >= 3)
                break;
            wait_writable(s, 20);
        }
    }
    return sent;
}

/* Pump the reader until EOF or an error, for at most ms. */
static void reader_finish(reader *r, int ms)
{
    double end = ps_sys_now() + ms / 1000.0;
    while (!r->eof && !r->err && ps_sys_now() < end) {
        if (!reader_pump(r))
            (void)wait_readable(r->s, 10);
    }
}

/* Drive one op to the end of its waiting (not PS_PENDING) in slices of
 * slice_ms, for at most ms; pumping r meanwhile if given. */
static int op_run(ps_op *op, int slice_ms, int ms, reader *r)
{
    double end = ps_sys_now() + ms / 1000.0;
    int st = op->phase;
    while (st == PS_PENDING && ps_sys_now() < end) {
        if (r != NULL)
            reader_pump(r);
        st = ps_op_wait(op, slice_ms);
    }
    return st;
}

/* ------------------------------------------------------------ the checks */

static void test_error_mapping(void)
{
    static const struct {
        const char *name;
        int os, want;
    } map[] = {
        {"0", 0, PS_OK},
        {"EBADF", PS_OS_EBADF, PS_ENOTSOCK},
        {"ENOTSOCK", PS_OS_ENOTSOCK, PS_ENOTSOCK},
        {"ECONNRESET", PS_OS_ECONNRESET, PS_ECONNRESET},
        {"ECONNABORTED", PS_OS_ECONNABORTED, PS_ECONNABORTED},
        {"ENOTCONN", PS_OS_ENOTCONN, PS_ENOTCONN},
        {"EWOULDBLOCK", PS_OS_EWOULDBLOCK, PS_EWOULDBLOCK},
        {"EAGAIN", PS_OS_EAGAIN, PS_EWOULDBLOCK},
        {"EINTR", PS_OS_EINTR, PS_EINTR},
        {"ENETDOWN", PS_OS_ENETDOWN, PS_ENETDOWN},
        {"EINVAL", PS_OS_EINVAL, PS_EINVAL},
        {"ENOBUFS", PS_OS_ENOBUFS, PS_ENOMEM},
    };
    size_t i;
    char name[80];
    for (i = 0; i < sizeof map / sizeof map[0]; i++) {
        int got = ps_sys_portable(map[i].os);
        snprintf(name, sizeof name, "error mapping: %s -> %d", map[i].name,
                 map[i].want);
        check(name, got == map[i].want, "os %d mapped to %d", map[i].os, got);
    }
    /* An error the table does not know (EDOM on POSIX, a WSA code that is
     * no socket error's on Windows): PS_EOTHER, never PS_OK. */
    check("error mapping: unknown -> PS_EOTHER", ps_sys_portable(123456) == PS_EOTHER,
          "got %d", ps_sys_portable(123456));
}

static void test_linger_option(void)
{
    static const int secs[] = {0, 1, 65535};
    ps_sock s = socket(AF_INET, SOCK_STREAM, 0);
    ps_error err;
    size_t i;
    int en = -1, sec = -1, rc;
    char name[80];

    if (s == BAD_SOCK) {
        check("linger option", 0, "socket() failed: %d", ps_sys_error());
        return;
    }
    for (i = 0; i < sizeof secs / sizeof secs[0]; i++) {
        en = sec = -1;
        snprintf(name, sizeof name, "linger option round trip {1, %d}", secs[i]);
        rc = ps_set_linger((intptr_t)s, 1, secs[i], &err);
        if (rc != PS_DONE) {
            check(name, 0, "set: %s code %d oserr %d step %d", status_name(rc),
                  err.code, err.oserr, err.step);
            continue;
        }
        rc = ps_get_linger((intptr_t)s, &en, &sec, &err);
        check(name, rc == PS_DONE && en == 1 && sec == secs[i],
              "get: %s enabled %d seconds %d", status_name(rc), en, sec);
    }
    rc = ps_set_linger((intptr_t)s, 0, 0, &err);
    en = sec = -1;
    if (rc == PS_DONE)
        rc = ps_get_linger((intptr_t)s, &en, &sec, &err);
    check("linger option round trip {0, 0}", rc == PS_DONE && en == 0,
          "%s enabled %d seconds %d", status_name(rc), en, sec);

    /* Leave {1, 7} set: a rejected value must not change it. */
    (void)ps_set_linger((intptr_t)s, 1, 7, &err);
    rc = ps_set_linger((intptr_t)s, 1, 65536, &err);
    check("linger 65536 seconds rejected before any system call",
          rc == PS_FAIL && err.step == PS_STEP_ARGS && err.code == PS_EINVAL,
          "%s code %d step %d", status_name(rc), err.code, err.step);
    rc = ps_set_linger((intptr_t)s, 1, -1, &err);
    check("linger -1 seconds rejected before any system call",
          rc == PS_FAIL && err.step == PS_STEP_ARGS && err.code == PS_EINVAL,
          "%s code %d step %d", status_name(rc), err.code, err.step);
    en = sec = -1;
    rc = ps_get_linger((intptr_t)s, &en, &sec, &err);
    check("rejected linger values leave the option alone",
          rc == PS_DONE && en == 1 && sec == 7, "enabled %d seconds %d", en, sec);
    ps_sys_close(s);
}

static void test_shutdown_unconnected(void)
{
    ps_sock s = socket(AF_INET, SOCK_STREAM, 0);
    ps_error err;
    int rc;
    if (s == BAD_SOCK) {
        check("shutdown unconnected", 0, "socket() failed: %d", ps_sys_error());
        return;
    }
    rc = ps_shutdown((intptr_t)s, PS_SHUT_SEND, &err);
    check("ps_shutdown on an unconnected socket -> PS_ENOTCONN",
          rc == PS_FAIL && err.code == PS_ENOTCONN && err.step == PS_STEP_SHUTDOWN,
          "%s code %d oserr %d step %d", status_name(rc), err.code, err.oserr,
          err.step);
    rc = ps_shutdown((intptr_t)s, 3, &err);
    check("ps_shutdown with a bad direction -> PS_STEP_ARGS",
          rc == PS_FAIL && err.step == PS_STEP_ARGS,
          "%s code %d step %d", status_name(rc), err.code, err.step);
    ps_sys_close(s);
}

/* Wine's form of a refused non-socket: setsockopt failed with
 * WSAEOPNOTSUPP instead of WSAENOTSOCK, and nothing was closed. */
static int wine_nonsock(int rc, const ps_error *err, int closed)
{
    return rc == PS_FAIL && err->oserr == TP_OS_EOPNOTSUPP &&
           err->step == PS_STEP_SETLINGER && !closed;
}

static void test_not_a_socket(void)
{
    tp_nonsock n;
    ps_result res;
    ps_op op;
    ps_error err;
    int rc, en, sec;

    if (tp_nonsock_open(&n) != 0) {
        check("not a socket", 0, "could not make a non-socket descriptor");
        return;
    }
    rc = ps_close_now(n.as_fd, 0, &res);
    check_wine("graceful close of a non-socket -> PS_FAIL PS_ENOTSOCK",
               rc == PS_FAIL && res.err.code == PS_ENOTSOCK && !res.closed,
               wine_nonsock(rc, &res.err, res.closed),
               "%s code %d oserr %d closed %d", status_name(rc), res.err.code,
               res.err.oserr, res.closed);
    rc = ps_close_now(n.as_fd, 1, &res);
    check_wine("abortive close of a non-socket -> PS_FAIL PS_ENOTSOCK",
               rc == PS_FAIL && res.err.code == PS_ENOTSOCK && !res.closed,
               wine_nonsock(rc, &res.err, res.closed),
               "%s code %d oserr %d closed %d", status_name(rc), res.err.code,
               res.err.oserr, res.closed);
    rc = ps_op_start(&op, n.as_fd, PS_DRAIN, 1.0, 0, 0);
    check("Drain of a non-socket -> PS_FAIL PS_ENOTSOCK at SO_TYPE",
          rc == PS_FAIL && op.res.err.code == PS_ENOTSOCK &&
              op.res.err.step == PS_STEP_SOCKTYPE,
          "%s code %d oserr %d step %d", status_name(rc), op.res.err.code,
          op.res.err.oserr, op.res.err.step);
    rc = ps_op_start(&op, n.as_fd, PS_LINGER, 1.0, 0, 0);
    check("Linger of a non-socket -> PS_FAIL PS_ENOTSOCK",
          rc == PS_FAIL && op.res.err.code == PS_ENOTSOCK,
          "%s code %d oserr %d", status_name(rc), op.res.err.code,
          op.res.err.oserr);
    {
        /* Without SO_TYPE (the caller vouches for a stream socket): the
         * op's first system call refuses it, and nothing is closed. */
        static const int kinds[] = {PS_GRACEFUL, PS_ABORTIVE, PS_LINGER,
                                    PS_DRAIN, PS_DRAIN_ONLY};
        size_t k;
        for (k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
            rc = ps_op_start_stream(&op, n.as_fd, kinds[k], 1.0, 0, 0);
            if (rc == PS_PENDING)
                rc = op_run(&op, 50, 2000, NULL);
            if (rc == PS_CLOSING)
                rc = ps_op_finish(&op);
            check_wine("start_stream of a non-socket -> PS_FAIL PS_ENOTSOCK",
                       rc == PS_FAIL && op.res.err.code == PS_ENOTSOCK &&
                           !op.res.closed,
                       rc == PS_FAIL && !op.res.closed,
                       "kind %d: %s code %d oserr %d step %d closed %d",
                       kinds[k], status_name(rc), op.res.err.code,
                       op.res.err.oserr, op.res.err.step, op.res.closed);
        }
    }
    rc = ps_shutdown(n.as_fd, PS_SHUT_BOTH, &err);
    check("ps_shutdown of a non-socket -> PS_ENOTSOCK",
          rc == PS_FAIL && err.code == PS_ENOTSOCK, "%s code %d oserr %d",
          status_name(rc), err.code, err.oserr);
    rc = ps_set_linger(n.as_fd, 1, 0, &err);
    check_wine("ps_set_linger of a non-socket -> PS_ENOTSOCK",
               rc == PS_FAIL && err.code == PS_ENOTSOCK,
               wine_nonsock(rc, &err, 0), "%s code %d oserr %d",
               status_name(rc), err.code, err.oserr);
    rc = ps_get_linger(n.as_fd, &en, &sec, &err);
    check("ps_get_linger of a non-socket -> PS_ENOTSOCK",
          rc == PS_FAIL && err.code == PS_ENOTSOCK, "%s code %d oserr %d",
          status_name(rc), err.code, err.oserr);
    check("a non-socket descriptor is never closed", tp_nonsock_usable(&n),
          "the descriptor no longer works");
    tp_nonsock_close(&n);

    /* -1 is INVALID_SOCKET on Windows (WSAENOTSOCK), EBADF on POSIX. */
    rc = ps_close_now((intptr_t)-1, 0, &res);
    check("close of an invalid handle -> PS_FAIL PS_ENOTSOCK",
          rc == PS_FAIL && res.err.code == PS_ENOTSOCK && !res.closed,
          "%s code %d oserr %d", status_name(rc), res.err.code, res.err.oserr);
}

static void test_bad_args(void)
{
    ps_sock ours, peer, u;
    ps_op op;
    int rc;
    double zero = 0.0;
    const char *name = "bad timeouts and kinds rejected before any system call";

    if (!pair_or_fail(name, &ours, &peer))
        return;
    rc = ps_op_start(&op, (intptr_t)ours, PS_DRAIN, 0.0, 0, 0);
    check("Drain timeout 0 -> PS_STEP_ARGS", rc == PS_FAIL && op.res.err.step == PS_STEP_ARGS,
          "%s step %d", status_name(rc), op.res.err.step);
    rc = ps_op_start(&op, (intptr_t)ours, PS_LINGER, -1.0, 0, 0);
    check("Linger timeout -1 -> PS_STEP_ARGS", rc == PS_FAIL && op.res.err.step == PS_STEP_ARGS,
          "%s step %d", status_name(rc), op.res.err.step);
    rc = ps_op_start(&op, (intptr_t)ours, PS_DRAIN, zero / zero, 0, 0);
    check("Drain timeout NaN -> PS_STEP_ARGS", rc == PS_FAIL && op.res.err.step == PS_STEP_ARGS,
          "%s step %d", status_name(rc), op.res.err.step);
    rc = ps_op_start(&op, (intptr_t)ours, PS_DRAIN, 1.0, -1.0, 0);
    check("Drain idle -1 -> PS_STEP_ARGS", rc == PS_FAIL && op.res.err.step == PS_STEP_ARGS,
          "%s step %d", status_name(rc), op.res.err.step);
    rc = ps_op_start(&op, (intptr_t)ours, 99, 1.0, 0, 0);
    check("unknown kind -> PS_STEP_ARGS", rc == PS_FAIL && op.res.err.step == PS_STEP_ARGS,
          "%s step %d", status_name(rc), op.res.err.step);
    {
        long n;
        int e = 0;
        /* The socket is untouched: still connected both ways. */
        n = wr(ours, "ping", 4);
        if (n == 4)
            recv_once(peer, 2000, &n, &e);
        check("a rejected op leaves the socket untouched", n == 4,
              "recv %ld error %d", n, e);
    }
    ps_sys_close(ours);
    ps_sys_close(peer);

    u = socket(AF_INET, SOCK_DGRAM, 0);
    if (u == BAD_SOCK) {
        check("Linger on a datagram socket", 0, "socket() failed");
        return;
    }
    rc = ps_op_start(&op, (intptr_t)u, PS_LINGER, 1.0, 0, 0);
    check("Linger on a datagram socket -> PS_ENOTSTREAM",
          rc == PS_FAIL && op.res.err.code == PS_ENOTSTREAM,
          "%s code %d", status_name(rc), op.res.err.code);
    rc = ps_op_start(&op, (intptr_t)u, PS_DRAIN, 1.0, 0, 0);
    check("Drain on a datagram socket -> PS_ENOTSTREAM, socket left open",
          rc == PS_FAIL && op.res.err.code == PS_ENOTSTREAM &&
              ps_close_now((intptr_t)u, 0, &op.res) == PS_DONE,
          "%s code %d", status_name(rc), op.res.err.code);
}

static void test_abortive(void)
{
    const char *name = "Abortive: peer recv fails with ECONNRESET";
    ps_sock ours, peer;
    ps_result res;
    long n;
    int rc, e;

    if (!pair_or_fail(name, &ours, &peer))
        return;
    rc = ps_close_now((intptr_t)ours, 1, &res);
    check("Abortive: close -> DONE, abortive, handle freed",
          rc == PS_DONE && res.how == PS_HOW_ABORTIVE && res.closed &&
              res.reason == PS_REASON_CLOSED,
          "%s how %d reason %s closed %d code %d", status_name(rc), res.how,
          reason_name(res.reason), res.closed, res.err.code);
    recv_once(peer, 2000, &n, &e);
    check_wine(name, n == -1 && ps_sys_portable(e) == PS_ECONNRESET, n == 0,
               "recv %ld error %d (portable %d)", n, e, ps_sys_portable(e));
    ps_sys_close(peer);
}

static void test_graceful(void)
{
    const char *name = "Graceful: peer gets the data then EOF";
    ps_sock ours, peer;
    ps_result res;
    char buf[64];
    long n, total = 0;
    int rc, e = 0;
    double end;

    if (!pair_or_fail(name, &ours, &peer))
        return;
    if (wr(ours, "hello", 5) != 5) {
        check(name, 0, "send failed: %d", ps_sys_error());
        ps_sys_close(ours);
        ps_sys_close(peer);
        return;
    }
    rc = ps_close_now((intptr_t)ours, 0, &res);
    check("Graceful: close -> DONE, graceful, handle freed",
          rc == PS_DONE && res.how == PS_HOW_GRACEFUL && res.closed,
          "%s how %d closed %d code %d", status_name(rc), res.how, res.closed,
          res.err.code);
    end = ps_sys_now() + 2.0;
    n = -2;
    while (ps_sys_now() < end && wait_readable(peer, 100)) {
        n = rd(peer, buf + total, sizeof buf - (size_t)total);
        if (n <= 0)
            break;
        total += n;
    }
    if (n < 0)
        e = ps_sys_error();
    check(name, total == 5 && memcmp(buf, "hello", 5) == 0 && n == 0,
          "got %ld bytes, last recv %ld error %d", total, n, e);
    ps_sys_close(peer);
}

/* Graceful close with unread input: the OS sends RST, and the core says
 * so instead of reporting a graceful close. */
static void test_graceful_unread(void)
{
    const char *name = "Graceful with unread input: peer sees the reset";
    ps_sock ours, peer;
    ps_result res;
    long n;
    int rc, e;

    if (!pair_or_fail(name, &ours, &peer))
        return;
    if (wr(peer, "request", 7) != 7 || !wait_readable(ours, 2000)) {
        check(name, 0, "could not deliver the request");
        ps_sys_close(ours);
        ps_sys_close(peer);
        return;
    }
    rc = ps_close_now((intptr_t)ours, 0, &res);
    if (PS_SYS_UNREAD_INPUT_RESETS)
        check("Graceful with unread input: reported abortive",
              rc == PS_DONE && res.how == PS_HOW_ABORTIVE && res.closed,
              "%s how %d closed %d", status_name(rc), res.how, res.closed);
    else
        check("Graceful with unread input: reported graceful (FIN here)",
              rc == PS_DONE && res.how == PS_HOW_GRACEFUL && res.closed,
              "%s how %d closed %d", status_name(rc), res.how, res.closed);
    if (PS_SYS_UNREAD_INPUT_RESETS) {
        recv_once(peer, 2000, &n, &e);
        check_wine(name, n == -1 && ps_sys_portable(e) == PS_ECONNRESET, n == 0,
                   "recv %ld error %d", n, e);
    }
    ps_sys_close(peer);
}

/* The lingering close: the peer gets all of a 256 KiB response and EOF,
 * while the request bytes it sent, which we never read, are discarded. */
static void test_drain(void)
{
    static char request[REQUEST_BYTES];
    const char *name = "Drain: peer gets all 256 KiB and EOF";
    ps_sock ours, peer;
    reader r;
    ps_op op;
    size_t sent;
    int st;

    if (!pair_or_fail(name, &ours, &peer))
        return;
    fill_pattern(request, sizeof request);
    if (wr(peer, request, sizeof request) != (long)sizeof request) {
        check(name, 0, "could not send the request");
        ps_sys_close(ours);
        ps_sys_close(peer);
        return;
    }
    reader_init(&r, peer);
    /* Send the response while the peer reads; then back to blocking, so
     * the Drain runs on a blocking socket. */
    (void)tp_set_nonblocking(ours, 1);
    sent = send_pattern(ours, RESPONSE_BYTES, &r, 10.0);
    (void)tp_set_nonblocking(ours, 0);
    if (sent != RESPONSE_BYTES) {
        check(name, 0, "sent only %lu bytes", (unsigned long)sent);
        ps_sys_close(ours);
        ps_sys_close(peer);
        return;
    }
    st = ps_op_start(&op, (intptr_t)ours, PS_DRAIN, 5.0, 0, 0);
    if (st != PS_PENDING) {
        check(name, 0, "ps_op_start: %s code %d", status_name(st), op.res.err.code);
        ps_sys_close(ours);
        ps_sys_close(peer);
        return;
    }
    /* Our FIN is sent at the first wait; the peer reads to it, then closes. */
    st = ps_op_wait(&op, 10);
    reader_finish(&r, 5000);
    check(name,
          r.eof && !r.err && r.got == RESPONSE_BYTES && r.bad_at < 0,
          "got %lu bytes, eof %d, error %d, first bad byte %ld",
          (unsigned long)r.got, r.eof, r.err, r.bad_at);
    ps_sys_close(peer);
    if (st == PS_PENDING)
        st = op_run(&op, 50, 5000, NULL);
    check("Drain: ends at the peer's EOF, graceful",
          st == PS_CLOSING && op.res.reason == PS_REASON_EOF &&
              op.res.how == PS_HOW_GRACEFUL && op.res.peer_eof,
          "%s reason %s how %d peer_eof %d code %d", status_name(st),
          reason_name(op.res.reason), op.res.how, op.res.peer_eof,
          op.res.err.code);
    check("Drain: the unread request was discarded",
          op.res.drained == REQUEST_BYTES, "drained %lu of %lu",
          (unsigned long)op.res.drained, (unsigned long)REQUEST_BYTES);
    st = ps_op_finish(&op);
    check("Drain: finish frees the handle, graceful",
          st == PS_DONE && op.res.closed && op.res.how == PS_HOW_GRACEFUL &&
              op.res.elapsed >= 0 && op.res.elapsed < 5.0,
          "%s closed %d how %d elapsed %.3f", status_name(st), op.res.closed,
          op.res.how, op.res.elapsed);
    if (st != PS_DONE)
        ps_sys_close(ours);
}

static void test_drain_deadline(void)
{
    const char *name = "Drain deadline: reason TIMEOUT, how ABORTIVE";
    ps_sock ours, peer;
    ps_op op;
    int st;
    double t0;

    if (!pair_or_fail(name, &ours, &peer))
        return;
    t0 = ps_sys_now();
    st = ps_op_start(&op, (intptr_t)ours, PS_DRAIN, 0.2, 0, 0);
    if (st == PS_PENDING)
        st = op_run(&op, 50, 3000, NULL);
    check(name,
          st == PS_CLOSING && op.res.reason == PS_REASON_TIMEOUT &&
              op.res.how == PS_HOW_ABORTIVE && !op.res.peer_eof,
          "%s reason %s how %d", status_name(st), reason_name(op.res.reason),
          op.res.how);
    check("Drain deadline: honoured to about 50 ms",
          ps_sys_now() - t0 >= 0.19 && ps_sys_now() - t0 < 0.6,
          "waited %.3f s for 0.2 s", ps_sys_now() - t0);
    st = ps_op_finish(&op);
    check("Drain deadline: finish frees the handle",
          st == PS_DONE && op.res.closed && op.res.how == PS_HOW_ABORTIVE,
          "%s closed %d code %d", status_name(st), op.res.closed,
          op.res.err.code);
    if (st != PS_DONE)
        ps_sys_close(ours);
    ps_sys_close(peer);
}

static void test_drain_idle(void)
{
    const char *name = "Drain idle: reason IDLE, how ABORTIVE";
    ps_sock ours, peer;
    ps_op op;
    int st;
    double t0;

    if (!pair_or_fail(name, &ours, &peer))
        return;
    t0 = ps_sys_now();
    st = ps_op_start(&op, (intptr_t)ours, PS_DRAIN, 5.0, 0.15, 0);
    if (st == PS_PENDING)
        st = op_run(&op, 50, 3000, NULL);
    check(name,
          st == PS_CLOSING && op.res.reason == PS_REASON_IDLE &&
              op.res.how == PS_HOW_ABORTIVE && ps_sys_now() - t0 < 1.0,
          "%s reason %s how %d after %.3f s", status_name(st),
          reason_name(op.res.reason), op.res.how, ps_sys_now() - t0);
    if (ps_op_finish(&op) != PS_DONE)
        ps_sys_close(ours);
    ps_sys_close(peer);
}

static void test_drain_max_bytes(void)
{
    static char data[5000];
    const char *name = "Drain max_bytes: stops at the cap, ABORTIVE";
    ps_sock ours, peer;
    ps_op op;
    int st;

    if (!pair_or_fail(name, &ours, &peer))
        return;
    fill_pattern(data, sizeof data);
    if (wr(peer, data, sizeof data) != (long)sizeof data) {
        check(name, 0, "send failed");
        ps_sys_close(ours);
        ps_sys_close(peer);
        return;
    }
    (void)wait_readable(ours, 2000);
    st = ps_op_start(&op, (intptr_t)ours, PS_DRAIN, 5.0, 0, 1000);
    if (st == PS_PENDING)
        st = op_run(&op, 50, 3000, NULL);
    check(name,
          st == PS_CLOSING && op.res.reason == PS_REASON_MAX_BYTES &&
              op.res.how == PS_HOW_ABORTIVE && op.res.drained == 1000,
          "%s reason %s how %d drained %lu", status_name(st),
          reason_name(op.res.reason), op.res.how, (unsigned long)op.res.drained);
    if (ps_op_finish(&op) != PS_DONE)
        ps_sys_close(ours);
    ps_sys_close(peer);
}

/* A peer reset during Drain is a result, not an error. */
static void test_drain_peer_reset(void)
{
    const char *name = "Drain, peer resets: reason RESET, handle freed";
    ps_sock ours, peer;
    ps_result pres;
    ps_op op;
    int st;

    if (!pair_or_fail(name, &ours, &peer))
        return;
    st = ps_op_start(&op, (intptr_t)ours, PS_DRAIN, 5.0, 0, 0);
    if (st == PS_PENDING)
        st = ps_op_wait(&op, 10);
    if (ps_close_now((intptr_t)peer, 1, &pres) != PS_DONE)
        ps_sys_close(peer);
    if (st == PS_PENDING)
        st = op_run(&op, 50, 3000, NULL);
    check_wine(name,
               st == PS_CLOSING && op.res.reason == PS_REASON_RESET &&
                   op.res.how == PS_HOW_ABORTIVE,
               st == PS_CLOSING && op.res.reason == PS_REASON_EOF,
               "%s reason %s how %d", status_name(st),
               reason_name(op.res.reason), op.res.how);
    st = ps_op_finish(&op);
    check("Drain, peer resets: finish -> DONE, closed",
          st == PS_DONE && op.res.closed, "%s closed %d code %d oserr %d",
          status_name(st), op.res.closed, op.res.err.code, op.res.err.oserr);
    if (st != PS_DONE)
        ps_sys_close(ours);
}

static void test_drain_not_connected(void)
{
    struct sockaddr_in addr;
    ps_sock l = tcp_listener(&addr, 16);
    ps_op op;
    int st;

    if (l == BAD_SOCK) {
        check("Drain on a listener", 0, "no listener");
        return;
    }
    st = ps_op_start(&op, (intptr_t)l, PS_DRAIN, 1.0, 0, 0);
    if (st == PS_PENDING)
        st = op_run(&op, 50, 2000, NULL);
    if (st == PS_CLOSING)
        st = ps_op_finish(&op);
    check("Drain on a listener: closed, reason NOT_CONNECTED",
          st == PS_DONE && op.res.closed &&
              op.res.reason == PS_REASON_NOT_CONNECTED,
          "%s closed %d reason %s code %d", status_name(st), op.res.closed,
          reason_name(op.res.reason), op.res.err.code);
    if (st != PS_DONE)
        ps_sys_close(l);
}

/* drain() without close: the socket stays open and usable. */
static void test_drain_only(void)
{
    static char data[3000];
    const char *name = "drain-only: reads to EOF, leaves the socket open";
    ps_sock ours, peer;
    ps_op op;
    long n;
    int st, e = 0;

    if (!pair_or_fail(name, &ours, &peer))
        return;
    fill_pattern(data, sizeof data);
    if (wr(peer, data, sizeof data) != (long)sizeof data ||
        shutdown(peer, PS_SYS_SHUT_WR) != 0) {
        check(name, 0, "peer send/shutdown failed");
        ps_sys_close(ours);
        ps_sys_close(peer);
        return;
    }
    st = ps_op_start(&op, (intptr_t)ours, PS_DRAIN_ONLY, 5.0, 0, 0);
    if (st == PS_PENDING)
        st = op_run(&op, 50, 3000, NULL);
    check(name,
          st == PS_DONE && !op.res.closed && op.res.peer_eof &&
              op.res.reason == PS_REASON_EOF && op.res.drained == sizeof data,
          "%s closed %d peer_eof %d reason %s drained %lu", status_name(st),
          op.res.closed, op.res.peer_eof, reason_name(op.res.reason),
          (unsigned long)op.res.drained);
    /* Still ours, and still blocking as it was: a plain send works. */
    (void)tp_set_nonblocking(peer, 0);
    n = wr(ours, "after", 5);
    if (n == 5)
        recv_once(peer, 2000, &n, &e);
    check("drain-only: the socket still sends", n == 5, "recv %ld error %d", n, e);
    ps_sys_close(ours);
    ps_sys_close(peer);
}

/* Linger on a non-blocking socket: the caller never sees WSAEWOULDBLOCK,
 * the handle is freed, and the peer gets everything and EOF. */
static void test_linger_nonblocking(void)
{
    const char *name = "Linger, non-blocking socket: peer gets all data and EOF";
    ps_sock ours, peer;
    reader r;
    ps_op op;
    size_t sent;
    int st, saw_wouldblock = 0;
    double end;

    if (!pair_or_fail(name, &ours, &peer))
        return;
    reader_init(&r, peer);
    (void)tp_set_nonblocking(ours, 1);
    sent = send_pattern(ours, RESPONSE_BYTES, &r, 10.0);
    if (sent != RESPONSE_BYTES) {
        check(name, 0, "sent only %lu bytes", (unsigned long)sent);
        ps_sys_close(ours);
        ps_sys_close(peer);
        return;
    }
    st = ps_op_start(&op, (intptr_t)ours, PS_LINGER, 5.0, 0, 0);
    end = ps_sys_now() + 5.0;
    while (st == PS_PENDING && ps_sys_now() < end) {
        reader_pump(&r);
        st = ps_op_wait(&op, 20);
        if (st == PS_FAIL && op.res.err.code == PS_EWOULDBLOCK)
            saw_wouldblock = 1;
    }
    if (st == PS_CLOSING) {
        st = ps_op_finish(&op);
        if (st == PS_FAIL && op.res.err.code == PS_EWOULDBLOCK)
            saw_wouldblock = 1;
    }
    check("Linger, non-blocking socket: never PS_EWOULDBLOCK", !saw_wouldblock,
          "the caller saw EWOULDBLOCK");
    check("Linger, non-blocking socket: DONE, graceful, handle freed",
          st == PS_DONE && op.res.closed == 1 && op.res.how == PS_HOW_GRACEFUL &&
              op.res.reason == PS_REASON_CLOSED && op.res.acked != 0,
          "%s closed %d how %d reason %s acked %d code %d oserr %d step %d",
          status_name(st), op.res.closed, op.res.how,
          reason_name(op.res.reason), op.res.acked, op.res.err.code,
          op.res.err.oserr, op.res.err.step);
    if (st != PS_DONE)
        ps_sys_close(ours);
    reader_finish(&r, 5000);
    check(name, r.eof && !r.err && r.got == RESPONSE_BYTES && r.bad_at < 0,
          "got %lu bytes, eof %d, error %d, first bad byte %ld",
          (unsigned long)r.got, r.eof, r.err, r.bad_at);
    ps_sys_close(peer);
}

/* Linger that cannot finish: the peer reads nothing and both buffers are
 * full, so at the deadline the core aborts. */
static void test_linger_deadline(void)
{
    const char *name = "Linger deadline: reason TIMEOUT, how ABORTIVE, not acked";
    ps_sock ours, peer;
    ps_op op;
    size_t sent;
    int st;

    if (!pair_or_fail(name, &ours, &peer))
        return;
    (void)tp_set_nonblocking(ours, 1);
    sent = send_pattern(ours, (size_t)256 * 1024 * 1024, NULL, 5.0);
    st = ps_op_start(&op, (intptr_t)ours, PS_LINGER, 0.3, 0, 0);
    if (st == PS_PENDING)
        st = op_run(&op, 50, 3000, NULL);
    /* Wine has no SIO_TCP_INFO: the core falls back to the kernel's
     * linger at close (acked unknown), as on Windows before 10 1703. */
    check_wine(name,
               st == PS_CLOSING && op.res.reason == PS_REASON_TIMEOUT &&
                   op.res.how == PS_HOW_ABORTIVE,
               st == PS_CLOSING && op.res.reason == PS_REASON_CLOSED &&
                   op.res.acked == -1,
               "%s reason %s how %d (sent %lu)", status_name(st),
               reason_name(op.res.reason), op.res.how, (unsigned long)sent);
    st = ps_op_finish(&op);
    check("Linger deadline: finish frees the handle, acked is not 1",
          st == PS_DONE && op.res.closed && op.res.acked != 1,
          "%s closed %d acked %d", status_name(st), op.res.closed,
          op.res.acked);
    if (st != PS_DONE)
        ps_sys_close(ours);
    ps_sys_close(peer);
}

/* What the core hides: the OS's own lingering close on a non-blocking
 * socket with unsent data.  Windows fails it with WSAEWOULDBLOCK and keeps
 * the handle; POSIX closes (Linux after blocking up to l_linger). */
static void test_os_linger_close_nonblocking(void)
{
    const char *name = "os: lingering close on a non-blocking socket";
    ps_sock ours, peer;
    ps_error err;
    ps_result res;
    int rc, e;

    if (!pair_or_fail(name, &ours, &peer))
        return;
    (void)tp_set_nonblocking(ours, 1);
    (void)send_pattern(ours, (size_t)256 * 1024 * 1024, NULL, 5.0);
    if (ps_set_linger((intptr_t)ours, 1, 1, &err) != PS_DONE) {
        check(name, 0, "SO_LINGER {1,1}: oserr %d", err.oserr);
        ps_sys_close(ours);
        ps_sys_close(peer);
        return;
    }
    rc = ps_sys_close(ours);
    e = rc != 0 ? ps_sys_error() : 0;
    if (TP_LINGER_CLOSE_NONBLOCK_FAILS) {
        check_wine("os: lingering close on a non-blocking socket fails with "
                   "WSAEWOULDBLOCK",
                   rc != 0 && ps_sys_portable(e) == PS_EWOULDBLOCK, rc == 0,
                   "close returned %d error %d", rc, e);
        if (rc != 0)
            (void)ps_close_now((intptr_t)ours, 1, &res);
    } else {
        check("os: lingering close on a non-blocking socket returns 0",
              rc == 0, "close returned %d error %d", rc, e);
    }
    ps_sys_close(peer);
}

/* Three drains in one wait; their peers close at different times, and
 * each wait returns as soon as one of them is ready. */
static void test_ops_wait_three(void)
{
    const char *name = "ps_ops_wait: three drains, peers closing at different times";
    ps_sock ours[3], peer[3];
    ps_op ops[3];
    ps_error err;
    size_t freed[3], k, i, nfreed;
    int ok = 1, pending, all_closed = 1;
    char why[200] = "";
    double t0, t;

    for (i = 0; i < 3; i++) {
        if (!pair_or_fail(name, &ours[i], &peer[i])) {
            while (i-- > 0) {
                ps_sys_close(ours[i]);
                ps_sys_close(peer[i]);
            }
            return;
        }
        (void)ps_op_start(&ops[i], (intptr_t)ours[i], PS_DRAIN, 5.0, 0, 0);
    }
    t0 = ps_sys_now();
    /* The first wait starts all three (shutdown(send) each). */
    pending = ps_ops_wait(ops, 3, 20, &err);
    if (pending != 3) {
        ok = 0;
        snprintf(why, sizeof why, "first wait: %d pending, not 3", pending);
    }
    for (k = 0; k < 3 && ok; k++) {
        ps_sys_sleep(30); /* a different time for each */
        ps_sys_close(peer[k]);
        peer[k] = BAD_SOCK;
        t = ps_sys_now();
        do
            pending = ps_ops_wait(ops, 3, 2000, &err);
        while (pending == (int)(3 - k) && ps_sys_now() - t < 3.0);
        if (pending != (int)(2 - k)) {
            ok = 0;
            snprintf(why, sizeof why, "after peer %lu closed: %d pending",
                     (unsigned long)k, pending);
            break;
        }
        if (ps_sys_now() - t > 1.0) {
            ok = 0;
            snprintf(why, sizeof why, "peer %lu's EOF took %.3f s to wake the wait",
                     (unsigned long)k, ps_sys_now() - t);
            break;
        }
        nfreed = ps_ops_finish(ops, 3, freed);
        if (nfreed != 1 || freed[0] != k) {
            ok = 0;
            snprintf(why, sizeof why, "after peer %lu closed: freed %lu ops",
                     (unsigned long)k, (unsigned long)nfreed);
            break;
        }
    }
    for (i = 0; i < 3; i++) {
        if (!ops[i].res.closed) {
            all_closed = 0;
            ps_sys_close(ours[i]);
        }
        close_if_open(peer[i]);
        if (ok && (ops[i].res.reason != PS_REASON_EOF ||
                   ops[i].res.how != PS_HOW_GRACEFUL)) {
            ok = 0;
            snprintf(why, sizeof why, "op %lu: reason %s how %d",
                     (unsigned long)i, reason_name(ops[i].res.reason),
                     ops[i].res.how);
        }
    }
    check(name, ok && all_closed && ps_sys_now() - t0 < 5.0, "%s%s", why,
          all_closed ? "" : " (not all handles freed)");
}

/* A slice of 0 ms is a non-blocking step: it must notice what has already
 * arrived (what an event loop does once the descriptor is readable). */
static void test_op_wait_zero_slice(void)
{
    const char *name = "ps_op_wait with a 0 ms slice notices the peer's EOF";
    ps_sock ours, peer;
    ps_op op;
    int st, i;

    if (!pair_or_fail(name, &ours, &peer))
        return;
    st = ps_op_start(&op, (intptr_t)ours, PS_DRAIN, 3.0, 0, 0);
    if (st == PS_PENDING)
        st = ps_op_wait(&op, 0); /* sets up: shutdown(send) */
    ps_sys_close(peer);
    (void)wait_readable(ours, 2000);
    for (i = 0; i < 100 && st == PS_PENDING; i++) {
        st = ps_op_wait(&op, 0);
        if (st == PS_PENDING)
            ps_sys_sleep(10);
    }
    check(name, st == PS_CLOSING && op.res.reason == PS_REASON_EOF,
          "%s reason %s after %d zero-slice waits", status_name(st),
          reason_name(op.res.reason), i);
    if (st == PS_PENDING)
        st = op_run(&op, 50, 5000, NULL);
    if (st != PS_CLOSING || ps_op_finish(&op) != PS_DONE)
        ps_sys_close(ours);
}

/* The ops path for Graceful and Abortive (what close_many uses). */
static void test_ops_graceful_abortive(void)
{
    ps_sock ours[2], peer[2];
    ps_op ops[2];
    ps_error err;
    size_t freed[2], n;
    long got;
    int e, i;

    for (i = 0; i < 2; i++) {
        if (!pair_or_fail("ops: Graceful and Abortive", &ours[i], &peer[i])) {
            if (i == 1) {
                ps_sys_close(ours[0]);
                ps_sys_close(peer[0]);
            }
            return;
        }
    }
    (void)ps_op_start(&ops[0], (intptr_t)ours[0], PS_GRACEFUL, 0, 0, 0);
    (void)ps_op_start(&ops[1], (intptr_t)ours[1], PS_ABORTIVE, 0, 0, 0);
    check("ops: Graceful and Abortive start ready to free",
          ops[0].phase == PS_CLOSING && ops[1].phase == PS_CLOSING &&
              ps_ops_wait(ops, 2, 1000, &err) == 0,
          "phases %s %s", status_name(ops[0].phase), status_name(ops[1].phase));
    n = ps_ops_finish(ops, 2, freed);
    check("ops: Graceful and Abortive freed by ps_ops_finish",
          n == 2 && ops[0].res.how == PS_HOW_GRACEFUL &&
              ops[1].res.how == PS_HOW_ABORTIVE,
          "freed %lu, how %d %d", (unsigned long)n, ops[0].res.how,
          ops[1].res.how);
    recv_once(peer[0], 2000, &got, &e);
    check("ops: Graceful peer sees EOF", got == 0, "recv %ld error %d", got, e);
    recv_once(peer[1], 2000, &got, &e);
    check_wine("ops: Abortive peer sees ECONNRESET",
               got == -1 && ps_sys_portable(e) == PS_ECONNRESET, got == 0,
               "recv %ld error %d", got, e);
    for (i = 0; i < 2; i++) {
        if (!ops[i].res.closed)
            ps_sys_close(ours[i]);
        ps_sys_close(peer[i]);
    }
}

/* A user's SO_LINGER {1,N} must not turn a graceful close into a blocking
 * one (Linux) or a WSAEWOULDBLOCK (Windows): Graceful is l_onoff = 0 on
 * every path.  Our data cannot leave (the peer reads nothing), so a
 * lingering close would wait the full second. */
static int fill_with_linger(const char *name, ps_sock *ours, ps_sock *peer,
                            size_t *sent)
{
    ps_error err;
    if (!pair_or_fail(name, ours, peer))
        return 0;
    (void)tp_set_nonblocking(*ours, 1);
    *sent = send_pattern(*ours, (size_t)256 * 1024 * 1024, NULL, 5.0);
    (void)tp_set_nonblocking(*ours, 0);
    if (ps_set_linger((intptr_t)*ours, 1, 1, &err) != PS_DONE) {
        check(name, 0, "SO_LINGER {1,1}: oserr %d", err.oserr);
        ps_sys_close(*ours);
        ps_sys_close(*peer);
        return 0;
    }
    return 1;
}

static void test_preset_linger(void)
{
    ps_sock ours, peer;
    ps_result res;
    ps_op op;
    reader r;
    size_t sent;
    int st;
    double t;

    if (fill_with_linger("Graceful close_now with a preset SO_LINGER", &ours,
                         &peer, &sent)) {
        t = ps_sys_now();
        st = ps_close_now((intptr_t)ours, 0, &res);
        t = ps_sys_now() - t;
        check("Graceful close_now with a preset SO_LINGER returns at once",
              st == PS_DONE && res.closed && t < 0.5 && handle_gone(ours),
              "%s closed %d after %.3f s", status_name(st), res.closed, t);
        ps_sys_close(peer);
    }

    if (fill_with_linger("Graceful op with a preset SO_LINGER", &ours, &peer,
                         &sent)) {
        (void)ps_op_start(&op, (intptr_t)ours, PS_GRACEFUL, 0, 0, 0);
        t = ps_sys_now();
        st = ps_op_finish(&op);
        t = ps_sys_now() - t;
        check("Graceful op (close_many) with a preset SO_LINGER returns at once",
              st == PS_DONE && op.res.closed && op.res.how == PS_HOW_GRACEFUL &&
                  t < 0.5 && handle_gone(ours),
              "%s closed %d how %d after %.3f s", status_name(st),
              op.res.closed, op.res.how, t);
        if (st != PS_DONE)
            ps_sys_close(ours);
        ps_sys_close(peer);
    }

    /* Drain ends at once: the peer half-closed without reading.  Our data
     * is still queued; the close must not wait for it, and the peer must
     * still get all of it when it reads. */
    if (fill_with_linger("Drain to EOF with a preset SO_LINGER", &ours, &peer,
                         &sent)) {
        shutdown(peer, PS_SYS_SHUT_WR);
        (void)wait_readable(ours, 2000);
        st = ps_op_start(&op, (intptr_t)ours, PS_DRAIN, 5.0, 0, 0);
        if (st == PS_PENDING)
            st = op_run(&op, 50, 3000, NULL);
        t = ps_sys_now();
        if (st == PS_CLOSING)
            st = ps_op_finish(&op);
        t = ps_sys_now() - t;
        check("Drain to EOF with a preset SO_LINGER closes at once",
              st == PS_DONE && op.res.closed && op.res.reason == PS_REASON_EOF &&
                  op.res.how == PS_HOW_GRACEFUL && t < 0.5 && handle_gone(ours),
              "%s closed %d reason %s how %d, close took %.3f s",
              status_name(st), op.res.closed, reason_name(op.res.reason),
              op.res.how, t);
        if (st != PS_DONE)
            ps_sys_close(ours);
        reader_init(&r, peer);
        reader_finish(&r, 10000);
        check("Drain to EOF with a preset SO_LINGER: peer still gets it all",
              r.eof && !r.err && r.got == sent && r.bad_at < 0,
              "got %lu of %lu bytes, eof %d, error %d, first bad byte %ld",
              (unsigned long)r.got, (unsigned long)sent, r.eof, r.err,
              r.bad_at);
        ps_sys_close(peer);
    }
}

/* drain() must leave a blocking socket blocking: after it, a recv with a
 * 200 ms SO_RCVTIMEO waits, rather than failing at once with
 * EWOULDBLOCK. */
static void test_drain_only_keeps_blocking(void)
{
    const char *name = "drain-only leaves a blocking socket blocking";
    ps_sock ours, peer;
    ps_op op;
    char c;
    long n;
    int st, e = 0;
    double t;

    if (!pair_or_fail(name, &ours, &peer))
        return;
    st = ps_op_start(&op, (intptr_t)ours, PS_DRAIN_ONLY, 0.1, 0, 0);
    if (st == PS_PENDING)
        st = op_run(&op, 50, 2000, NULL);
    check("drain-only deadline: DONE, reason TIMEOUT, still open",
          st == PS_DONE && op.res.reason == PS_REASON_TIMEOUT && !op.res.closed,
          "%s reason %s closed %d", status_name(st), reason_name(op.res.reason),
          op.res.closed);
    (void)tp_set_rcvtimeo_ms(ours, 200);
    t = ps_sys_now();
    n = rd(ours, &c, 1);
    if (n < 0)
        e = ps_sys_error();
    t = ps_sys_now() - t;
    check(name, n < 0 && t >= 0.15, "recv %ld error %d after %.3f s", n, e, t);
    ps_sys_close(ours);
    ps_sys_close(peer);
}

/* PEP 475: a signal ends the wait early (PS_PENDING), so the caller's
 * handlers run; the op then resumes toward the same deadline. */
static void test_signal_interrupts_wait(void)
{
    const char *name = "a signal ends ps_op_wait early with PS_PENDING";
    ps_sock ours, peer;
    ps_op op;
    int st, before;
    double t;

    if (tp_signal_after_ms(0) != 0) {
        skip(name, "no signals here");
        return;
    }
    if (!pair_or_fail(name, &ours, &peer))
        return;
    st = ps_op_start(&op, (intptr_t)ours, PS_DRAIN, 5.0, 0, 0);
    if (st == PS_PENDING)
        st = ps_op_wait(&op, 0);
    before = tp_signals_seen();
    (void)tp_signal_after_ms(100);
    t = ps_sys_now();
    if (st == PS_PENDING)
        st = ps_op_wait(&op, 3000);
    t = ps_sys_now() - t;
    check(name, st == PS_PENDING && tp_signals_seen() == before + 1 && t < 1.5,
          "%s after %.3f s, %d signals", status_name(st), t,
          tp_signals_seen() - before);
    ps_sys_close(peer);
    if (st == PS_PENDING)
        st = op_run(&op, 50, 5000, NULL);
    check("after the signal the op resumes to the peer's EOF",
          st == PS_CLOSING && op.res.reason == PS_REASON_EOF,
          "%s reason %s", status_name(st), reason_name(op.res.reason));
    if (st != PS_CLOSING || ps_op_finish(&op) != PS_DONE)
        ps_sys_close(ours);
}

/* ------------------------------------- checks run in a child process */

/* Drain-only over a stream whose receive queue holds more than the core's
 * 64 KiB discard buffer; `local` picks an AF_UNIX pair over TCP.  Run in a
 * child: writing past the buffer corrupts memory (or, under ASan, aborts). */
static int big_drain(void *arg)
{
    int local = *(int *)arg;
    ps_sock sv[2];
    ps_op op;
    size_t sent;
    int st;

    if (local) {
        if (tp_local_stream_pair(sv) != 0) {
            fprintf(stderr, "# socketpair failed\n");
            return 0;
        }
    } else if (tcp_pair(&sv[0], &sv[1]) != 0) {
        fprintf(stderr, "# no loopback pair\n");
        return 0;
    }
    (void)tp_set_nonblocking(sv[1], 1);
    sent = send_pattern(sv[1], BIG_BYTES, NULL, 5.0);
    if (sent <= 65536) {
        fprintf(stderr, "# only %lu bytes queued\n", (unsigned long)sent);
        return 0;
    }
    st = ps_op_start(&op, (intptr_t)sv[0], PS_DRAIN_ONLY, 5.0, 0, 0);
    if (st == PS_PENDING)
        st = ps_op_wait(&op, 10);
    shutdown(sv[1], PS_SYS_SHUT_WR);
    if (st == PS_PENDING)
        st = op_run(&op, 50, 5000, NULL);
    ps_sys_close(sv[0]);
    ps_sys_close(sv[1]);
    {
        size_t i;
        for (i = 0; i < sizeof g_canary; i++) {
            if (g_canary[i] != 0) {
                fprintf(stderr, "# memory past the discard buffer was "
                                "overwritten (canary byte %lu)\n",
                        (unsigned long)i);
                return 0;
            }
        }
    }
    if (st != PS_DONE || op.res.drained != sent || !op.res.peer_eof) {
        fprintf(stderr, "# %s drained %lu of %lu, peer_eof %d, reason %s\n",
                status_name(st), (unsigned long)op.res.drained,
                (unsigned long)sent, op.res.peer_eof, reason_name(op.res.reason));
        return 0;
    }
    return 1;
}

static void test_big_drains(void)
{
    char why[200] = "";
    int local = 0, ok;

    ok = tp_isolated(big_drain, &local, why, sizeof why);
    check("Drain over TCP with more queued than the 64 KiB buffer", ok, "%s", why);
    if (!TP_HAVE_LOCAL_STREAM_PAIR) {
        skip("Drain over an AF_UNIX stream with more than 64 KiB queued",
             "no socketpair here");
        return;
    }
    local = 1;
    why[0] = 0;
    ok = tp_isolated(big_drain, &local, why, sizeof why);
    check("Drain over an AF_UNIX stream with more than 64 KiB queued", ok,
          "%s", why);
}

int main(void)
{
    if (check_begin(": its known deviations (listed at the top of "
                    "test_core.c) are allowed") != 0)
        return 1;
    printf("# zero-copy drain: %s\n", ps_drain_zero_copy() ? "yes" : "no");

    test_error_mapping();
    test_linger_option();
    test_shutdown_unconnected();
    test_not_a_socket();
    test_bad_args();
    test_abortive();
    test_graceful();
    test_graceful_unread();
    test_drain();
    test_drain_deadline();
    test_drain_idle();
    test_drain_max_bytes();
    test_drain_peer_reset();
    test_drain_not_connected();
    test_drain_only();
    test_linger_nonblocking();
    test_linger_deadline();
    test_os_linger_close_nonblocking();
    test_ops_wait_three();
    test_op_wait_zero_slice();
    test_ops_graceful_abortive();
    test_preset_linger();
    test_drain_only_keeps_blocking();
    test_signal_interrupts_wait();
    test_big_drains();

    return check_summary();
}
