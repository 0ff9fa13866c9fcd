/* pysock.h - the C core's public API: exactly what Python calls.
 *
 * Everything between the cdef markers is read by pysock/_build.py as the
 * cffi cdef, so it must stay plain declarations: no #include, no macros
 * with arguments.  The core never raises and never touches Python objects:
 * every call returns a status and fills a portable error code, the raw OS
 * error and the step that failed.  What only the C files and the C test
 * programs call is in core.h.
 */
#ifndef PYSOCK_H
#define PYSOCK_H

#include <stddef.h>
#include <stdint.h>

/* cdef-begin */

/* Status returned by the calls below. */
enum {
    PS_DONE = 0,     /* finished; for an op, the handle is freed (or, for a
                        drain-only op, left open) and res is complete */
    PS_PENDING = 1,  /* not over: wait again (a signal or a time slice) */
    PS_CLOSING = 2,  /* ready to free the handle */
    PS_FAIL = -1     /* res.err / res.oserr / res.step say why; nothing freed */
};

/* Portable error codes (ps_error.code). */
enum {
    PS_OK = 0,
    PS_ENOTSOCK = 1,     /* not a socket: EBADF, ENOTSOCK, WSAENOTSOCK */
    PS_ECONNRESET = 2,
    PS_ECONNABORTED = 3,
    PS_ENOTCONN = 4,
    PS_EWOULDBLOCK = 5,
    PS_EINTR = 6,
    PS_ENETDOWN = 7,
    PS_EINVAL = 8,
    PS_ENOTSTREAM = 9,   /* Linger/Drain on a socket that is not SOCK_STREAM */
    PS_ENOMEM = 10,
    PS_EOTHER = 11       /* see oserr */
};

/* Which system call failed (ps_error.step). */
enum {
    PS_STEP_NONE = 0,
    PS_STEP_SOCKTYPE = 1,    /* getsockopt(SO_TYPE): is it a socket? */
    PS_STEP_SETLINGER = 2,
    PS_STEP_GETLINGER = 3,
    PS_STEP_SHUTDOWN = 4,
    PS_STEP_RECV = 5,
    PS_STEP_POLL = 6,
    PS_STEP_CLOSE = 7,
    PS_STEP_IOCTL = 8,
    PS_STEP_ARGS = 9,        /* bad argument, caught before any system call */
    PS_STEP_ALLOC = 10       /* out of memory (code PS_ENOMEM) */
};

/* Policies. */
enum {
    PS_GRACEFUL = 0,
    PS_ABORTIVE = 1,
    PS_LINGER = 2,
    PS_DRAIN = 3,
    PS_DRAIN_ONLY = 4        /* drain() without close */
};

/* shutdown() directions. */
enum { PS_SHUT_RECEIVE = 0, PS_SHUT_SEND = 1, PS_SHUT_BOTH = 2 };

/* CloseResult.how and .reason. */
enum { PS_HOW_GRACEFUL = 0, PS_HOW_ABORTIVE = 1 };
enum {
    PS_REASON_CLOSED = 0,
    PS_REASON_EOF = 1,
    PS_REASON_TIMEOUT = 2,
    PS_REASON_IDLE = 3,
    PS_REASON_MAX_BYTES = 4,
    PS_REASON_RESET = 5,
    PS_REASON_NOT_CONNECTED = 6,
    PS_REASON_RECLAIMED = 7   /* aborted by a reaper to make room */
};

typedef struct {
    int code;    /* PS_E* */
    int oserr;   /* errno, or the WSA code on Windows */
    int step;    /* PS_STEP_* */
} ps_error;

typedef struct {
    int how;            /* PS_HOW_* */
    int reason;         /* PS_REASON_* */
    int peer_eof;       /* the peer's FIN was seen */
    int acked;          /* 1 all acknowledged, 0 not, -1 the OS cannot tell */
    int closed;         /* the handle was freed */
    uint64_t drained;   /* bytes read and discarded */
    double elapsed;     /* seconds, monotonic */
    ps_error err;
} ps_result;

/* One close (or drain) in progress; owned by the caller, filled by
 * ps_op_start.  The fields after `res` are the core's own. */
typedef struct {
    intptr_t fd;
    int kind;
    ps_result res;
    int phase;            /* PS_PENDING, PS_CLOSING, PS_DONE or PS_FAIL */
    int setup;            /* shutdown(send) done, waiting begun */
    int got_data;
    int watched;          /* epoll state (engine.c): none, one-shot armed,
                             disarmed, level-triggered */
    unsigned int backoff_ms;
    double start;
    double deadline;      /* absolute, monotonic; 0 = none */
    double idle;          /* seconds; 0 = none */
    double idle_deadline;
    uint64_t max_bytes;   /* 0 = no cap */
} ps_op;

