/* check.h - what the C test programs share: the check harness, the
 * socket helpers, and the one place in tests/c/ that knows which OS it is
 * on.
 *
 * Each check prints "ok - name" or "not ok - name (why)" (a skipped one
 * "ok - name # SKIP why", a known Wine deviation "ok - name # expected Wine
 * deviation"); check_summary prints the last line, "N passed, M failed",
 * and gives the exit status, 1 if M > 0.
 *
 * csrc/sys.h already makes the socket calls the same on Winsock and POSIX
 * (the programs include csrc/core.h, which includes it); the OS part below
 * adds what only the tests need: a non-blocking switch, a descriptor that
 * is not a socket, a local stream socket pair, a signal after a delay,
 * running a check in a child process, and Wine detection.
 */
#ifndef PYSOCK_CHECK_H
#define PYSOCK_CHECK_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "core.h"

/* An open descriptor/handle that is not a socket, and a way to show it is
 * still open after the core refused it. */
typedef struct {
    intptr_t as_fd;  /* what is handed to the core */
    intptr_t other;  /* the other end, to read back what was written */
} tp_nonsock;

#ifdef _WIN32
/* ---------------------------------------------------------------- Windows */

/* Closing a non-blocking socket with SO_LINGER {1,N} and unsent data fails
 * with WSAEWOULDBLOCK and leaves the handle open (documented). */
#define TP_LINGER_CLOSE_NONBLOCK_FAILS 1
#define TP_HAVE_LOCAL_STREAM_PAIR 0
#define TP_HAVE_ISOLATION 0
/* What Wine's setsockopt/shutdown answer for a handle that is not a
 * socket (Windows: WSAENOTSOCK). */
#define TP_OS_EOPNOTSUPP WSAEOPNOTSUPP

static inline int tp_init(void) { return ps_sys_init(); }

/* Wine exports wine_get_version from its ntdll; Windows does not. */
static inline int tp_is_wine(void)
{
    HMODULE ntdll = GetModuleHandleA("ntdll.dll");
    return ntdll != NULL && GetProcAddress(ntdll, "wine_get_version") != 0;
}

static inline int tp_set_nonblocking(ps_sock s, int on)
{
    u_long v = on ? 1 : 0;
    return ioctlsocket(s, FIONBIO, &v);
}

/* An anonymous pipe: its write end is a HANDLE but not a SOCKET. */
static inline int tp_nonsock_open(tp_nonsock *n)
{
    HANDLE r, w;
    if (!CreatePipe(&r, &w, NULL, 0))
        return -1;
    n->as_fd = (intptr_t)w;
    n->other = (intptr_t)r;
    return 0;
}

static inline int tp_nonsock_usable(const tp_nonsock *n)
{
    DWORD done = 0;
    char c = 0;
    if (!WriteFile((HANDLE)n->as_fd, "x", 1, &done, NULL) || done != 1)
        return 0;
    if (!ReadFile((HANDLE)n->other, &c, 1, &done, NULL) || done != 1)
        return 0;
    return c == 'x';
}

static inline void tp_nonsock_close(tp_nonsock *n)
{
    CloseHandle((HANDLE)n->as_fd);
    CloseHandle((HANDLE)n->other);
}

static inline int tp_local_stream_pair(ps_sock sv[2])
{
    (void)sv;
    return -1;
}

/* SO_RCVTIMEO counts milliseconds in a DWORD. */
static inline int tp_set_rcvtimeo_ms(ps_sock s, int ms)
{
    DWORD v = (DWORD)ms;
    return setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, (const char *)&v,
                      (int)sizeof v);
}

/* No way to interrupt a wait with a signal: the check is skipped. */
static inline int tp_signal_after_ms(int ms)
{
    (void)ms;
    return -1;
}
static inline int tp_signals_seen(void) { return 0; }

/* No fork(): the reaper's fork hooks are not checked. */
#define TP_HAVE_FORK 0
static inline int tp_forked(void (*prepare)(void *), void (*parent)(void *),
                            int (*child)(void *), void *arg, char *why,
                            size_t whylen)
{
    (void)prepare;
    (void)parent;
    (void)child;
    (void)arg;
    snprintf(why, whylen, "no fork on Windows");
    return 0;
}

/* No fork: the check runs in this process. */
static inline int tp_isolated(int (*fn)(void *), void *arg, char *why,
                              size_t whylen)
{
    if (fn(arg))
        return 1;
    snprintf(why, whylen, "see the lines above");
    return 0;
}

#else
/* ------------------------------------------------------------------ POSIX */
#include <fcntl.h>
#include <signal.h>
#include <sys/time.h>
#include <sys/wait.h>

/* Linux blocks in close (it ignores O_NONBLOCK); macOS and the BSDs return
 * at once.  Either way close returns 0 and the descriptor is gone. */
