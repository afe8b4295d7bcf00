/*
 * http.c - the libmicrohttpd daemon, request lifecycle and routing.
 *
 * MHD runs its own polling threads (epoll, a pool of cfg->threads).  Routing:
 * /healthz, /readyz and /status go to ops.c; a request with AWS
 * authentication to the S3 front end (s3.c); /cas/ and /ac/ (with an optional
 * /<instance>/ before them) to native.c; everything else to S3, which answers
 * in its own terms (anonymous S3 requests included).
 *
 * With a cold tier, a request that would wait for it (a read through, a
 * lookup there) must not hold up the other connections of its HTTP thread:
 * its last call runs with store_nonblocking on, and if the store says it
 * would have waited, the connection is suspended and the call runs again on
 * an offload thread (as many as HTTP threads), where waiting is fine.  The
 * requests that take long anyway (a part copy, a completion: offload_last)
 * run there too, tier or not.  A
 * body still arriving from the tier suspends its connection from the
 * content reader until the store wakes it (http_park).
 *
 * A watch thread ends requests whose client went away before they came
 * whole, which MHD alone would keep until the connection timeout.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdatomic.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../common/log.h"
#include "../common/sigv4.h"
#include "../common/util.h"
#include "s3.h"
#include "server.h"

#define DRAIN_MAX (64u << 20) /* beyond this, close rather than read a refused body */

/* Does a body come with the request (whether or not the client waits for
 * 100 Continue first)?  Its Content-Length into *len (0 if chunked). */
static int has_body(request *r, unsigned long long *len)
{
    *len = 0;
    const char *te = http_header(r, "Transfer-Encoding");
    if (te && strcasestr(te, "chunked"))
        return 1;
    const char *cl = http_header(r, "Content-Length");
    return cl != NULL && (*len = strtoull(cl, NULL, 10)) > 0;
}

/* Will a body follow that nobody has read yet? */
static int body_pending(request *r)
{
    if (r->calls != 1)
        return 0;
    const char *expect = http_header(r, "Expect");
    if (expect && strcasecmp(expect, "100-continue") == 0)
        return 0; /* the client waits for our word before sending it */
    unsigned long long len;
    return has_body(r, &len) && len <= DRAIN_MAX;
}

typedef struct offload {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    request *head, *tail; /* waiting for a thread */
    /* the long ones (offload_long), waiting; at most long_max run at once,
     * so that the other threads stay free for the rest */
    request *lhead, *ltail;
    unsigned long_running, long_max;
    pthread_t *threads;
    unsigned nthreads;
    int stopping;
    http_parker *parked; /* suspended by their content readers */
} offload;

enum MHD_Result http_queue(request *r, unsigned status, struct MHD_Response *resp)
{
    if (resp == NULL)
        return MHD_NO;
    if (store_would_block_peek()) {
        /* an answer made without the tier's word: the call runs again */
        MHD_destroy_response(resp);
        return MHD_YES;
    }
    if (r->close)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    if (r->on_worker) {
        r->ready = resp; /* queued by the request's next call, on its HTTP thread */
        r->ready_status = status;
        r->status = status;
        return MHD_YES;
    }
    if (body_pending(r)) {
        r->deferred = resp;
        r->deferred_status = status;
        r->status = status;
        return MHD_YES;
    }
    r->status = status;
    enum MHD_Result ret = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

enum MHD_Result http_text(request *r, unsigned status, const char *msg)
{
    size_t n = strlen(msg);
    char *buf = malloc(n + 1);
    if (buf == NULL)
        return MHD_NO;
    memcpy(buf, msg, n);
    buf[n] = '\n';
    struct MHD_Response *resp = MHD_create_response_from_buffer(n + 1, buf, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(buf);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "text/plain; charset=utf-8");
    return http_queue(r, status, resp);
}

enum MHD_Result http_json(request *r, unsigned status, const char *json)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(json), (void *)json, MHD_RESPMEM_MUST_COPY);
    if (resp == NULL)
        return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", "application/json");
    return http_queue(r, status, resp);
}

