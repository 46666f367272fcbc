/*
 * The HTTP event loops: one listening socket, one libmicrohttpd daemon per
 * thread, each daemon on epoll and run by a loop of ours.
 *
 * Why not libmicrohttpd's own thread pool: on epoll (0.9.75, Debian 12's) a
 * worker drains its events in rounds of 128 (MAX_EVENTS in daemon.c) and,
 * when a round comes back full, waits again with the same timeout before it
 * handles any of them.  That timeout is none at all when every connection
 * of the worker was suspended as it was computed (a busy jifen worker's
 * usual state), and then, if nothing else arrives, the second wait sleeps
 * for ever with 128 ready connections in hand: under W1 at 256 connections
 * 127 to 200 connections hung in 4 of 7 runs of 40 s, one worker's share.
 * Its poll mode has no such round but scans every open connection on each
 * wake-up, which halved W1 beside 2,000 idle keep-alive connections
 * (docs/PERFORMANCE.md).  Here each daemon runs without a thread of its
 * own: the loop sleeps in an epoll of ours that holds the daemon's epoll
 * descriptor, and then lets the daemon take what is ready with MHD_run,
 * which never waits (its rounds use a timeout of 0).  So a full round only
 * means another round, never a sleep.
 *
 * The loops share one listening socket, which the daemons never see: each
 * loop's epoll holds it exclusively (EPOLLEXCLUSIVE: a new connection wakes
 * one loop, not all), and the loop that accepts a connection gives it to
 * the loop with the fewest (libmicrohttpd counts them for us through its
 * connection notifications), itself or another, whose thread adds it to its
 * daemon (MHD_add_connection must run on the daemon's own thread).  Left to
 * itself, the loop that woke first took every connection of a burst: at 64
 * connections one loop held all of them.  No SO_REUSEPORT, so a second
 * server on the same port still fails to start instead of sharing it.
 *
 * Without a thread of its own a daemon has no wake-up of its own either
 * (libmicrohttpd drops its inter-thread channel in this mode): whoever
 * resumes a connection wakes the loop that runs it (srv_loop_wake, through
 * an eventfd in the loop's epoll; loop_take_wake says how none is lost).  A
 * loop also wakes at least every JF_HTTP_LOOP_WAIT_MS, so even a lost
 * wake-up would cost a client a pause, not its connection; tests turn that
 * off (jf_server_options.loop_wait_ms) so that one would show.
 */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "server_priv.h"

/* Under AddressSanitizer a kept request is poisoned until it is taken
 * again, so that a use after req_free is still reported as it was when
 * req_free freed it. */
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/asan_interface.h>
#else
#define ASAN_POISON_MEMORY_REGION(addr, size) ((void)(addr), (void)(size))
#define ASAN_UNPOISON_MEMORY_REGION(addr, size) ((void)(addr), (void)(size))
#endif

/* Connections one loop accepts per wake-up before it lets its daemon run. */
#define ACCEPT_BATCH 16
/* When accept fails for want of descriptors or memory, the listening socket
 * stays readable: the loop stops watching it this long instead of spinning
 * (as libmicrohttpd did at its limit).  A connection waits in the backlog
 * meanwhile. */
#define ACCEPT_PAUSE_MS 100
/* Such a failure is logged at most this often (with how many there were). */
#define ACCEPT_LOG_EVERY_MS 10000

/* A connection accepted by one loop for another. */
typedef struct handoff {
    struct handoff *next;
    int fd;
    socklen_t addr_len;
    struct sockaddr_storage addr;
} handoff;

