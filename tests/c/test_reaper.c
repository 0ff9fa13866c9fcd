/* test_reaper.c - checks of the reaper's native thread (csrc/reaper.c) over
 * real loopback TCP, the peers in this process.
 *
 * Every wait is bounded; what the peer receives (our data, EOF, a reset) is
 * read back.  Several checks run threads of their own (submitters, a peer
 * closing while the main thread closes the reaper), so that the
 * ThreadSanitizer run in .ci/run sees the reaper used from many threads.
 * Output as test_core's: "ok - name" or "not ok - name (why)", then
 * "N passed, M failed"; exit status 1 if M > 0.  A peer tells a reset by
 * its pending error or a refused send after EOF (see peer_end), which Wine
 * reports as Windows does; the reset checks still allow test_core.c's Wine
 * deviation (a reset read as a plain EOF), marked "# expected Wine
 * deviation" where it shows, as is Linger's (no SIO_TCP_INFO: acked -1).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define LONG_TIMEOUT 30.0 /* a Drain that only ends by its peer or by us */

/* ------------------------------------------------------- socket helpers */

typedef struct {
    ps_sock ours; /* the accepted end: the reaper's */
    ps_sock peer;
} conn;

/* n connected loopback pairs.  0 on success (else none are left open). */
static int make_conns(conn *c, size_t n)
{
    struct sockaddr_in addr;
    ps_sock l = tcp_listener(&addr, 64);
    size_t i, j;
    if (l == BAD_SOCK)
        return -1;
    for (i = 0; i < n; i++) {
        c[i].ours = c[i].peer = BAD_SOCK;
        c[i].peer = socket(AF_INET, SOCK_STREAM, 0);
        if (c[i].peer == BAD_SOCK ||
            connect(c[i].peer, (struct sockaddr *)&addr,
                    (socklen_t)sizeof addr) != 0)
            goto fail;
        c[i].ours = accept(l, NULL, NULL);
        if (c[i].ours == BAD_SOCK)
            goto fail;
    }
    ps_sys_close(l);
    return 0;
fail:
    for (j = 0; j <= i && j < n; j++) {
        if (c[j].peer != BAD_SOCK)
            ps_sys_close(c[j].peer);
        if (c[j].ours != BAD_SOCK)
            ps_sys_close(c[j].ours);
    }
    ps_sys_close(l);
    return -1;
}

static int conns_or_fail(const char *name, conn *c, size_t n)
{
    if (make_conns(c, n) == 0)
        return 1;
    check(name, 0, "could not make %u loopback pairs: error %d", (unsigned)n,
          ps_sys_error());
    return 0;
}

static void close_peers(conn *c, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (c[i].peer != BAD_SOCK)
            ps_sys_close(c[i].peer);
}

enum { PEER_EOF = 'E', PEER_RESET = 'R', PEER_DATA = 'D', PEER_SILENT = 'T' };

/* What the peer reads next, within ms: EOF, a reset, data, or nothing. */
static int peer_sees(ps_sock peer, int ms)
{
    char buf[256];
    long n;
    if (!wait_readable(peer, ms))
        return PEER_SILENT;
    n = (long)recv(peer, buf, (int)sizeof buf, 0);
    if (n == 0)
        return PEER_EOF;
    if (n > 0)
        return PEER_DATA;
    return PEER_RESET;
}

/* How an aborted close ends for the peer.  A Drain or Linger that had
 * begun sent our FIN first (shutdown), and after reading a FIN, recv goes on
 * returning 0 even once a reset has come (Linux keeps it as the pending
 * error, EPIPE; Windows keeps none): so after EOF the pending error is read
 * and a one-byte send tried, which a reset connection refuses, for up to ms.
 * PEER_RESET, PEER_EOF (EOF, no reset) or PEER_SILENT (nothing within ms). */
static int peer_end(ps_sock peer, int ms)
{
    double end = ps_sys_now() + ms / 1000.0;
    char byte = 0;
    int s = peer_sees(peer, ms);
    while (s == PEER_DATA)
        s = peer_sees(peer, ms);
    if (s != PEER_EOF)
        return s;
    for (;;) {
        int v = 0;
        socklen_t len = (socklen_t)sizeof v;
        if (getsockopt(peer, SOL_SOCKET, SO_ERROR, (char *)&v, &len) == 0 &&
            ps_sys_is_reset(v))
            return PEER_RESET;
        if (send(peer, &byte, 1, 0) < 0 && ps_sys_is_reset(ps_sys_error()))
            return PEER_RESET;
        if (ps_sys_now() >= end)
            return PEER_EOF;
        (void)ps_sys_sleep(1); /* a bounded poll for the reset */
    }
}

/* Harvest completions until `want` are in out[] or ms pass; returns how
 * many.  Uses ps_reaper_wait as a delivery thread would. */
