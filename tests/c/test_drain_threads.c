/* test_drain_threads.c - drains on several threads at once, over real
 * loopback TCP (and, on POSIX, AF_UNIX stream pairs, where even Linux's
 * recv copies into the discard buffer), the senders in this process.
 *
 * What it is for: each engine has its own discard buffer (csrc/drain.c), so
 * threads draining at the same time - Python threads, and the reaper's
 * native thread - never write to the same memory.  Run under
 * ThreadSanitizer by .ci/run (a shared buffer is a data race it reports:
 * its recv interceptor records the bytes the kernel wrote), and natively,
 * under ASan/UBSan and Wine.  Every transfer is checked byte for byte
 * (drained count, EOF); every wait is bounded.
 * Output as test_core's: "ok - name" or "not ok - name (why)", then
 * "N passed, M failed"; exit status 1 if M > 0.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define TOTAL (8u * 1024u * 1024u) /* bytes each sender sends */
#define CHUNK (64 * 1024)
#define DRAINERS 3

/* ------------------------------------------------------------- pairs */

/* A loopback TCP pair: sv[0] the accepted end (drained), sv[1] the peer. */
static int tcp_pair_sv(ps_sock sv[2]) { return tcp_pair(&sv[0], &sv[1]); }

/* ------------------------------------------------------------- threads */

/* Every drainer starts its drain at the same time. */
static ps_mutex g_lock;
static ps_cond g_cond;
static int g_arrived, g_expected;

static void barrier(void)
{
    ps_mutex_lock(&g_lock);
    g_arrived++;
    ps_cond_broadcast(&g_cond);
    while (g_arrived < g_expected)
        ps_cond_wait_ms(&g_cond, &g_lock, 100);
    ps_mutex_unlock(&g_lock);
}

typedef struct {
    ps_sock ours, peer;
    int via_reaper;   /* drained by a reaper's thread, not this one */
    ps_reaper *reaper;
    uint64_t drained; /* results */
    int eof, status;
} job;

static PS_THREAD_RETURN sender(void *arg)
{
    job *j = arg;
    static const char zeros[CHUNK]; /* only read: shared safely */
    size_t left = TOTAL;
    while (left > 0) {
        int want = (int)(left < CHUNK ? left : CHUNK);
        int n = (int)send(j->peer, zeros, want, 0);
        if (n <= 0)
            break;
        left -= (size_t)n;
    }
    (void)ps_sys_shutdown(j->peer, PS_SHUT_SEND);
    return 0;
}

static PS_THREAD_RETURN drainer(void *arg)
{
    job *j = arg;
    ps_op op;
    ps_error err;
    int st;
    barrier();
    if (j->via_reaper) {
        ps_completion c;
        double end = ps_sys_now() + 30.0;
        j->status = ps_reaper_submit(j->reaper, (intptr_t)j->ours, PS_DRAIN,
                                     30.0, 0, 0, 1, &err);
        if (j->status != PS_DONE)
            return 0;
        j->ours = BAD_SOCK; /* the reaper's now */
        j->status = PS_PENDING;
        while (ps_sys_now() < end) {
            if (ps_reaper_wait(j->reaper, 100) > 0 &&
                ps_reaper_harvest(j->reaper, &c, 1) == 1) {
                j->status = c.status;
                j->drained = c.res.drained;
                j->eof = c.res.peer_eof;
                break;
            }
        }
        return 0;
    }
    st = ps_op_start(&op, (intptr_t)j->ours, PS_DRAIN_ONLY, 30.0, 0, 0);
    while (st == PS_PENDING)
        st = ps_op_wait(&op, 50);
    j->status = st;
    j->drained = op.res.drained;
    j->eof = op.res.peer_eof;
    return 0;
}

/* DRAINERS drains at once over pairs made by make (tcp_pair_sv or the local
 * stream pair); with_reaper: the first is a reaper's Drain close. */
static void run(const char *name, int (*make)(ps_sock sv[2]),
                int with_reaper)
{
    job jobs[DRAINERS];
    ps_thread senders[DRAINERS], drainers[DRAINERS];
    ps_reaper *r = NULL;
    ps_error err;
    int i, made = 0, ok = 1;
    char what[160];

    memset(jobs, 0, sizeof jobs);
    if (with_reaper) {
        r = ps_reaper_new(4, 0, &err);
        if (r == NULL) {
            check(name, 0, "ps_reaper_new failed, error: %d", err.oserr);
            return;
        }
    }
    for (i = 0; i < DRAINERS; i++) {
        ps_sock sv[2];
        if (make(sv) != 0)
            break;
        jobs[i].ours = sv[0];
        jobs[i].peer = sv[1];
        jobs[i].via_reaper = with_reaper && i == 0;
        jobs[i].reaper = r;
        made++;
    }
    if (made < DRAINERS) {
        check(name, 0, "could not make pairs: made, error: %d, %d", made,
              ps_sys_error());
        goto out;
    }
    g_arrived = 0;
    g_expected = DRAINERS;
    for (i = 0; i < DRAINERS; i++) {
        if (ps_thread_start(&senders[i], sender, &jobs[i]) != 0 ||
            ps_thread_start(&drainers[i], drainer, &jobs[i]) != 0) {
            printf("Bail out! could not start threads\n");
            exit(2);
        }
    }
    for (i = 0; i < DRAINERS; i++) {
        ps_thread_join(drainers[i]);
        ps_thread_join(senders[i]);
    }
    for (i = 0; i < DRAINERS; i++) {
        snprintf(what, sizeof what, "%s: drainer %d%s got all and EOF", name,
                 i, jobs[i].via_reaper ? " (the reaper's thread)" : "");
        check(what,
              jobs[i].status == PS_DONE && jobs[i].drained == TOTAL &&
                  jobs[i].eof,
              "status, drained: %d, %ld", jobs[i].status,
              (long)jobs[i].drained);
        ok &= jobs[i].status == PS_DONE;
    }
    (void)ok;
out:
    for (i = 0; i < made; i++) {
        if (jobs[i].ours != BAD_SOCK)
            ps_sys_close(jobs[i].ours);
        ps_sys_close(jobs[i].peer);
    }
    if (r != NULL)
        ps_reaper_free(r);
}

int main(void)
{
    if (check_begin("") != 0)
        return 1;
    if (ps_mutex_init(&g_lock) != 0 || ps_cond_init(&g_cond) != 0) {
        printf("Bail out! init failed\n");
        return 2;
    }
    run("TCP drains on three threads at once", tcp_pair_sv, 0);
    run("TCP drains on two threads and the reaper's at once", tcp_pair_sv, 1);
    if (TP_HAVE_LOCAL_STREAM_PAIR) {
        /* Linux copies here despite MSG_TRUNC: a shared buffer is written. */
        run("AF_UNIX stream drains on three threads at once",
            tp_local_stream_pair, 0);
        run("AF_UNIX stream drains on two threads and the reaper's at once",
            tp_local_stream_pair, 1);
    } else {
        skip("AF_UNIX stream drains", "no local stream pair");
    }
    ps_cond_destroy(&g_cond);
    ps_mutex_destroy(&g_lock);
    return check_summary();
}
