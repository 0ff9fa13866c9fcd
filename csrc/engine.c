/* engine.c - the many-connection engine: one readiness set, one wait.
 *
 * The engine keeps the started ops of one call in an active list and their
 * sockets in one readiness set (epoll on Linux, poll/WSAPoll elsewhere and
 * for small sets), so each wake touches only the ops that are ready; the
 * clock is read once per wait.  Deadlines and idle timers are scanned only
 * when the earliest of them is due.  ps_op_wait and ps_ops_wait are the
 * same engine, run without freeing.
 */
#include <math.h>
#include <stdlib.h>

#include "core.h"

#define WAKE_TAG ((size_t)-2) /* the readiness tag of the wake socket */
#define PS_LINGER_MAX_BACKOFF_MS 16
/* Below this many ops one poll() costs less than creating an epoll set. */
#define PS_EPOLL_MIN_OPS 8
#define PS_MAX_EVENTS 256
/* A one-op engine's drain waits in recv (POSIX, a blocking socket) once it
 * has woken this many times with data: a long drain.  Shorter ones never
 * pay the two SO_RCVTIMEO calls (set, restore) it costs. */
#define PS_BLOCK_AFTER_WAKES 4
/* The recv timeout is set again only when it is this much too long (or
 * the wait wanted is more than twice it): a few calls per slice. */
#define PS_BLOCK_SLACK_MS 10

struct ps_engine {
    ps_op *ops;
    size_t n;
    size_t *active; /* indices of PS_PENDING ops */
    size_t *where;  /* op index -> position in active, or PS_NONE */
    size_t nactive;
    size_t *ready;  /* scratch: ops reported ready by one wait */
    size_t nlinger; /* active Linger ops: their acks are polled, not signalled */
    unsigned int backoff_ms;
    int started;
    double next_timer; /* no deadline or idle timer is due before this */
    size_t *incoming;  /* ops added by ps_engine_add, begun by the next run */
    size_t nincoming;
    intptr_t wake_fd;  /* readable: run returns (-1: none) */
    int woken;
    int epfd;          /* -1: the poll backend */
    ps_pollfd *fds;    /* poll backend */
    size_t *fd_op;     /* slot -> op index */
    size_t *op_fd;     /* op index -> slot, or PS_NONE */
    size_t nfds;
    char *buf;         /* the discard buffer: this engine's own, so drains on
                          other threads never share it (drain.c) */
    unsigned int data_wakes; /* wakes that brought data */
    int block;         /* one-op engine: its drain may wait in recv: 0 not
                          asked yet, 1 yes (a blocking socket), -1 no */
    int block_ms;      /* the SO_RCVTIMEO we set (0: the socket's own) */
    ps_timeo saved;    /* the socket's own SO_RCVTIMEO */
};

/* ps_op.watched with epoll: not in the set; one-shot and armed; reported
 * once and disarmed (still in the set, but it can never report again: see
 * sys_posix.h, so it is closed without leaving the set); level-triggered
 * (after a wake that did not end it). */
enum { UNWATCHED = 0, ARMED = 1, DISARMED = 2, LEVEL = 3 };

static void unwatch(ps_engine *e, size_t i)
{
    size_t slot, last;
    if (e->epfd >= 0) {
        if (e->ops[i].watched == ARMED || e->ops[i].watched == LEVEL)
            ps_sys_set_del(e->epfd, (ps_sock)e->ops[i].fd);
        e->ops[i].watched = UNWATCHED;
        return;
    }
    if (e->op_fd[i] == PS_NONE)
        return;
    slot = e->op_fd[i];
    last = --e->nfds;
    e->fds[slot] = e->fds[last];
    e->fd_op[slot] = e->fd_op[last];
    e->op_fd[e->fd_op[slot]] = slot;
    e->op_fd[i] = PS_NONE;
}

static int watch(ps_engine *e, size_t i, ps_error *err)
{
    ps_op *op = &e->ops[i];
    if (op->res.peer_eof)
        return 0; /* nothing more to read: only its timers matter */
    if (e->epfd >= 0) {
        if (ps_sys_set_add_once(e->epfd, (ps_sock)op->fd, i) != 0) {
            (void)ps_fail_last(err, PS_STEP_POLL);
            return -1;
        }
        op->watched = ARMED;
        return 0;
    }
    e->fds[e->nfds].fd = (ps_sock)op->fd;
    e->fds[e->nfds].events = PS_SYS_POLLIN;
    e->fds[e->nfds].revents = 0;
    e->fd_op[e->nfds] = i;
    e->op_fd[i] = e->nfds++;
    return 0;
}

