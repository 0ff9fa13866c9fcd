/* reaper.c - the reaper: a native thread that owns a long-lived engine.
 *
 * Callers (any threads) validate and start an op in their own thread
 * (ps_op_start), then queue it under the reaper's mutex and write one byte
 * to the wake pair, which the engine watches.  The thread takes the whole
 * queue at once, places each op in a slot of its op storage (grown by
 * doubling: slots are indices, so the engine's readiness set survives a
 * realloc), and runs the engine.  Finished closes become completions
 * (token, status, result) that the thread publishes in one batch per turn
 * of its loop, under the mutex, with one byte to the notification pair when
 * the completion queue was empty; callers harvest them in batches.
 *
 * What the thread alone touches (the op storage, the engine, the age list)
 * needs no lock: callers only reach it through the queues.  Everything else
 * is under `lock`; nothing depends on any lock of the caller's (the GIL).
 */
#include <stdlib.h>
#include <string.h>

#include "core.h"

/* At least the engine's epoll threshold, so a reaper uses epoll (where
 * there is epoll) from the start: the backend is chosen once. */
#define MIN_CAPACITY 16
#define SLICE_MS 1000
/* The descriptor ceiling's soft limit is read again when a submission would
 * pass it (so a raised limit counts at once) and otherwise at most this
 * often (so a lowered one counts within it). */
#define FD_REREAD_S 1.0
/* ps_reaper_reclaim_async with n = 0: nginx's share of those in flight. */
#define SHARE_DIV 8
#define SHARE_MAX 32

typedef struct {
    ps_op op;
    uint64_t token;
} ps_sub;

typedef struct {
    size_t n; /* 0: nginx's share */
    uint64_t token;
} ps_rq;

struct ps_reaper {
    ps_mutex lock;
    ps_cond cond; /* completions published, the thread parked or stopped,
                     a reclaim done, the thread joined */

    /* ---- under lock */
    ps_sub *subq; /* submitted, not yet taken by the thread */
    size_t nsub, capsub;
    ps_completion *cq; /* ring of completions not yet harvested */
    size_t chead, ccount, ccap;
    size_t cap; /* max in flight in the engine, 0 = none */
    size_t rq_n; /* closes asked to be reclaimed, not yet taken */
    uint64_t rq_asked, rq_done; /* reclaim requests: numbered, done */
    size_t rq_last;             /* how many the last reclaim pass ended */
    double deadline;            /* when closing: abort the rest then */
    int has_deadline;
    int closing, stopped, forked, join_claimed, joined, has_thread;
    int pause_req, parked;
    int woken;    /* a byte is in the wake pair */
    int kick;     /* something for the thread since its last take */
    int sleeping; /* the thread may be waiting in the engine: only then
                     does a caller write to the wake pair (a busy thread
                     sees `kick` before it waits) */
    int notified; /* a byte is in the notification pair */
    ps_rq *arq;   /* ps_reaper_reclaim_async requests, not yet taken */
    size_t narq, caparq;
    int fd_on;    /* the descriptor ceiling (ps_reaper_set_fd_limit) */
    size_t fd_min, fd_div;
    uint64_t fd_default, fd_gen;
    uint64_t submitted, done, failed, reclaimed, capacity;
    ps_sock wake[2];   /* [0] in the engine, [1] written by callers */
    ps_sock notify[2]; /* [0] the caller's to watch, [1] the thread's */
    ps_thread thread;

    /* ---- the thread's own (and ps_reaper_fork_child's, parked) */
    ps_engine *engine;
    ps_op *ops;
    uint64_t *tokens;
    size_t *older, *newer; /* the age list of slots in the engine */
    size_t oldest, newest;
    size_t *freelist;
    size_t nfree, n, nengine;
    size_t *freed;
    ps_sub *taken; /* the queue taken from callers, swapped with subq */
    size_t ntaken, captaken;
    ps_completion *batch; /* this turn's completions, published together */
    size_t nbatch, capbatch;
    uint64_t lost; /* completions dropped for want of memory, not yet
                      counted in `failed` */
    ps_rq *arq_taken; /* swapped with arq */
    size_t narq_taken, caparq_taken;
    size_t fdceil;  /* the descriptor ceiling last read, 0 = none */
    double fd_read_at;
    uint64_t fd_seen_gen; /* fd_gen when it was read; 0 = never */
};

