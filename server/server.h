/*
 * server.h - what every front end shares: the server, a request, and the
 * helpers that turn store answers into HTTP responses.
 *
 * A request's life (libmicrohttpd calls the access handler several times):
 *   1. the URI log callback allocates a request and keeps the raw URI
 *      (signatures need the path exactly as the client sent it);
 *   2. the first call routes it to a front end's handler;
 *   3. for bodies, each further call hands the handler a piece of the body;
 *   4. the last call (no more data) lets the handler answer;
 *   5. the completion callback frees the request and whatever the handler
 *      left in it.
 * Handlers queue their response on the second call or later, never the
 * first: MHD closes a connection whose response was queued on the first call.
 */
#ifndef CAIRN_SERVER_H
#define CAIRN_SERVER_H

#include <microhttpd.h>
#include <stdatomic.h>
#include <stdint.h>

#include "../storage/store.h"
#include "config.h"
#include "metrics.h"

typedef struct server {
    const server_config *cfg;
    store *st;
    struct MHD_Daemon *daemon;
    atomic_int ready;
    atomic_int stopping;  /* SIGTERM came: requests from now on are answered 503 */
    atomic_int in_flight; /* requests that came before, which the stop waits for */
    uint64_t start_ms;
    uint16_t port;
    struct offload *off;     /* where requests that wait for the cold tier, or take long, run */
    atomic_int tier_waiting; /* requests on an offload thread or parked now */
    struct watch *watch;     /* requests not yet received whole (http.c) */
} server;

typedef struct request request;
typedef enum MHD_Result (*handler_fn)(request *r, const char *data, size_t *size);

struct request {
    server *srv;
    struct MHD_Connection *conn;
    const char *method;
    const char *path; /* decoded path, without the query */
    char *raw_uri;    /* as received, with the query */
    unsigned calls;
    handler_fn handler;
    int late;  /* came after the stop began: answered 503, not waited for */
    int close; /* the answer closes the connection */
    /* an answer given before the body was read: sent once the body has been
     * read and dropped, so that the connection stays usable (http_queue) */
    struct MHD_Response *deferred;
    unsigned deferred_status;
    uint64_t drained;
    /* what /metrics counts; status is the answer's, 0 until one is queued */
    request_metrics m;
    unsigned status;
    /* front end state, freed by cleanup */
    void *fe;
    void (*cleanup)(request *r);
    /* A request whose last call would wait for the cold tier runs that call
     * again on an offload thread, its connection suspended meanwhile, so
     * that the HTTP thread goes on serving others; its answer is queued on
     * the call after.  Only a last call that changes nothing before it asks
     * the store can be run again (may_offload: GET, HEAD and DELETE, and
     * what a front end vouches for); one that cannot, but may wait for the
     * tier, runs on an offload thread from the start (offload_last); so
     * does one that takes long (offload_long too: a part copy, a
     * completion, a batch of deletes), of which at most half the offload
     * threads run at once, so that the others stay free for the rest. */
    int may_offload, offload_last, offload_long, offloaded, on_worker;
    uint64_t offload_ns; /* when it was handed to the offload threads */
    struct MHD_Response *ready;
    unsigned ready_status;
    enum MHD_Result ready_ret;
    request *next_offload;
    /* on a watch list (http.c): the socket, the body's bytes so far and
     * whether the request came whole, for the watch thread; the rest is
     * the watch thread's */
    int watched, fd;
    atomic_ullong body_got;
    atomic_int received_whole;
    uint64_t watch_seen;
    int watch_still, watch_cut;
    request *watch_prev, *watch_next;
};

/* A response whose body waits for the cold tier suspends its connection
 * (http_park, from its content reader) until the store wakes it
 * (http_unpark, as a store_waiter's wake). */
typedef struct http_parker {
    server *srv;
    struct MHD_Connection *conn;
    int suspended, woken;
    struct http_parker *prev, *next;
} http_parker;
void http_parker_init(http_parker *p, request *r);
/* 1: suspended (the content reader returns 0); 0: woken already, read
 * again; -1: the server is stopping, give up. */
int http_park(http_parker *p);
void http_unpark(void *parker);

/* Called by a content reader that is about to end its body with an error:
 * shuts the connection's socket down, so the client sees the body cut at
 * once.  (libmicrohttpd 0.9.75 leaves a connection whose content reader
 * fails on its first call open until the connection timeout: the client,
 * its headers in hand, would wait that long for the body.) */
void http_abort_body(struct MHD_Connection *conn);

int server_start(server *srv, const server_config *cfg, store *st, char *err, size_t errlen);
/* Answers requests that come from now on with 503 and Connection: close
 * (but /healthz, /readyz: 503, /status, /metrics), and waits up to the
 * shutdown timeout for those in flight. */
void server_quiesce(server *srv);
/* server_quiesce if not yet, then closes every connection. */
void server_stop(server *srv);

/* ---- responses ---- */

