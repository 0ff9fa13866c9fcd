/* sys_posix.h - POSIX (Linux, macOS, the BSDs): sockets, epoll on Linux,
 * and pthreads for the reaper.
 *
 * Included by sys.h only, which gives the same names on Windows (sys_win.h)
 * and adds what is the same on both.  Every call returns -1 (or a negative
 * count) on failure, and ps_sys_error() gives the OS error (errno).
 */
#ifndef PYSOCK_SYS_POSIX_H
#define PYSOCK_SYS_POSIX_H

/* The readiness set is epoll on Linux, unless built with
 * PYSOCK_BACKEND=poll (-DPS_FORCE_POLL); elsewhere none (sys.h's stubs:
 * the engine keeps its poll array).  Only Linux asks one question for both
 * TCP queues (ps_sys_tcp_queues, below). */
#if defined(__linux__) && !defined(PS_FORCE_POLL)
#define PS_SYS_HAVE_SET 1
#else
#define PS_SYS_HAVE_SET 0
#endif
#ifdef __linux__
#define PS_SYS_HAVE_TCP_QUEUES 1
#else
#define PS_SYS_HAVE_TCP_QUEUES 0
#endif

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <linux/sockios.h>
#include <linux/sock_diag.h>
#endif
#if PS_SYS_HAVE_SET
#include <sys/epoll.h>
#endif
#if defined(__APPLE__) || defined(__FreeBSD__)
/* The TCP state numbers.  Every macOS SDK and FreeBSD install
 * <netinet/tcp_fsm.h>; zig's trimmed Darwin headers lack it.  The nested
 * #if keeps a compiler without __has_include from parsing the test. */
#if defined(__has_include)
#if __has_include(<netinet/tcp_fsm.h>)
#include <netinet/tcp_fsm.h>
#endif
#endif
#ifdef TCPS_CLOSED
#define PS_TCPS_CLOSED TCPS_CLOSED
#define PS_TCPS_FIN_WAIT_2 TCPS_FIN_WAIT_2
#define PS_TCPS_TIME_WAIT TCPS_TIME_WAIT
#else
/* The 4.4BSD numbers, the same in FreeBSD's sys/netinet/tcp_fsm.h and
 * XNU's bsd/netinet/tcp_fsm.h: CLOSED 0 ... FIN_WAIT_2 9, TIME_WAIT 10. */
#define PS_TCPS_CLOSED 0
#define PS_TCPS_FIN_WAIT_2 9
#define PS_TCPS_TIME_WAIT 10
#endif
#endif

typedef int ps_sock;
typedef struct pollfd ps_pollfd;
typedef int ps_linger_field;
#define PS_SYS_SHUT_RD SHUT_RD
#define PS_SYS_SHUT_WR SHUT_WR
#define PS_SYS_SHUT_RDWR SHUT_RDWR
#define PS_SYS_POLLIN POLLIN
#define PS_SYS_POLLERRS (POLLERR | POLLHUP | POLLNVAL)

#if defined(__APPLE__) && defined(SO_LINGER_SEC)
/* SO_LINGER counts clock ticks on Darwin; SO_LINGER_SEC (0x1080, since
 * Mac OS X 10.4) counts seconds.  Built with _POSIX_C_SOURCE and without
 * _DARWIN_C_SOURCE, <sys/socket.h> has no SO_LINGER_SEC and gives that
 * same 0x1080 the name SO_LINGER: then the #else is right too. */
#define PS_SYS_SO_LINGER SO_LINGER_SEC
#else
#define PS_SYS_SO_LINGER SO_LINGER
#endif

#ifdef __linux__
/* Linux discards TCP data in the kernel with MSG_TRUNC: no copy. */
#define PS_SYS_DISCARD_FLAGS (MSG_DONTWAIT | MSG_TRUNC)
#define PS_SYS_ZERO_COPY 1
#else
#define PS_SYS_DISCARD_FLAGS MSG_DONTWAIT
#define PS_SYS_ZERO_COPY 0
#endif
#define PS_SYS_PEEK_FLAGS (MSG_PEEK | MSG_DONTWAIT)
/* A send to a reset peer fails with EPIPE instead of raising SIGPIPE,
 * where the OS has the flag (elsewhere the caller's SIGPIPE disposition
 * holds: CPython ignores it). */