static size_t harvest_n(ps_reaper *r, ps_completion *out, size_t want, int ms)
{
    size_t got = 0;
    double end = ps_sys_now() + ms / 1000.0;
    while (got < want) {
        int left = (int)((end - ps_sys_now()) * 1000.0);
        if (left <= 0 || ps_reaper_wait(r, left) <= 0)
            break;
        got += ps_reaper_harvest(r, out + got, want - got);
    }
    return got;
}

/* 1 if out[0..n) holds each token first..first+n-1 exactly once. */
static int tokens_once(const ps_completion *out, size_t n, uint64_t first)
{
    char *seen = calloc(n ? n : 1, 1);
    size_t i;
    int ok = seen != NULL;
    for (i = 0; ok && i < n; i++) {
        uint64_t t = out[i].token - first;
        if (out[i].token < first || t >= n || seen[t])
            ok = 0;
        else
            seen[t] = 1;
    }
    free(seen);
    return ok;
}

static int submit_drain(ps_reaper *r, ps_sock s, uint64_t token)
{
    ps_error err;
    return ps_reaper_submit(r, (intptr_t)s, PS_DRAIN, LONG_TIMEOUT, 0, 0,
                            token, &err);
}

static ps_reaper *new_reaper(const char *name, size_t cap, size_t max)
{
    ps_error err;
    ps_reaper *r = ps_reaper_new(cap, max, &err);
    if (r == NULL)
        check(name, 0, "ps_reaper_new failed: code %d oserr %d", err.code,
              err.oserr);
    return r;
}

/* ------------------------------------------------------------ the checks */

#define MANY 200

/* Many closes in flight at once, beyond the initial capacity (16): the
 * storage grows under them; every result comes back with its token. */
static void test_many_and_growth(void)
{
    static conn c[MANY];
    static ps_completion out[MANY];
    const char *name = "200 Drain closes in flight: every token once, EOF";
    ps_reaper *r = new_reaper(name, 0, 0);
    ps_reaper_stats st;
    size_t i, got, good = 0, eofs = 0, submitted = 0;
    char data[100];
    if (r == NULL)
        return;
    if (!conns_or_fail(name, c, MANY)) {
        ps_reaper_free(r);
        return;
    }
    ps_reaper_get_stats(r, &st);
    check("a new reaper starts with 16 op slots", st.capacity == 16,
          "capacity %u", (unsigned)st.capacity);
    for (i = 0; i < MANY; i++)
        submitted += submit_drain(r, c[i].ours, 1000 + i) == PS_DONE;
    ps_reaper_get_stats(r, &st);
    check("200 submissions accepted, all in flight (no peer has closed)",
          submitted == MANY && st.submitted == MANY && st.in_flight == MANY &&
              st.done == 0,
          "accepted %u, stats submitted %u in_flight %u done %u",
          (unsigned)submitted, (unsigned)st.submitted,
          (unsigned)st.in_flight, (unsigned)st.done);
    memset(data, 'x', sizeof data);
    for (i = 0; i < MANY; i++) {
        (void)send(c[i].peer, data, (int)sizeof data, 0);
        (void)ps_sys_shutdown(c[i].peer, PS_SHUT_SEND);
    }
    got = harvest_n(r, out, MANY, 20000);
    for (i = 0; i < got; i++)
        good += out[i].status == PS_DONE && out[i].res.closed &&
                out[i].res.reason == PS_REASON_EOF &&
                out[i].res.how == PS_HOW_GRACEFUL && out[i].res.peer_eof &&
                out[i].res.drained == sizeof data;
    check(name, got == MANY && tokens_once(out, got, 1000) && good == MANY,
          "harvested %u, %u as expected, tokens %s", (unsigned)got,
          (unsigned)good, tokens_once(out, got, 1000) ? "ok" : "wrong");
    for (i = 0; i < MANY; i++)
        eofs += peer_sees(c[i].peer, 5000) == PEER_EOF;
    check("each of the 200 peers reads EOF (a graceful close)", eofs == MANY,
          "%u of %u", (unsigned)eofs, (unsigned)MANY);
    ps_reaper_get_stats(r, &st);
    check("the storage grew (16 -> 256) and the stats add up",
          st.capacity >= MANY && st.done == MANY && st.failed == 0 &&
              st.in_flight == 0 && st.waiting == 0 && st.reclaimed == 0,
          "capacity %u done %u failed %u in_flight %u waiting %u",
          (unsigned)st.capacity, (unsigned)st.done, (unsigned)st.failed,
          (unsigned)st.in_flight, (unsigned)st.waiting);
    close_peers(c, MANY);
    ps_reaper_free(r);
}

/* Bytes waiting in the notification socket, without taking them. */
static long notify_bytes(ps_reaper *r)
{
    char buf[64];
    return (long)recv((ps_sock)ps_reaper_notify_fd(r), buf, (int)sizeof buf,
                      MSG_PEEK);
}

