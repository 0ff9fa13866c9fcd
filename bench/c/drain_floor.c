/* drain_floor.c - the C floors for pysock's benchmarks (Linux / POSIX).
 *
 * Compiled at bench time by pysock/_bench/common.py with the system cc into a
 * temporary directory and loaded with ctypes (which releases the GIL around
 * each call), so the receiving process's CPU time is measured exactly as it
 * is for the Python contenders.  Nothing here is part of pysock.
 *
 *   df_drain        blocking recv(MSG_TRUNC) until EOF: the drain floor
 *   df_close_batch  setsockopt(SO_LINGER) + close on each of n descriptors:
 *                   the per-call floor of pysock.abort / close(Graceful())
 *   df_linger_many  the minimal lingering close of n descriptors with one
 *                   deadline (Linux): shutdown(SHUT_WR), one epoll
 *                   registration (EPOLLIN, level-triggered), recv(MSG_TRUNC)
 *                   to EOF, close; at the deadline SO_LINGER {1,0} + close.
 *                   The floor of pysock.close_many(socks, Drain(timeout)).
 */
#include <errno.h>
#include <stddef.h>
#include <sys/socket.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/epoll.h>
#include <time.h>
#endif

#ifndef MSG_TRUNC
#define MSG_TRUNC 0 /* not Linux: copies into the buffer below */
#endif

static char df_buffer[1024 * 1024];

/* Bytes discarded until EOF, or -errno.  *calls counts recv calls. */
long long df_drain(int fd, size_t len, long long *calls)
{
    long long total = 0, n_calls = 0;
    if (len > sizeof df_buffer)
        len = sizeof df_buffer;
    for (;;) {
        ssize_t n = recv(fd, df_buffer, len, MSG_TRUNC);
        n_calls++;
        if (n > 0) {
            total += n;
            continue;
        }
        if (n == 0)
            break;
        if (errno == EINTR)
            continue;
        *calls = n_calls;
        return -(long long)errno;
    }
    *calls = n_calls;
    return total;
}

/* SO_LINGER {abortive, 0} then close, for each descriptor; returns how many
 * setsockopt calls failed (every descriptor is closed regardless). */
int df_close_batch(const int *fds, int n, int abortive)
{
    struct linger lg;
    int i, failed = 0;
    lg.l_onoff = abortive ? 1 : 0;
    lg.l_linger = 0;
    for (i = 0; i < n; i++) {
        if (setsockopt(fds[i], SOL_SOCKET, SO_LINGER, &lg, sizeof lg) != 0)
            failed++;
        close(fds[i]);
    }
    return failed;
}

/* df_linger_many's per-descriptor results */
#define DF_EOF 0
#define DF_TIMEOUT 1
#define DF_RESET 2
#define DF_ERROR 3

#ifdef __linux__
static char df_small[64 * 1024];

static long long df_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Read and discard what is queued.  1: done (EOF, reset or error, *code
 * set); 0: wait for more.  A short read means the queue was emptied: wait
 * (level-triggered epoll reports a FIN still queued at the next wait). */
static int df_discard(int fd, int *code)
{
    for (;;) {
        ssize_t n = recv(fd, df_small, sizeof df_small, MSG_TRUNC | MSG_DONTWAIT);
        if (n > 0) {
            if ((size_t)n < sizeof df_small)
                return 0;
            continue;
        }
        if (n == 0) {
            *code = DF_EOF;
            return 1;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        *code = (errno == ECONNRESET) ? DF_RESET : DF_ERROR;
        return 1;
    }
}

/* The minimal lingering close of fds[0..n), all within timeout_ms: every
 * descriptor is closed on return and results[i] says how (DF_*).  Returns 0,
 * or -errno if the epoll set could not be made (nothing closed then).
 * n == 0 returns 0 at once: the "is it built" probe. */
int df_linger_many(const int *fds, int n, int timeout_ms, int *results)
{
    struct epoll_event events[1024];
    struct linger abort_lg = {1, 0};
    long long deadline;
    int ep, i, left = 0;
    if (n <= 0)
        return 0;
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        return -errno;
    deadline = df_now_ms() + timeout_ms;
    for (i = 0; i < n; i++) {
        struct epoll_event ev;
        results[i] = -1; /* open */
        if (shutdown(fds[i], SHUT_WR) != 0) {
            results[i] = (errno == ENOTCONN) ? DF_RESET : DF_ERROR;
            close(fds[i]);
            continue;
        }
        ev.events = EPOLLIN;
        ev.data.u32 = (unsigned)i;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev) != 0) {
            results[i] = DF_ERROR;
            close(fds[i]);
            continue;
        }
        left++;
    }
    while (left > 0) {
        long long wait = deadline - df_now_ms();
        int k, got;
        if (wait <= 0)
            break;
        got = epoll_wait(ep, events, (int)(sizeof events / sizeof events[0]), (int)wait);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        for (k = 0; k < got; k++) {
            int j = (int)events[k].data.u32, code = DF_ERROR;
            if (results[j] != -1)
                continue;
            if (df_discard(fds[j], &code)) {
                results[j] = code;
                close(fds[j]); /* leaves the epoll set with its last reference */
                left--;
            }
        }
    }
    for (i = 0; i < n; i++) {
        if (results[i] == -1) {
            setsockopt(fds[i], SOL_SOCKET, SO_LINGER, &abort_lg, sizeof abort_lg);
            close(fds[i]);
            results[i] = DF_TIMEOUT;
        }
    }
    close(ep);
    return 0;
}
#else
int df_linger_many(const int *fds, int n, int timeout_ms, int *results)
{
    (void)fds;
    (void)n;
    (void)timeout_ms;
    (void)results;
    return -ENOSYS; /* epoll and MSG_TRUNC are Linux's */
}
#endif