#define TP_LINGER_CLOSE_NONBLOCK_FAILS 0
#define TP_HAVE_LOCAL_STREAM_PAIR 1
#define TP_HAVE_ISOLATION 1
#define TP_OS_EOPNOTSUPP EOPNOTSUPP /* only read under Wine */

static inline int tp_init(void)
{
    /* A send to a reset peer must fail with EPIPE, not kill the program. */
    signal(SIGPIPE, SIG_IGN);
    return ps_sys_init();
}

static inline int tp_is_wine(void) { return 0; }

static inline int tp_set_nonblocking(ps_sock s, int on)
{
    int flags = fcntl(s, F_GETFL);
    if (flags < 0)
        return -1;
    flags = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
    return fcntl(s, F_SETFL, flags);
}

static inline int tp_set_rcvtimeo_ms(ps_sock s, int ms)
{
    struct timeval tv;
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    return setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, (socklen_t)sizeof tv);
}

static volatile sig_atomic_t tp_signal_count;

static void tp_on_signal(int sig)
{
    (void)sig;
    tp_signal_count++;
}

/* Deliver SIGALRM once after ms, to a handler installed without
 * SA_RESTART (as CPython installs its own).  0 if armed, -1 if not. */
static inline int tp_signal_after_ms(int ms)
{
    struct sigaction sa;
    struct itimerval it;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = tp_on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    if (sigaction(SIGALRM, &sa, NULL) != 0)
        return -1;
    memset(&it, 0, sizeof it);
    it.it_value.tv_sec = ms / 1000;
    it.it_value.tv_usec = (ms % 1000) * 1000;
    return setitimer(ITIMER_REAL, &it, NULL);
}

static inline int tp_signals_seen(void) { return (int)tp_signal_count; }

/* A pipe: a descriptor, but not a socket (ENOTSOCK). */
static inline int tp_nonsock_open(tp_nonsock *n)
{
    int p[2];
    if (pipe(p) != 0)
        return -1;
    n->as_fd = p[1];
    n->other = p[0];
    return 0;
}

static inline int tp_nonsock_usable(const tp_nonsock *n)
{
    char c = 0;
    if (fcntl((int)n->as_fd, F_GETFD) < 0)
        return 0;
    if (write((int)n->as_fd, "x", 1) != 1)
        return 0;
    if (read((int)n->other, &c, 1) != 1)
        return 0;
    return c == 'x';
}

static inline void tp_nonsock_close(tp_nonsock *n)
{
    close((int)n->as_fd);
    close((int)n->other);
}

/* AF_UNIX SOCK_STREAM: a stream socket that is not TCP. */
static inline int tp_local_stream_pair(ps_sock sv[2])
{
    return socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
}

#define TP_HAVE_FORK 1

/* fork() with prepare(arg) before it, parent(arg) after it in this process
 * and child(arg) in the child, whose nonzero return is its success.  1 if
 * the child succeeded; else 0 with the reason in why. */
static inline int tp_forked(void (*prepare)(void *), void (*parent)(void *),
                            int (*child)(void *), void *arg, char *why,
                            size_t whylen)
{
    pid_t pid;
    int status = 0;
    fflush(stdout);
    fflush(stderr);
    prepare(arg);
    pid = fork();
    if (pid == 0)
        _exit(child(arg) ? 0 : 1);
    parent(arg);
    if (pid < 0) {
        snprintf(why, whylen, "fork failed: errno %d", errno);
        return 0;
    }
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            snprintf(why, whylen, "waitpid failed: errno %d", errno);
            return 0;
        }
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 1;
    snprintf(why, whylen, "child status %d", status);
    return 0;
}

/* Run fn(arg) in a child process, so that memory corruption or a sanitizer
 * abort in it cannot take the rest of the program down.  1 if it returned
 * nonzero; else 0 with the reason in why. */
static inline int tp_isolated(int (*fn)(void *), void *arg, char *why,
                              size_t whylen)
{
    pid_t pid;
    int status = 0;
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        snprintf(why, whylen, "fork failed: errno %d", errno);
        return 0;
    }
    if (pid == 0)
        _exit(fn(arg) ? 0 : 1);
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            snprintf(why, whylen, "waitpid failed: errno %d", errno);
            return 0;
        }
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 1;
    if (WIFEXITED(status))
        snprintf(why, whylen,
                 "child exited with status %d; a sanitizer report, if any, "
                 "is above",
                 WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(why, whylen, "child killed by signal %d", WTERMSIG(status));
    else
        snprintf(why, whylen, "child status %d", status);
    return 0;
}

#endif /* _WIN32 */

/* ------------------------------------------------------------- reporting */

static int g_passed, g_failed, g_wine, g_wine_deviations;

