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

/* A queue of items of one type (ps_sub, ps_rq, ps_completion): n of them
 * in room for cap.  Callers fill the reaper's under its lock; the thread
 * takes one whole at the start of a turn (take_queue). */
typedef struct {
    void *items;
    size_t n, cap;
} ps_queue;

struct ps_reaper {
    ps_mutex lock;
    ps_cond cond; /* completions published, the thread parked or stopped,
                     a reclaim done, the thread joined */

    /* ---- under lock */
    ps_queue subq; /* ps_sub: submitted, not yet taken by the thread */
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
    ps_queue arq; /* ps_rq: ps_reaper_reclaim_async requests, not yet
                     taken */
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
    ps_queue taken;     /* ps_sub: subq as taken, swapped with it */
    ps_queue arq_taken; /* ps_rq: arq as taken, swapped with it */
    ps_queue batch; /* ps_completion: this turn's, published together */
    uint64_t lost; /* completions dropped for want of memory, not yet
                      counted in `failed` */
    size_t fdceil;  /* the descriptor ceiling last read, 0 = none */
    double fd_read_at;
    uint64_t fd_seen_gen; /* fd_gen when it was read; 0 = never */
};

/* The next item of q, of `size` bytes, its room grown by doubling (from
 * `first`); NULL if out of memory (q unchanged). */
static void *queue_add(ps_queue *q, size_t size, size_t first)
{
    if (q->n == q->cap) {
        size_t m = q->cap ? q->cap * 2 : first;
        void *p = realloc(q->items, m * size);
        if (p == NULL)
            return NULL;
        q->items = p;
        q->cap = m;
    }
    return (char *)q->items + size * q->n++;
}

/* Under lock: the thread takes all of q into taken (which it emptied in
 * its last turn), and callers go on filling taken's old room. */