#define BATCH 50

static void test_notify_once_per_batch(void)
{
    static conn c[BATCH + 1];
    static ps_completion out[BATCH + 1];
    const char *name = "notification: readable with one byte for 50 completions";
    ps_reaper *r = new_reaper(name, 0, 0);
    ps_reaper_stats st;
    ps_sock nfd;
    size_t i, got;
    double end;
    if (r == NULL)
        return;
    if (!conns_or_fail(name, c, BATCH + 1)) {
        ps_reaper_free(r);
        return;
    }
    nfd = (ps_sock)ps_reaper_notify_fd(r);
    check("notification: not readable before any completion",
          !wait_readable(nfd, 0), "readable");
    for (i = 0; i <= BATCH; i++) /* the peers are done before we close */
        (void)ps_sys_shutdown(c[i].peer, PS_SHUT_SEND);
    for (i = 0; i < BATCH; i++)
        (void)submit_drain(r, c[i].ours, i);
    end = ps_sys_now() + 20.0;
    do {
        ps_reaper_get_stats(r, &st);
        if (st.waiting < BATCH)
            (void)ps_sys_sleep(1); /* a bounded poll of the stats */
    } while (st.waiting < BATCH && ps_sys_now() < end);
    check(name,
          st.waiting == BATCH && wait_readable(nfd, 0) &&
              notify_bytes(r) == 1,
          "waiting %u, %ld bytes", (unsigned)st.waiting, notify_bytes(r));
    got = ps_reaper_harvest(r, out, 10);
    check("notification: still readable (one byte) with 40 left to harvest",
          got == 10 && wait_readable(nfd, 0) && notify_bytes(r) == 1,
          "harvested %u, %ld bytes", (unsigned)got, notify_bytes(r));
    got += ps_reaper_harvest(r, out + got, BATCH + 1);
    check("notification: emptied when the last completion is harvested",
          got == BATCH && !wait_readable(nfd, 0) && tokens_once(out, got, 0),
          "harvested %u, readable %d", (unsigned)got, wait_readable(nfd, 0));
    (void)submit_drain(r, c[BATCH].ours, 77);
    check("notification: readable again for the next batch",
          wait_readable(nfd, 10000) && notify_bytes(r) == 1 &&
              ps_reaper_harvest(r, out, 1) == 1 && out[0].token == 77 &&
              out[0].res.reason == PS_REASON_EOF,
          "token %u", (unsigned)out[0].token);
    check("notification: harvesting nothing leaves it empty",
          ps_reaper_harvest(r, out, 4) == 0 && !wait_readable(nfd, 0),
          "still readable");
    close_peers(c, BATCH + 1);
    ps_reaper_free(r);
}

/* A thread that shuts the peers' sending side (the peers finish). */
typedef struct {
    conn *c;
    size_t n;
} peers_arg;

static PS_THREAD_RETURN shut_peers(void *arg)
{
    peers_arg *p = arg;
    size_t i;
    for (i = 0; i < p->n; i++)
        (void)ps_sys_shutdown(p->c[i].peer, PS_SHUT_SEND);
    return 0;
}

#define FEW 5

static void test_close_lets_in_flight_finish(void)
{
    conn c[FEW + 1];
    ps_completion out[FEW + 1];
    const char *name = "close(10 s) with 5 in flight: they finish by EOF";
    ps_reaper *r = new_reaper(name, 0, 0);
    ps_reaper_stats st;
    ps_thread t;
    peers_arg pa;
    size_t i, got, good = 0, eofs = 0;
    double t0, took;
    char x = 'x', y = 0;
    int rc, started;
    if (r == NULL)
        return;
    if (!conns_or_fail(name, c, FEW + 1)) {
        ps_reaper_free(r);
        return;
    }
    for (i = 0; i < FEW; i++)
        (void)submit_drain(r, c[i].ours, i);
    ps_reaper_get_stats(r, &st);
    pa.c = c;
    pa.n = FEW;
    started = ps_thread_start(&t, shut_peers, &pa) == 0;
    t0 = ps_sys_now();
    ps_reaper_close(r, 10.0);
    took = ps_sys_now() - t0;
    if (started)
        ps_thread_join(t);
    got = ps_reaper_harvest(r, out, FEW + 1);
    for (i = 0; i < got; i++)
        good += out[i].status == PS_DONE && out[i].res.closed &&
                out[i].res.reason == PS_REASON_EOF &&
                out[i].res.how == PS_HOW_GRACEFUL;
    check(name,
          started && st.in_flight == FEW && got == FEW && good == FEW &&
              tokens_once(out, got, 0) && took < 9.0,
          "in flight at close %u, harvested %u, %u by EOF, took %.2f s",
          (unsigned)st.in_flight, (unsigned)got, (unsigned)good, took);
    for (i = 0; i < FEW; i++)
        eofs += peer_sees(c[i].peer, 5000) == PEER_EOF;
    check("close(10 s): each peer reads EOF", eofs == FEW, "%u of %u",
          (unsigned)eofs, (unsigned)FEW);
    rc = submit_drain(r, c[FEW].ours, 99);
    check("a closed reaper refuses a submission and touches nothing",
          rc == PS_REAPER_CLOSED && send(c[FEW].ours, &x, 1, 0) == 1 &&
              wait_readable(c[FEW].peer, 5000) &&
              recv(c[FEW].peer, &y, 1, 0) == 1 && y == 'x',
          "status %d, byte %d", rc, y);
    check("a stopped reaper: wait says stopped, stats add up",
          ps_reaper_wait(r, 0) == -1 && ps_reaper_reclaim(r, 1) == 0, "");
    ps_sys_close(c[FEW].ours);
    close_peers(c, FEW + 1);
    ps_reaper_free(r);
}