static inline void vcheck(const char *name, int cond, int wine_deviation,
                          const char *fmt, va_list ap)
{
    if (cond) {
        printf("ok - %s\n", name);
        g_passed++;
    } else if (wine_deviation && g_wine) {
        printf("ok - %s # expected Wine deviation\n", name);
        g_passed++;
        g_wine_deviations++;
    } else {
        printf("not ok - %s (", name);
        vprintf(fmt, ap);
        printf(")\n");
        g_failed++;
    }
    fflush(stdout);
}

/* One check: it passes if cond, else fails saying why (fmt, as printf). */
static inline void check(const char *name, int cond, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vcheck(name, cond, 0, fmt, ap);
    va_end(ap);
}

/* A check that Wine is known to fail in the way `wine_deviation` says. */
static inline void check_wine(const char *name, int cond, int wine_deviation,
                              const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vcheck(name, cond, wine_deviation, fmt, ap);
    va_end(ap);
}

static inline void skip(const char *name, const char *why)
{
    printf("ok - %s # SKIP %s\n", name, why);
    g_passed++;
    fflush(stdout);
}

/* Start the sockets (POSIX: ignore SIGPIPE) and detect Wine, saying so
 * with `wine_note` after "# running under Wine".  0, or nonzero after
 * printing a failed startup and the last line. */
static inline int check_begin(const char *wine_note)
{
    int e = tp_init();
    if (e != 0) {
        printf("not ok - startup (error %d)\n0 passed, 1 failed\n", e);
        return 1;
    }
    g_wine = tp_is_wine();
    if (g_wine)
        printf("# running under Wine%s\n", wine_note);
    return 0;
}

/* The last line, "N passed, M failed"; returns the exit status. */
static inline int check_summary(void)
{
    if (g_wine)
        printf("# %d of the passes are expected Wine deviations\n",
               g_wine_deviations);
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed > 0 ? 1 : 0;
}

/* ------------------------------------------------------- socket helpers */

#define BAD_SOCK ((ps_sock)-1) /* INVALID_SOCKET on Windows, -1 on POSIX */

/* 1 if s becomes readable (data, EOF or an error) within ms (0: now). */
static inline int wait_readable(ps_sock s, int ms)
{
    ps_pollfd p;
    double end = ps_sys_now() + ms / 1000.0;
    for (;;) {
        double left = end - ps_sys_now();
        int rc;
        if (left < 0)
            left = 0;
        p.fd = s;
        p.events = PS_SYS_POLLIN;
        p.revents = 0;
        rc = ps_sys_poll(&p, 1, ms == 0 ? 0 : (int)(left * 1000.0) + 1);
        if (rc > 0)
            return 1;
        if (rc == 0 || ps_sys_portable(ps_sys_error()) != PS_EINTR)
            return 0;
    }
}

/* Wait at most ms for s to take more data. */
static inline void wait_writable(ps_sock s, int ms)
{
    ps_pollfd p;
    p.fd = s;
    p.events = POLLOUT;
    p.revents = 0;
    (void)ps_sys_poll(&p, 1, ms);
}

/* A loopback TCP listener on a free port (*addr says which); BAD_SOCK if
 * none. */
static inline ps_sock tcp_listener(struct sockaddr_in *addr, int backlog)
{
    socklen_t len = (socklen_t)sizeof *addr;
    ps_sock l = socket(AF_INET, SOCK_STREAM, 0);
    if (l == BAD_SOCK)
        return BAD_SOCK;
    memset(addr, 0, sizeof *addr);
    addr->sin_family = AF_INET;
    addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr->sin_port = 0;
    if (bind(l, (struct sockaddr *)addr, (socklen_t)sizeof *addr) != 0 ||
        listen(l, backlog) != 0 ||
        getsockname(l, (struct sockaddr *)addr, &len) != 0) {
        ps_sys_close(l);
        return BAD_SOCK;
    }
    return l;
}

/* A connected loopback pair: *ours is the accepted end (the one the core
 * closes, like a server's), *peer the connecting end.  0 on success, else
 * -1 with both BAD_SOCK. */
static inline int tcp_pair(ps_sock *ours, ps_sock *peer)
{
    struct sockaddr_in addr;
    ps_sock l = tcp_listener(&addr, 16);
    *ours = *peer = BAD_SOCK;
    if (l == BAD_SOCK)
        return -1;
    *peer = socket(AF_INET, SOCK_STREAM, 0);
    if (*peer == BAD_SOCK ||
        connect(*peer, (struct sockaddr *)&addr, (socklen_t)sizeof addr) != 0) {
        if (*peer != BAD_SOCK)
            ps_sys_close(*peer);
        ps_sys_close(l);
        *peer = BAD_SOCK;
        return -1;
    }
    *ours = accept(l, NULL, NULL);
    ps_sys_close(l);
    if (*ours == BAD_SOCK) {
        ps_sys_close(*peer);
        *peer = BAD_SOCK;
        return -1;
    }
    return 0;
}

#endif