/* Start Winsock (no-op on POSIX).  0 on success, else the OS error. */
int ps_init(void);

/* Kernel SO_LINGER option; seconds in 0..65535. */
int ps_set_linger(intptr_t fd, int enabled, int seconds, ps_error *err);
int ps_get_linger(intptr_t fd, int *enabled, int *seconds, ps_error *err);
int ps_shutdown(intptr_t fd, int how, ps_error *err);

/* Graceful or Abortive close in one call (the fast path): PS_FAIL
 * (res.err), or how | (acked + 1) << 1 (0..5), with res filled.  flags:
 * PS_CLOSE_ABORTIVE, and PS_CLOSE_TCP when the caller knows the handle is a
 * TCP socket (Python's socket.socket says so): then a Graceful close may ask
 * one question where it asked two (Linux: SO_MEMINFO for FIONREAD and
 * SIOCOUTQ when both queues are empty; the answers are the same). */
enum { PS_CLOSE_ABORTIVE = 1, PS_CLOSE_TCP = 2 };
int ps_close_fast(intptr_t fd, int flags, ps_result *res);

/* Start a close (or drain-only) of kind PS_GRACEFUL..PS_DRAIN_ONLY:
 * PS_PENDING (Linger, Drain, drain-only), PS_CLOSING (Graceful, Abortive:
 * ready to free) or PS_FAIL (res.err, nothing touched).  An engine (below)
 * then runs it, or a reaper takes it (ps_reaper_submit_op). */
int ps_op_start(ps_op *op, intptr_t fd, int kind, double timeout,
                double idle, uint64_t max_bytes);
/* The same for a handle the caller knows to be a stream socket (Python's
 * socket.socket says so): Linger, Drain and drain-only skip SO_TYPE, and
 * the op's first system call is the check that it is still an open socket
 * (a descriptor closed behind the object's back and reused by a file fails
 * there with PS_ENOTSOCK, before anything is shut down or closed; a reused
 * socket is used, as it would be with SO_TYPE). */
int ps_op_start_stream(ps_op *op, intptr_t fd, int kind, double timeout,
                       double idle, uint64_t max_bytes);

/* The many-connection engine: one readiness set (epoll on Linux, WSAPoll on
 * Windows, poll elsewhere) over started ops, kept across calls, so closing
 * N connections costs O(N) system calls and one wait.  ps_engine_run frees
 * each op as it finishes, writing its index to freed[] (room for n) and the
 * count to *nfreed, and returns once some op is over, at the end of the
 * slice, or on a signal: the number still pending, or PS_FAIL (err). */
typedef struct ps_engine ps_engine;
ps_engine *ps_engine_new(ps_op *ops, size_t n);
int ps_engine_run(ps_engine *e, int slice_ms, size_t *freed, size_t *nfreed,
                  ps_error *err);
void ps_engine_free(ps_engine *e);

/* The reaper: a thread of the C core that owns an engine over op storage
 * that grows on demand, and never touches Python.  Thread-safe: every call
 * below may be made from any thread at once (its state is guarded by its own
 * mutex), except that ps_reaper_free and the ps_reaper_fork_* calls must not
 * race other calls on the same reaper.
 *
 * ps_reaper_new: capacity = op slots to begin with (it grows as needed);
 * max_in_flight = 0 for no cap, else when that many closes are in the
 * engine the oldest is reclaimed (RST, PS_REASON_RECLAIMED) to make room.
 * NULL on failure (err says why). */
typedef struct ps_reaper ps_reaper;

/* One finished close: the caller's token, status PS_DONE (res complete,
 * res.closed = the handle was freed) or PS_FAIL (res.err says why; the
 * handle was not freed by the core). */
typedef struct {
    uint64_t token;
    int status;
    ps_result res;
} ps_completion;

typedef struct {
    uint64_t submitted;  /* accepted by ps_reaper_submit */
    uint64_t done;       /* completed with PS_DONE (reclaimed included) */
    uint64_t failed;     /* completed with PS_FAIL (or, out of memory, a
                            completion dropped) */
    uint64_t reclaimed;  /* of done: ended by a reclaim or the cap */
    uint64_t in_flight;  /* submitted, not yet completed */
    uint64_t waiting;    /* completions not yet harvested */
    uint64_t capacity;   /* op slots allocated now */
    uint64_t max_in_flight; /* the cap, 0 = none */
} ps_reaper_stats;

enum {
    PS_REAPER_CLOSED = -2, /* submit: the reaper takes no new work */
    PS_REAPER_RECLAIM_REPORT = 3 /* ps_completion.status of the answer to
                                    ps_reaper_reclaim_async: res.drained is
                                    how many were reclaimed (not a close) */
};

ps_reaper *ps_reaper_new(size_t capacity, size_t max_in_flight,
                         ps_error *err);