static void deactivate(ps_engine *e, size_t i)
{
    size_t p = e->where[i], last;
    if (p == PS_NONE)
        return;
    last = e->active[--e->nactive];
    e->active[p] = last;
    e->where[last] = p;
    e->where[i] = PS_NONE;
    if (e->ops[i].kind == PS_LINGER)
        e->nlinger--;
    unwatch(e, i);
}

/* After op i made progress: if it left PS_PENDING, take it out of the set
 * and, when freeing, free it.  Returns 1 if it left PS_PENDING. */
static int settle(ps_engine *e, size_t i, size_t *freed, size_t *nfreed)
{
    ps_op *op = &e->ops[i];
    if (op->phase == PS_PENDING) {
        if (op->res.peer_eof)
            unwatch(e, i); /* poll would report EOF forever */
        else if (op->watched == DISARMED) {
            /* It reported and is still pending: from now on level-triggered.
             * If that fails (it cannot, short of a descriptor closed behind
             * our back), it stays disarmed: its timers still end it. */
            if (ps_sys_set_level(e->epfd, (ps_sock)op->fd, i) == 0)
                op->watched = LEVEL;
        }
        return 0;
    }
    deactivate(e, i);
    if (freed != NULL && op->phase == PS_CLOSING &&
        ps_op_finish(op) == PS_DONE && op->res.closed)
        freed[(*nfreed)++] = i;
    return 1;
}

/* Expire what is due and find the next timer.  Returns 1 if any op left
 * PS_PENDING. */
static int scan_timers(ps_engine *e, double now, size_t *freed,
                       size_t *nfreed)
{
    double next = now + 3600.0;
    int changed = 0;
    size_t k = e->nactive;
    while (k-- > 0) {
        size_t i = e->active[k];
        ps_op *op = &e->ops[i];
        if (now >= op->deadline)
            ps_op_expire(op, PS_REASON_TIMEOUT);
        else if (op->idle > 0 && now >= op->idle_deadline)
            ps_op_expire(op, PS_REASON_IDLE);
        if (settle(e, i, freed, nfreed)) {
            changed = 1;
            continue;
        }
        if (op->deadline < next)
            next = op->deadline;
        if (op->idle > 0 && op->idle_deadline < next)
            next = op->idle_deadline;
    }
    e->next_timer = next;
    return changed;
}

/* Step op i after readiness (or an ack poll); `now` is the one clock
 * reading of this wake, which restarts the idle timer if data came. */
static int progress(ps_engine *e, size_t i, double now, size_t *freed,
                    size_t *nfreed)
{
    ps_op *op = &e->ops[i];
    if (op->phase != PS_PENDING)
        return 0; /* a stale event */
    ps_op_step(op, e->buf, PS_SYS_DRAIN_CHUNK, 0);
    if (op->got_data) {
        op->got_data = 0;
        op->idle_deadline = now + op->idle;
        e->data_wakes++;
    }
    return settle(e, i, freed, nfreed);
}

/* Wait for readiness; fills e->ready, returns how many, or -1. */
static int wait_ready(ps_engine *e, int ms)
{
    int rc, j, k = 0;
    size_t s;
    if (e->epfd >= 0) {
        ps_event evs[PS_MAX_EVENTS];
        rc = ps_sys_set_wait(e->epfd, evs, PS_MAX_EVENTS, ms);
        for (j = 0; j < rc; j++) {
            size_t tag = ps_sys_event_tag(&evs[j]);
            if (tag == WAKE_TAG) {
                e->woken = 1;
            } else {
                if (e->ops[tag].watched == ARMED)
                    e->ops[tag].watched = DISARMED; /* one-shot */
                e->ready[k++] = tag;
            }
        }
        return rc < 0 ? -1 : k;
    }
    rc = e->nfds ? ps_sys_poll(e->fds, e->nfds, ms) : ps_sys_sleep(ms);
    if (rc < 0)
        return -1;
    for (s = 0; s < e->nfds; s++) {
        if (!e->fds[s].revents)
            continue;
        if (e->fd_op[s] == WAKE_TAG)
            e->woken = 1;
        else
            e->ready[k++] = e->fd_op[s];
    }
    return k;
}