#ifdef MSG_NOSIGNAL
#define PS_SYS_SEND_FLAGS MSG_NOSIGNAL
#else
#define PS_SYS_SEND_FLAGS 0
#endif

#if defined(__FreeBSD__) || defined(__DragonFly__)
/* FreeBSD sends FIN and discards unread input. */
#define PS_SYS_UNREAD_INPUT_RESETS 0
#else
#define PS_SYS_UNREAD_INPUT_RESETS 1
#endif

#define PS_OS_EBADF EBADF
#define PS_OS_ENOTSOCK ENOTSOCK
#define PS_OS_ECONNRESET ECONNRESET
#define PS_OS_ECONNABORTED ECONNABORTED
#define PS_OS_ENOTCONN ENOTCONN
#define PS_OS_EPIPE EPIPE
#define PS_OS_ETIMEDOUT ETIMEDOUT
#define PS_OS_EWOULDBLOCK EWOULDBLOCK
#define PS_OS_EAGAIN EAGAIN
#define PS_OS_EINTR EINTR
#define PS_OS_ENETDOWN ENETDOWN
#define PS_OS_EINVAL EINVAL
#define PS_OS_ENOBUFS ENOBUFS
#define PS_OS_EDOM EDOM

static inline int ps_sys_init(void) { return 0; }
/* A handle that cannot be a descriptor (the cast to int would alias
 * another one) is refused as EBADF. */
static inline int ps_sys_handle_ok(intptr_t fd)
{
    if (fd < 0 || fd > 0x7fffffff) {
        errno = EBADF;
        return 0;
    }
    return 1;
}
static inline int ps_sys_error(void) { return errno; }
/* Never retried: after close returns, even with EINTR, the descriptor is
 * gone on Linux and may be reused by another thread. */
static inline int ps_sys_close(ps_sock s) { return close(s); }
static inline int ps_sys_poll(ps_pollfd *fds, size_t n, int ms)
{
    return poll(fds, (nfds_t)n, ms);
}
static inline double ps_sys_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
/* Interrupted by a signal like any wait (EINTR). */
static inline int ps_sys_sleep(int ms) { return poll(NULL, 0, ms); }
/* MSG_DONTWAIT per call: the descriptor's own flags are left alone. */
static inline int ps_sys_nonblocking(ps_sock s)
{
    (void)s;
    return 0;
}
static inline int ps_sys_blocking(ps_sock s)
{
    (void)s;
    return 0;
}
static inline long ps_sys_recv_discard(ps_sock s, char *buf, size_t len)
{
    return (long)recv(s, buf, len, PS_SYS_DISCARD_FLAGS);
}
/* A long drain of one blocking socket waits in recv itself, bounded by
 * SO_RCVTIMEO (set by the engine, restored after): one system call per
 * wake where poll + recv were two.  A signal interrupts it with EINTR (a
 * socket timeout is never restarted, even under SA_RESTART: signal(7)),
 * the timeout ends it with EAGAIN. */
#define PS_SYS_BLOCKING_DRAIN 1
typedef struct timeval ps_timeo;
/* 1 blocking, 0 non-blocking (O_NONBLOCK), -1 error. */
static inline int ps_sys_is_blocking(ps_sock s)
{
    int fl = fcntl(s, F_GETFL);
    return fl < 0 ? -1 : (fl & O_NONBLOCK) == 0;
}
static inline int ps_sys_get_rcvtimeo(ps_sock s, ps_timeo *t)
{
    socklen_t len = (socklen_t)sizeof *t;
    return getsockopt(s, SOL_SOCKET, SO_RCVTIMEO, t, &len);
}
static inline int ps_sys_set_rcvtimeo(ps_sock s, const ps_timeo *t)
{
    return setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, t, (socklen_t)sizeof *t);
}
static inline void ps_sys_timeo_ms(ps_timeo *t, int ms)
{
    t->tv_sec = ms / 1000;
    t->tv_usec = (ms % 1000) * 1000;
}
static inline long ps_sys_recv_discard_wait(ps_sock s, char *buf, size_t len)
{
    return (long)recv(s, buf, len, PS_SYS_DISCARD_FLAGS & ~MSG_DONTWAIT);
}
static inline int ps_sys_pending_input(ps_sock s, unsigned long *n)
{
    int v = 0;
    if (ioctl(s, FIONREAD, &v) != 0)
        return -1;
    *n = (unsigned long)(v < 0 ? 0 : v);
    return 0;
}