static void test_close_aborts_after_deadline(void)
{
    conn c[FEW];
    ps_completion out[FEW];
    const char *name = "close(0.2 s) with 5 silent peers: aborted at the deadline";
    ps_reaper *r = new_reaper(name, 0, 0);
    size_t i, got, good = 0, resets = 0, eofs = 0;
    double t0, took;
    if (r == NULL)
        return;
    if (!conns_or_fail(name, c, FEW)) {
        ps_reaper_free(r);
        return;
    }
    for (i = 0; i < FEW; i++)
        (void)submit_drain(r, c[i].ours, 10 + i);
    t0 = ps_sys_now();
    ps_reaper_close(r, 0.2);
    took = ps_sys_now() - t0;
    got = ps_reaper_harvest(r, out, FEW);
    for (i = 0; i < got; i++)
        good += out[i].status == PS_DONE && out[i].res.closed &&
                out[i].res.reason == PS_REASON_TIMEOUT &&
                out[i].res.how == PS_HOW_ABORTIVE;
    check(name,
          got == FEW && good == FEW && tokens_once(out, got, 10) &&
              took >= 0.15 && took < 5.0,
          "harvested %u, %u timeout/abortive, took %.2f s", (unsigned)got,
          (unsigned)good, took);
    for (i = 0; i < FEW; i++) {
        int s = peer_end(c[i].peer, 5000);
        resets += s == PEER_RESET;
        eofs += s == PEER_EOF;
    }
    check_wine("close(0.2 s): each peer is reset", resets == FEW,
               eofs == FEW, "%u resets, %u EOF", (unsigned)resets,
               (unsigned)eofs);
    close_peers(c, FEW);
    ps_reaper_free(r);
}

static void test_reclaim_and_cap(void)
{
    conn c[7];
    ps_completion out[8];
    const char *name = "reclaim(2): the two oldest, RST, reason reclaimed";
    ps_reaper *r = new_reaper(name, 0, 0);
    ps_reaper_stats st;
    size_t i, got, n;
    int ok, resets, eofs;
    if (r == NULL)
        return;
    if (!conns_or_fail(name, c, 7)) {
        ps_reaper_free(r);
        return;
    }
    for (i = 0; i < 6; i++)
        (void)submit_drain(r, c[i].ours, i + 1);
    n = ps_reaper_reclaim(r, 2);
    got = harvest_n(r, out, 2, 10000);
    ok = n == 2 && got == 2;
    for (i = 0; ok && i < got; i++)
        ok = out[i].status == PS_DONE && out[i].res.closed &&
             out[i].res.reason == PS_REASON_RECLAIMED &&
             out[i].res.how == PS_HOW_ABORTIVE;
    ps_reaper_get_stats(r, &st);
    check(name,
          ok && tokens_once(out, got, 1) && st.reclaimed == 2 &&
              st.in_flight == 4,
          "reclaim returned %u, harvested %u, reclaimed %u, in_flight %u",
          (unsigned)n, (unsigned)got, (unsigned)st.reclaimed,
          (unsigned)st.in_flight);
    resets = (peer_end(c[0].peer, 5000) == PEER_RESET) +
             (peer_end(c[1].peer, 5000) == PEER_RESET);
    /* The next one's Drain has begun (our FIN), and that is all. */
    eofs = peer_sees(c[2].peer, 5000) == PEER_EOF ? peer_end(c[2].peer, 0)
                                                  : PEER_SILENT;
    check_wine("reclaim(2): those two peers are reset, the next one is not",
               resets == 2 && eofs == PEER_EOF, resets == 0 && eofs == PEER_EOF,
               "%d resets, the next one saw %c", resets, eofs);
    ps_reaper_set_max_in_flight(r, 2);
    got = harvest_n(r, out, 2, 10000);
    check("a cap of 2 with 4 in flight reclaims the two oldest (3, 4)",
          got == 2 && tokens_once(out, got, 3) &&
              out[0].res.reason == PS_REASON_RECLAIMED &&
              out[1].res.reason == PS_REASON_RECLAIMED,
          "harvested %u", (unsigned)got);
    (void)submit_drain(r, c[6].ours, 7);
    got = harvest_n(r, out, 1, 10000);
    ps_reaper_get_stats(r, &st);
    check("at the cap, a new submission reclaims the oldest (5)",
          got == 1 && out[0].token == 5 &&
              out[0].res.reason == PS_REASON_RECLAIMED &&
              st.reclaimed == 5 && st.in_flight == 2 &&
              st.max_in_flight == 2,
          "harvested %u (token %u), reclaimed %u, in_flight %u",
          (unsigned)got, got ? (unsigned)out[0].token : 0u,
          (unsigned)st.reclaimed, (unsigned)st.in_flight);
    n = ps_reaper_reclaim(r, 100);
    got = harvest_n(r, out, 2, 10000);
    check("reclaim(100) with 2 in flight reclaims 2; reclaim(0) none",
          n == 2 && got == 2 && tokens_once(out, got, 6) &&
              ps_reaper_reclaim(r, 0) == 0,
          "returned %u, harvested %u", (unsigned)n, (unsigned)got);
    resets = 0;
    eofs = 0;
    for (i = 2; i < 7; i++) {
        int s = peer_end(c[i].peer, 5000);
        resets += s == PEER_RESET;
        eofs += s == PEER_EOF;
    }
    check_wine("every reclaimed peer is reset", resets == 5, eofs == 5,
               "%d resets, %d EOF", resets, eofs);
    close_peers(c, 7);
    ps_reaper_free(r);
}

