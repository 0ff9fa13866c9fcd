/* sys_win.h - Windows: Winsock, and Windows threads for the reaper.
 *
 * Included by sys.h only, which gives the same names on POSIX (sys_posix.h)
 * and adds what is the same on both.  Every call returns -1 (or a negative
 * count) on failure, and ps_sys_error() gives the OS error (a WSA code).
 */
#ifndef PYSOCK_SYS_WIN_H
#define PYSOCK_SYS_WIN_H

#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <winsock2.h>
#include <ws2tcpip.h>
#include <mstcpip.h>
#include <windows.h>
#include <process.h>
#include <string.h>

typedef SOCKET ps_sock;
typedef WSAPOLLFD ps_pollfd;
typedef u_short ps_linger_field;        /* struct linger is {u_short,u_short} */
#define PS_SYS_SO_LINGER SO_LINGER      /* seconds */
#define PS_SYS_SHUT_RD SD_RECEIVE
#define PS_SYS_SHUT_WR SD_SEND
#define PS_SYS_SHUT_RDWR SD_BOTH
#define PS_SYS_POLLIN POLLRDNORM
#define PS_SYS_POLLERRS (POLLERR | POLLHUP | POLLNVAL)
#define PS_SYS_DISCARD_FLAGS 0
#define PS_SYS_ZERO_COPY 0
#define PS_SYS_PEEK_FLAGS MSG_PEEK /* the op made the socket non-blocking */
/* closesocket with unread input sends RST (documented by Microsoft). */
#define PS_SYS_UNREAD_INPUT_RESETS 1
/* No SIGPIPE on Windows: a plain send. */
#define PS_SYS_SEND_FLAGS 0
/* No kernel readiness set (sys.h's stubs: the engine keeps its WSAPoll
 * array), and no one-call question for both TCP queues (sys.h). */
#define PS_SYS_HAVE_SET 0
#define PS_SYS_HAVE_TCP_QUEUES 0

#define PS_OS_EBADF WSAEBADF
#define PS_OS_ENOTSOCK WSAENOTSOCK
#define PS_OS_ECONNRESET WSAECONNRESET
#define PS_OS_ECONNABORTED WSAECONNABORTED
#define PS_OS_ENOTCONN WSAENOTCONN
#define PS_OS_EPIPE WSAECONNRESET /* Winsock has no EPIPE: a reset says so */
#define PS_OS_ETIMEDOUT WSAETIMEDOUT
#define PS_OS_EWOULDBLOCK WSAEWOULDBLOCK
#define PS_OS_EAGAIN WSAEWOULDBLOCK
#define PS_OS_EINTR WSAEINTR
#define PS_OS_ENETDOWN WSAENETDOWN
#define PS_OS_EINVAL WSAEINVAL
#define PS_OS_ENOBUFS WSAENOBUFS
#define PS_OS_EDOM WSAEINVAL

/* SIO_TCP_INFO (Windows 10 1703+) and TCP_INFO_v0, declared here from
 * Microsoft's documentation because mingw-w64's headers lack them. */
#ifndef SIO_TCP_INFO
#define SIO_TCP_INFO _WSAIORW(IOC_VENDOR, 39)
#endif
typedef struct {
    int State; /* TCPSTATE: 0 CLOSED ... 6 FIN_WAIT_2 ... 10 TIME_WAIT */
    ULONG Mss;
    ULONG64 ConnectionTimeMs;
    BOOLEAN TimestampsEnabled;
    ULONG RttUs;
    ULONG MinRttUs;
    ULONG BytesInFlight;
    ULONG Cwnd;
    ULONG SndWnd;
    ULONG RcvWnd;
    ULONG RcvBuf;
    ULONG64 BytesOut;
    ULONG64 BytesIn;
    ULONG BytesReordered;
    ULONG BytesRetrans;
    ULONG FastRetrans;
    ULONG DupAcksIn;
    ULONG TimeoutEpisodes;
    UCHAR SynRetrans;
} ps_tcp_info_v0;
#define PS_TCPSTATE_CLOSED 0
#define PS_TCPSTATE_FIN_WAIT_2 6
#define PS_TCPSTATE_TIME_WAIT 10