/* Under lock: make sure the engine's wait returns soon. */
static void wake_locked(ps_reaper *r)
{
    r->kick = 1;
    if (r->sleeping && !r->woken && !r->forked) {
        r->woken = 1;
        ps_sys_wake_send(r->wake[1]);
    }
}

/* ------------------------------------------------- the thread's storage */

static void link_newest(ps_reaper *r, size_t i)
{
    r->older[i] = r->newest;
    r->newer[i] = PS_NONE;
    if (r->newest != PS_NONE)
        r->newer[r->newest] = i;
    else
        r->oldest = i;
    r->newest = i;
}

static void unlink_slot(ps_reaper *r, size_t i)
{
    if (r->older[i] != PS_NONE)
        r->newer[r->older[i]] = r->newer[i];
    else
        r->oldest = r->newer[i];
    if (r->newer[i] != PS_NONE)
        r->older[r->newer[i]] = r->older[i];
    else
        r->newest = r->older[i];
}

/* Double the op storage (indices stay).  0, or -1 if out of memory (then
 * nothing is lost: the arrays that grew are merely larger). */
static int grow(ps_reaper *r)
{
    size_t m = r->n * 2, i;
    ps_op *ops;
    uint64_t *tokens;
    ps_error err;
    if (m < r->n)
        return -1;
    ops = realloc(r->ops, m * sizeof *ops);
    if (ops == NULL)
        return -1;
    r->ops = ops;
    (void)ps_engine_grow(r->engine, ops, r->n, &err); /* the moved array */
    tokens = realloc(r->tokens, m * sizeof *tokens);
    if (tokens == NULL)
        return -1;
    r->tokens = tokens;
    if (ps_grow_indices(&r->older, m) || ps_grow_indices(&r->newer, m) ||
        ps_grow_indices(&r->freelist, m) || ps_grow_indices(&r->freed, m) ||
        ps_engine_grow(r->engine, ops, m, &err) != PS_DONE)
        return -1;
    for (i = m; i-- > r->n;)
        r->freelist[r->nfree++] = i; /* the lowest index is used first */
    r->n = m;
    ps_mutex_lock(&r->lock);
    r->capacity = m;
    ps_mutex_unlock(&r->lock);
    return 0;
}

/* A completion for this turn's batch. */
static void add_completion(ps_reaper *r, uint64_t token, int status,
                           const ps_result *res)
{
    ps_completion *c;
    if (r->nbatch == r->capbatch) {
        size_t m = r->capbatch ? r->capbatch * 2 : 64;
        ps_completion *p = realloc(r->batch, m * sizeof *p);
        if (p == NULL) {
            r->lost++;
            return;
        }
        r->batch = p;
        r->capbatch = m;
    }
    c = &r->batch[r->nbatch++];
    c->token = token;
    c->status = status;
    c->res = *res;
}

/* Slot i is over: its completion, and the slot is free again. */
static void complete(ps_reaper *r, size_t i, int status)
{
    add_completion(r, r->tokens[i], status, &r->ops[i].res);
    unlink_slot(r, i);
    r->freelist[r->nfree++] = i;
    r->nengine--;
}

/* End slot i now (RST) with `reason`; an op that already failed reports
 * its failure. */
static void abort_slot(ps_reaper *r, size_t i, int reason)
{
    ps_error err;
    if (r->ops[i].phase != PS_PENDING) {
        complete(r, i, PS_FAIL);
        return;
    }
    if (ps_engine_abort(r->engine, i, reason, &err) == PS_DONE) {
        complete(r, i, PS_DONE);
        return;
    }
    r->ops[i].res.err = err;
    complete(r, i, PS_FAIL);
}

static size_t reclaim_oldest(ps_reaper *r, size_t k)
{
    size_t c = 0;
    while (c < k && r->oldest != PS_NONE) {
        abort_slot(r, r->oldest, PS_REASON_RECLAIMED);
        c++;
    }
    return c;
}