#define THREADS 4
#define PER_THREAD 50

typedef struct {
    ps_reaper *r;
    conn *c;
    uint64_t first;
    int accepted;
} submitter_arg;

static PS_THREAD_RETURN submitter(void *arg)
{
    submitter_arg *a = arg;
    size_t i;
    for (i = 0; i < PER_THREAD; i++)
        a->accepted += submit_drain(a->r, a->c[i].ours, a->first + i) == PS_DONE;
    return 0;
}

static void test_threads_submit(void)
{
    static conn c[THREADS * PER_THREAD];
    static ps_completion out[THREADS * PER_THREAD];
    const char *name = "4 threads submit 50 each while this one harvests";
    ps_reaper *r = new_reaper(name, 0, 0);
    ps_reaper_stats st;
    submitter_arg a[THREADS];
    ps_thread t[THREADS];
    int started[THREADS];
    size_t i, got, good = 0, total = THREADS * PER_THREAD;
    int accepted = 0;
    if (r == NULL)
        return;
    if (!conns_or_fail(name, c, total)) {
        ps_reaper_free(r);
        return;
    }
    for (i = 0; i < total; i++)
        (void)ps_sys_shutdown(c[i].peer, PS_SHUT_SEND);
    for (i = 0; i < THREADS; i++) {
        a[i].r = r;
        a[i].c = c + i * PER_THREAD;
        a[i].first = i * PER_THREAD;
        a[i].accepted = 0;
        started[i] = ps_thread_start(&t[i], submitter, &a[i]) == 0;
    }
    got = harvest_n(r, out, total, 20000);
    for (i = 0; i < THREADS; i++) {
        if (started[i]) {
            ps_thread_join(t[i]);
            accepted += a[i].accepted;
        }
    }
    for (i = 0; i < got; i++)
        good += out[i].status == PS_DONE && out[i].res.closed &&
                out[i].res.reason == PS_REASON_EOF;
    ps_reaper_get_stats(r, &st);
    check(name,
          accepted == (int)total && got == total && good == total &&
              tokens_once(out, got, 0) && st.submitted == total &&
              st.done == total && st.in_flight == 0,
          "accepted %d, harvested %u, %u by EOF, stats done %u",
          accepted, (unsigned)got, (unsigned)good, (unsigned)st.done);
    close_peers(c, total);
    ps_reaper_free(r);
}