ps_engine *ps_engine_new(ps_op *ops, size_t n)
{
    ps_engine *e = calloc(1, sizeof *e);
    size_t i, m = n ? n : 1;
    if (e == NULL)
        return NULL;
    e->ops = ops;
    e->n = n;
    e->epfd = -1;
    e->backoff_ms = 1;
    e->active = malloc(m * sizeof *e->active);
    e->where = malloc(m * sizeof *e->where);
    e->ready = malloc(m * sizeof *e->ready);
    e->incoming = malloc(m * sizeof *e->incoming);
    e->wake_fd = -1;
    if (e->active == NULL || e->where == NULL || e->ready == NULL ||
        e->incoming == NULL)
        goto fail;
    for (i = 0; i < n; i++)
        e->where[i] = PS_NONE;
    if (n >= PS_EPOLL_MIN_OPS)
        e->epfd = ps_sys_set_open(); /* failing (or no epoll): poll */
    if (e->epfd < 0) {
        e->fds = malloc((m + 1) * sizeof *e->fds); /* + the wake socket */
        e->fd_op = malloc((m + 1) * sizeof *e->fd_op);
        e->op_fd = malloc(m * sizeof *e->op_fd);
        if (e->fds == NULL || e->fd_op == NULL || e->op_fd == NULL)
            goto fail;
        for (i = 0; i < n; i++)
            e->op_fd[i] = PS_NONE;
    }
    return e;
fail:
    ps_engine_free(e);
    return NULL;
}

void ps_engine_free(ps_engine *e)
{
    if (e == NULL)
        return;
    if (e->epfd >= 0)
        ps_sys_set_close(e->epfd);
    free(e->buf);
    free(e->active);
    free(e->where);
    free(e->ready);
    free(e->incoming);
    free(e->fds);
    free(e->fd_op);
    free(e->op_fd);
    free(e);
}

int ps_engine_uses_epoll(const ps_engine *e) { return e->epfd >= 0; }

/* Begin op i: its first non-blocking step (shutdown, a first drain), then
 * it joins the set if still pending.  1 if it is already over, -1 on error. */
static int begin_op(ps_engine *e, size_t i, size_t *freed, size_t *nfreed,
                    ps_error *err)
{
    ps_op *op = &e->ops[i];
    if (e->where[i] != PS_NONE)
        return 0; /* already in the set */
    if (op->kind >= PS_LINGER && e->buf == NULL) {
        /* Linger and Drain read; malloc'd once per engine. */
        e->buf = malloc(PS_SYS_DRAIN_CHUNK);
        if (e->buf == NULL) {
            (void)ps_fail(err, PS_ENOMEM, PS_STEP_ALLOC);
            return -1;
        }
    }
    if (op->phase == PS_PENDING)
        ps_op_step(op, e->buf, PS_SYS_DRAIN_CHUNK, 0);
    if (op->phase != PS_PENDING)
        return settle(e, i, freed, nfreed);
    e->where[i] = e->nactive;
    e->active[e->nactive++] = i;
    if (op->kind == PS_LINGER)
        e->nlinger++;
    if (op->deadline < e->next_timer)
        e->next_timer = op->deadline;
    if (op->idle > 0 && op->idle_deadline < e->next_timer)
        e->next_timer = op->idle_deadline;
    return watch(e, i, err);
}

/* Grow a long-lived engine to n ops over `ops` (the caller's array, moved
 * by realloc, its first e->n ops unchanged): indices stay valid, so the
 * readiness set is kept as it is.  PS_FAIL (PS_ENOMEM) leaves it unchanged
 * but for the ops pointer. */
int ps_engine_grow(ps_engine *e, ps_op *ops, size_t n, ps_error *err)
{
    size_t i;
    e->ops = ops;
    if (n <= e->n)
        return PS_DONE;
    if (ps_grow_indices(&e->active, n) || ps_grow_indices(&e->where, n) ||
        ps_grow_indices(&e->ready, n) || ps_grow_indices(&e->incoming, n))
        goto fail;
    if (e->epfd < 0) {
        ps_pollfd *fds = realloc(e->fds, (n + 1) * sizeof *fds);
        if (fds == NULL)
            goto fail;
        e->fds = fds;
        if (ps_grow_indices(&e->fd_op, n + 1) || ps_grow_indices(&e->op_fd, n))
            goto fail;
        for (i = e->n; i < n; i++)
            e->op_fd[i] = PS_NONE;
    }
    for (i = e->n; i < n; i++)
        e->where[i] = PS_NONE;
    e->n = n;
    return PS_DONE;
fail:
    return ps_fail(err, PS_ENOMEM, PS_STEP_ALLOC);
}