/* Validate (ps_op_start: a bad policy or handle is refused here, in the
 * caller's thread, and nothing is touched) and queue a Linger or Drain
 * close of fd; from PS_DONE on, the handle is the reaper's.  Returns
 * PS_DONE, PS_FAIL (err) or PS_REAPER_CLOSED (nothing touched). */
int ps_reaper_submit(ps_reaper *r, intptr_t fd, int kind, double timeout,
                     double idle, uint64_t max_bytes, uint64_t token,
                     ps_error *err);
/* The same for an op the caller started with ps_op_start or
 * ps_op_start_stream (a Linger or Drain in PS_PENDING, not yet stepped):
 * it is copied into the queue, and from PS_DONE on its handle is the
 * reaper's; the caller's op is then marked handed over (its phase set to
 * PS_DONE), so a caller interrupted right after the call (a Python signal
 * handler that raises) can still tell.  PS_DONE, PS_FAIL (err: a bad op,
 * or out of memory) or PS_REAPER_CLOSED; on failure the handle is
 * untouched and still the caller's, and the op's phase is left as it was. */
int ps_reaper_submit_op(ps_reaper *r, ps_op *op, uint64_t token,
                        ps_error *err);
/* Move up to max completions into out; returns how many.  When it leaves
 * none waiting, the notification descriptor is emptied. */
size_t ps_reaper_harvest(ps_reaper *r, ps_completion *out, size_t max);
/* A socket that is readable while completions wait to be harvested: one
 * byte is written per batch, not per completion (for add_reader). */
intptr_t ps_reaper_notify_fd(const ps_reaper *r);
/* Block until completions wait (returns how many), ms pass (0; ms < 0: no
 * limit), or the reaper's thread has stopped with none waiting (-1). */
int ps_reaper_wait(ps_reaper *r, int ms);
/* Without waiting: the thread reclaims the n oldest closes in flight (RST,
 * PS_REASON_RECLAIMED; n = 0: nginx's share, an eighth of those in flight,
 * 1 to 32) after what was submitted before this call, and answers with a
 * completion of status PS_REAPER_RECLAIM_REPORT, `token`, res.drained = how
 * many (their own completions come in the same batch, before it).  PS_DONE,
 * PS_FAIL (out of memory) or PS_REAPER_CLOSED (stopped: no answer will
 * come). */
int ps_reaper_reclaim_async(ps_reaper *r, size_t n, uint64_t token);
/* The descriptor ceiling: from now on, when a submission would make the
 * closes in the engine pass soft RLIMIT_NOFILE - max(reserve_min,
 * soft / reserve_div) (at least 1; default_soft where the OS has no such
 * limit, Windows; none when unlimited), the oldest is reclaimed first, as
 * under the cap.  The thread reads the limit when a submission would pass
 * the ceiling last read (so a raised limit counts at once) and at least
 * once a second otherwise. */
void ps_reaper_set_fd_limit(ps_reaper *r, size_t reserve_min,
                            size_t reserve_div, uint64_t default_soft);
/* That ceiling now, computed the same way (0 = none). */
size_t ps_reaper_fd_ceiling(size_t reserve_min, size_t reserve_div,
                            uint64_t default_soft);
/* No new work; what is in flight finishes by its policy until timeout
 * seconds from now (< 0: no limit beyond the policies' own deadlines),
 * then the rest is aborted (PS_REASON_TIMEOUT); the thread is joined.
 * Idempotent; a later call may only bring the deadline forward. */
void ps_reaper_close(ps_reaper *r, double timeout);
/* The reaper's counts (its one set of books: Python reads them here). */
void ps_reaper_get_stats(ps_reaper *r, ps_reaper_stats *out);
/* Close (timeout 0) if not closed, then free everything; completions not
 * harvested are dropped. */
void ps_reaper_free(ps_reaper *r);
/* fork(): call prepare before it (parks the thread at a safe point and
 * holds the reaper's lock), then parent in the parent (resumes) or child
 * in the child: there the thread does not exist; child closes the child's
 * copies of every handle the reaper holds and its own sockets, and leaves
 * the reaper stopped (submit says closed, wait says stopped); free it with
 * ps_reaper_free, which then touches no thread.  A reaper forked without
 * prepare must only be leaked in the child. */
void ps_reaper_fork_prepare(ps_reaper *r);
void ps_reaper_fork_parent(ps_reaper *r);
void ps_reaper_fork_child(ps_reaper *r);
/* Lower the calling thread's priority below the process's other threads
 * (Linux: nice +10 for this thread only; Windows: BELOW_NORMAL; elsewhere
 * nothing, the nice value being per process there).  The reaper's own
 * thread does it at its start; Python's delivery thread calls it. */
void ps_background_thread(void);

/* Whether this build discards with MSG_TRUNC (no copy). */
int ps_drain_zero_copy(void);

/* cdef-end */

#endif