/* Queues resp.  On the first call of a request whose body is still to come
 * (and that did not ask for 100-continue), the answer waits until the body has
 * been read and dropped (up to a bound): closing a connection with unread
 * bytes would reset it, and the client would never see the status. */
enum MHD_Result http_queue(request *r, unsigned status, struct MHD_Response *resp);
/* A short text/plain answer (the message is followed by a newline). */
enum MHD_Result http_text(request *r, unsigned status, const char *msg);
enum MHD_Result http_json(request *r, unsigned status, const char *json);
const char *http_header(request *r, const char *name);
int http_is(request *r, const char *method);
/* Has r's client closed its connection?  For a handler that works long
 * (on an offload thread) for a client that may have given up. */
int http_client_gone(const request *r);
/* Does the Accept-Encoding header accept coding (with a q-value above 0)? */
int http_accepts_encoding(request *r, const char *coding);
/* The request's Range, or NULL: also NULL when an If-Range names another
 * version than the one with etag (without quotes; NULL: none sent) and
 * mtime_ms (0: none sent), so that the whole body is answered (RFC 9110
 * 13.1.5). */
const char *http_range(request *r, const char *etag, uint64_t mtime_ms);
/* HTTP status for a store status. */
unsigned http_status_for(int store_status);

/* ---- request bodies into the store (upload.c) ---- */

struct mpu_writer;

typedef struct body_sink {
    store_upload *up;
    struct mpu_writer *part; /* a multipart upload's part, instead of up */
    void *zstd;              /* ZSTD_DStream when the body arrives zstd-compressed */
    uint8_t *zbuf;
    size_t zstd_left; /* the decoder's last hint: 0 when a frame ended cleanly */
    int zstd_fed;
    uint64_t max_body;
    uint64_t size;   /* decoded bytes taken */
    unsigned status; /* first HTTP error seen; the rest of the body is discarded */
    const char *error;
} body_sink;

/* Starts a body: checks Content-Length against the limits and the
 * Content-Encoding.  Returns 0, or the HTTP status to answer at once. */
unsigned body_begin(request *r, body_sink *b, int want_md5, int decode_zstd);
/* Same limits, but the body goes into a multipart part (taken over). */
unsigned body_begin_part(request *r, body_sink *b, struct mpu_writer *part);
/* Bytes taken so far. */
uint64_t body_size(const body_sink *b);
void body_feed(body_sink *b, const char *data, size_t len);
/* Ends the body: digests into res (0, or the HTTP status of the failure). */
unsigned body_finish(body_sink *b, store_put_result *res);
/* Commits the body under (ns, key); returns the HTTP status to answer with. */
unsigned body_commit(body_sink *b, const char *ns, const void *key, size_t klen,
                     const uint8_t *expect_digest, const void *meta, size_t meta_len,
                     store_put_result *res);
void body_free(body_sink *b);

/* ---- stored bodies out (serve.c) ---- */

typedef struct serve_opts {
    uint64_t *sent; /* if set: the body bytes the answer will carry */
    int head;
    int allow_zstd; /* the client takes Content-Encoding: zstd */
    const char *range;
    const char *content_type;
    request *req; /* whose connection a body waiting for the tier suspends */
    /* if set: 1 when the entry's blob was gone by the time it was opened
     * (the key was overwritten or deleted since its lookup, and the blob
     * was used by nothing else): look the key up again */
    int *vanished;
} serve_opts;

/* Builds the response for a stored entry: 200, 206 or 416, ranges and zstd
 * pass-through included.  On STORE_NOTFOUND or STORE_CORRUPT (a miss), returns
 * NULL and sets *status to 404.  The caller adds its own headers and queues. */
struct MHD_Response *serve_entry(server *srv, const store_entry *e, const serve_opts *o,
                                 unsigned *status);

/* Runs once(r, head, vanished) again while it says the blob of the key it
 * looked up was gone by the time it opened it (serve_opts.vanished; three
 * times at most, then as it answered): a key overwritten or deleted in
 * that window is looked up again, so it has a value or none, never a 404
 * while it holds one.  once answers only when it does not set *vanished. */
enum MHD_Result serve_looking_again(request *r, int head,
                                    enum MHD_Result (*once)(request *r, int head, int *vanished));

/* Parses "bytes=a-b", "bytes=a-", "bytes=-n" against size.
 * 1: a range (start, len); 0: no usable range (serve all); -1: unsatisfiable. */
int http_parse_range(const char *h, uint64_t size, uint64_t *start, uint64_t *len);
/* The 416 answer to a Range that a body of size bytes cannot satisfy. */
struct MHD_Response *serve_unsatisfiable(uint64_t size);

/* ---- front ends ---- */

enum MHD_Result ops_handle(request *r, const char *data, size_t *size);
enum MHD_Result native_handle(request *r, const char *data, size_t *size);
/* True if the path belongs to the native API (and fills the route). */
int native_route(request *r);

#endif
