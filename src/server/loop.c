/*
 * The HTTP event loops: one listening socket, one libmicrohttpd daemon per
 * thread, each daemon on epoll and run by a loop of ours.
 *
 * Why not libmicrohttpd's own thread pool: on epoll (0.9.75, Debian 12's) a
 * worker drains its events in rounds of 128 (MAX_EVENTS in daemon.c) and,
 * when a round comes back full, waits again with the same timeout before it
 * handles any of them.  If nothing else arrives, that second wait sleeps
 * with 128 ready connections in hand (until a connection times out, a
 * minute here): under W1 at 256 connections 127 to 200 connections hung in
 * 4 of 7 runs of 40 s, one worker's share.  Its poll mode has no such round
 * but scans every open connection on each wake-up, which halved W1 beside
 * 2,000 idle keep-alive connections (docs/PERFORMANCE.md).  Here each
 * daemon runs without a thread of its own: the loop sleeps in an epoll of
 * ours that holds the daemon's epoll descriptor, and then lets the daemon
 * take what is ready with MHD_run, which never waits (its rounds use a
 * timeout of 0).  So a full round only means another round, never a sleep.
 *
 * The daemons share one listening socket, each through a descriptor of its
 * own (dup), since a daemon closes its descriptor when it stops: a new
 * connection wakes every loop, one accepts it, and the others' accept finds
 * nothing (the socket is non-blocking).  No SO_REUSEPORT, so a second
 * server on the same port still fails to start instead of sharing it.
 *
 * Without a thread of its own a daemon has no wake-up of its own either
 * (libmicrohttpd drops its inter-thread channel in this mode): whoever
 * resumes a connection wakes the loop that runs it (srv_loop_wake, through
 * an eventfd in the loop's epoll).  A loop also wakes at least every
 * JF_HTTP_LOOP_WAIT_MS, so even a lost wake-up would cost a client a pause,
 * not its connection; tests turn that off (jf_server_options.loop_wait_ms)
 * so that one would show.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server_priv.h"

struct srv_loop {
    srv_loops *owner;
    struct MHD_Daemon *daemon;
    int ep;                   /* our epoll: the daemon's epoll descriptor, wake_fd, stop */
    int wake_fd;              /* eventfd: a connection was resumed */
    atomic_bool wake_pending; /* wake_fd written since the loop last looked */
    pthread_t thread;
    bool running;
};

struct srv_loops {
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

void srv_loop_wake(srv_loop *l)
{
    if (!l || atomic_exchange(&l->wake_pending, true))
        return;
    uint64_t one = 1;
    if (write(l->wake_fd, &one, sizeof one) != sizeof one)
        fprintf(stderr, "jifen: HTTP loop: cannot wake: %s\n", strerror(errno));
}

/* Takes the pending wake-up before the daemon runs, so that a resume after
 * this point writes wake_fd again and the next wait returns at once. */
static void loop_take_wake(srv_loop *l)
{
    if (!atomic_exchange(&l->wake_pending, false))
        return;
    uint64_t n;
    if (read(l->wake_fd, &n, sizeof n) < 0 && errno != EAGAIN)
        fprintf(stderr, "jifen: HTTP loop: cannot read its wake-up: %s\n", strerror(errno));
}

static void *loop_main(void *arg)
{
    srv_loop *l = arg;
    current_loop = l;
    pthread_setname_np(pthread_self(), "jifen-http");
    while (!atomic_load_explicit(&l->owner->stopping, memory_order_acquire)) {
        MHD_UNSIGNED_LONG_LONG due_ms = 0;
        int wait_ms = l->owner->wait_ms;
        if (MHD_get_timeout(l->daemon, &due_ms) == MHD_YES && due_ms < (unsigned)wait_ms)
            wait_ms = (int)due_ms;
        struct epoll_event ev[2];
        if (wait_ms > 0 && epoll_wait(l->ep, ev, 2, wait_ms) < 0 && errno != EINTR) {
            fprintf(stderr, "jifen: HTTP loop: epoll_wait: %s\n", strerror(errno));
            struct timespec pause = {0, 1000000};
            nanosleep(&pause, NULL);
        }
        loop_take_wake(l);
        MHD_run(l->daemon);
    }
    return NULL;
}

static bool epoll_add(int ep, int fd)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0;
}

/* Opens one loop's daemon on a copy of listen_fd and its epoll; errno set
 * on failure. */
static bool loop_open(srv_loop *l, int listen_fd, unsigned conn_limit, srv_daemon_fn make,
                      void *cls)
{
    int fd = fcntl(listen_fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        return false;
    /* On failure libmicrohttpd may already have closed fd, so it is never
     * closed here: a failed start leaks at most this descriptor. */
    if ((l->daemon = make(cls, fd, conn_limit)) == NULL)
        return false;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(l->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    if (!info || info->epoll_fd < 0) {
        errno = ENOTSUP;
        return false;
    }
    l->ep = epoll_create1(EPOLL_CLOEXEC);
    l->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return l->ep >= 0 && l->wake_fd >= 0 && epoll_add(l->ep, info->epoll_fd) &&
           epoll_add(l->ep, l->wake_fd) && epoll_add(l->ep, l->owner->stop_fd);
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
    atomic_init(&ls->stopping, false);
    for (unsigned i = 0; i < n; i++) {
        ls->loop[i].owner = ls;
        ls->loop[i].ep = -1;
        ls->loop[i].wake_fd = -1;
        atomic_init(&ls->loop[i].wake_pending, false);
    }
    if ((ls->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
        free(ls);
        return NULL;
    }
    return ls;
}

srv_loops *srv_loops_start(const struct sockaddr_in *sa, const srv_loops_config *c, int *port)
{
    unsigned n = c->n;
    srv_loops *ls = loops_alloc(n);
    int fd = ls ? listen_socket(sa) : -1;
    if (fd < 0) {
        int e = ls ? errno : ENOMEM;
        srv_loops_stop(ls);
        errno = e;
        return NULL;
    }
    *port = bound_port(fd);
    ls->wait_ms = c->wait_ms;
    /* Each daemon gets its share of the limit, rounded up. */
    unsigned share = (c->conn_limit + n - 1) / n;
    int e = 0;
    for (unsigned i = 0; i < n && e == 0; i++) {
        srv_loop *l = &ls->loop[i];
        errno = 0;
        if (!loop_open(l, fd, share, c->make, c->cls))
            e = errno ? errno : EIO;
        else if ((e = pthread_create(&l->thread, NULL, loop_main, l)) == 0)
            l->running = true;
    }
    close(fd);
    if (e != 0) {
        srv_loops_stop(ls);
        errno = e;
        return NULL;
    }
    return ls;
}

void srv_loops_stop(srv_loops *ls)
{
    if (!ls)
        return;
    atomic_store_explicit(&ls->stopping, true, memory_order_release);
    uint64_t one = 1;
    if (write(ls->stop_fd, &one, sizeof one) != sizeof one)
        fprintf(stderr, "jifen: HTTP loop: cannot signal stop: %s\n", strerror(errno));
    for (unsigned i = 0; i < ls->n; i++) {
        srv_loop *l = &ls->loop[i];
        if (l->running)
            pthread_join(l->thread, NULL);
        if (l->daemon)
            MHD_stop_daemon(l->daemon);
        if (l->ep >= 0)
            close(l->ep);
        if (l->wake_fd >= 0)
            close(l->wake_fd);
    }
    close(ls->stop_fd);
    free(ls);
}