int ps_engine_add(ps_engine *e, size_t i, ps_error *err)
{
    if (i >= e->n || e->nincoming >= e->n)
        return ps_fail(err, PS_EINVAL, PS_STEP_ARGS);
    if (!e->started) {
        e->started = 1; /* ops are added one by one: no begin-all */
        e->next_timer = ps_sys_now() + 3600.0;
    }
    e->incoming[e->nincoming++] = i;
    return PS_DONE;
}

int ps_engine_set_wake(ps_engine *e, intptr_t fd, ps_error *err)
{
    e->wake_fd = fd;
    if (e->epfd >= 0) {
        if (ps_sys_set_add(e->epfd, (ps_sock)fd, WAKE_TAG) != 0)
            return ps_fail_last(err, PS_STEP_POLL);
        return PS_DONE;
    }
    e->fds[e->nfds].fd = (ps_sock)fd;
    e->fds[e->nfds].events = PS_SYS_POLLIN;
    e->fds[e->nfds].revents = 0;
    e->fd_op[e->nfds++] = WAKE_TAG;
    return PS_DONE;
}

size_t ps_engine_pending(const ps_engine *e) { return e->nactive; }

int ps_engine_abort(ps_engine *e, size_t i, int reason, ps_error *err)
{
    size_t k;
    ps_op *op;
    if (i >= e->n || e->ops[i].phase != PS_PENDING)
        return ps_fail(err, PS_EINVAL, PS_STEP_ARGS);
    op = &e->ops[i];
    /* Not begun yet: drop it from the incoming queue. */
    for (k = 0; k < e->nincoming; k++) {
        if (e->incoming[k] == i) {
            e->incoming[k] = e->incoming[--e->nincoming];
            break;
        }
    }
    ps_op_expire(op, reason);
    deactivate(e, i);
    if (op->phase == PS_CLOSING)
        ps_op_finish(op);
    if (op->phase == PS_FAIL) {
        *err = op->res.err;
        return PS_FAIL;
    }
    return PS_DONE;
}

/* The op of a one-op engine whose drain may now wait in recv rather than
 * in poll: a long drain (PS_BLOCK_AFTER_WAKES) of a blocking socket (one
 * that is O_NONBLOCK is left so: its mode is shared with every descriptor
 * of it), with no wake socket.  Its SO_RCVTIMEO is kept to restore.
 * Returns 0, or PS_NONE. */
static size_t blocking_op(ps_engine *e)
{
    ps_op *op = &e->ops[0];
    ps_sock s = (ps_sock)op->fd;
    if (!PS_SYS_BLOCKING_DRAIN || e->n != 1 || e->nactive != 1 ||
        e->wake_fd >= 0 || e->block < 0 || e->data_wakes < PS_BLOCK_AFTER_WAKES ||
        op->phase != PS_PENDING || op->kind < PS_DRAIN || !op->setup ||
        op->res.peer_eof)
        return PS_NONE;
    if (e->block == 0)
        e->block = ps_sys_is_blocking(s) == 1 &&
                           ps_sys_get_rcvtimeo(s, &e->saved) == 0
                       ? 1
                       : -1;
    return e->block > 0 ? 0 : PS_NONE;
}

/* Bound the next recv of op 0 by about ms (set only when the timeout in
 * place is too far off).  -1 if it cannot be set: poll instead. */
static int block_for(ps_engine *e, int ms)
{
    ps_timeo t;
    int c = e->block_ms;
    if (c > 0 && c <= ms + PS_BLOCK_SLACK_MS && ms <= 2 * c)
        return 0;
    ps_sys_timeo_ms(&t, ms);
    if (ps_sys_set_rcvtimeo((ps_sock)e->ops[0].fd, &t) != 0) {
        e->block = -1;
        return -1;
    }
    e->block_ms = ms;
    return 0;
}

/* Give op 0's socket back its own SO_RCVTIMEO: before the op's handle is
 * freed or handed back, and whenever run returns. */