/* A connection watched for its client's hang-up (srv_loop_notify).
 *
 * libmicrohttpd 0.9.75 on epoll does not close a connection whose client
 * hung up inside a request's headers (part of them sent, then FIN): it waits
 * for the rest until the connection times out (JF_HTTP_CONNECTION_TIMEOUT_S),
 * holding a slot, while a hang-up between requests or inside a body is
 * noticed at once, and on poll every one is (tests/api/test_hostile_clients.py
 * counts such connections).  So each loop also watches its connections'
 * sockets for the peer's hang-up (EPOLLRDHUP, in an epoll of its own), and
 * once its daemon has read what came before it, shuts down the socket of a
 * connection that has no request in the access handler, or only part of
 * one (srv_loop_request_begins/whole/ends): the daemon then finds the socket
 * hung up and closes the connection.  A client that sends a whole request
 * and then shuts down its sending side is not cut off by this: the socket is
 * shut down only after that request is complete (libmicrohttpd itself
 * drops some such requests unanswered when it reads the end of the stream:
 * docs/TESTING.md, "Not yet").  A hang-up inside a body
 * is not always noticed by libmicrohttpd either: 29 of 2,000 such hang-ups
 * stayed half-closed, the request waiting for a body that could not come,
 * until the part of a request counted (2026-12-05; found by the log of
 * test_hostile_clients.py, which left one about once in a hundred runs).
 * Loop thread only. */
typedef struct srv_conn {
    int fd;
    bool in_request;  /* the access handler has a request of it */
    bool whole;       /* ... and all of that request */
    bool peer_closed; /* its client hung up */
} srv_conn;

struct srv_loop {
    srv_loops *owner;
    struct MHD_Daemon *daemon;
    int ep;                   /* our epoll: the daemon's, wake_fd, watch_ep, the listener, stop */
    int watch_ep;             /* the connections' hang-ups (srv_conn) */
    bool hang_ups;            /* watch_ep was ready at the last wait */
    bool woken;               /* wake_fd was ready at the last wait */
    int wake_fd;              /* eventfd: a connection was resumed or handed over */
    atomic_bool wake_pending; /* wake_fd written since the loop last looked */
    atomic_long conns;        /* connections its daemon has (its notifications) */
    atomic_long hung_up;      /* connections it shut down after a hang-up (srv_conn) */
    atomic_long handed;       /* connections handed to it, not yet added */
    pthread_mutex_t mu;       /* guards inbox */
    handoff *inbox;
    uint64_t accept_resume_ms; /* accepting paused until then (monotonic); 0 = not paused */
    pthread_t thread;
    bool running;
    /* Finished requests' memory, kept for the next ones (srv_loop_req_take). */
    srv_req *spare[JF_HTTP_SPARE_REQUESTS];
    int spare_n;
};

struct srv_loops {
    int listen_fd;
    int stop_fd; /* eventfd written once at stop and never read: stays readable */
    atomic_bool stopping;
    int wait_ms;
    unsigned n;
    srv_loop loop[];
};

static _Thread_local srv_loop *current_loop;

srv_loop *srv_loop_current(void)
{
    return current_loop;
}

srv_req *srv_loop_req_take(void)
{
    srv_loop *l = current_loop;
    if (!l || l->spare_n == 0)
        return NULL;
    srv_req *r = l->spare[--l->spare_n];
    ASAN_UNPOISON_MEMORY_REGION(r, sizeof *r);
    return r;
}

bool srv_loop_req_keep(srv_req *r)
{
    srv_loop *l = current_loop;
    if (!l || l->spare_n == JF_HTTP_SPARE_REQUESTS)
        return false;
    ASAN_POISON_MEMORY_REGION(r, sizeof *r);
    l->spare[l->spare_n++] = r;
    return true;
}

/* Frees the requests a stopped loop kept. */
static void spare_free(srv_loop *l)
{
    while (l->spare_n > 0) {
        srv_req *r = l->spare[--l->spare_n];
        ASAN_UNPOISON_MEMORY_REGION(r, sizeof *r);
        free(r);
    }
}

void srv_loop_wake(srv_loop *l)
{
    if (!l || atomic_exchange(&l->wake_pending, true))
        return;
    uint64_t one = 1;
    if (write(l->wake_fd, &one, sizeof one) != sizeof one)
        fprintf(stderr, "jifen: HTTP loop: cannot wake: %s\n", strerror(errno));
}

/* Watches a new connection's socket for its client's hang-up; NULL when it
 * cannot (the connection then times out as before). */