const char *http_header(request *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

int http_is(request *r, const char *method)
{
    return strcmp(r->method, method) == 0;
}

const char *http_range(request *r, const char *etag, uint64_t mtime_ms)
{
    const char *range = http_header(r, "Range"), *v = http_header(r, "If-Range");
    if (range == NULL || v == NULL)
        return range;
    while (*v == ' ' || *v == '\t')
        v++;
    size_t vl = strlen(v);
    while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
        vl--;
    if (v[0] == '"') /* a strong entity tag: the same, byte for byte */
        return etag && *etag && vl == strlen(etag) + 2 && v[vl - 1] == '"' &&
                       memcmp(v + 1, etag, vl - 2) == 0
                   ? range
                   : NULL;
    if (strncmp(v, "W/", 2) == 0)
        return NULL; /* a weak one never matches */
    time_t t;
    return mtime_ms && sigv4_parse_http_date(v, &t) == SIGV4_OK &&
                   (int64_t)t == (int64_t)(mtime_ms / 1000)
               ? range
               : NULL;
}

int http_accepts_encoding(request *r, const char *coding)
{
    const char *h = http_header(r, "Accept-Encoding");
    size_t cl = strlen(coding);
    while (h && *h) {
        while (*h == ' ' || *h == ',')
            h++;
        size_t tl = strcspn(h, ",;");
        size_t nl = tl;
        while (nl > 0 && h[nl - 1] == ' ')
            nl--;
        int match = (nl == cl && strncasecmp(h, coding, cl) == 0) || (nl == 1 && h[0] == '*');
        const char *end = h + strcspn(h, ",");
        double q = 1.0;
        const char *qp = h + tl;
        while (qp < end && *qp == ';') {
            qp++;
            while (*qp == ' ')
                qp++;
            if ((qp[0] == 'q' || qp[0] == 'Q') && qp[1] == '=')
                q = strtod(qp + 2, NULL);
            qp += strcspn(qp, ";,");
        }
        if (match && nl == cl)
            return q > 0;
        if (match && q <= 0)
            return 0;
        h = end;
    }
    return 0;
}

unsigned http_status_for(int st)
{
    switch (st) {
    case STORE_OK:
        return MHD_HTTP_OK;
    case STORE_NOTFOUND:
    case STORE_CORRUPT:
    case STORE_NO_NAMESPACE:
        return MHD_HTTP_NOT_FOUND;
    case STORE_DIGEST_MISMATCH:
    case STORE_BAD_KEY:
        return MHD_HTTP_BAD_REQUEST;
    case STORE_NOSPACE:
    case STORE_TIER_BEHIND:
        return MHD_HTTP_INSUFFICIENT_STORAGE;
    case STORE_TOO_LARGE:
        return MHD_HTTP_CONTENT_TOO_LARGE;
    case STORE_SHUTDOWN:
    case STORE_UNAVAILABLE:
        return MHD_HTTP_SERVICE_UNAVAILABLE;
    default:
        return MHD_HTTP_INTERNAL_SERVER_ERROR;
    }
}

static enum MHD_Result unknown_handle(request *r, const char *data, size_t *size)
{
    (void)data;
    if (*size != 0) {
        *size = 0; /* discard a body sent to nowhere */
        return MHD_YES;
    }
    if (r->calls == 1)
        return MHD_YES;
    return http_text(r, MHD_HTTP_NOT_FOUND,
                     "no such endpoint: the API lives under /cas/, /ac/, /healthz, /readyz, "
                     "/status");
}

void http_parker_init(http_parker *p, request *r)
{
    memset(p, 0, sizeof *p);
    p->srv = r->srv;
    p->conn = r->conn;
}

int http_park(http_parker *p)
{
    offload *off = p->srv->off;
    if (off == NULL)
        return -1; /* (nothing waits without a tier) */
    pthread_mutex_lock(&off->mu);
    int rc = p->woken ? 0 : off->stopping ? -1 : 1;
    p->woken = 0;
    if (rc > 0) {
        p->suspended = 1;
        atomic_fetch_add(&p->srv->tier_waiting, 1);
        p->prev = NULL;
        p->next = off->parked;
        if (off->parked)
            off->parked->prev = p;
        off->parked = p;
        MHD_suspend_connection(p->conn);
    }
    pthread_mutex_unlock(&off->mu);
    return rc;
}

/* (off->mu held) */
static void unpark_locked(offload *off, http_parker *p)
{
    if (!p->suspended) {
        p->woken = 1; /* before it parked: it reads again instead */
        return;
    }
    p->suspended = 0;
    atomic_fetch_sub(&p->srv->tier_waiting, 1);
    if (p->prev)
        p->prev->next = p->next;
    else
        off->parked = p->next;
    if (p->next)
        p->next->prev = p->prev;
    MHD_resume_connection(p->conn);
}

void http_unpark(void *parker)
{
    http_parker *p = parker;
    offload *off = p->srv->off;
    pthread_mutex_lock(&off->mu);
    unpark_locked(off, p);
    pthread_mutex_unlock(&off->mu);
}

void http_abort_body(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci != NULL)
        shutdown(ci->connect_fd, SHUT_RDWR); /* the fd stays MHD's to close */
}