#if defined(__linux__)
static inline int ps_sys_unacked(ps_sock s, int fin_sent, unsigned long *n)
{
    /* SIOCOUTQ: unsent + unacknowledged bytes, our FIN counting as one. */
    int v = 0;
    (void)fin_sent;
    if (ioctl(s, SIOCOUTQ, &v) != 0)
        return -1;
    *n = (unsigned long)(v < 0 ? 0 : v);
    return 0;
}
/* For a TCP socket: *input = 0 if there is certainly no unread input,
 * *unacked = 0 if nothing sent is certainly all acknowledged (1: maybe,
 * ask FIONREAD or SIOCOUTQ); -1 if the OS cannot say (ask both).
 * SO_MEMINFO (Linux 4.12+) gives the socket's memory counters in one call:
 * every skb in the receive queue is charged to rmem_alloc (the backlog to
 * its own counter), every skb of the write and retransmit queues to
 * wmem_queued, and SIOCOUTQ > 0 means some skb still holds unacknowledged
 * bytes.  So a zero answers its question; anything else (data, a FIN-only
 * skb, the error queue) leaves it to the exact call.  Not for AF_UNIX,
 * whose queued input is charged to the sender. */
static inline int ps_sys_tcp_queues(ps_sock s, int *input, int *unacked)
{
#ifdef SO_MEMINFO
    uint32_t m[SK_MEMINFO_VARS];
    socklen_t len = (socklen_t)sizeof m;
    if (getsockopt(s, SOL_SOCKET, SO_MEMINFO, m, &len) != 0 ||
        len < (socklen_t)sizeof m)
        return -1;
    *input = m[SK_MEMINFO_RMEM_ALLOC] != 0 || m[SK_MEMINFO_BACKLOG] != 0;
    *unacked = m[SK_MEMINFO_WMEM_QUEUED] != 0;
    return 0;
#else
    (void)s;
    (void)input;
    (void)unacked;
    return -1;
#endif
}
#elif defined(__APPLE__)
/* TCP_CONNECTION_INFO (public since OS X 10.11, xnu-3247): tcpi_state is
 * the TCP state, tcpi_snd_sbbytes the bytes in the send buffer, which TCP
 * keeps until they are acknowledged: unsent and unacknowledged together. */
static inline int ps_sys_unacked(ps_sock s, int fin_sent, unsigned long *n)
{
    struct tcp_connection_info info;
    socklen_t len = (socklen_t)sizeof info;
    if (getsockopt(s, IPPROTO_TCP, TCP_CONNECTION_INFO, &info, &len) != 0)
        return -1;
    if (fin_sent)
        /* Our FIN is acknowledged once we are in FIN-WAIT-2 or later. */
        *n = (info.tcpi_state == PS_TCPS_FIN_WAIT_2 ||
              info.tcpi_state == PS_TCPS_TIME_WAIT ||
              info.tcpi_state == PS_TCPS_CLOSED)
                 ? 0
                 : (unsigned long)info.tcpi_snd_sbbytes + 1;
    else
        *n = (unsigned long)info.tcpi_snd_sbbytes;
    return 0;
}
#elif defined(__FreeBSD__)
/* FIONWRITE: the bytes in the send buffer, which on a TCP socket are those
 * the peer has not acknowledged, sent or still queued (FreeBSD ioctl(2)).
 * TCP_INFO's tcpi_state tells whether our FIN is acknowledged.  (TCP_INFO's
 * tcpi_snd_nxt - tcpi_snd_una leaves out data still queued unsent, so it
 * reads 0 while a full peer window holds data back.) */