/* Place a taken submission in a slot of the engine. */
static void begin(ps_reaper *r, ps_sub *s, size_t limit)
{
    size_t i;
    ps_error err;
    if (limit && r->nengine >= limit)
        reclaim_oldest(r, r->nengine - limit + 1);
    if (r->nfree == 0 && grow(r) != 0) {
        /* Out of memory: the oldest makes room, as under the cap. */
        if (reclaim_oldest(r, 1) == 0) {
            ps_result res;
            int st = ps_close_now(s->op.fd, 1, &res);
            res.reason = PS_REASON_RECLAIMED;
            res.how = PS_HOW_ABORTIVE;
            add_completion(r, s->token, st, &res);
            return;
        }
    }
    i = r->freelist[--r->nfree];
    r->ops[i] = s->op;
    r->tokens[i] = s->token;
    link_newest(r, i);
    r->nengine++;
    if (ps_engine_add(r->engine, i, &err) != PS_DONE) { /* cannot happen */
        r->ops[i].res.err = err;
        ps_close_now(s->op.fd, 1, &r->ops[i].res);
        complete(r, i, PS_FAIL);
    }
}

/* Ops the engine left neither pending nor freed: their close failed. */
static void reap_failed(ps_reaper *r)
{
    size_t i = r->oldest;
    while (i != PS_NONE) {
        size_t next = r->newer[i];
        if (r->ops[i].phase != PS_PENDING)
            complete(r, i, r->ops[i].phase == PS_DONE ? PS_DONE : PS_FAIL);
        i = next;
    }
}

/* Under lock: move this turn's batch to the completion queue. */
static void publish_locked(ps_reaper *r)
{
    size_t k, need = r->ccount + r->nbatch;
    r->failed += r->lost;
    r->lost = 0;
    if (r->nbatch == 0)
        return;
    if (need > r->ccap) {
        size_t m = r->ccap ? r->ccap : 64, j;
        ps_completion *p;
        while (m < need)
            m *= 2;
        p = malloc(m * sizeof *p);
        if (p == NULL) {
            r->failed += r->nbatch; /* dropped: out of memory */
            r->nbatch = 0;
            return;
        }
        for (j = 0; j < r->ccount; j++)
            p[j] = r->cq[(r->chead + j) % r->ccap];
        free(r->cq);
        r->cq = p;
        r->ccap = m;
        r->chead = 0;
    }
    for (k = 0; k < r->nbatch; k++) {
        const ps_completion *c = &r->batch[k];
        r->cq[(r->chead + r->ccount++) % r->ccap] = *c;
        if (c->status == PS_REAPER_RECLAIM_REPORT) {
            continue; /* not a close */
        } else if (c->status == PS_DONE) {
            r->done++;
            if (c->res.reason == PS_REASON_RECLAIMED)
                r->reclaimed++;
        } else {
            r->failed++;
        }
    }
    r->nbatch = 0;
    if (!r->notified) {
        r->notified = 1;
        ps_sys_wake_send(r->notify[1]);
    }
}

/* The descriptor ceiling: the soft limit (or `def` where the OS has none)
 * less max(min, soft / div), at least 1; 0 = none (unlimited). */
static size_t fd_ceiling(size_t min, size_t div, uint64_t def)
{
    uint64_t soft, reserve;
    int k = ps_sys_nofile(&soft);
    if (k == 0)
        return 0;
    if (k < 0)
        soft = def;
    if (soft == 0)
        return 0;
    reserve = div ? soft / div : 0;
    if (reserve < min)
        reserve = min;
    if (soft <= reserve)
        return 1;
    soft -= reserve;
    return soft > (uint64_t)((size_t)-1) ? (size_t)-1 : (size_t)soft;
}

/* The smaller of two limits, 0 meaning none. */
static size_t min_limit(size_t a, size_t b)
{
    if (a == 0)
        return b;
    if (b == 0)
        return a;
    return a < b ? a : b;
}