/* 503 in the request's front end's form, and the connection closes, so that
 * the client goes elsewhere or comes back to the next process. */
static enum MHD_Result shutting_down(request *r)
{
    r->close = 1;
    if (r->m.fe == MFE_S3)
        return s3_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "ServiceUnavailable",
                        "The server is shutting down.");
    return http_text(r, MHD_HTTP_SERVICE_UNAVAILABLE, "shutting down");
}

static void *offload_main(void *arg)
{
    server *srv = arg;
    offload *off = srv->off;
    pthread_mutex_lock(&off->mu);
    for (;;) {
        /* the others first; a long one while fewer than long_max run (at
         * the stop, every one, for its 503) */
        int long_ok = 0;
        while (off->head == NULL &&
               !(long_ok = off->lhead && (off->long_running < off->long_max || off->stopping)) &&
               !off->stopping)
            pthread_cond_wait(&off->cv, &off->mu);
        int is_long = off->head == NULL && long_ok;
        request *r = is_long ? off->lhead : off->head;
        if (r == NULL)
            break;
        if (is_long) {
            off->lhead = r->next_offload;
            if (off->lhead == NULL)
                off->ltail = NULL;
            off->long_running++;
        } else {
            off->head = r->next_offload;
            if (off->head == NULL)
                off->tail = NULL;
        }
        int stopping = off->stopping;
        pthread_mutex_unlock(&off->mu);
        r->on_worker = 1;
        if (stopping) {
            r->ready_ret = shutting_down(r);
        } else {
            size_t none = 0;
            /* a read's wait for this thread comes out of the budget of each
             * request to the tier made for it, and once one of them timed
             * out it has waited enough; not so for what runs here from the
             * start (listings, a drain, a batch of deletes: many requests
             * to the tier) */
            int read = !r->offload_last;
            store_tier_waited(read ? util_mono_ns() - r->offload_ns : 0, read);
            r->ready_ret = r->handler(r, NULL, &none);
            store_tier_waited(0, 0);
        }
        r->on_worker = 0;
        if (store_has_tier(srv->st) && !is_long)
            atomic_fetch_sub(&srv->tier_waiting, 1);
        MHD_resume_connection(r->conn);
        pthread_mutex_lock(&off->mu);
        if (is_long && off->long_running-- == off->long_max && off->lhead)
            pthread_cond_signal(&off->cv); /* the next long one may go */
    }
    pthread_mutex_unlock(&off->mu);
    return NULL;
}

/* Suspends r's connection and hands its last call to an offload thread;
 * once the server is stopping (the threads may be gone), answers 503. */