static void test_bad_handles(void)
{
    const char *name = "a pipe is refused at submit (not a socket), still usable";
    ps_reaper *r = new_reaper(name, 0, 0);
    ps_reaper_stats st;
    tp_nonsock ns;
    ps_error err;
    conn c;
    ps_sock udp;
    int rc, type;
    char x = 'x', y = 0;
    if (r == NULL)
        return;
    if (tp_nonsock_open(&ns) == 0) {
        memset(&err, 0, sizeof err);
        rc = ps_reaper_submit(r, ns.as_fd, PS_DRAIN, 1.0, 0, 0, 1, &err);
        check(name,
              rc == PS_FAIL && err.code == PS_ENOTSOCK &&
                  err.step == PS_STEP_SOCKTYPE && tp_nonsock_usable(&ns),
              "status %d code %d step %d", rc, err.code, err.step);
        tp_nonsock_close(&ns);
    } else {
        check(name, 0, "no pipe");
    }
    rc = ps_reaper_submit(r, (intptr_t)BAD_SOCK, PS_LINGER, 1.0, 0, 0, 2, &err);
    check("an invalid handle is refused at submit", rc == PS_FAIL &&
          err.code == PS_ENOTSOCK, "status %d code %d", rc, err.code);
    if (make_conns(&c, 1) == 0) {
        int bad_kind = ps_reaper_submit(r, (intptr_t)c.ours, PS_GRACEFUL, 1.0,
                                        0, 0, 3, &err);
        int kind_args = err.step == PS_STEP_ARGS;
        int bad_timeout = ps_reaper_submit(r, (intptr_t)c.ours, PS_DRAIN, 0,
                                           0, 0, 4, &err);
        int timeout_args = err.step == PS_STEP_ARGS;
        check("Graceful, or a Drain with timeout 0, is refused: the socket "
              "is untouched",
              bad_kind == PS_FAIL && kind_args && bad_timeout == PS_FAIL &&
                  timeout_args && send(c.ours, &x, 1, 0) == 1 &&
                  wait_readable(c.peer, 5000) && recv(c.peer, &y, 1, 0) == 1 &&
                  y == 'x' && send(c.peer, &x, 1, 0) == 1 &&
                  wait_readable(c.ours, 5000) && recv(c.ours, &y, 1, 0) == 1,
              "statuses %d %d", bad_kind, bad_timeout);
        ps_sys_close(c.ours);
        ps_sys_close(c.peer);
    } else {
        check("Graceful is refused", 0, "no loopback pair");
    }
    udp = socket(AF_INET, SOCK_DGRAM, 0);
    rc = ps_reaper_submit(r, (intptr_t)udp, PS_LINGER, 1.0, 0, 0, 5, &err);
    check("Linger on a datagram socket is refused, the socket left open",
          udp != BAD_SOCK && rc == PS_FAIL && err.code == PS_ENOTSTREAM &&
              ps_sys_socktype(udp, &type) == 0,
          "status %d code %d", rc, err.code);
    if (udp != BAD_SOCK)
        ps_sys_close(udp);
    ps_reaper_get_stats(r, &st);
    check("nothing refused was counted as submitted", st.submitted == 0,
          "submitted %u", (unsigned)st.submitted);
    ps_reaper_free(r);
}

static void test_linger(void)
{
    conn c;
    ps_completion out;
    ps_error err;
    const char *name = "Linger through the reaper: acknowledged";
    ps_reaper *r = new_reaper(name, 0, 0);
    int rc;
    size_t got;
    double t0;
    char data[1000];
    if (r == NULL)
        return;
    if (!conns_or_fail(name, &c, 1)) {
        ps_reaper_free(r);
        return;
    }
    memset(data, 'y', sizeof data);
    (void)send(c.ours, data, (int)sizeof data, 0);
    rc = ps_reaper_submit(r, (intptr_t)c.ours, PS_LINGER, 10.0, 0, 0, 42, &err);
    /* The peer reads, as a peer does: our data, then our FIN. */
    {
        int first = peer_sees(c.peer, 5000), last;
        double end = ps_sys_now() + 5.0;
        do
            last = peer_sees(c.peer, 5000);
        while (last == PEER_DATA && ps_sys_now() < end);
        check("Linger: the peer reads our data, then EOF",
              first == PEER_DATA && last == PEER_EOF, "saw %c then %c",
              first, last);
    }
    memset(&out, 0, sizeof out);
    t0 = ps_sys_now();
    got = rc == PS_DONE ? harvest_n(r, &out, 1, 15000) : 0;
    check_wine(name,
               got == 1 && out.token == 42 && out.status == PS_DONE &&
                   out.res.closed && out.res.how == PS_HOW_GRACEFUL &&
                   out.res.acked == 1,
               /* no SIO_TCP_INFO: the kernel lingers, acked unknown */
               got == 1 && out.token == 42 && out.res.acked == -1,
               "status %d, harvested %u after %.2f s, token %u acked %d", rc,
               (unsigned)got, ps_sys_now() - t0, (unsigned)out.token,
               out.res.acked);
    ps_sys_close(c.peer);
    ps_reaper_free(r);
}

/* fork(): the child frees its copy without the parent's thread; the parent
 * carries on. */
typedef struct {
    ps_reaper *r;
    conn *c;
} fork_arg;