static srv_conn *conn_watch(srv_loop *l, struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    srv_conn *c = info ? calloc(1, sizeof *c) : NULL;
    if (!c)
        return NULL;
    c->fd = info->connect_fd;
    struct epoll_event ev = {.events = EPOLLRDHUP | EPOLLET, .data.ptr = c};
    if (epoll_ctl(l->watch_ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
        free(c);
        return NULL;
    }
    return c;
}

/* Stops watching a closed connection (its socket may be closed already,
 * which removed it from the epoll: the error is ignored). */
static void conn_unwatch(srv_loop *l, srv_conn *c)
{
    if (!c)
        return;
    epoll_ctl(l->watch_ep, EPOLL_CTL_DEL, c->fd, NULL);
    free(c);
}

void srv_loop_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                     enum MHD_ConnectionNotificationCode toe)
{
    srv_loop *l = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        atomic_fetch_add(&l->conns, 1);
        *socket_context = conn_watch(l, conn);
        return;
    }
    atomic_fetch_sub(&l->conns, 1);
    conn_unwatch(l, *socket_context);
    *socket_context = NULL;
}

static srv_conn *conn_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return info ? info->socket_context : NULL;
}

void srv_loop_request_begins(struct MHD_Connection *conn)
{
    srv_conn *c = conn_of(conn);
    if (c) {
        c->in_request = true;
        c->whole = false;
    }
}

void srv_loop_request_whole(struct MHD_Connection *conn)
{
    srv_conn *c = conn_of(conn);
    if (c)
        c->whole = true;
}

/* Shuts down the socket of a connection whose client hung up, so that its
 * daemon closes it (srv_conn). */
static void conn_hang_up(srv_loop *l, srv_conn *c)
{
    if (shutdown(c->fd, SHUT_RDWR) == 0)
        atomic_fetch_add(&l->hung_up, 1);
}

void srv_loop_request_ends(struct MHD_Connection *conn)
{
    srv_conn *c = conn_of(conn);
    if (!c)
        return;
    c->in_request = false;
    c->whole = false;
    if (c->peer_closed && current_loop)
        conn_hang_up(current_loop, c);
}

/* After the daemon ran: the connections whose clients hung up since, and
 * that have no request in the access handler or only part of one (its body
 * can no longer come), are shut down (srv_conn). */
static void loop_hang_ups(srv_loop *l)
{
    if (!l->hang_ups)
        return;
    struct epoll_event ev[64];
    int n = epoll_wait(l->watch_ep, ev, 64, 0);
    l->hang_ups = false; /* more waiting keep watch_ep ready for the next wait */
    for (int i = 0; i < n; i++) {
        srv_conn *c = ev[i].data.ptr;
        c->peer_closed = true;
        if (!c->in_request || !c->whole)
            conn_hang_up(l, c);
    }
}

/* Takes the wake-ups that woke the last wait, before the inbox and the
 * daemon are looked at: first the eventfd, then the flag.  A waker posts its
 * work (a resume, a handed-over socket) and then sets the flag, writing the
 * eventfd only when the flag was clear.  One that finds the flag still set
 * found it set before the clear below, so its work was posted before this
 * loop's inbox and MHD_run that follow; one that finds it clear writes, and
 * the next wait returns at once.  The other order (clear, then read), as it
 * was until 2026-12-04, let a waker set the flag and write between the two,
 * the read take that write, and the flag stay set with nothing to read: every
 * later wake-up then skipped its write, and resumed connections waited for
 * the periodic wake-up (the "lost wake-up" of docs/TESTING.md). */
static void loop_take_wake(srv_loop *l)
{
    if (!l->woken)
        return;
    l->woken = false;
    uint64_t n;
    if (read(l->wake_fd, &n, sizeof n) < 0 && errno != EAGAIN)
        fprintf(stderr, "jifen: HTTP loop: cannot read its wake-up: %s\n", strerror(errno));
    atomic_store(&l->wake_pending, false);
}

/* Adds the connections other loops handed over to this loop's daemon,
 * which closes any it cannot take (at its limit, or quiescing). */