static PS_THREAD_RETURN reaper_main(void *arg)
{
    ps_reaper *r = arg;
    size_t k, nfreed;
    ps_error err;

    ps_thread_background();
    for (;;) {
        int closing, has_deadline, woken, stop, rc, slice = SLICE_MS, fd_on;
        uint64_t rq_ticket, fd_default, fd_gen;
        size_t rq_n, cap, rq_got = 0, fd_min, fd_div;
        double deadline, now;
        ps_sub *tmp;
        ps_rq *rtmp;

        ps_mutex_lock(&r->lock);
        if (r->pause_req) { /* fork: park at this safe point */
            r->parked = 1;
            ps_cond_broadcast(&r->cond);
            while (r->pause_req)
                ps_cond_wait_ms(&r->cond, &r->lock, -1);
            r->parked = 0;
        }
        r->sleeping = 0;
        woken = r->woken;
        ps_mutex_unlock(&r->lock);
        /* Empty the wake pair before taking the queue: a caller that queues
         * after the take writes a new byte (woken is cleared with it). */
        if (woken)
            ps_sys_wake_drain(r->wake[0]);
        ps_mutex_lock(&r->lock);
        tmp = r->taken;
        r->taken = r->subq;
        r->ntaken = r->nsub;
        k = r->captaken;
        r->captaken = r->capsub;
        r->subq = tmp;
        r->capsub = k;
        r->nsub = 0;
        r->woken = 0;
        r->kick = 0;
        closing = r->closing;
        has_deadline = r->has_deadline;
        deadline = r->deadline;
        rq_n = r->rq_n;
        rq_ticket = r->rq_asked;
        r->rq_n = 0;
        cap = r->cap;
        rtmp = r->arq_taken;
        r->arq_taken = r->arq;
        r->narq_taken = r->narq;
        k = r->caparq_taken;
        r->caparq_taken = r->caparq;
        r->arq = rtmp;
        r->caparq = k;
        r->narq = 0;
        fd_on = r->fd_on;
        fd_min = r->fd_min;
        fd_div = r->fd_div;
        fd_default = r->fd_default;
        fd_gen = r->fd_gen;
        ps_mutex_unlock(&r->lock);

        if (fd_on && r->ntaken > 0) {
            now = ps_sys_now();
            if (r->fd_seen_gen != fd_gen || now - r->fd_read_at >= FD_REREAD_S ||
                (r->fdceil && r->nengine + r->ntaken > r->fdceil)) {
                r->fdceil = fd_ceiling(fd_min, fd_div, fd_default);
                r->fd_read_at = now;
                r->fd_seen_gen = fd_gen;
            }
        }
        for (k = 0; k < r->ntaken; k++)
            begin(r, &r->taken[k], min_limit(cap, fd_on ? r->fdceil : 0));
        r->ntaken = 0;
        if (rq_n > 0)
            rq_got = reclaim_oldest(r, rq_n);
        for (k = 0; k < r->narq_taken; k++) {
            ps_rq *q = &r->arq_taken[k];
            ps_result res;
            size_t want = q->n;
            if (want == 0) {
                want = r->nengine / SHARE_DIV;
                if (want < 1)
                    want = 1;
                if (want > SHARE_MAX)
                    want = SHARE_MAX;
            }
            memset(&res, 0, sizeof res);
            res.acked = -1;
            res.drained = reclaim_oldest(r, want);
            add_completion(r, q->token, PS_REAPER_RECLAIM_REPORT, &res);
        }
        r->narq_taken = 0;
        if (cap && r->nengine > cap)
            reclaim_oldest(r, r->nengine - cap);
        now = ps_sys_now();
        if (closing && has_deadline && now >= deadline)
            while (r->oldest != PS_NONE)
                abort_slot(r, r->oldest, PS_REASON_TIMEOUT);

        ps_mutex_lock(&r->lock);
        publish_locked(r);
        if (rq_ticket != r->rq_done) {
            r->rq_done = rq_ticket;
            r->rq_last = rq_got;
        }
        stop = r->closing && r->nengine == 0 && r->nsub == 0 && r->narq == 0;
        if (stop)
            r->stopped = 1;
        else if (r->kick)
            slice = 0; /* more came meanwhile: look, do not wait */
        else
            r->sleeping = 1;
        ps_cond_broadcast(&r->cond);
        ps_mutex_unlock(&r->lock);
        if (stop)
            break;

        if (closing && has_deadline && slice > 0) {
            double left = (deadline - now) * 1000.0 + 1.0;
            if (left < slice)
                slice = left < 0 ? 0 : (int)left;
        }
        rc = ps_engine_run(r->engine, slice, r->freed, &nfreed, &err);
        for (k = 0; k < nfreed; k++)
            complete(r, r->freed[k], PS_DONE);
        if (rc == PS_FAIL) {
            if (err.code != PS_EINTR) /* the wait itself failed */
                while (r->oldest != PS_NONE)
                    abort_slot(r, r->oldest, PS_REASON_TIMEOUT);
        } else if ((size_t)rc != r->nengine) {
            reap_failed(r);
        }
    }
    return 0;
}