static enum MHD_Result offload_request(request *r)
{
    offload *off = r->srv->off;
    pthread_mutex_lock(&off->mu);
    if (off->stopping) {
        pthread_mutex_unlock(&off->mu);
        return shutting_down(r);
    }
    r->offloaded = 1;
    r->offload_ns = util_mono_ns();
    r->next_offload = NULL;
    if (store_has_tier(r->srv->st) && !r->offload_long)
        atomic_fetch_add(&r->srv->tier_waiting, 1);
    MHD_suspend_connection(r->conn);
    request **head = r->offload_long ? &off->lhead : &off->head,
            **tail = r->offload_long ? &off->ltail : &off->tail;
    if (*tail)
        (*tail)->next_offload = r;
    else
        *head = r;
    *tail = r;
    pthread_cond_signal(&off->cv);
    pthread_mutex_unlock(&off->mu);
    return MHD_YES;
}

static int offload_start(server *srv, unsigned n)
{
    offload *off = calloc(1, sizeof *off);
    if (off == NULL || (off->threads = calloc(n, sizeof *off->threads)) == NULL) {
        free(off);
        return -1;
    }
    pthread_mutex_init(&off->mu, NULL);
    pthread_cond_init(&off->cv, NULL);
    pthread_mutex_lock(&off->mu); /* (long_max is set once the threads are counted) */
    srv->off = off;
    for (; off->nthreads < n; off->nthreads++)
        if (pthread_create(&off->threads[off->nthreads], NULL, offload_main, srv) != 0)
            break;
    off->long_max = off->nthreads / 2 ? off->nthreads / 2 : 1;
    pthread_mutex_unlock(&off->mu);
    return off->nthreads > 0 ? 0 : -1;
}

/* Answers what waits for an offload thread with 503, wakes every parked
 * connection (their reads give up) and joins the threads: after this, no
 * connection is suspended, as MHD_stop_daemon requires. */
static void offload_stop(server *srv)
{
    offload *off = srv->off;
    if (off == NULL)
        return;
    pthread_mutex_lock(&off->mu);
    off->stopping = 1;
    while (off->parked)
        unpark_locked(off, off->parked);
    pthread_cond_broadcast(&off->cv);
    pthread_mutex_unlock(&off->mu);
    for (unsigned i = 0; i < off->nthreads; i++)
        pthread_join(off->threads[i], NULL);
}

static void offload_free(server *srv)
{
    offload *off = srv->off;
    if (off == NULL)
        return;
    pthread_mutex_destroy(&off->mu);
    pthread_cond_destroy(&off->cv);
    free(off->threads);
    free(off);
    srv->off = NULL;
}

/* Requests still being received, and the thread that looks after them.
 *
 * libmicrohttpd 0.9.75 with epoll is edge-triggered and takes a short read
 * for "nothing more to read" (recv_param_adapter clears READ_READY).  When
 * the last piece a client sent and its close come in together (the client
 * gave up in the middle of an upload, or of its request's head, while
 * cairnd was busy), MHD reads the piece short and waits for an edge that
 * never comes: the request lasts until the connection timeout (two minutes
 * by default), holding a connection, a temporary file, and a stop, which
 * waits for it.
 *
 * So, once a second, the watch thread peeks at the socket of each request
 * not yet received whole that has made no progress for a second.  If the
 * client has closed it, the socket's reading side is shut down, which wakes
 * MHD, which reads the end and ends the request as a client's abort.  A
 * client that is only slow or quiet is left alone (its peek finds nothing,
 * or data MHD has not taken yet); one that sent its whole request and then
 * closed its sending side, waiting for the answer, still gets it: only
 * reading is shut, and MHD reads no more once it has the request whole.
 *
 * Every request is on a list from on_uri until on_completed, which MHD calls
 * before it closes the socket; a list's lock is held while a socket is
 * looked at, so the fd is never a later connection's.  The lists are
 * sharded by fd, so that the HTTP threads do not contend for one lock. */
#define WATCH_SHARDS 16