static inline int ps_sys_unacked(ps_sock s, int fin_sent, unsigned long *n)
{
    int queued = 0;
    unsigned long bytes;
    if (ioctl(s, FIONWRITE, &queued) != 0)
        return -1;
    bytes = (unsigned long)(queued < 0 ? 0 : queued);
    if (fin_sent) {
        struct tcp_info info;
        socklen_t len = (socklen_t)sizeof info;
        if (getsockopt(s, IPPROTO_TCP, TCP_INFO, &info, &len) != 0)
            return -1;
        /* Our FIN is acknowledged once we are in FIN-WAIT-2 or later. */
        *n = (info.tcpi_state == PS_TCPS_FIN_WAIT_2 ||
              info.tcpi_state == PS_TCPS_TIME_WAIT ||
              info.tcpi_state == PS_TCPS_CLOSED)
                 ? 0
                 : bytes + 1;
    } else {
        *n = bytes;
    }
    return 0;
}
#else
static inline int ps_sys_unacked(ps_sock s, int fin_sent, unsigned long *n)
{
    (void)s;
    (void)fin_sent;
    (void)n;
    return -1;
}
#endif

/* ------------------------------------------------------ readiness set
 * epoll on Linux; everything else, and Linux built with PYSOCK_BACKEND=poll
 * (-DPS_FORCE_POLL), uses ps_sys_poll over an array.
 *
 * An op's socket is registered one-shot: it reports once, then stays in the
 * set disarmed until ps_sys_set_level.  While armed it is level-triggered
 * like poll (the drain loop may stop after a short read, before the recv
 * that would see a FIN queued with the data: the re-armed socket reports at
 * once).  Why one-shot: epoll keys a registration by the open file
 * description, and close() removes it only when the last descriptor of that
 * description goes, so a socket with another descriptor (a dup, a forked
 * child's copy) would stay in the set after we close ours and keep reporting
 * with a tag that may name a new op by then.  An armed socket therefore
 * leaves the set (EPOLL_CTL_DEL) before it is closed, but a disarmed one can
 * never report again, so it is closed without the DEL: that saves a system
 * call on every close that ends on its first event (EOF, reset, the byte
 * cap).  A socket that reports and is still pending (a long drain) is
 * switched to plain level-triggered (one EPOLL_CTL_MOD, then the DEL before
 * its close), so a drain of many wakes costs one call more than without
 * one-shot, never one per wake.  What a dup
 * keeps alive is one disarmed entry until the dup is closed; if that same
 * description comes back under the same number (dup2) and is added again,
 * the ADD says EEXIST and the entry is re-armed instead. */
#if PS_SYS_HAVE_SET
typedef struct epoll_event ps_event;
static inline int ps_sys_set_open(void) { return epoll_create1(EPOLL_CLOEXEC); }
/* Level-triggered and always armed (the wake socket). */
static inline int ps_sys_set_add(int ep, ps_sock s, size_t tag)
{
    struct epoll_event ev;
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.u64 = (uint64_t)tag;
    return epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
}
/* A registered socket, one-shot or not, made level-triggered and armed. */
static inline int ps_sys_set_level(int ep, ps_sock s, size_t tag)
{
    struct epoll_event ev;
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.u64 = (uint64_t)tag;
    return epoll_ctl(ep, EPOLL_CTL_MOD, s, &ev);
}
/* One-shot (an op's socket). */
static inline int ps_sys_set_add_once(int ep, ps_sock s, size_t tag)
{
    struct epoll_event ev;
    ev.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT;
    ev.data.u64 = (uint64_t)tag;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev) == 0)
        return 0;
    if (errno != EEXIST)
        return -1;
    return epoll_ctl(ep, EPOLL_CTL_MOD, s, &ev);
}
static inline int ps_sys_set_wait(int ep, ps_event *evs, int max, int ms)
{
    return epoll_wait(ep, evs, max, ms);
}
static inline size_t ps_sys_event_tag(const ps_event *ev)
{
    return (size_t)ev->data.u64;
}
/* Before closing an armed socket (see above). */
static inline void ps_sys_set_del(int ep, ps_sock s)
{
    struct epoll_event ev; /* non-NULL for kernels before 2.6.9 */
    (void)epoll_ctl(ep, EPOLL_CTL_DEL, s, &ev);
}
static inline void ps_sys_set_close(int ep) { (void)close(ep); }
#endif /* PS_SYS_HAVE_SET */

/* ------------------------------------------------------------ threads
 * What the reaper (reaper.c) needs: a thread, a mutex, a condition variable
 * waited on with a timeout, and a wake pair (two connected non-blocking
 * stream sockets, one byte written to wake a readiness wait): pthreads and
 * socketpair(AF_UNIX).  0 on success, else nonzero. */