static void fork_prepare(void *arg) { ps_reaper_fork_prepare(((fork_arg *)arg)->r); }
static void fork_parent(void *arg) { ps_reaper_fork_parent(((fork_arg *)arg)->r); }

static int fork_child(void *arg)
{
    fork_arg *a = arg;
    ps_completion out;
    int type, ok;
    ps_reaper_fork_child(a->r);
    ok = ps_sys_socktype(a->c[0].ours, &type) != 0 && /* our copy closed */
         submit_drain(a->r, a->c[1].ours, 9) == PS_REAPER_CLOSED &&
         ps_reaper_wait(a->r, 0) == -1 && ps_reaper_harvest(a->r, &out, 1) == 0;
    ps_reaper_free(a->r);
    return ok;
}

static void test_fork(void)
{
    conn c[2];
    ps_completion out[2];
    fork_arg a;
    char why[200];
    const char *name = "fork: the child drops its copy of a reaper and its handles";
    ps_reaper *r;
    size_t got;
    int ok;
    if (!TP_HAVE_FORK) {
        skip(name, "no fork on this OS");
        return;
    }
    r = new_reaper(name, 0, 0);
    if (r == NULL)
        return;
    if (!conns_or_fail(name, c, 2)) {
        ps_reaper_free(r);
        return;
    }
    (void)submit_drain(r, c[0].ours, 1);
    a.r = r;
    a.c = c;
    why[0] = 0;
    ok = tp_forked(fork_prepare, fork_parent, fork_child, &a, why, sizeof why);
    check(name, ok, "%s", why);
    (void)ps_sys_shutdown(c[0].peer, PS_SHUT_SEND);
    (void)ps_sys_shutdown(c[1].peer, PS_SHUT_SEND);
    (void)submit_drain(r, c[1].ours, 2);
    got = harvest_n(r, out, 2, 10000);
    check("fork: the parent's reaper goes on (both closes by EOF)",
          got == 2 && tokens_once(out, 2, 1) &&
              out[0].res.reason == PS_REASON_EOF &&
              out[1].res.reason == PS_REASON_EOF &&
              peer_sees(c[0].peer, 5000) == PEER_EOF,
          "harvested %u", (unsigned)got);
    close_peers(c, 2);
    ps_reaper_free(r);
}

/* Free with closes in flight and completions unharvested: aborted, no leak
 * (the ASan run checks the leak). */
static void test_free_in_flight(void)
{
    conn c[3];
    const char *name = "free with 3 in flight: each peer reset";
    ps_reaper *r = new_reaper(name, 0, 0);
    size_t i;
    int resets = 0, eofs = 0;
    if (r == NULL)
        return;
    if (!conns_or_fail(name, c, 3)) {
        ps_reaper_free(r);
        return;
    }
    for (i = 0; i < 3; i++)
        (void)submit_drain(r, c[i].ours, i);
    ps_reaper_free(r);
    for (i = 0; i < 3; i++) {
        int s = peer_end(c[i].peer, 5000);
        resets += s == PEER_RESET;
        eofs += s == PEER_EOF;
    }
    check_wine(name, resets == 3, eofs == 3, "%d resets, %d EOF", resets,
               eofs);
    close_peers(c, 3);
}

/* ps_op_start_stream + ps_reaper_submit_op (how the Python layer submits),
 * ps_reaper_reclaim_async (its answer is a completion after the closes it
 * reclaimed) and the descriptor ceiling (ps_reaper_set_fd_limit). */
