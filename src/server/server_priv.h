/*
 * The per-request state of the server, shared by server.c (the
 * libmicrohttpd callbacks) and respond.c (building responses).
 *
 * A srv_req lives from the first access-handler call of a request until
 * libmicrohttpd reports the request completed; it owns the uploaded body,
 * the decoded path id and, while a write waits for the engine's writer
 * thread, the slot the answer is stored in.
 */
#ifndef JF_SERVER_PRIV_H
#define JF_SERVER_PRIV_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <microhttpd.h>

#include "jifen/server.h"
#include "server_int.h"

/* Where a request is in its life. */
typedef enum srv_phase {
    SRV_PHASE_RECEIVING, /* headers and body arriving */
    SRV_PHASE_WAITING,   /* handed to the engine; the answer is pending */
    SRV_PHASE_ANSWERED,  /* a response is queued */
} srv_phase;

typedef struct srv_loop srv_loop;

typedef struct srv_req {
    jf_server *srv;
    struct MHD_Connection *conn;
    srv_loop *loop;  /* the event loop that runs the connection (loop.c) */
    srv_match match; /* route index, decoded path id, Allow list */
    srv_match_status match_status;
    srv_phase phase;

    char method[16];
    char path[256]; /* for the access log; truncated when longer */
    char request_id[72];
    char actor[JF_ID_LEN_MAX + 16];
    char idempotency_key[JF_IDEM_KEY_LEN_MAX + 1];

    char *body; /* the upload, NUL-terminated; NULL when none */
    size_t body_len;
    size_t body_cap;
    uint64_t bytes_in; /* everything received, including discarded bytes */
    bool too_large;

    int64_t start_wall_ms;
    uint64_t start_ns;

    /* The engine's answer.  mu guards done, suspended, orphaned and res
     * between the worker thread and the engine's writer thread. */
    pthread_mutex_t mu;
    bool done;
    bool suspended;
    bool orphaned; /* the connection died first: the done callback frees */
    jf_result res;

    int status; /* of the queued response; 0 until then */
    uint64_t bytes_out;
    bool replayed;
} srv_req;

/* The monotonic clock in nanoseconds. */
uint64_t srv_mono_ns(void);

/* True once the server is quiescing: responses then close the connection. */
bool srv_closing(const jf_server *s);

/* Queues a response with the common headers.  When take is true, body was
 * malloc'd and libmicrohttpd frees it; otherwise it is copied. */
enum MHD_Result srv_respond(srv_req *r, int status, const char *content_type, char *body,
                            size_t len, bool take);

/* Queues the problem+json response of err; detail may be NULL or empty. */
enum MHD_Result srv_respond_error(srv_req *r, jf_err err, const char *detail);

/* Queues the response for an engine result and deinits it. */
enum MHD_Result srv_respond_result(srv_req *r, jf_result *res);

/* loop.c: the HTTP event loops, one libmicrohttpd daemon per thread
 * (srv_loops is declared in server_int.h). */

/* The loop running on this thread: the one whose daemon called us. */
srv_loop *srv_loop_current(void);

/* Each loop keeps the memory of finished srv_reqs for its next requests
 * (up to JF_HTTP_SPARE_REQUESTS): a calloc (which in glibc bypasses the
 * per-thread cache) and a free of one were about 1,300 instructions a
 * request.  srv_loop_req_take returns such memory, not zeroed, or NULL when
 * this thread is no loop's or its loop has none; srv_loop_req_keep takes r
 * (its mutex destroyed) and returns true, or returns false and leaves r to
 * the caller to free.  Only a loop's thread finds a loop, so from any other
 * thread both are no-ops. */
srv_req *srv_loop_req_take(void);
bool srv_loop_req_keep(srv_req *r);

/* Wakes loop l to run its daemon: after MHD_resume_connection from another
 * thread (a daemon without a thread of its own has no wake-up of its own).
 * Any thread; cheap when a wake-up is already pending. */
void srv_loop_wake(srv_loop *l);

/* Starts a daemon without threads of its own or a listening socket, on
 * epoll, for loop (which it must notify of its connections through
 * srv_loop_notify, with loop as the argument), keeping at most conn_limit
 * connections; NULL on failure. */
typedef struct MHD_Daemon *(*srv_daemon_fn)(void *cls, srv_loop *loop, unsigned conn_limit);

/* libmicrohttpd's MHD_OPTION_NOTIFY_CONNECTION callback of a loop's daemon
 * (cls: the loop): counts its connections and watches each for its client's
 * hang-up (loop.c, srv_conn), in the socket context, which is the loop's. */
void srv_loop_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                     enum MHD_ConnectionNotificationCode toe);

/* The access handler took a request of conn (its first call), and
 * libmicrohttpd reported that request completed: a connection whose client
 * hung up is closed only while it has no request (loop.c, srv_conn).  The
 * daemon's thread. */
void srv_loop_request_begins(struct MHD_Connection *conn);
void srv_loop_request_ends(struct MHD_Connection *conn);
/* The access handler has all of conn's request (the last call, with no
 * more body): a hang-up from then on waits for the answer (srv_conn). */
void srv_loop_request_whole(struct MHD_Connection *conn);

typedef struct srv_loops_config {
    unsigned n;          /* loops (threads), each with a daemon */
    unsigned conn_limit; /* connections of all daemons together */
    int wait_ms;         /* longest sleep with nothing due */
    srv_daemon_fn make;  /* make(cls, ...) starts a loop's daemon */
    void *cls;
} srv_loops_config;

/* Binds a listening socket to sa and starts the loops of c; *port is the
 * port bound.  *out is set before the first loop's thread starts, so those
 * threads may read it.  False with errno set and *out NULL on failure, with
 * nothing left running. */
bool srv_loops_start(const struct sockaddr_in *sa, const srv_loops_config *c, srv_loops **out,
                     int *port);

/* Stops the loops, then their daemons (which close every connection), and
 * frees them.  No connection may be suspended.  NULL is a no-op. */
void srv_loops_stop(srv_loops *ls);

#endif