/* ------------------------------------------------------------- the API */

static void free_storage(ps_reaper *r)
{
    ps_engine_free(r->engine);
    free(r->ops);
    free(r->tokens);
    free(r->older);
    free(r->newer);
    free(r->freelist);
    free(r->freed);
    free(r->subq);
    free(r->taken);
    free(r->batch);
    free(r->cq);
    free(r->arq);
    free(r->arq_taken);
}

static void close_pair(ps_sock sv[2])
{
    int j;
    for (j = 0; j < 2; j++) {
        if (sv[j] != (ps_sock)-1)
            ps_sys_close(sv[j]);
        sv[j] = (ps_sock)-1;
    }
}

ps_reaper *ps_reaper_new(size_t capacity, size_t max_in_flight, ps_error *err)
{
    ps_reaper *r;
    size_t i, n = capacity < MIN_CAPACITY ? MIN_CAPACITY : capacity;
    memset(err, 0, sizeof *err);
    if (n > ((size_t)-1) / 2 / sizeof(ps_op)) {
        (void)ps_fail(err, PS_EINVAL, PS_STEP_ARGS);
        return NULL;
    }
    r = calloc(1, sizeof *r);
    if (r == NULL) {
        (void)ps_fail(err, PS_ENOMEM, PS_STEP_ALLOC);
        return NULL;
    }
    r->wake[0] = r->wake[1] = r->notify[0] = r->notify[1] = (ps_sock)-1;
    r->n = n;
    r->capacity = n;
    r->cap = max_in_flight;
    r->oldest = r->newest = PS_NONE;
    r->ops = calloc(n, sizeof *r->ops);
    r->tokens = calloc(n, sizeof *r->tokens);
    r->older = malloc(n * sizeof *r->older);
    r->newer = malloc(n * sizeof *r->newer);
    r->freelist = malloc(n * sizeof *r->freelist);
    r->freed = malloc(n * sizeof *r->freed);
    if (r->ops == NULL || r->tokens == NULL || r->older == NULL ||
        r->newer == NULL || r->freelist == NULL || r->freed == NULL)
        goto nomem;
    for (i = n; i-- > 0;)
        r->freelist[r->nfree++] = i;
    r->engine = ps_engine_new(r->ops, n);
    if (r->engine == NULL)
        goto nomem;
    if (ps_sys_wake_pair(r->wake) != 0 || ps_sys_wake_pair(r->notify) != 0) {
        (void)ps_fail_last(err, PS_STEP_POLL);
        goto fail;
    }
    if (ps_engine_set_wake(r->engine, (intptr_t)r->wake[0], err) != PS_DONE)
        goto fail;
    if (ps_mutex_init(&r->lock) != 0)
        goto nomem;
    if (ps_cond_init(&r->cond) != 0) {
        ps_mutex_destroy(&r->lock);
        goto nomem;
    }
    if (ps_thread_start(&r->thread, reaper_main, r) != 0) {
        ps_cond_destroy(&r->cond);
        ps_mutex_destroy(&r->lock);
        goto nomem;
    }
    r->has_thread = 1;
    return r;
nomem:
    (void)ps_fail(err, PS_ENOMEM, PS_STEP_ALLOC);
fail:
    close_pair(r->wake);
    close_pair(r->notify);
    free_storage(r);
    free(r);
    return NULL;
}

int ps_reaper_submit(ps_reaper *r, intptr_t fd, int kind, double timeout,
                     double idle, uint64_t max_bytes, uint64_t token,
                     ps_error *err)
{
    ps_op op;
    int refused;
    ps_mutex_lock(&r->lock);
    refused = r->closing || r->stopped;
    ps_mutex_unlock(&r->lock);
    if (refused)
        return PS_REAPER_CLOSED;
    if (kind != PS_LINGER && kind != PS_DRAIN)
        return ps_fail(err, PS_EINVAL, PS_STEP_ARGS);
    /* Validation in the caller's thread: nothing is touched if it fails. */
    if (ps_op_start(&op, fd, kind, timeout, idle, max_bytes) == PS_FAIL) {
        *err = op.res.err;
        return PS_FAIL;
    }
    return ps_reaper_submit_op(r, &op, token, err);
}