typedef struct watch_list {
    pthread_mutex_t mu;
    request *head;
} watch_list;

typedef struct watch {
    pthread_mutex_t mu; /* stop and cv */
    pthread_cond_t cv;
    int stop;
    pthread_t thread;
    watch_list lists[WATCH_SHARDS];
} watch;

static void watch_add(request *r, struct MHD_Connection *conn)
{
    watch *w = r->srv->watch;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (w == NULL || ci == NULL)
        return;
    r->fd = ci->connect_fd;
    watch_list *l = &w->lists[(unsigned)r->fd % WATCH_SHARDS];
    pthread_mutex_lock(&l->mu);
    r->watch_next = l->head;
    if (l->head)
        l->head->watch_prev = r;
    l->head = r;
    r->watched = 1;
    pthread_mutex_unlock(&l->mu);
}

static void watch_remove(request *r)
{
    watch_list *l = &r->srv->watch->lists[(unsigned)r->fd % WATCH_SHARDS];
    pthread_mutex_lock(&l->mu);
    if (r->watch_prev)
        r->watch_prev->watch_next = r->watch_next;
    else
        l->head = r->watch_next;
    if (r->watch_next)
        r->watch_next->watch_prev = r->watch_prev;
    pthread_mutex_unlock(&l->mu);
}

/* Has the client closed the connection on fd (or is it broken)?  Data it
 * sent that nobody read yet is not a close. */