#define ASYNC_N 17
static void test_submit_op_reclaim_async_fd_limit(void)
{
    conn c[ASYNC_N + 4];
    ps_completion out[ASYNC_N + 4];
    const char *name = "submit_op, then reclaim_async(share): 2 of 17 and the report";
    ps_reaper *r = new_reaper(name, 0, 0);
    ps_reaper_stats st;
    ps_error err;
    ps_op op;
    uint64_t soft = 0;
    size_t i, got, ceiling, want;
    int ok, k, resets;
    if (r == NULL)
        return;
    if (!conns_or_fail(name, c, ASYNC_N + 4)) {
        ps_reaper_free(r);
        return;
    }
    ok = 1;
    for (i = 0; i < ASYNC_N; i++) {
        ok = ok && ps_op_start_stream(&op, (intptr_t)c[i].ours, PS_DRAIN,
                                      LONG_TIMEOUT, 0, 0) == PS_PENDING &&
             ps_reaper_submit_op(r, &op, i + 1, &err) == PS_DONE;
    }
    (void)ps_op_start_stream(&op, (intptr_t)c[0].ours, PS_GRACEFUL, 0, 0, 0);
    check("submit_op refuses an op that is not a started Linger or Drain",
          ps_reaper_submit_op(r, &op, 99, &err) == PS_FAIL &&
              err.code == PS_EINVAL && err.step == PS_STEP_ARGS,
          "err %d step %d", err.code, err.step);
    ok = ok && ps_reaper_reclaim_async(r, 0, 1000) == PS_DONE;
    got = harvest_n(r, out, 3, 10000);
    ps_reaper_get_stats(r, &st);
    check(name,
          ok && got == 3 && tokens_once(out, 2, 1) &&
              out[0].res.reason == PS_REASON_RECLAIMED &&
              out[1].res.reason == PS_REASON_RECLAIMED &&
              out[2].token == 1000 &&
              out[2].status == PS_REAPER_RECLAIM_REPORT &&
              out[2].res.drained == 2 && st.reclaimed == 2 &&
              st.done == 2 && st.failed == 0 && st.in_flight == ASYNC_N - 2,
          "ok %d, harvested %u, report drained %u, done %u failed %u "
          "in_flight %u",
          ok, (unsigned)got, got == 3 ? (unsigned)out[2].res.drained : 0u,
          (unsigned)st.done, (unsigned)st.failed, (unsigned)st.in_flight);
    ok = ps_reaper_reclaim_async(r, 100, 1001) == PS_DONE;
    got = harvest_n(r, out, ASYNC_N - 1, 10000);
    check("reclaim_async(100) with 15 in flight: 15, then the report",
          ok && got == ASYNC_N - 1 && tokens_once(out, ASYNC_N - 2, 3) &&
              out[ASYNC_N - 2].token == 1001 &&
              out[ASYNC_N - 2].res.drained == ASYNC_N - 2,
          "harvested %u", (unsigned)got);
    resets = 0;
    for (i = 0; i < ASYNC_N; i++)
        resets += peer_end(c[i].peer, 5000) == PEER_RESET;
    check_wine("every peer reclaimed asynchronously is reset",
               resets == ASYNC_N, resets == 0, "%d resets", resets);

    /* A reserve that leaves room for 3: the fourth reclaims the oldest. */
    k = ps_sys_nofile(&soft);
    if (k == 0) {
        skip("the descriptor ceiling", "RLIMIT_NOFILE is unlimited here");
    } else {
        if (k < 0)
            soft = 1000; /* Windows: the default the caller gives */
        ceiling = ps_reaper_fd_ceiling((size_t)soft - 3, 0, 1000);
        ps_reaper_set_fd_limit(r, (size_t)soft - 3, 0, 1000);
        for (i = ASYNC_N; i < ASYNC_N + 4; i++)
            (void)submit_drain(r, c[i].ours, i + 1);
        got = harvest_n(r, out, 1, 10000);
        ps_reaper_get_stats(r, &st);
        check("the descriptor ceiling (3 here) reclaims the oldest at the 4th",
              ceiling == 3 && got == 1 && out[0].token == ASYNC_N + 1 &&
                  out[0].res.reason == PS_REASON_RECLAIMED &&
                  st.in_flight == 3,
              "ceiling %u, harvested %u, in_flight %u", (unsigned)ceiling,
              (unsigned)got, (unsigned)st.in_flight);
        /* nginx-like defaults: soft - max(64, soft / 8); on Windows with
         * no default soft limit given, none. */
        want = k < 0 ? 0 : (size_t)(soft - (soft / 8 > 64 ? soft / 8 : 64));
        check("ps_reaper_fd_ceiling: soft - max(64, soft/8), at least 1",
              ps_reaper_fd_ceiling((size_t)soft + 10, 0, 1000) == 1 &&
                  ps_reaper_fd_ceiling(64, 8, 0) == want,
              "%u, want %u", (unsigned)ps_reaper_fd_ceiling(64, 8, 0),
              (unsigned)want);
    }
    ps_reaper_close(r, 0);
    check("reclaim_async on a stopped reaper says closed",
          ps_reaper_reclaim_async(r, 1, 1) == PS_REAPER_CLOSED, "%s", "");
    close_peers(c, ASYNC_N + 4);
    ps_reaper_free(r);
}

/* Each check group, with its wall time (where the time goes, in CI). */
#define RUN(fn)                                                             \
    do {                                                                    \
        double t0_ = ps_sys_now();                                          \
        fn();                                                               \
        printf("# %s: %.2f s\n", #fn, ps_sys_now() - t0_);                 \
        fflush(stdout);                                                     \
    } while (0)

int main(void)
{
    if (check_begin("") != 0)
        return 1;

    RUN(test_bad_handles);
    RUN(test_many_and_growth);
    RUN(test_notify_once_per_batch);
    RUN(test_close_lets_in_flight_finish);
    RUN(test_close_aborts_after_deadline);
    RUN(test_reclaim_and_cap);
    RUN(test_threads_submit);
    RUN(test_linger);
    RUN(test_fork);
    RUN(test_free_in_flight);
    RUN(test_submit_op_reclaim_async_fd_limit);

    return check_summary();
}