static void take_queue(ps_queue *q, ps_queue *taken)
{
    ps_queue t = *taken;
    *taken = *q;
    *q = t;
    q->n = 0;
}

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
    ps_completion *c = queue_add(&r->batch, sizeof *c, 64);
    if (c == NULL) {
        r->lost++;
        return;
    }
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
static void begin(ps_reaper *r, const ps_sub *s, size_t limit)
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
    const ps_completion *batch = r->batch.items;
    size_t k, need = r->ccount + r->batch.n;
    r->failed += r->lost;
    r->lost = 0;
    if (r->batch.n == 0)
        return;
    if (need > r->ccap) {
        size_t m = r->ccap ? r->ccap : 64, j;
        ps_completion *p;
        while (m < need)
            m *= 2;
        p = malloc(m * sizeof *p);
        if (p == NULL) {
            r->failed += r->batch.n; /* dropped: out of memory */
            r->batch.n = 0;
            return;
        }
        for (j = 0; j < r->ccount; j++)
            p[j] = r->cq[(r->chead + j) % r->ccap];
        free(r->cq);
        r->cq = p;
        r->ccap = m;
        r->chead = 0;
    }
    for (k = 0; k < r->batch.n; k++) {
        const ps_completion *c = &batch[k];
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
    r->batch.n = 0;
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

/* ---------------------------------------------------------- the thread
 * Each turn of its loop: wake (park first if a fork asks), take what the
 * callers queued, act on it, publish the completions and decide how long
 * to wait, then run the engine for that long. */

/* What the thread took at the start of a turn, to act on without the lock. */
typedef struct {
    int closing, has_deadline;
    double deadline;
    size_t rq_n;        /* closes to reclaim for ps_reaper_reclaim */
    uint64_t rq_ticket; /* the last such request taken */
    size_t rq_got;      /* how many that reclaim ended */
    size_t cap;
    int fd_on;
    size_t fd_min, fd_div;
    uint64_t fd_default, fd_gen;
    double now;         /* read after acting: the slice is counted from it */
} ps_turn;

/* Park while a fork is prepared, then empty the wake pair before taking
 * the queues: a caller that queues after the take writes a new byte
 * (woken is cleared with it). */
static void turn_wake(ps_reaper *r)
{
    int woken;
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
    if (woken)
        ps_sys_wake_drain(r->wake[0]);
}

/* Take the queues and the settings, under the lock. */
static void turn_take(ps_reaper *r, ps_turn *t)
{
    ps_mutex_lock(&r->lock);
    take_queue(&r->subq, &r->taken);
    take_queue(&r->arq, &r->arq_taken);
    r->woken = 0;
    r->kick = 0;
    t->closing = r->closing;
    t->has_deadline = r->has_deadline;
    t->deadline = r->deadline;
    t->rq_n = r->rq_n;
    t->rq_ticket = r->rq_asked;
    t->rq_got = 0;
    r->rq_n = 0;
    t->cap = r->cap;
    t->fd_on = r->fd_on;
    t->fd_min = r->fd_min;
    t->fd_div = r->fd_div;
    t->fd_default = r->fd_default;
    t->fd_gen = r->fd_gen;
    ps_mutex_unlock(&r->lock);
}

/* Act on what was taken: begin the submissions (under the cap and the
 * descriptor ceiling), reclaim as asked, enforce the cap, and at the close
 * deadline abort what is left. */
static void turn_act(ps_reaper *r, ps_turn *t)
{
    const ps_sub *subs = r->taken.items;
    const ps_rq *rqs = r->arq_taken.items;
    size_t k;

    if (t->fd_on && r->taken.n > 0) {
        double now = ps_sys_now();
        if (r->fd_seen_gen != t->fd_gen || now - r->fd_read_at >= FD_REREAD_S ||
            (r->fdceil && r->nengine + r->taken.n > r->fdceil)) {
            r->fdceil = fd_ceiling(t->fd_min, t->fd_div, t->fd_default);
            r->fd_read_at = now;
            r->fd_seen_gen = t->fd_gen;
        }
    }
    for (k = 0; k < r->taken.n; k++)
        begin(r, &subs[k], min_limit(t->cap, t->fd_on ? r->fdceil : 0));
    r->taken.n = 0;
    if (t->rq_n > 0)
        t->rq_got = reclaim_oldest(r, t->rq_n);
    for (k = 0; k < r->arq_taken.n; k++) {
        ps_result res;
        size_t want = rqs[k].n;
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
        add_completion(r, rqs[k].token, PS_REAPER_RECLAIM_REPORT, &res);
    }
    r->arq_taken.n = 0;
    if (t->cap && r->nengine > t->cap)
        reclaim_oldest(r, r->nengine - t->cap);
    t->now = ps_sys_now();
    if (t->closing && t->has_deadline && t->now >= t->deadline)
        while (r->oldest != PS_NONE)
            abort_slot(r, r->oldest, PS_REASON_TIMEOUT);
}

/* Under the lock: publish the turn's completions, answer the synchronous
 * reclaim, and decide: the engine's slice in ms, or -1 to stop (closing,
 * and nothing left or queued). */
static int turn_publish(ps_reaper *r, const ps_turn *t)
{
    int slice = SLICE_MS;
    ps_mutex_lock(&r->lock);
    publish_locked(r);
    if (t->rq_ticket != r->rq_done) {
        r->rq_done = t->rq_ticket;
        r->rq_last = t->rq_got;
    }
    if (r->closing && r->nengine == 0 && r->subq.n == 0 && r->arq.n == 0) {
        r->stopped = 1;
        slice = -1;
    } else if (r->kick) {
        slice = 0; /* more came meanwhile: look, do not wait */
    } else {
        r->sleeping = 1;
    }
    ps_cond_broadcast(&r->cond);
    ps_mutex_unlock(&r->lock);
    return slice;
}

/* Run the engine for the slice (cut to the close deadline); its finished
 * closes become completions. */
static void turn_run(ps_reaper *r, const ps_turn *t, int slice)
{
    size_t k, nfreed;
    ps_error err;
    int rc;

    if (t->closing && t->has_deadline && slice > 0) {
        double left = (t->deadline - t->now) * 1000.0 + 1.0;
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

static PS_THREAD_RETURN reaper_main(void *arg)
{
    ps_reaper *r = arg;
    ps_turn t;
    int slice;

    ps_thread_background();
    for (;;) {
        turn_wake(r);
        turn_take(r, &t);
        turn_act(r, &t);
        slice = turn_publish(r, &t);
        if (slice < 0)
            break;
        turn_run(r, &t, slice);
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
    free(r->subq.items);
    free(r->taken.items);
    free(r->batch.items);
    free(r->cq);
    free(r->arq.items);
    free(r->arq_taken.items);
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
    ps_sub *s;
    if ((op->kind != PS_LINGER && op->kind != PS_DRAIN) ||
        op->phase != PS_PENDING || op->setup)
        return ps_fail(err, PS_EINVAL, PS_STEP_ARGS);
    ps_mutex_lock(&r->lock);
    if (r->closing || r->stopped) {
        ps_mutex_unlock(&r->lock);
        return PS_REAPER_CLOSED;
    }
    s = queue_add(&r->subq, sizeof *s, 64);
    if (s == NULL) {
        ps_mutex_unlock(&r->lock);
        return ps_fail(err, PS_ENOMEM, PS_STEP_ALLOC);
    }
    s->op = *op;
    s->token = token;
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
    ps_rq *q;
    ps_mutex_lock(&r->lock);
    if (r->stopped) {
        ps_mutex_unlock(&r->lock);
        return PS_REAPER_CLOSED;
    }
    q = queue_add(&r->arq, sizeof *q, 8);
    if (q == NULL) {
        ps_mutex_unlock(&r->lock);
        return PS_FAIL;
    }
    q->n = n;
    q->token = token;
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
    const ps_sub *subs = r->subq.items;
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
    for (k = 0; k < r->subq.n; k++)
        (void)ps_sys_close((ps_sock)subs[k].op.fd);
    r->oldest = r->newest = PS_NONE;
    r->nengine = 0;
    r->subq.n = 0;
    r->arq.n = 0;
    r->ccount = 0; /* the parent's results, not this process's */
    close_pair(r->wake);
    close_pair(r->notify);
    ps_mutex_unlock(&r->lock);
}

void ps_background_thread(void) { ps_thread_background(); }