typedef pthread_t ps_thread;
typedef pthread_mutex_t ps_mutex;
typedef pthread_cond_t ps_cond;
typedef void *(*ps_thread_main)(void *);
#define PS_THREAD_RETURN void *

/* The thread starts with every signal blocked, so signals keep going to
 * the threads that handle them (CPython's main thread). */
static inline int ps_thread_start(ps_thread *t, ps_thread_main fn, void *arg)
{
    sigset_t all, old;
    int rc;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(t, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}
static inline void ps_thread_join(ps_thread t) { (void)pthread_join(t, NULL); }
/* The calling thread yields to the process's other threads (see the Windows
 * version).  Linux: the nice value is per thread (sched(7)), and
 * setpriority(PRIO_PROCESS, 0) names the calling thread, so the thread's
 * nice is raised by PS_BACKGROUND_NICE (never lowered, so no privilege is
 * needed; failure is harmless).  Elsewhere the nice value is per process
 * and changing it would slow the whole server: nothing is done. */
#define PS_BACKGROUND_NICE 10
static inline void ps_thread_background(void)
{
#ifdef __linux__
    int prio;
    errno = 0;
    prio = getpriority(PRIO_PROCESS, 0);
    if (prio == -1 && errno != 0)
        return;
    prio = prio + PS_BACKGROUND_NICE > 19 ? 19 : prio + PS_BACKGROUND_NICE;
    (void)setpriority(PRIO_PROCESS, 0, prio);
#endif
}
static inline int ps_mutex_init(ps_mutex *m) { return pthread_mutex_init(m, NULL); }
static inline void ps_mutex_destroy(ps_mutex *m) { (void)pthread_mutex_destroy(m); }
static inline void ps_mutex_lock(ps_mutex *m) { (void)pthread_mutex_lock(m); }
static inline void ps_mutex_unlock(ps_mutex *m) { (void)pthread_mutex_unlock(m); }
/* Timed waits on the monotonic clock where it can be chosen (not macOS). */
#ifdef __APPLE__
#define PS_COND_CLOCK CLOCK_REALTIME
#else
#define PS_COND_CLOCK CLOCK_MONOTONIC
#endif
static inline int ps_cond_init(ps_cond *c)
{
    pthread_condattr_t a;
    int rc;
    if (pthread_condattr_init(&a) != 0)
        return -1;
#ifndef __APPLE__
    if (pthread_condattr_setclock(&a, PS_COND_CLOCK) != 0) {
        pthread_condattr_destroy(&a);
        return -1;
    }
#endif
    rc = pthread_cond_init(c, &a);
    pthread_condattr_destroy(&a);
    return rc;
}
static inline void ps_cond_destroy(ps_cond *c) { (void)pthread_cond_destroy(c); }
static inline void ps_cond_broadcast(ps_cond *c) { (void)pthread_cond_broadcast(c); }
/* Wait at most ms (< 0: no limit); may return early, the caller re-checks. */
static inline void ps_cond_wait_ms(ps_cond *c, ps_mutex *m, int ms)
{
    struct timespec ts;
    if (ms < 0) {
        (void)pthread_cond_wait(c, m);
        return;
    }
    clock_gettime(PS_COND_CLOCK, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    (void)pthread_cond_timedwait(c, m, &ts);
}

/* The soft limit on open descriptors (the reaper's descriptor ceiling):
 * 1 and *soft set where there is one, 0 where it is unlimited, -1 where the
 * OS has no such limit (Windows: the caller assumes one). */
static inline int ps_sys_nofile(uint64_t *soft)
{
    struct rlimit rl;
    *soft = 0;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    if (rl.rlim_cur == RLIM_INFINITY)
        return 0;
    *soft = (uint64_t)rl.rlim_cur;
    return 1;
}
static inline int ps_sys_wake_pair(ps_sock sv[2])
{
    int i;
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        return -1;
    for (i = 0; i < 2; i++) {
        int fl = fcntl(sv[i], F_GETFL);
        if (fl < 0 || fcntl(sv[i], F_SETFL, fl | O_NONBLOCK) != 0 ||
            fcntl(sv[i], F_SETFD, FD_CLOEXEC) != 0) {
            close(sv[0]);
            close(sv[1]);
            return -1;
        }
    }
    return 0;
}

#endif