static void loop_take_inbox(srv_loop *l)
{
    pthread_mutex_lock(&l->mu);
    handoff *h = l->inbox;
    l->inbox = NULL;
    pthread_mutex_unlock(&l->mu);
    while (h) {
        handoff *next = h->next;
        MHD_add_connection(l->daemon, h->fd, (struct sockaddr *)&h->addr, h->addr_len);
        atomic_fetch_sub(&l->handed, 1);
        free(h);
        h = next;
    }
}

/* The loop with the fewest connections, counting those on their way;
 * self on a tie. */
static srv_loop *least_loaded(srv_loop *self)
{
    srv_loops *ls = self->owner;
    srv_loop *best = self;
    long best_n = atomic_load(&self->conns) + atomic_load(&self->handed);
    for (unsigned i = 0; i < ls->n; i++) {
        srv_loop *l = &ls->loop[i];
        long n = atomic_load(&l->conns) + atomic_load(&l->handed);
        if (n < best_n) {
            best = l;
            best_n = n;
        }
    }
    return best;
}

static void hand_over(srv_loop *to, int fd, const struct sockaddr_storage *addr, socklen_t len)
{
    handoff *h = malloc(sizeof *h);
    if (!h) {
        close(fd);
        return;
    }
    h->fd = fd;
    h->addr = *addr;
    h->addr_len = len;
    atomic_fetch_add(&to->handed, 1);
    pthread_mutex_lock(&to->mu);
    h->next = to->inbox;
    to->inbox = h;
    pthread_mutex_unlock(&to->mu);
    srv_loop_wake(to);
}

static uint64_t mono_ms(void)
{
    return srv_mono_ns() / 1000000u;
}

static bool epoll_add(int ep, int fd, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.fd = fd};
    return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0;
}

/* Stops watching the listening socket for ACCEPT_PAUSE_MS (ACCEPT_PAUSE_MS
 * above says why). */
static void accept_pause(srv_loop *l, int err)
{
    static atomic_uint_fast64_t logged_ms, failures;
    uint64_t now = mono_ms(), last = atomic_load(&logged_ms);
    uint64_t n = atomic_fetch_add(&failures, 1) + 1;
    if ((last == 0 || now - last >= ACCEPT_LOG_EVERY_MS) &&
        atomic_compare_exchange_strong(&logged_ms, &last, now)) {
        atomic_fetch_sub(&failures, n);
        fprintf(stderr,
                "jifen: HTTP loop: accept: %s (%llu time(s) since the last such line); new "
                "connections wait in the backlog\n",
                strerror(err), (unsigned long long)n);
    }
    if (epoll_ctl(l->ep, EPOLL_CTL_DEL, l->owner->listen_fd, NULL) == 0)
        l->accept_resume_ms = now + ACCEPT_PAUSE_MS;
}

/* Watches the listening socket again once the pause is over; the
 * milliseconds the pause has left otherwise (-1 when not paused). */
static int accept_resume(srv_loop *l)
{
    if (l->accept_resume_ms == 0)
        return -1;
    uint64_t now = mono_ms();
    if (now < l->accept_resume_ms)
        return (int)(l->accept_resume_ms - now);
    if (epoll_add(l->ep, l->owner->listen_fd, EPOLLIN | EPOLLEXCLUSIVE))
        l->accept_resume_ms = 0;
    else
        l->accept_resume_ms = now + ACCEPT_PAUSE_MS;
    return -1;
}

/* Accepts what is waiting, up to ACCEPT_BATCH, each for the least loaded
 * loop. */
static void loop_accept(srv_loop *l)
{
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct sockaddr_storage addr;
        socklen_t len = sizeof addr;
        int fd = accept4(l->owner->listen_fd, (struct sockaddr *)&addr, &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0 && (errno == EINTR || errno == ECONNABORTED))
            continue;
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                accept_pause(l, errno);
            return;
        }
        srv_loop *to = least_loaded(l);
        if (to == l) {
            atomic_fetch_add(&l->handed, 1);
            MHD_add_connection(l->daemon, fd, (struct sockaddr *)&addr, len);
            atomic_fetch_sub(&l->handed, 1);
        } else {
            hand_over(to, fd, &addr, len);
        }
    }
}

/* Waits for something to do, at most until the daemon's next timeout;
 * true when the listening socket is ready.  Notes whether hang-ups wait
 * (loop_hang_ups). */