static int peer_closed(int fd)
{
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

int http_client_gone(const request *r)
{
    return r->watched && peer_closed(r->fd);
}

static void watch_sweep(watch_list *l)
{
    pthread_mutex_lock(&l->mu);
    for (request *r = l->head; r; r = r->watch_next) {
        if (r->watch_cut || atomic_load_explicit(&r->received_whole, memory_order_relaxed))
            continue;
        uint64_t got = atomic_load_explicit(&r->body_got, memory_order_relaxed);
        if (got != r->watch_seen || !r->watch_still) {
            r->watch_seen = got;
            r->watch_still = 1;
            continue;
        }
        if (peer_closed(r->fd)) {
            log_msg(LOG_DEBUG, "http",
                    "client closed before its request came whole (%llu bytes "
                    "of body)",
                    (unsigned long long)got);
            shutdown(r->fd, SHUT_RD); /* the fd stays MHD's to close */
            r->watch_cut = 1;
        }
    }
    pthread_mutex_unlock(&l->mu);
}

static void *watch_main(void *arg)
{
    watch *w = arg;
    pthread_mutex_lock(&w->mu);
    while (!w->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
        if (w->stop)
            break;
        pthread_mutex_unlock(&w->mu);
        for (int i = 0; i < WATCH_SHARDS; i++)
            watch_sweep(&w->lists[i]);
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static void watch_free(watch *w)
{
    for (int i = 0; i < WATCH_SHARDS; i++)
        pthread_mutex_destroy(&w->lists[i].mu);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
}

static int watch_start(server *srv)
{
    watch *w = calloc(1, sizeof *w);
    pthread_condattr_t ca;
    if (w == NULL)
        return -1;
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    for (int i = 0; i < WATCH_SHARDS; i++)
        pthread_mutex_init(&w->lists[i].mu, NULL);
    srv->watch = w;
    if (pthread_create(&w->thread, NULL, watch_main, w) != 0) {
        srv->watch = NULL;
        watch_free(w);
        return -1;
    }
    return 0;
}

/* After MHD_stop_daemon: no request is left on the lists. */
static void watch_stop(server *srv)
{
    watch *w = srv->watch;
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    srv->watch = NULL;
    watch_free(w);
}

static void route(request *r)
{
    int s3 = s3_claims(r);
    const char *m = r->method;
    r->m.op = strcmp(m, "GET") == 0      ? MOP_GET
              : strcmp(m, "HEAD") == 0   ? MOP_HEAD
              : strcmp(m, "PUT") == 0    ? MOP_PUT
              : strcmp(m, "DELETE") == 0 ? MOP_DELETE
                                         : MOP_OTHER;
    r->may_offload = r->m.op == MOP_GET || r->m.op == MOP_HEAD || r->m.op == MOP_DELETE;
    r->offload_last = 0;
    if (!s3 && (strcmp(r->path, "/healthz") == 0 || strcmp(r->path, "/readyz") == 0 ||
                strcmp(r->path, "/status") == 0 || strcmp(r->path, "/metrics") == 0)) {
        r->handler = ops_handle;
        r->m.fe = MFE_OPS;
    } else if (!s3 && native_route(r)) {
        r->handler = native_handle;
        r->m.fe = MFE_NATIVE;
    } else if (s3_route(r)) {
        r->handler = s3_handle;
        r->m.fe = MFE_S3;
    } else {
        r->handler = unknown_handle;
        r->m.fe = MFE_OTHER;
    }
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    request *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->srv = cls;
    r->raw_uri = strdup(uri);
    r->m.start_ns = util_mono_ns();
    r->m.fe = MFE_OTHER;
    r->late = atomic_load(&r->srv->stopping);
    if (!r->late)
        atomic_fetch_add(&r->srv->in_flight, 1);
    watch_add(r, conn);
    return r;
}

/* A request that came after the stop began: shutting_down.  Health,
 * readiness, status and metrics still answer (readiness says 503 by
 * itself). */
static enum MHD_Result late_handle(request *r, const char *data, size_t *size)
{
    (void)data;
    if (*size != 0) {
        *size = 0; /* (a body beyond what the answer waited for) */
        return MHD_YES;
    }
    return shutting_down(r);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)cls;
    (void)version;
    request *r = *con_cls;
    if (r == NULL || r->raw_uri == NULL)
        return MHD_NO; /* out of memory in on_uri */
    if (r->calls++ == 0) {
        r->conn = conn;
        r->method = method;
        r->path = url;
        route(r);
        if (r->late && r->m.fe != MFE_OPS) {
            r->handler = late_handle;
            r->may_offload = r->offload_last = 0;
        }
    }
    if (r->watched) { /* (the first call: the head came whole; the last: the body) */
        unsigned long long len;
        if (*upload_data_size != 0)
            atomic_store_explicit(&r->body_got, r->m.received + *upload_data_size,
                                  memory_order_relaxed);
        else if (r->calls > 1 || !has_body(r, &len))
            atomic_store_explicit(&r->received_whole, 1, memory_order_relaxed);
    }
    r->m.received += *upload_data_size;
    if (r->deferred) {
        r->drained += *upload_data_size;
        if (*upload_data_size != 0 && r->drained <= DRAIN_MAX) {
            *upload_data_size = 0;
            return MHD_YES;
        }
        struct MHD_Response *resp = r->deferred;
        r->deferred = NULL;
        enum MHD_Result ret = MHD_queue_response(conn, r->deferred_status, resp);
        MHD_destroy_response(resp);
        return ret;
    }
    if (r->offloaded) {
        /* back from an offload thread: its answer */
        r->offloaded = 0;
        struct MHD_Response *resp = r->ready;
        r->ready = NULL;
        if (resp) {
            enum MHD_Result ret = MHD_queue_response(conn, r->ready_status, resp);
            MHD_destroy_response(resp);
            return ret;
        }
        if (r->ready_ret == MHD_NO)
            return MHD_NO;
    }
    if (r->srv->off == NULL || r->calls < 2 || *upload_data_size != 0 ||
        !(r->may_offload || r->offload_last))
        return r->handler(r, upload_data, upload_data_size);
    if (r->offload_last)
        return offload_request(r);
    store_nonblocking(1);
    enum MHD_Result ret = r->handler(r, upload_data, upload_data_size);
    int again = store_would_block();
    store_nonblocking(0);
    return again ? offload_request(r) : ret;
}

static const char *CACHE_NAMES[] = {"", "miss", "hit-local", "hit-tier"};

/* The client's address as text (cap >= 64).  IPv4 by hand: inet_ntop goes
 * through sprintf, and this runs for every line of the access log. */
static void client_address(struct MHD_Connection *conn, char *out, size_t cap)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    memcpy(out, "-", 2);
    if (ci == NULL || ci->client_addr == NULL)
        return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET) {
        const uint8_t *a = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
        char *p = out;
        for (int i = 0; i < 4; i++) {
            unsigned v = a[i];
            if (v >= 100)
                *p++ = (char)('0' + v / 100);
            if (v >= 10)
                *p++ = (char)('0' + v / 10 % 10);
            *p++ = (char)('0' + v % 10);
            *p++ = i < 3 ? '.' : '\0';
        }
    } else if (sa->sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)cap);
    }
}

