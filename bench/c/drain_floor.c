/* drain_floor.c - the C floors for pysock's benchmarks (Linux / POSIX).
 *
 * Compiled at bench time by pysock/_bench.py with the system cc into a
 * temporary directory and loaded with ctypes (which releases the GIL around
 * each call), so the receiving process's CPU time is measured exactly as it
 * is for the Python contenders.  Nothing here is part of pysock.
 *
 *   df_drain        blocking recv(MSG_TRUNC) until EOF: the drain floor
 *   df_close_batch  setsockopt(SO_LINGER) + close on each of n descriptors:
 *                   the per-call floor of pysock.abort / close(Graceful())
 */
#include <errno.h>
#include <stddef.h>
#include <sys/socket.h>
#include <unistd.h>

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