static bool loop_wait(srv_loop *l)
{
    MHD_UNSIGNED_LONG_LONG due_ms = 0;
    int wait_ms = l->owner->wait_ms, paused_ms = accept_resume(l);
    if (MHD_get_timeout(l->daemon, &due_ms) == MHD_YES && due_ms < (unsigned)wait_ms)
        wait_ms = (int)due_ms;
    if (paused_ms >= 0 && paused_ms < wait_ms)
        wait_ms = paused_ms;
    struct epoll_event ev[4];
    int n = epoll_wait(l->ep, ev, 4, wait_ms);
    if (n < 0 && errno != EINTR) {
        fprintf(stderr, "jifen: HTTP loop: epoll_wait: %s\n", strerror(errno));
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
    }
    bool incoming = false;
    for (int i = 0; i < n; i++) {
        incoming = incoming || ev[i].data.fd == l->owner->listen_fd;
        l->hang_ups = l->hang_ups || ev[i].data.fd == l->watch_ep;
        l->woken = l->woken || ev[i].data.fd == l->wake_fd;
    }
    return incoming;
}

static void *loop_main(void *arg)
{
    srv_loop *l = arg;
    current_loop = l;
    pthread_setname_np(pthread_self(), "jifen-http");
    while (!atomic_load_explicit(&l->owner->stopping, memory_order_acquire)) {
        bool incoming = loop_wait(l);
        loop_take_wake(l);
        loop_take_inbox(l);
        if (incoming)
            loop_accept(l);
        MHD_run(l->daemon);
        loop_hang_ups(l);
    }
    return NULL;
}