/* The access log's line, and the audit log's: the path without its query
 * (a presigned URL's query holds a signature), never a header. */
static void log_request(request *r, const char *event, const char *action)
{
    log_line l;
    if (!log_line_begin(&l, LOG_INFO, event))
        return;
    const char *q = strchr(r->raw_uri, '?');
    size_t plen = q ? (size_t)(q - r->raw_uri) : strlen(r->raw_uri);
    char client[64];
    client_address(r->conn, client, sizeof client);
    const char *method = r->method ? r->method : "-";
    const char *fe = metrics_fe_name(r->m.fe), *op = metrics_op_name(r->m.op);
    const char *cache = CACHE_NAMES[r->m.cache & 3];
    if (action)
        log_line_str(&l, "action", action, strlen(action));
    log_line_str(&l, "method", method, strlen(method));
    log_line_str(&l, "path", r->raw_uri, plen < 1024 ? plen : 1024);
    log_line_u64(&l, "status", r->status);
    log_line_str(&l, "frontend", fe, strlen(fe));
    log_line_str(&l, "operation", op, strlen(op));
    log_line_str(&l, "cache", cache, strlen(cache));
    log_line_u64(&l, "in", r->m.received);
    log_line_u64(&l, "out", r->m.sent);
    log_line_ms(&l, "ms", util_mono_ns() - r->m.start_ns);
    log_line_str(&l, "client", client, strlen(client));
    log_line_end(&l);
}

/* What the audit log records: refused authentication, deletes, bucket changes. */
static const char *audit_action(const request *r)
{
    if (r->m.fe == MFE_S3 && (r->status == 401 || r->status == 403))
        return "refused";
    if (r->status >= 300)
        return NULL;
    if (r->m.op == MOP_DELETE)
        return "delete";
    if (r->m.op == MOP_BUCKET && r->method && strcmp(r->method, "PUT") == 0)
        return "bucket_create";
    if (r->m.op == MOP_BUCKET && r->method && strcmp(r->method, "DELETE") == 0)
        return "bucket_delete";
    if (r->m.op == MOP_ADMIN && r->method && strcmp(r->method, "GET") != 0)
        return "admin";
    return NULL;
}

static atomic_ullong access_seq;

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    request *r = *con_cls;
    if (r == NULL)
        return;
    const server_config *cfg = r->srv->cfg;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && r->status)
        r->status = 500; /* the answer was cut short */
    if (r->status && cfg->metrics)
        metrics_request_done(&r->m, r->status);
    if (r->status && r->conn) {
        const char *action = cfg->audit_log ? audit_action(r) : NULL;
        if (action)
            log_request(r, "audit", action);
        if (cfg->access_log[0] == 'a' ||
            (cfg->access_log[0] == 's' &&
             atomic_fetch_add(&access_seq, 1) % cfg->access_log_sample == 0))
            log_request(r, "access", NULL);
    }
    if (r->cleanup)
        r->cleanup(r);
    if (r->deferred)
        MHD_destroy_response(r->deferred);
    if (r->ready)
        MHD_destroy_response(r->ready);
    if (r->watched)
        watch_remove(r);
    if (!r->late)
        atomic_fetch_sub(&r->srv->in_flight, 1);
    free(r->raw_uri);
    free(r);
    *con_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    log_msg(LOG_DEBUG, "http", "%s", msg);
}