static inline int ps_sys_init(void)
{
    WSADATA data;
    return WSAStartup(MAKEWORD(2, 2), &data);
}
static inline int ps_sys_error(void) { return WSAGetLastError(); }
static inline int ps_sys_handle_ok(intptr_t fd)
{
    if ((SOCKET)fd == INVALID_SOCKET) {
        WSASetLastError(WSAENOTSOCK);
        return 0;
    }
    return 1;
}
static inline int ps_sys_close(ps_sock s) { return closesocket(s); }
static inline int ps_sys_poll(ps_pollfd *fds, size_t n, int ms)
{
    return WSAPoll(fds, (ULONG)n, ms);
}
static inline double ps_sys_now(void)
{
    static LARGE_INTEGER freq; /* set once; QueryPerformanceFrequency never changes */
    LARGE_INTEGER t;
    if (freq.QuadPart == 0)
        QueryPerformanceFrequency(&freq);
    QueryPerformanceCounter(&t);
    return (double)t.QuadPart / (double)freq.QuadPart;
}
/* Winsock has no MSG_DONTWAIT: ops put the socket they own in
 * non-blocking mode, which is also what keeps closesocket from ever
 * blocking (a lingering closesocket on it is never asked for). */
static inline int ps_sys_sleep(int ms)
{
    Sleep((DWORD)ms);
    return 0;
}
static inline int ps_sys_blocking(ps_sock s)
{
    u_long off = 0;
    return ioctlsocket(s, FIONBIO, &off);
}
static inline int ps_sys_nonblocking(ps_sock s)
{
    u_long on = 1;
    return ioctlsocket(s, FIONBIO, &on);
}
static inline long ps_sys_recv_discard(ps_sock s, char *buf, size_t len)
{
    return (long)recv(s, buf, (int)(len > 0x7fffffff ? 0x7fffffff : len), 0);
}
/* A drain waits in poll, never in recv: an op's socket is non-blocking
 * (FIONBIO, see above), so the blocking-recv drain of POSIX is off. */
#define PS_SYS_BLOCKING_DRAIN 0
typedef DWORD ps_timeo;
static inline int ps_sys_is_blocking(ps_sock s)
{
    (void)s;
    return -1;
}
static inline int ps_sys_get_rcvtimeo(ps_sock s, ps_timeo *t)
{
    (void)s;
    (void)t;
    return -1;
}
static inline int ps_sys_set_rcvtimeo(ps_sock s, const ps_timeo *t)
{
    (void)s;
    (void)t;
    return -1;
}
static inline void ps_sys_timeo_ms(ps_timeo *t, int ms) { *t = (DWORD)ms; }
static inline long ps_sys_recv_discard_wait(ps_sock s, char *buf, size_t len)
{
    return ps_sys_recv_discard(s, buf, len);
}
static inline int ps_sys_pending_input(ps_sock s, unsigned long *n)
{
    u_long v = 0;
    if (ioctlsocket(s, FIONREAD, &v) != 0)
        return -1;
    *n = v;
    return 0;
}
/* Bytes sent but not yet acknowledged, our FIN counting as one: 0 means
 * the peer has acknowledged everything.  -1: the OS cannot tell (before
 * Windows 10 1703). */
static inline int ps_sys_unacked(ps_sock s, int fin_sent, unsigned long *n)
{
    DWORD version = 0, got = 0;
    ps_tcp_info_v0 info;
    if (WSAIoctl(s, SIO_TCP_INFO, &version, sizeof version, &info,
                 sizeof info, &got, NULL, NULL) != 0)
        return -1;
    if (fin_sent) {
        /* Our FIN is acknowledged once we are in FIN-WAIT-2 or later. */
        *n = (info.State == PS_TCPSTATE_FIN_WAIT_2 ||
              info.State == PS_TCPSTATE_TIME_WAIT ||
              info.State == PS_TCPSTATE_CLOSED)
                 ? 0
                 : (unsigned long)info.BytesInFlight + 1;
    } else {
        /* BytesInFlight leaves out data still queued unsent (a full peer
         * window): zero in flight does not mean all acknowledged. */
        if (info.BytesInFlight == 0)
            return -1;
        *n = (unsigned long)info.BytesInFlight;
    }
    return 0;
}