/* Opens one loop's daemon and its epoll; errno set on failure. */
static bool loop_open(srv_loop *l, const srv_loops_config *c, unsigned conn_limit)
{
    if ((l->watch_ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
        return false;
    if ((l->daemon = c->make(c->cls, l, conn_limit)) == NULL)
        return false;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(l->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    if (!info || info->epoll_fd < 0) {
        errno = ENOTSUP;
        return false;
    }
    srv_loops *ls = l->owner;
    l->ep = epoll_create1(EPOLL_CLOEXEC);
    l->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return l->ep >= 0 && l->wake_fd >= 0 && l->watch_ep >= 0 &&
           epoll_add(l->ep, info->epoll_fd, EPOLLIN) && epoll_add(l->ep, l->wake_fd, EPOLLIN) &&
           epoll_add(l->ep, l->watch_ep, EPOLLIN) && epoll_add(l->ep, ls->stop_fd, EPOLLIN) &&
           epoll_add(l->ep, ls->listen_fd, EPOLLIN | EPOLLEXCLUSIVE);
}

/* A non-blocking listening socket bound to sa; -1 with errno set. */
static int listen_socket(const struct sockaddr_in *sa)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int on = 1;
    if (fd < 0)
        return -1;
    /* As libmicrohttpd does for its own sockets: a restart can bind while
     * the last run's connections linger in TIME_WAIT. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
        bind(fd, (const struct sockaddr *)sa, sizeof *sa) != 0 || listen(fd, SOMAXCONN) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static int bound_port(int fd)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    return getsockname(fd, (struct sockaddr *)&sa, &len) == 0 ? ntohs(sa.sin_port) : 0;
}

static srv_loops *loops_alloc(unsigned n)
{
    srv_loops *ls = calloc(1, sizeof *ls + n * sizeof ls->loop[0]);
    if (!ls)
        return NULL;
    ls->n = n;
    ls->listen_fd = -1;
    atomic_init(&ls->stopping, false);
    for (unsigned i = 0; i < n; i++) {
        srv_loop *l = &ls->loop[i];
        l->owner = ls;
        l->ep = -1;
        l->watch_ep = -1;
        l->wake_fd = -1;
        atomic_init(&l->wake_pending, false);
        atomic_init(&l->conns, 0);
        atomic_init(&l->hung_up, 0);
        atomic_init(&l->handed, 0);
        pthread_mutex_init(&l->mu, NULL);
    }
    if ((ls->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
        free(ls);
        return NULL;
    }
    return ls;
}

bool srv_loops_start(const struct sockaddr_in *sa, const srv_loops_config *c, srv_loops **out,
                     int *port)
{
    unsigned n = c->n;
    srv_loops *ls = loops_alloc(n);
    *out = NULL;
    if (!ls || (ls->listen_fd = listen_socket(sa)) < 0) {
        int e = ls ? errno : ENOMEM;
        srv_loops_stop(ls);
        errno = e;
        return false;
    }
    *port = bound_port(ls->listen_fd);
    ls->wait_ms = c->wait_ms;
    /* Each daemon gets its share of the limit, rounded up.  Every loop is
     * open before any thread starts: a loop's first accept may hand its
     * connection to any other loop, whose inbox and wake-up must exist
     * (found by ThreadSanitizer, `make tsan`). */
    unsigned share = (c->conn_limit + n - 1) / n;
    int e = 0;
    for (unsigned i = 0; i < n && e == 0; i++) {
        errno = 0;
        if (!loop_open(&ls->loop[i], c, share))
            e = errno ? errno : EIO;
    }
    /* Published before the threads start, so that a request they answer
     * (the metrics) sees the loops through the caller's pointer. */
    if (e == 0)
        *out = ls;
    for (unsigned i = 0; i < n && e == 0; i++) {
        srv_loop *l = &ls->loop[i];
        if ((e = pthread_create(&l->thread, NULL, loop_main, l)) == 0)
            l->running = true;
    }
    if (e != 0) {
        srv_loops_stop(ls); /* joins the threads that started, which may read *out */
        *out = NULL;
        errno = e;
        return false;
    }
    return true;
}

void srv_loops_render(const srv_loops *ls, FILE *f)
{
    if (!ls)
        return;
    fputs("# HELP jifen_http_connections Connections open, per HTTP loop (thread); a new one "
          "goes to the loop with the fewest.\n"
          "# TYPE jifen_http_connections gauge\n",
          f);
    for (unsigned i = 0; i < ls->n; i++)
        fprintf(f, "jifen_http_connections{loop=\"%u\"} %ld\n", i, atomic_load(&ls->loop[i].conns));
    long hung_up = 0;
    for (unsigned i = 0; i < ls->n; i++)
        hung_up += atomic_load(&ls->loop[i].hung_up);
    fprintf(f,
            "# HELP jifen_http_hangups_closed_total Connections the HTTP loops shut down after"
            " their client hung up (libmicrohttpd alone would wait for the timeout when it was"
            " inside a request's headers).\n"
            "# TYPE jifen_http_hangups_closed_total counter\njifen_http_hangups_closed_total %ld\n",
            hung_up);
}

/* Closes what was handed over but never added. */
static void inbox_drop(srv_loop *l)
{
    for (handoff *h = l->inbox, *next; h; h = next) {
        next = h->next;
        close(h->fd);
        free(h);
    }
    l->inbox = NULL;
}

void srv_loops_stop(srv_loops *ls)
{
    if (!ls)
        return;
    atomic_store_explicit(&ls->stopping, true, memory_order_release);
    uint64_t one = 1;
    if (write(ls->stop_fd, &one, sizeof one) != sizeof one)
        fprintf(stderr, "jifen: HTTP loop: cannot signal stop: %s\n", strerror(errno));
    for (unsigned i = 0; i < ls->n; i++)
        if (ls->loop[i].running)
            pthread_join(ls->loop[i].thread, NULL);
    for (unsigned i = 0; i < ls->n; i++) {
        srv_loop *l = &ls->loop[i];
        inbox_drop(l);
        if (l->daemon)
            MHD_stop_daemon(l->daemon); /* unwatches its connections (srv_loop_notify) */
        spare_free(l);
        if (l->watch_ep >= 0)
            close(l->watch_ep);
        if (l->ep >= 0)
            close(l->ep);
        if (l->wake_fd >= 0)
            close(l->wake_fd);
        pthread_mutex_destroy(&l->mu);
    }
    if (ls->listen_fd >= 0)
        close(ls->listen_fd);
    close(ls->stop_fd);
    free(ls);
}
