/* test_platform.h - the one place in tests/c/ that knows which OS it is on.
 *
 * csrc/sys.h already makes the socket calls the same on Winsock and
 * POSIX; this adds what only the tests need: a non-blocking switch, a
 * descriptor that is not a socket, a local stream socket pair, running a
 * check in a child process, and Wine detection.
 */
#ifndef PYSOCK_TEST_PLATFORM_H
#define PYSOCK_TEST_PLATFORM_H

#include <stddef.h>
#include <stdio.h>

#include "sys.h"

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
#include <string.h>
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

#endif