/* ------------------------------------------------------------ threads
 * What the reaper (reaper.c) needs: a thread, a mutex, a condition variable
 * waited on with a timeout, and a wake pair (two connected non-blocking
 * stream sockets, one byte written to wake a readiness wait).  Windows:
 * _beginthreadex, SRWLOCK, CONDITION_VARIABLE and a loopback TCP pair (as
 * Python's socket.socketpair does there).  0 on success, else nonzero. */

typedef HANDLE ps_thread;
typedef SRWLOCK ps_mutex;
typedef CONDITION_VARIABLE ps_cond;
typedef unsigned(__stdcall *ps_thread_main)(void *);
#define PS_THREAD_RETURN unsigned __stdcall

static inline int ps_thread_start(ps_thread *t, ps_thread_main fn, void *arg)
{
    uintptr_t h = _beginthreadex(NULL, 0, fn, arg, 0, NULL);
    if (h == 0)
        return -1;
    *t = (HANDLE)h;
    return 0;
}
static inline void ps_thread_join(ps_thread t)
{
    WaitForSingleObject(t, INFINITE);
    CloseHandle(t);
}
/* The calling thread yields to the process's other threads: the reaper's
 * threads are background work, a busy server's own threads come first. */
static inline void ps_thread_background(void)
{
    (void)SetThreadPriority(GetCurrentThread(), THREAD_PRIORITY_BELOW_NORMAL);
}
static inline int ps_mutex_init(ps_mutex *m)
{
    InitializeSRWLock(m);
    return 0;
}
static inline void ps_mutex_destroy(ps_mutex *m) { (void)m; }
static inline void ps_mutex_lock(ps_mutex *m) { AcquireSRWLockExclusive(m); }
static inline void ps_mutex_unlock(ps_mutex *m) { ReleaseSRWLockExclusive(m); }
static inline int ps_cond_init(ps_cond *c)
{
    InitializeConditionVariable(c);
    return 0;
}
static inline void ps_cond_destroy(ps_cond *c) { (void)c; }
static inline void ps_cond_broadcast(ps_cond *c) { WakeAllConditionVariable(c); }
/* Wait at most ms (< 0: no limit); may return early, the caller re-checks. */
static inline void ps_cond_wait_ms(ps_cond *c, ps_mutex *m, int ms)
{
    (void)SleepConditionVariableSRW(c, m, ms < 0 ? INFINITE : (DWORD)ms, 0);
}

/* The soft limit on open descriptors (the reaper's descriptor ceiling):
 * 1 and *soft set where there is one, 0 where it is unlimited, -1 where the
 * OS has no such limit (Windows: the caller assumes one). */
static inline int ps_sys_nofile(uint64_t *soft)
{
    *soft = 0;
    return -1;
}
static inline int ps_sys_wake_pair(ps_sock sv[2])
{
    struct sockaddr_in addr;
    int len = (int)sizeof addr;
    u_long on = 1;
    ps_sock l = socket(AF_INET, SOCK_STREAM, 0);
    sv[0] = sv[1] = INVALID_SOCKET;
    if (l == INVALID_SOCKET)
        return -1;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(l, (struct sockaddr *)&addr, len) != 0 || listen(l, 1) != 0 ||
        getsockname(l, (struct sockaddr *)&addr, &len) != 0)
        goto fail;
    sv[1] = socket(AF_INET, SOCK_STREAM, 0);
    if (sv[1] == INVALID_SOCKET ||
        connect(sv[1], (struct sockaddr *)&addr, (int)sizeof addr) != 0)
        goto fail;
    sv[0] = accept(l, NULL, NULL);
    if (sv[0] == INVALID_SOCKET)
        goto fail;
    closesocket(l);
    if (ioctlsocket(sv[0], FIONBIO, &on) != 0 ||
        ioctlsocket(sv[1], FIONBIO, &on) != 0) {
        l = INVALID_SOCKET;
        goto fail;
    }
    return 0;
fail:
    if (l != INVALID_SOCKET)
        closesocket(l);
    if (sv[0] != INVALID_SOCKET)
        closesocket(sv[0]);
    if (sv[1] != INVALID_SOCKET)
        closesocket(sv[1]);
    sv[0] = sv[1] = INVALID_SOCKET;
    return -1;
}

#endif