int ps_reaper_submit_op(ps_reaper *r, ps_op *op, uint64_t token,
                        ps_error *err)
{
    if ((op->kind != PS_LINGER && op->kind != PS_DRAIN) ||
        op->phase != PS_PENDING || op->setup)
        return ps_fail(err, PS_EINVAL, PS_STEP_ARGS);
    ps_mutex_lock(&r->lock);
    if (r->closing || r->stopped) {
        ps_mutex_unlock(&r->lock);
        return PS_REAPER_CLOSED;
    }
    if (r->nsub == r->capsub) {
        size_t m = r->capsub ? r->capsub * 2 : 64;
        ps_sub *p = realloc(r->subq, m * sizeof *p);
        if (p == NULL) {
            ps_mutex_unlock(&r->lock);
            return ps_fail(err, PS_ENOMEM, PS_STEP_ALLOC);
        }
        r->subq = p;
        r->capsub = m;
    }
    r->subq[r->nsub].op = *op;
    r->subq[r->nsub].token = token;
    r->nsub++;
    r->submitted++;
    wake_locked(r);
    ps_mutex_unlock(&r->lock);
    op->phase = PS_DONE; /* the caller's copy: handed over */
    return PS_DONE;
}

size_t ps_reaper_harvest(ps_reaper *r, ps_completion *out, size_t max)
{
    size_t k, j;
    ps_mutex_lock(&r->lock);
    k = max < r->ccount ? max : r->ccount;
    for (j = 0; j < k; j++)
        out[j] = r->cq[(r->chead + j) % r->ccap];
    if (k > 0) {
        r->chead = (r->chead + k) % r->ccap;
        r->ccount -= k;
    }
    if (r->ccount == 0 && r->notified && !r->forked) {
        ps_sys_wake_drain(r->notify[0]);
        r->notified = 0;
    }
    ps_mutex_unlock(&r->lock);
    return k;
}

intptr_t ps_reaper_notify_fd(const ps_reaper *r)
{
    return (intptr_t)r->notify[0]; /* fixed from creation to free */
}

int ps_reaper_wait(ps_reaper *r, int ms)
{
    double end = ps_sys_now() + (ms > 0 ? ms : 0) / 1000.0;
    int rc;
    ps_mutex_lock(&r->lock);
    while (r->ccount == 0 && !r->stopped) {
        double left;
        if (ms < 0) {
            ps_cond_wait_ms(&r->cond, &r->lock, -1);
            continue;
        }
        left = (end - ps_sys_now()) * 1000.0;
        if (left <= 0)
            break;
        ps_cond_wait_ms(&r->cond, &r->lock, (int)left + 1);
    }
    rc = r->ccount > 0 ? (r->ccount > 0x7fffffff ? 0x7fffffff : (int)r->ccount)
       : r->stopped    ? -1
                       : 0;
    ps_mutex_unlock(&r->lock);
    return rc;
}

size_t ps_reaper_reclaim(ps_reaper *r, size_t n)
{
    uint64_t ticket;
    size_t got = 0;
    if (n == 0)
        return 0;
    ps_mutex_lock(&r->lock);
    if (r->stopped) {
        ps_mutex_unlock(&r->lock);
        return 0;
    }
    r->rq_n += n;
    ticket = ++r->rq_asked;
    wake_locked(r);
    while (r->rq_done < ticket && !r->stopped)
        ps_cond_wait_ms(&r->cond, &r->lock, -1);
    if (r->rq_done >= ticket)
        got = r->rq_last < n ? r->rq_last : n;
    ps_mutex_unlock(&r->lock);
    return got;
}

int ps_reaper_reclaim_async(ps_reaper *r, size_t n, uint64_t token)
{
    ps_mutex_lock(&r->lock);
    if (r->stopped) {
        ps_mutex_unlock(&r->lock);
        return PS_REAPER_CLOSED;
    }
    if (r->narq == r->caparq) {
        size_t m = r->caparq ? r->caparq * 2 : 8;
        ps_rq *p = realloc(r->arq, m * sizeof *p);
        if (p == NULL) {
            ps_mutex_unlock(&r->lock);
            return PS_FAIL;
        }
        r->arq = p;
        r->caparq = m;
    }
    r->arq[r->narq].n = n;
    r->arq[r->narq].token = token;
    r->narq++;
    wake_locked(r);
    ps_mutex_unlock(&r->lock);
    return PS_DONE;
}