static void unblock(ps_engine *e)
{
    if (e->block_ms == 0)
        return;
    (void)ps_sys_set_rcvtimeo((ps_sock)e->ops[0].fd, &e->saved);
    e->block_ms = 0;
}

int ps_engine_run(ps_engine *e, int slice_ms, size_t *freed, size_t *nfreed,
                  ps_error *err)
{
    double now = ps_sys_now(), slice_end, wake;
    int changed = 0, polled = 0, rc = 0, ms, j;
    size_t k;

    if (nfreed != NULL)
        *nfreed = 0;
    e->woken = 0;
    if (!e->started) {
        size_t i;
        e->started = 1;
        e->next_timer = now; /* scan the timers at once */
        for (i = 0; i < e->n; i++)
            e->incoming[e->nincoming++] = i;
    }
    while (e->nincoming > 0) {
        rc = begin_op(e, e->incoming[--e->nincoming], freed, nfreed, err);
        if (rc < 0)
            return PS_FAIL;
        changed |= rc;
    }
    slice_end = now + slice_ms / 1000.0;
    for (;;) {
        if (now >= e->next_timer)
            changed |= scan_timers(e, now, freed, nfreed);
        /* Back to the caller as soon as an op is over (it has results to
         * deliver or handles to detach); a slice of 0 still waits once, so
         * it makes progress. */
        if ((e->nactive == 0 && e->wake_fd < 0) || e->woken || changed ||
            (polled && now >= slice_end))
            break;
        wake = slice_end < e->next_timer ? slice_end : e->next_timer;
        if (e->nlinger && now + e->backoff_ms / 1000.0 < wake)
            wake = now + e->backoff_ms / 1000.0;
        ms = (int)ceil((wake - now) * 1000.0);
        if (ms > 0 && blocking_op(e) == 0 && block_for(e, ms) == 0) {
            /* Wait in recv: the readiness and the read in one call. */
            ps_op *op = &e->ops[0];
            polled = 1;
            if (ps_op_step(op, e->buf, PS_SYS_DRAIN_CHUNK, 1) == PS_DRAIN_INTR)
                break; /* back to the caller, whose signal handlers run */
            now = ps_sys_now();
            if (op->got_data) {
                op->got_data = 0;
                op->idle_deadline = now + op->idle;
            }
            if (op->phase != PS_PENDING)
                unblock(e);
            changed |= settle(e, 0, freed, nfreed);
            continue;
        }
        rc = wait_ready(e, ms < 0 ? 0 : ms);
        polled = 1;
        if (rc < 0) {
            int oserr = ps_sys_error();
            if (oserr == PS_OS_EINTR)
                break; /* back to the caller, whose signal handlers run */
            unblock(e);
            return ps_fail_os(err, oserr, PS_STEP_POLL);
        }
        now = ps_sys_now();
        for (j = 0; j < rc; j++)
            changed |= progress(e, e->ready[j], now, freed, nfreed);
        if (e->nlinger) {
            /* No event says "acknowledged": poll the Linger ops' acks. */
            k = e->nactive;
            while (k-- > 0) {
                if (k < e->nactive && e->ops[e->active[k]].kind == PS_LINGER)
                    changed |= progress(e, e->active[k], now, freed, nfreed);
            }
            if (e->backoff_ms < PS_LINGER_MAX_BACKOFF_MS)
                e->backoff_ms *= 2;
        }
    }
    unblock(e);
    return (int)e->nactive;
}

int ps_ops_wait(ps_op *ops, size_t n, int slice_ms, ps_error *err)
{
    ps_engine *e = ps_engine_new(ops, n);
    int r;
    if (e == NULL)
        return ps_fail(err, PS_ENOMEM, PS_STEP_ALLOC);
    r = ps_engine_run(e, slice_ms, NULL, NULL, err);
    ps_engine_free(e);
    return r;
}

int ps_op_wait(ps_op *op, int slice_ms)
{
    if (op->phase == PS_PENDING &&
        ps_ops_wait(op, 1, slice_ms, &op->res.err) == PS_FAIL)
        op->phase = PS_FAIL;
    return op->phase;
}

size_t ps_ops_finish(ps_op *ops, size_t n, size_t *freed)
{
    size_t i, k = 0;
    for (i = 0; i < n; i++) {
        if (ops[i].phase == PS_CLOSING && ps_op_finish(&ops[i]) == PS_DONE &&
            ops[i].res.closed)
            freed[k++] = i;
    }
    return k;
}