/* HOST:PORT or [V6]:PORT into a socket address. */
static int parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[256];
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s)
        return -1;
    size_t hl = (size_t)(colon - s);
    if (s[0] == '[') {
        if (hl < 2 || s[hl - 1] != ']')
            return -1;
        memcpy(host, s + 1, hl - 2);
        host[hl - 2] = '\0';
    } else {
        if (hl >= sizeof host)
            return -1;
        memcpy(host, s, hl);
        host[hl] = '\0';
    }
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535 || colon[1] == '\0')
        return -1;
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof host, "127.0.0.1");
    if (inet_pton(AF_INET, host[0] ? host : "0.0.0.0", &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        *len = sizeof *v4;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        *len = sizeof *v6;
        return 0;
    }
    return -1;
}

int server_start(server *srv, const server_config *cfg, store *st, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    if (parse_listen(cfg->listen, &ss, &sslen) != 0) {
        snprintf(err, errlen, "invalid listen address '%s' (want HOST:PORT)", cfg->listen);
        return -1;
    }
    srv->cfg = cfg;
    srv->st = st;
    srv->start_ms = util_now_ms();
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_TURBO |
                     MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    /* as many as the HTTP threads, and at least 8: cold reads wait on them,
     * and, with a tier or without, the requests that take long whatever the
     * tier does (a part copy, a completion, a batch delete: offload_last) */
    unsigned offload_threads = cfg->threads < 8 ? 8 : (unsigned)cfg->threads;
    if (st != NULL && offload_start(srv, offload_threads) != 0) {
        offload_stop(srv);
        offload_free(srv);
        snprintf(err, errlen, "cannot start the offload threads");
        return -1;
    }
    if (watch_start(srv) != 0) {
        offload_stop(srv);
        offload_free(srv);
        snprintf(err, errlen, "cannot start the watch thread");
        return -1;
    }
    /* the logger goes first, so that MHD reports nothing through its own */
    srv->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, srv,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned)cfg->threads, MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->connection_limit,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->connection_timeout,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)cfg->max_header_size,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, srv, MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u, MHD_OPTION_END);
    if (srv->daemon == NULL) {
        snprintf(err, errlen, "cannot listen on %s: %s", cfg->listen, strerror(errno));
        watch_stop(srv);
        offload_stop(srv);
        offload_free(srv);
        return -1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = info ? info->port : 0;
    atomic_store(&srv->ready, 1);
    return 0;
}

void server_quiesce(server *srv)
{
    if (srv->daemon == NULL || atomic_load(&srv->stopping))
        return;
    atomic_store(&srv->ready, 0);
    /* Not MHD_quiesce_daemon: in libmicrohttpd 0.9.75, with a thread pool
     * and epoll, it takes the listening socket out of each worker's epoll
     * set while the worker may be doing the same, and whichever comes
     * second gets ENOENT and panics (daemon.c, MHD_quiesce_daemon and
     * MHD_epoll): cairnd aborted on SIGTERM.  Nor did it refuse anything:
     * connections made meanwhile sat unanswered in the backlog until exit.
     * Requests that come now are answered 503 instead (late_handle). */
    atomic_store(&srv->stopping, 1);
    uint64_t deadline = util_mono_ns() + srv->cfg->shutdown_timeout * 1000000000ULL;
    while (atomic_load(&srv->in_flight) > 0 && util_mono_ns() < deadline)
        usleep(10000);
    /* time is up: copies and completions still running give up (503), not
     * held until they are done */
    if (atomic_load(&srv->in_flight) > 0)
        store_cut_long(srv->st);
}

void server_stop(server *srv)
{
    if (srv->daemon == NULL)
        return;
    server_quiesce(srv);
    offload_stop(srv);
    MHD_stop_daemon(srv->daemon);
    srv->daemon = NULL;
    watch_stop(srv);
    offload_free(srv);
}
