/* sys.h - the one place in csrc/ that chooses an OS.
 *
 * It includes sys_win.h (Winsock, Windows threads) or sys_posix.h (POSIX,
 * pthreads), which define the same names with the same meaning, then adds
 * what is written the same way on both.  The rest of csrc/ reads the same
 * on every OS: every call here returns -1 (or a negative count) on failure
 * and ps_sys_error() gives the OS error, which ps_sys_portable() turns into
 * a PS_E* code.
 *
 * What each OS file defines: the socket, poll, linger-field and timeout
 * types (ps_sock, ps_pollfd, ps_linger_field, ps_timeo); PS_SYS_* flags and
 * PS_OS_* error numbers; ps_sys_init, _error, _handle_ok, _close, _poll,
 * _now, _sleep, _blocking, _nonblocking, _recv_discard, _recv_discard_wait,
 * _is_blocking, _get_rcvtimeo, _set_rcvtimeo, _timeo_ms, _pending_input,
 * _unacked, _nofile, _wake_pair; the threads (ps_thread, ps_mutex, ps_cond
 * and their calls); PS_SYS_HAVE_SET (a kernel readiness set: ps_event and
 * ps_sys_set_*) and PS_SYS_HAVE_TCP_QUEUES (ps_sys_tcp_queues), each
 * stubbed below where the OS has none.
 */
#ifndef PYSOCK_SYS_H
#define PYSOCK_SYS_H

#include <string.h>

#include "pysock.h"

#ifdef _WIN32
#include "sys_win.h"
#else
#include "sys_posix.h"
#endif

/* ---------------------------------------------- where the OS has none */

#if !PS_SYS_HAVE_TCP_QUEUES
/* One question for two: only Linux has it (sys_posix.h). */
static inline int ps_sys_tcp_queues(ps_sock s, int *input, int *unacked)
{
    (void)s;
    (void)input;
    (void)unacked;
    return -1;
}
#endif

#if !PS_SYS_HAVE_SET
/* No kernel readiness set (Windows, the BSDs, macOS, Linux built with
 * -DPS_FORCE_POLL): opening a set fails, so the engine keeps its poll array
 * (ps_sys_poll: poll, WSAPoll). */
typedef struct {
    size_t tag;
} ps_event;
static inline int ps_sys_set_open(void) { return -1; }
static inline int ps_sys_set_add(int ep, ps_sock s, size_t tag)
{
    (void)ep;
    (void)s;
    (void)tag;
    return -1;
}
static inline int ps_sys_set_add_once(int ep, ps_sock s, size_t tag)
{
    return ps_sys_set_add(ep, s, tag);
}
static inline int ps_sys_set_level(int ep, ps_sock s, size_t tag)
{
    return ps_sys_set_add(ep, s, tag);
}
static inline int ps_sys_set_wait(int ep, ps_event *evs, int max, int ms)
{
    (void)ep;
    (void)evs;
    (void)max;
    (void)ms;
    return -1;
}
static inline size_t ps_sys_event_tag(const ps_event *ev) { return ev->tag; }
static inline void ps_sys_set_del(int ep, ps_sock s)
{
    (void)ep;
    (void)s;
}
static inline void ps_sys_set_close(int ep) { (void)ep; }
#endif

/* ------------------------------------------------------- the same on both */

/* The drain's read size, and the size of each engine's discard buffer: with
 * MSG_TRUNC a TCP recv writes nothing, so on Linux it is large (the pages
 * of a malloc'd buffer that is never written cost no memory) to discard a
 * full receive buffer in few system calls; still real memory, because
 * Linux ignores MSG_TRUNC on AF_UNIX streams and copies. */
#define PS_SYS_DRAIN_CHUNK (PS_SYS_ZERO_COPY ? 1024 * 1024 : 64 * 1024)

static inline int ps_sys_set_linger(ps_sock s, int enabled, int seconds)
{
    struct linger l;
    l.l_onoff = (ps_linger_field)(enabled ? 1 : 0);
    l.l_linger = (ps_linger_field)seconds;
    return setsockopt(s, SOL_SOCKET, PS_SYS_SO_LINGER, (const char *)&l,
                      (socklen_t)sizeof l);
}

static inline int ps_sys_get_linger(ps_sock s, int *enabled, int *seconds)
{
    struct linger l;
    socklen_t len = (socklen_t)sizeof l;
    if (getsockopt(s, SOL_SOCKET, PS_SYS_SO_LINGER, (char *)&l, &len) != 0)
        return -1;
    *enabled = l.l_onoff != 0;
    *seconds = (int)l.l_linger;
    return 0;
}

/* SO_TYPE: -1 if it is not an open socket (the first call every op makes,
 * so a descriptor that is not a socket is never closed). */