void ps_reaper_set_fd_limit(ps_reaper *r, size_t reserve_min,
                            size_t reserve_div, uint64_t default_soft)
{
    ps_mutex_lock(&r->lock);
    r->fd_on = 1;
    r->fd_min = reserve_min;
    r->fd_div = reserve_div;
    r->fd_default = default_soft;
    r->fd_gen++;
    ps_mutex_unlock(&r->lock);
}

size_t ps_reaper_fd_ceiling(size_t reserve_min, size_t reserve_div,
                            uint64_t default_soft)
{
    return fd_ceiling(reserve_min, reserve_div, default_soft);
}

void ps_reaper_set_max_in_flight(ps_reaper *r, size_t max_in_flight)
{
    ps_mutex_lock(&r->lock);
    r->cap = max_in_flight;
    wake_locked(r);
    ps_mutex_unlock(&r->lock);
}

void ps_reaper_close(ps_reaper *r, double timeout)
{
    ps_mutex_lock(&r->lock);
    r->closing = 1;
    if (timeout >= 0) {
        double d = ps_sys_now() + timeout;
        if (!r->has_deadline || d < r->deadline) {
            r->deadline = d;
            r->has_deadline = 1;
        }
    }
    wake_locked(r);
    if (r->forked || !r->has_thread) {
        ps_mutex_unlock(&r->lock);
        return;
    }
    if (!r->join_claimed) {
        r->join_claimed = 1;
        ps_mutex_unlock(&r->lock);
        ps_thread_join(r->thread);
        ps_mutex_lock(&r->lock);
        r->joined = 1;
        ps_cond_broadcast(&r->cond);
    } else {
        while (!r->joined)
            ps_cond_wait_ms(&r->cond, &r->lock, -1);
    }
    ps_mutex_unlock(&r->lock);
}

void ps_reaper_get_stats(ps_reaper *r, ps_reaper_stats *out)
{
    ps_mutex_lock(&r->lock);
    out->submitted = r->submitted;
    out->done = r->done;
    out->failed = r->failed;
    out->reclaimed = r->reclaimed;
    out->in_flight = r->submitted - r->done - r->failed;
    out->waiting = r->ccount;
    out->capacity = r->capacity;
    out->max_in_flight = r->cap;
    ps_mutex_unlock(&r->lock);
}

void ps_reaper_free(ps_reaper *r)
{
    int forked;
    if (r == NULL)
        return;
    ps_reaper_close(r, 0);
    forked = r->forked;
    close_pair(r->wake);
    close_pair(r->notify);
    free_storage(r);
    if (!forked) {
        /* In a forked child the parent's thread may have been waiting on
         * them when the process was copied: left as they are. */
        ps_cond_destroy(&r->cond);
        ps_mutex_destroy(&r->lock);
    }
    free(r);
}

void ps_reaper_fork_prepare(ps_reaper *r)
{
    ps_mutex_lock(&r->lock);
    if (r->has_thread && !r->stopped) {
        r->pause_req = 1;
        wake_locked(r);
        while (!r->parked && !r->stopped)
            ps_cond_wait_ms(&r->cond, &r->lock, -1);
    }
    /* The lock stays held across fork(). */
}

void ps_reaper_fork_parent(ps_reaper *r)
{
    r->pause_req = 0;
    ps_cond_broadcast(&r->cond);
    ps_mutex_unlock(&r->lock);
}

void ps_reaper_fork_child(ps_reaper *r)
{
    size_t i, k;
    /* Held by this thread since prepare; the thread is not here.  Its
     * state is the one it parked with: consistent. */
    r->forked = 1;
    r->closing = 1;
    r->stopped = 1;
    r->pause_req = 0;
    r->has_thread = 0;
    for (i = r->oldest; i != PS_NONE; i = r->newer[i])
        (void)ps_sys_close((ps_sock)r->ops[i].fd);
    for (k = 0; k < r->nsub; k++)
        (void)ps_sys_close((ps_sock)r->subq[k].op.fd);
    r->oldest = r->newest = PS_NONE;
    r->nengine = 0;
    r->nsub = 0;
    r->narq = 0;
    r->ccount = 0; /* the parent's results, not this process's */
    close_pair(r->wake);
    close_pair(r->notify);
    ps_mutex_unlock(&r->lock);
}

void ps_background_thread(void) { ps_thread_background(); }