static inline int ps_sys_socktype(ps_sock s, int *type)
{
    int v = 0;
    socklen_t len = (socklen_t)sizeof v;
    if (getsockopt(s, SOL_SOCKET, SO_TYPE, (char *)&v, &len) != 0)
        return -1;
    *type = v;
    return 0;
}

static inline int ps_sys_is_stream(int type) { return type == SOCK_STREAM; }

/* SO_ERROR (and clears it); 0 if it cannot be read. */
static inline int ps_sys_pending_error(ps_sock s)
{
    int v = 0;
    socklen_t len = (socklen_t)sizeof v;
    if (getsockopt(s, SOL_SOCKET, SO_ERROR, (char *)&v, &len) != 0)
        return 0;
    return v;
}

/* 1 connected, 0 not connected (never connected, listening, or reset; then
 * *pending_error holds SO_ERROR), -1 on another error. */
static inline int ps_sys_connected(ps_sock s, int *pending_error)
{
    struct sockaddr_storage addr;
    socklen_t len = (socklen_t)sizeof addr;
    if (getpeername(s, (struct sockaddr *)&addr, &len) == 0)
        return 1;
    if (ps_sys_error() != PS_OS_ENOTCONN)
        return -1;
    *pending_error = ps_sys_pending_error(s);
    return 0;
}

/* How a connection that getpeername calls not connected came to its end,
 * told by what every OS reports alike: the pending error (Linux keeps
 * ECONNRESET, or EPIPE when the RST came after the peer's FIN), else a
 * non-blocking peek (Windows keeps no SO_ERROR, but its recv goes on failing
 * with WSAECONNRESET after a reset).  Never-connected sockets, listeners and
 * connects in progress say ENOTCONN (EINVAL on some BSDs) or would block.
 * Returns PS_ENDED_RESET, PS_ENDED_NEVER (never connected, or a listener) or
 * PS_ENDED_CLOSED (it was connected and the peer's FIN or data is still
 * there to read: the op goes on without a shutdown). */
enum { PS_ENDED_RESET, PS_ENDED_NEVER, PS_ENDED_CLOSED };

static inline int ps_sys_is_reset(int e)
{
    return e == PS_OS_ECONNRESET || e == PS_OS_ECONNABORTED ||
           e == PS_OS_EPIPE || e == PS_OS_ETIMEDOUT;
}

static inline int ps_sys_ended(ps_sock s, int pending_error)
{
    char byte;
    int e;
    if (pending_error != 0)
        return ps_sys_is_reset(pending_error) ? PS_ENDED_RESET : PS_ENDED_NEVER;
    if (recv(s, &byte, 1, PS_SYS_PEEK_FLAGS) >= 0)
        return PS_ENDED_CLOSED;
    e = ps_sys_error();
    return ps_sys_is_reset(e) ? PS_ENDED_RESET : PS_ENDED_NEVER;
}

static inline int ps_sys_shutdown(ps_sock s, int how)
{
    int h = how == PS_SHUT_RECEIVE ? PS_SYS_SHUT_RD
          : how == PS_SHUT_SEND    ? PS_SYS_SHUT_WR
                                   : PS_SYS_SHUT_RDWR;
    return shutdown(s, h);
}

static inline int ps_sys_portable(int e)
{
    if (e == 0)
        return PS_OK;
    if (e == PS_OS_EBADF || e == PS_OS_ENOTSOCK)
        return PS_ENOTSOCK;
    if (e == PS_OS_ECONNRESET)
        return PS_ECONNRESET;
    if (e == PS_OS_ECONNABORTED)
        return PS_ECONNABORTED;
    if (e == PS_OS_ENOTCONN)
        return PS_ENOTCONN;
    if (e == PS_OS_EWOULDBLOCK || e == PS_OS_EAGAIN)
        return PS_EWOULDBLOCK;
    if (e == PS_OS_EINTR)
        return PS_EINTR;
    if (e == PS_OS_ENETDOWN)
        return PS_ENETDOWN;
    if (e == PS_OS_EINVAL)
        return PS_EINVAL;
    if (e == PS_OS_ENOBUFS)
        return PS_ENOMEM;
    return PS_EOTHER;
}

/* One byte into a wake pair's writing end (a full pair is awake already). */
static inline void ps_sys_wake_send(ps_sock s)
{
    char byte = 0;
    (void)send(s, &byte, 1, PS_SYS_SEND_FLAGS);
}
/* Empty a wake pair's reading end. */
static inline void ps_sys_wake_drain(ps_sock s)
{
    char buf[256];
    while (recv(s, buf, (int)sizeof buf, 0) > 0)
        ;
}

#endif
