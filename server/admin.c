/*
 * admin.c - see admin.h.
 */
#include "admin.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../common/log.h"
#include "../common/util.h"
#include "s3.h"

#define ITEM_MAX 2048      /* bytes of one item line */
#define JOBS_KEPT 32       /* finished jobs still answerable */
#define PARALLEL_MAX 64    /* workers of one warmup job */
#define LIST_LIMIT 1000000 /* keys a prefix may name, unless limit= says otherwise */
#define LIST_LIMIT_MAX 100000000
#define PARALLEL_DEFAULT 8 /* each a tier request at a time */

/* ---- items -------------------------------------------------------------- */

typedef struct item {
    char *ns;
    char *key;
    size_t klen;
} item;

/* Parses one line into it (0), or -1 if it names nothing. */
static int item_parse(const char *line, size_t len, item *it)
{
    char *d = malloc(len + 1);
    ssize_t dn = d ? util_pct_decode(line, len, (uint8_t *)d, len) : -1;
    if (dn < 0) {
        free(d);
        return -1;
    }
    size_t n = (size_t)dn;
    d[n] = '\0';
    const char *ns, *key;
    size_t nslen;
    char buf[S3_NS_MAX];
    if (util_is_hex64(d, n) || (n == 68 && memcmp(d, "cas/", 4) == 0)) {
        ns = "cas", nslen = 3, key = n == 64 ? d : d + 4;
        for (char *c = (char *)key; *c; c++) /* the native API keeps digests in lower case */
            if (*c >= 'A' && *c <= 'F')
                *c = (char)(*c - 'A' + 'a');
    } else if (n > 4 && memcmp(d, "cas/", 4) == 0) {
        ns = "cas", nslen = 3, key = d + 4;
    } else if (n > 3 && memcmp(d, "ac/", 3) == 0) {
        /* ac/KEY or ac/INSTANCE/KEY: the key is the last part (a digest) */
        const char *last = memrchr(d + 3, '/', n - 3);
        ns = d, nslen = last ? (size_t)(last - d) : 2, key = last ? last + 1 : d + 3;
    } else {
        const char *slash = memchr(d, '/', n);
        int l = slash && slash != d && slash + 1 != d + n
                    ? s3_bucket_ns(d, (size_t)(slash - d), buf, sizeof buf)
                    : -1;
        if (l < 0) {
            free(d);
            return -1;
        }
        nslen = (size_t)l;
        ns = buf, key = slash + 1;
    }
    it->klen = (size_t)(d + n - key);
    it->ns = strndup(ns, nslen);
    it->key = malloc(it->klen + 1);
    if (it->ns == NULL || it->key == NULL || it->klen == 0 || memchr(it->ns, '\0', nslen)) {
        free(it->ns);
        free(it->key);
        free(d);
        return -1;
    }
    memcpy(it->key, key, it->klen);
    it->key[it->klen] = '\0';
    free(d);
    return 0;
}

static void pct_add(buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x21 || c == '%' || c == 0x7f) {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            buf_add(b, e, 3);
        } else {
            buf_add(b, (const char *)&s[i], 1);
        }
    }
}

/* Appends the item line of (ns, key): the reverse of item_parse. */
static void item_format(buf *b, const char *ns, const char *key, size_t klen)
{
    const char *bucket = s3_ns_bucket(ns);
    pct_add(b, bucket ? bucket : ns, strlen(bucket ? bucket : ns));
    buf_add(b, "/", 1);
    pct_add(b, key, klen);
}

/* ---- the keys under a prefix: here and in the tier -------------------------------- */

typedef struct keyset {
    const char *ns;
    const char *prefix;
    size_t plen;
    item *v;
    size_t n, cap, limit;
    int over, oom;
    atomic_int *cancel;    /* the job's: a stopped job stops listing */
    const request *client; /* one that waits for the list: it stops once it has gone */
    uint64_t looked;       /* when its socket was last looked at */
    int gone;
} keyset;

static int item_cmp(const void *a, const void *b)
{
    const item *x = a, *y = b;
    return util_bytes_cmp(x->key, x->klen, y->key, y->klen);
}

/* Sorts the keys and drops repeats (a key both here and in the tier). */
static void keyset_compact(keyset *k)
{
    if (k->n > 1)
        qsort(k->v, k->n, sizeof *k->v, item_cmp);
    size_t o = 0;
    for (size_t i = 0; i < k->n; i++) {
        if (o && item_cmp(&k->v[o - 1], &k->v[i]) == 0) {
            free(k->v[i].ns);
            free(k->v[i].key);
        } else {
            k->v[o++] = k->v[i];
        }
    }
    k->n = o;
}

static int keyset_add(keyset *k, const void *key, size_t klen)
{
    if (k->cancel && atomic_load(k->cancel))
        return 1; /* what was listed is dropped with the job */
    if (k->client && util_mono_ns() - k->looked > 1000000000ull) {
        k->looked = util_mono_ns(); /* (a peek at its socket, once a second) */
        if (http_client_gone(k->client)) {
            k->gone = 1;
            return 1;
        }
    }
    if (k->n >= 2 * k->limit) {
        keyset_compact(k); /* the limit counts keys, not where they were found */
        if (k->n > k->limit) {
            k->over = 1;
            return 1;
        }
    }
    if (util_grow(&k->v, &k->cap, k->n, sizeof *k->v, 1024) != 0) {
        k->oom = 1;
        return 1;
    }
    item *it = &k->v[k->n];
    it->ns = strdup(k->ns);
    it->key = malloc(klen + 1);
    if (it->ns == NULL || it->key == NULL) {
        free(it->ns);
        free(it->key);
        k->oom = 1;
        return 1;
    }
    memcpy(it->key, key, klen);
    it->key[klen] = '\0';
    it->klen = klen;
    k->n++;
    return 0;
}

static int keyset_local(void *ctx, const store_list_item *it, char *seek, size_t *seek_len)
{
    (void)seek, (void)seek_len;
    keyset *k = ctx;
    if (it->klen < k->plen || memcmp(it->key, k->prefix, k->plen) != 0)
        return STORE_LIST_STOP; /* past the prefix: keys come in order */
    return keyset_add(k, it->key, it->klen) ? STORE_LIST_STOP : STORE_LIST_NEXT;
}

static int keyset_tier(void *ctx, const void *key, size_t klen)
{
    return keyset_add(ctx, key, klen);
}

static void keyset_free(keyset *k)
{
    for (size_t i = 0; i < k->n; i++) {
        free(k->v[i].ns);
        free(k->v[i].key);
    }
    free(k->v);
}

#define PREFIX_WANTED                                                                              \
    "prefix: want BUCKET[/PREFIX], an S3 bucket's (cas/ and ac/ entries are named one by one)"

/* BUCKET[/PREFIX]: its namespace into ns, and the prefix; NULL if spec
 * names no bucket (cas/ and ac/, which no bucket can be called, among
 * them: those entries are named one by one). */
static const char *prefix_split(const char *spec, char ns[S3_NS_MAX])
{
    const char *slash = strchr(spec, '/');
    size_t bl = slash ? (size_t)(slash - spec) : strlen(spec);
    char b[64];
    if (!s3_bucket_name_ok(spec, bl)) /* (at most 63 bytes) */
        return NULL;
    memcpy(b, spec, bl);
    b[bl] = '\0';
    if (s3_reserved_bucket(b) || s3_bucket_ns(spec, bl, ns, S3_NS_MAX) < 0)
        return NULL;
    return slash ? slash + 1 : "";
}

/* The keys under spec (BUCKET[/PREFIX]) that this node holds, and that its
 * cold tier holds (written by any node), in byte order, each once.  0, or
 * an HTTP status with msg. */
static int prefix_keys(store *st, const char *spec, uint64_t limit, atomic_int *cancel,
                       const request *client, keyset *k, char *msg, size_t cap)
{
    char ns[S3_NS_MAX];
    const char *prefix = prefix_split(spec, ns);
    if (prefix == NULL) {
        snprintf(msg, cap, "%s", PREFIX_WANTED);
        return 400;
    }
    memset(k, 0, sizeof *k);
    k->ns = ns;
    k->prefix = prefix;
    k->plen = strlen(k->prefix);
    k->limit = (size_t)limit;
    k->cancel = cancel;
    k->client = client;
    /* (a bucket this node never had lists nothing here, and its keys from
     * the tier) */
    int rc = store_list(st, ns, k->prefix, k->plen, 0, keyset_local, k), in_tier = 0;
    if (rc == STORE_OK && !k->over && !k->oom && !k->gone) {
        rc = store_tier_keys(st, ns, k->prefix, k->plen, keyset_tier, k);
        in_tier = 1;
    }
    int status = 0;
    if (k->gone) {
        snprintf(msg, cap, "the client went away");
        status = 499; /* (nobody reads it: logged as such) */
    } else if (k->oom) {
        snprintf(msg, cap, "out of memory");
        status = 500;
    } else if (k->over) {
        snprintf(msg, cap, "more than %llu keys under the prefix: narrow it, or raise limit",
                 (unsigned long long)limit);
        status = 413;
    } else if (rc != STORE_OK && in_tier) {
        snprintf(msg, cap, "cannot list the keys in the cold tier: it failed or did not answer");
        status = 502;
    } else if (rc != STORE_OK) {
        snprintf(msg, cap, "cannot list the keys: %s", store_strerror(rc));
        status = 500;
    }
    if (status) {
        keyset_free(k);
        memset(k, 0, sizeof *k);
        return status;
    }
    k->ns = NULL; /* it was on our stack */
    k->prefix = NULL;
    keyset_compact(k);
    if (k->n > limit) {
        snprintf(msg, cap, "more than %llu keys under the prefix: narrow it, or raise limit",
                 (unsigned long long)limit);
        keyset_free(k);
        memset(k, 0, sizeof *k);
        return 413;
    }
    return 0;
}

/* ---- warmup jobs -------------------------------------------------------- */

enum { JOB_WARMUP, JOB_VERIFY };
#define CORRUPT_LISTED 100 /* damaged digests a verify job names */

typedef struct job {
    unsigned id;
    int kind;
    store *st;
    item *items;            /* warmup */
    uint8_t *pre;           /* by item: warmed from the tier's packs before the workers began */
    uint8_t (*digests)[32]; /* verify */
    atomic_size_t n;        /* items: a prefix job knows them once listed */
    char *spec;             /* a warmup of a prefix: BUCKET/PREFIX, listed by the job */
    uint64_t limit;
    unsigned want;      /* workers it may have once listed */
    atomic_int listing; /* listing its keys */
    char error[160];    /* why it failed, when it did (set before it ends) */
    pthread_mutex_t mu; /* corrupt_hex */
    char (*corrupt_hex)[65];
    size_t ncorrupt;
    unsigned parallel;
    atomic_size_t next;
    atomic_int cancel;
    atomic_uint running;                              /* workers still at it */
    atomic_ullong done, out[4], bytes, fetched_bytes; /* out: by outcome, OUT_NAMES */
    uint64_t start_ms;
    _Atomic(uint64_t) end_ms;
} job;

/* What became of each item, by kind of job (the names the JSON uses). */
enum { W_LOCAL, W_WARMED, W_MISSING, W_FAILED };
enum { V_GOOD, V_CORRUPT, V_GONE, V_UNREADABLE };
static const char *OUT_NAMES[2][4] = {{"local", "warmed", "missing", "failed"},
                                      {"good", "corrupt", "gone", "unreadable"}};

static pthread_mutex_t jobs_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t jobs_cv = PTHREAD_COND_INITIALIZER;
static job *jobs[JOBS_KEPT];
static unsigned next_id = 1;

static void job_free(job *j)
{
    for (size_t i = 0; j->items && i < j->n; i++) {
        free(j->items[i].ns);
        free(j->items[i].key);
    }
    free(j->items);
    free(j->pre);
    free(j->digests);
    free(j->corrupt_hex);
    free(j->spec);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

/* verify: one blob scrubbed */
static void verify_one(job *j, const uint8_t d[32])
{
    uint64_t size;
    int rc = store_verify(j->st, d, &size);
    if (rc == STORE_OK) {
        atomic_fetch_add(&j->out[V_GOOD], 1);
        atomic_fetch_add(&j->bytes, size);
    } else if (rc == STORE_CORRUPT) {
        atomic_fetch_add(&j->out[V_CORRUPT], 1);
        pthread_mutex_lock(&j->mu);
        if (j->ncorrupt < CORRUPT_LISTED && j->corrupt_hex)
            util_hex(d, 32, j->corrupt_hex[j->ncorrupt++]);
        pthread_mutex_unlock(&j->mu);
    } else if (rc == STORE_NOTFOUND) {
        atomic_fetch_add(&j->out[V_GONE], 1); /* since the list was made */
    } else {
        atomic_fetch_add(&j->out[V_UNREADABLE], 1); /* an error, not damage */
        log_msg(LOG_WARN, "verify_failed", "job %u: %s", j->id, store_strerror(rc));
    }
}

static void job_json(buf *b, job *j);
static void *worker_main(void *arg);

static int item_ns_cmp(const void *a, const void *b, void *arg)
{
    const item *v = arg;
    return strcmp(v[*(const size_t *)a].ns, v[*(const size_t *)b].ns);
}

typedef struct pre_ctx {
    job *j;
    const size_t *at; /* the group's items, by their place in j->items */
} pre_ctx;

static void pre_warmed(void *ctx, size_t i, uint64_t size)
{
    pre_ctx *c = ctx;
    job *j = c->j;
    j->pre[c->at[i]] = 1;
    atomic_fetch_add(&j->out[W_WARMED], 1);
    atomic_fetch_add(&j->bytes, size);
    atomic_fetch_add(&j->fetched_bytes, size);
    atomic_fetch_add(&j->done, 1);
}

/* Warms what the tier's packs hold of the job's items, a namespace at a
 * time, before the workers take the rest one by one. */
static void warm_from_packs(job *j)
{
    size_t n = j->n;
    size_t *order = malloc(n * sizeof *order);
    const char **keys = malloc(n * sizeof *keys);
    size_t *klens = malloc(n * sizeof *klens), *at = malloc(n * sizeof *at);
    if (n == 0 || !order || !keys || !klens || !at || (j->pre = calloc(n, 1)) == NULL)
        goto out;
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    qsort_r(order, n, sizeof *order, item_ns_cmp, j->items);
    for (size_t a = 0, b; a < n && !atomic_load(&j->cancel); a = b) {
        const char *ns = j->items[order[a]].ns;
        for (b = a; b < n && strcmp(j->items[order[b]].ns, ns) == 0; b++) {
            at[b - a] = order[b];
            keys[b - a] = j->items[order[b]].key;
            klens[b - a] = j->items[order[b]].klen;
        }
        pre_ctx c = {j, at};
        size_t got =
            store_warm_packs(j->st, ns, keys, klens, b - a, j->want, &j->cancel, pre_warmed, &c);
        if (got)
            log_msg(LOG_INFO, "warmup_packs", "job %u: %zu of %zu items of %s from packs", j->id,
                    got, b - a, ns);
    }
out:
    free(order);
    free(keys);
    free(klens);
    free(at);
}

/* The first thread of a warmup: lists the keys (of a prefix), warms what
 * it can from packs, starts the other workers, and then works as one of
 * them. */
static void *lister_main(void *arg)
{
    job *j = arg;
    keyset k = {0};
    char msg[160];
    int status =
        j->spec ? prefix_keys(j->st, j->spec, j->limit, &j->cancel, NULL, &k, msg, sizeof msg) : 0;
    if (status) {
        snprintf(j->error, sizeof j->error, "%s", msg);
        log_msg(LOG_WARN, "warmup_failed", "job %u: %s", j->id, msg);
    } else {
        if (j->spec) {
            j->items = k.v;
            atomic_store(&j->n, k.n);
            log_msg(LOG_INFO, "warmup_listed", "job %u: %zu items under %s", j->id, k.n, j->spec);
        }
        atomic_store(&j->listing, 0);
        warm_from_packs(j);
        k.n = j->n;
        unsigned more = j->want < k.n ? j->want - 1 : k.n ? (unsigned)k.n - 1 : 0;
        atomic_fetch_add(&j->running, more);
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        for (unsigned i = 0; i < more; i++) {
            pthread_t t;
            if (pthread_create(&t, &at, worker_main, j) != 0)
                atomic_fetch_sub(&j->running, 1);
        }
        pthread_attr_destroy(&at);
    }
    atomic_store(&j->listing, 0);
    return worker_main(j);
}

static void *worker_main(void *arg)
{
    job *j = arg;
    for (;;) {
        size_t i = atomic_fetch_add(&j->next, 1);
        if (i >= j->n || atomic_load(&j->cancel))
            break;
        if (j->kind == JOB_VERIFY) {
            verify_one(j, j->digests[i]);
            atomic_fetch_add(&j->done, 1);
            continue;
        }
        if (j->pre && j->pre[i])
            continue; /* warmed from a pack, and counted */
        item *it = &j->items[i];
        int state;
        uint64_t size;
        int rc = store_warm(j->st, it->ns, it->key, it->klen, &state, &size);
        if (rc == STORE_OK) {
            atomic_fetch_add(&j->out[state == STORE_WARM_LOCAL ? W_LOCAL : W_WARMED], 1);
            atomic_fetch_add(&j->bytes, size);
            if (state == STORE_WARM_FETCHED)
                atomic_fetch_add(&j->fetched_bytes, size);
        } else {
            atomic_fetch_add(
                &j->out[rc == STORE_NOTFOUND || rc == STORE_BAD_KEY ? W_MISSING : W_FAILED], 1);
            if (rc != STORE_NOTFOUND && rc != STORE_BAD_KEY)
                log_msg(LOG_WARN, "warmup_failed",
                        "job %u: %s, key of %zu bytes: %s (a tier failure is logged as "
                        "tier_read_failed)",
                        j->id, it->ns, it->klen, store_strerror(rc));
        }
        atomic_fetch_add(&j->done, 1);
    }
    store_thread_done(j->st); /* its read transaction and LMDB slot */
    pthread_mutex_lock(&jobs_mu);
    if (atomic_fetch_sub(&j->running, 1) == 1) {
        atomic_store(&j->end_ms, util_now_ms());
        /* the counters stay for GET; the list goes */
        for (size_t i = 0; j->items && i < j->n; i++) {
            free(j->items[i].ns);
            free(j->items[i].key);
        }
        free(j->items);
        free(j->pre);
        free(j->digests);
        j->items = NULL;
        j->pre = NULL;
        j->digests = NULL;
        buf b = {0};
        job_json(&b, j); /* its final state, as GET /admin/jobs/ID shows it */
        if (buf_ok(&b) && b.len)
            b.data[b.len - 1] = '\0';
        log_msg(LOG_INFO, "job_done", "%s", buf_ok(&b) && b.data ? b.data : "");
        buf_free(&b);
        pthread_cond_broadcast(&jobs_cv);
    }
    pthread_mutex_unlock(&jobs_mu);
    return NULL;
}

static void job_json(buf *b, job *j)
{
    uint64_t end = atomic_load(&j->end_ms);
    const char *state = end == 0                  ? "running"
                        : j->error[0]             ? "failed"
                        : atomic_load(&j->cancel) ? "stopped"
                                                  : "done";
    uint64_t now = end ? end : util_now_ms();
    int verify = j->kind == JOB_VERIFY;
    buf_printf(b, "{\"job\":%u,\"kind\":\"%s\",\"state\":\"%s\",\"items\":%zu,\"done\":%llu", j->id,
               verify ? "verify" : "warmup", state, j->n,
               (unsigned long long)atomic_load(&j->done));
    for (int i = 0; i < 4; i++)
        buf_printf(b, ",\"%s\":%llu", OUT_NAMES[verify][i],
                   (unsigned long long)atomic_load(&j->out[i]));
    buf_printf(b, ",\"bytes\":%llu,\"elapsed_ms\":%llu", (unsigned long long)atomic_load(&j->bytes),
               (unsigned long long)(now - j->start_ms));
    if (atomic_load(&j->listing))
        buf_puts(b, ",\"listing\":true");
    if (end && j->error[0]) {
        char esc[6 * sizeof j->error];
        log_json_escape(esc, sizeof esc, j->error);
        buf_printf(b, ",\"error\":\"%s\"", esc);
    }
    if (!verify) {
        buf_printf(b, ",\"fetched_bytes\":%llu}\n",
                   (unsigned long long)atomic_load(&j->fetched_bytes));
        return;
    }
    buf_puts(b, ",\"quarantined\":[");
    pthread_mutex_lock(&j->mu);
    for (size_t i = 0; i < j->ncorrupt; i++)
        buf_printf(b, "%s\"%s\"", i ? "," : "", j->corrupt_hex[i]);
    pthread_mutex_unlock(&j->mu);
    buf_puts(b, "]}\n");
}

static enum MHD_Result send_buf(request *r, unsigned status, buf *b)
{
    if (!buf_ok(b)) {
        buf_free(b);
        return http_json(r, 500, "{\"error\":\"out of memory\"}\n");
    }
    size_t len;
    char *data = buf_take(b, &len);
    if (data == NULL)
        return http_json(r, 500, "{\"error\":\"out of memory\"}\n");
    int json = len > 0 && data[0] == '{';
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(data);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type",
                            json ? "application/json" : "text/plain; charset=utf-8");
    return http_queue(r, status, resp);
}

static enum MHD_Result admin_error(request *r, unsigned status, const char *msg)
{
    buf b = {0};
    buf_puts(&b, "{\"error\":\"");
    char esc[512];
    log_json_escape(esc, sizeof esc, msg);
    buf_puts(&b, esc);
    buf_puts(&b, "\"}\n");
    return send_buf(r, status, &b);
}

static int uint_param(request *r, const char *name, uint64_t def, uint64_t *out)
{
    const char *v = s3_param(r, name);
    if (v == NULL || v[0] == '\0') {
        *out = def;
        return 0;
    }
    return util_parse_size(v, out);
}

/* limit= of a prefix listing: 1 to LIST_LIMIT_MAX keys (LIST_LIMIT if not given). */
static int limit_param(request *r, uint64_t *limit)
{
    return uint_param(r, "limit", LIST_LIMIT, limit) != 0 || *limit == 0 || *limit > LIST_LIMIT_MAX
               ? -1
               : 0;
}

static job *job_new(int kind)
{
    job *j = calloc(1, sizeof *j);
    if (j == NULL)
        return NULL;
    j->kind = kind;
    pthread_mutex_init(&j->mu, NULL);
    return j;
}

static enum MHD_Result job_start(request *r, job *j, uint64_t parallel);

static enum MHD_Result warmup_start(request *r, const buf *body)
{
    uint64_t parallel;
    if (uint_param(r, "parallel", PARALLEL_DEFAULT, &parallel) != 0 || parallel == 0 ||
        parallel > PARALLEL_MAX)
        return admin_error(r, 400, "parallel must be 1 to 64");
    job *j = job_new(JOB_WARMUP);
    if (j == NULL)
        return admin_error(r, 500, "out of memory");
    const char *spec = s3_param(r, "prefix");
    if (spec) {
        /* the items: every key under the prefix, here or in the tier, which
         * the job lists first (on its own thread: that may take a while) */
        char ns[S3_NS_MAX];
        if (limit_param(r, &j->limit) != 0) {
            job_free(j);
            return admin_error(r, 400, "limit must be 1 to 100000000");
        }
        if (prefix_split(spec, ns) == NULL) {
            job_free(j);
            return admin_error(r, 400, PREFIX_WANTED);
        }
        if ((j->spec = strdup(spec)) == NULL) {
            job_free(j);
            return admin_error(r, 500, "out of memory");
        }
        return job_start(r, j, parallel);
    }
    size_t cap = 0;
    const char *p = body->data ? body->data : "", *end = p + body->len;
    unsigned lineno = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        lineno++;
        if (len && p[len - 1] == '\r')
            len--;
        if (len > 0 && p[0] != '#') {
            if (j->n == cap) {
                cap = cap ? 2 * cap : 256;
                item *ni = realloc(j->items, cap * sizeof *ni);
                if (ni == NULL) {
                    job_free(j);
                    return admin_error(r, 500, "out of memory");
                }
                j->items = ni;
            }
            if (len > ITEM_MAX || item_parse(p, len, &j->items[j->n]) != 0) {
                job_free(j);
                char msg[160];
                snprintf(msg, sizeof msg,
                         "line %u: not an item (BUCKET/KEY, cas/DIGEST, DIGEST or ac/KEY)", lineno);
                return admin_error(r, 400, msg);
            }
            j->n++;
        }
        p = nl ? nl + 1 : end;
    }
    return job_start(r, j, parallel);
}

static enum MHD_Result verify_start(request *r)
{
    uint64_t parallel;
    if (uint_param(r, "parallel", 2, &parallel) != 0 || parallel == 0 || parallel > PARALLEL_MAX)
        return admin_error(r, 400, "parallel must be 1 to 64");
    job *j = job_new(JOB_VERIFY);
    size_t n = 0;
    if (j == NULL || (j->corrupt_hex = calloc(CORRUPT_LISTED, 65)) == NULL ||
        store_digests(r->srv->st, &j->digests, &n) != STORE_OK) {
        if (j)
            job_free(j);
        return admin_error(r, 500, "cannot list the blobs");
    }
    atomic_store(&j->n, n);
    return job_start(r, j, parallel);
}

/* Files job j and starts its workers; answers 202 with its state. */
static enum MHD_Result job_start(request *r, job *j, uint64_t parallel)
{
    j->st = r->srv->st;
    j->want = (unsigned)parallel;
    int first = j->kind == JOB_WARMUP; /* the lister (and packs), which starts the rest */
    j->parallel = first ? 1 : (unsigned)(parallel < j->n ? parallel : j->n ? j->n : 1);
    atomic_store(&j->listing, j->spec != NULL);
    j->start_ms = util_now_ms();
    atomic_init(&j->running, j->parallel);

    pthread_mutex_lock(&jobs_mu);
    int slot = -1;
    for (int i = 0; i < JOBS_KEPT && slot < 0; i++)
        if (jobs[i] == NULL)
            slot = i;
    for (int i = 0; i < JOBS_KEPT && slot < 0; i++)
        if (atomic_load(&jobs[i]->running) == 0 && (slot < 0 || jobs[i]->id < jobs[slot]->id))
            slot = i; /* the oldest finished job makes room */
    if (slot < 0) {
        pthread_mutex_unlock(&jobs_mu);
        job_free(j);
        return admin_error(r, 503, "too many jobs running");
    }
    if (jobs[slot])
        job_free(jobs[slot]);
    jobs[slot] = j;
    j->id = next_id++;
    unsigned started = 0;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    for (unsigned i = 0; i < j->parallel; i++) {
        pthread_t t;
        if (pthread_create(&t, &at, first ? lister_main : worker_main, j) == 0)
            started++;
    }
    pthread_attr_destroy(&at);
    if (started < j->parallel)
        atomic_fetch_sub(&j->running, j->parallel - started);
    if (started == 0)
        atomic_store(&j->end_ms, util_now_ms());
    if (j->spec)
        log_msg(LOG_INFO, "warmup_started", "job %u: the keys under %s, %u at a time", j->id,
                j->spec, j->want);
    else
        log_msg(LOG_INFO, "warmup_started", "job %u: %zu items, %u at a time", j->id, (size_t)j->n,
                j->want);
    buf b = {0};
    job_json(&b, j);
    pthread_mutex_unlock(&jobs_mu);
    return send_buf(r, started ? 202 : 500, &b);
}

static enum MHD_Result job_get(request *r, const char *id)
{
    char *endp;
    unsigned long n = strtoul(id, &endp, 10);
    if (*id == '\0' || *endp != '\0')
        return admin_error(r, 404, "no such job");
    pthread_mutex_lock(&jobs_mu);
    job *j = NULL;
    for (int i = 0; i < JOBS_KEPT; i++)
        if (jobs[i] && jobs[i]->id == n)
            j = jobs[i];
    if (j == NULL) {
        pthread_mutex_unlock(&jobs_mu);
        return admin_error(r, 404, "no such job");
    }
    if (http_is(r, "DELETE") && atomic_load(&j->end_ms) == 0)
        atomic_store(&j->cancel, 1);
    buf b = {0};
    job_json(&b, j);
    pthread_mutex_unlock(&jobs_mu);
    return send_buf(r, 200, &b);
}

/* ---- the hot set, eviction, drain ---------------------------------------- */

static int hot_line(void *ctx, const char *ns, const void *key, size_t klen, uint64_t size)
{
    (void)size;
    buf *b = ctx;
    item_format(b, ns, key, klen);
    buf_add(b, "\n", 1);
    return !buf_ok(b);
}

static enum MHD_Result hot(request *r)
{
    uint64_t window, limit;
    if (uint_param(r, "window", 86400, &window) != 0 || uint_param(r, "limit", 100000, &limit) != 0)
        return admin_error(r, 400, "window (seconds) and limit must be numbers");
    uint64_t now = util_now_ms();
    uint64_t since = window < now / 1000 ? now - window * 1000 : 0;
    buf b = {0};
    int rc = store_hot(r->srv->st, since, (size_t)limit, hot_line, &b);
    if (rc != STORE_OK) {
        buf_free(&b);
        return admin_error(r, 500, store_strerror(rc));
    }
    return send_buf(r, 200, &b);
}

/* GET /admin/keys?prefix=BUCKET/PREFIX: the keys under it, here or in the
 * tier, one item line each (what warmup takes). */
static enum MHD_Result keys(request *r)
{
    const char *spec = s3_param(r, "prefix");
    uint64_t limit;
    if (spec == NULL)
        return admin_error(r, 400, "prefix=BUCKET[/PREFIX] is required");
    if (limit_param(r, &limit) != 0)
        return admin_error(r, 400, "limit must be 1 to 100000000");
    if (http_client_gone(r))
        return admin_error(r, 499, "the client went away"); /* (while it waited for a thread) */
    keyset k;
    char msg[160];
    int status = prefix_keys(r->srv->st, spec, limit, NULL, r, &k, msg, sizeof msg);
    if (status)
        return admin_error(r, status, msg);
    buf b = {0};
    for (size_t i = 0; i < k.n; i++) {
        item_format(&b, k.v[i].ns, k.v[i].key, k.v[i].klen);
        buf_add(&b, "\n", 1);
    }
    keyset_free(&k);
    return send_buf(r, 200, &b);
}

static void stats_json(buf *b, store *st)
{
    store_stats s;
    store_get_stats(st, &s);
    buf_printf(b,
               "{\"stored_bytes\":%llu,\"blobs\":%llu,\"keys\":%llu,\"tier_queue\":%llu,"
               "\"tier_queue_bytes\":%llu}\n",
               (unsigned long long)s.physical, (unsigned long long)s.blobs,
               (unsigned long long)s.keys, (unsigned long long)s.tier_queue,
               (unsigned long long)s.tier_pending_bytes);
}

static enum MHD_Result evict(request *r)
{
    const char *to = s3_param(r, "to");
    uint64_t target;
    if (to == NULL || util_parse_size(to, &target) != 0)
        return admin_error(r, 400, "to=SIZE is required (bytes, or with K, M, G, T)");
    int rc = store_evict_to(r->srv->st, target);
    if (rc != STORE_OK)
        return admin_error(r, 500, store_strerror(rc));
    buf b = {0};
    stats_json(&b, r->srv->st);
    return send_buf(r, 200, &b);
}

static enum MHD_Result drain(request *r)
{
    uint64_t timeout;
    if (uint_param(r, "timeout", 5, &timeout) != 0)
        return admin_error(r, 400, "timeout must be a number of seconds");
    if (timeout > 5)
        timeout = 5; /* a request does not hold a server thread longer: clients ask again */
    if (!r->srv->cfg->tier[0])
        return admin_error(r, 409, "no cold tier is configured");
    uint64_t end = util_mono_ns() + timeout * 1000000000ull;
    store_stats s;
    store_tier_retry_now(r->srv->st);
    for (;;) {
        if (store_get_stats(r->srv->st, &s) != STORE_OK)
            return admin_error(r, 500, "cannot read the store's state");
        if ((s.tier_queue == 0 && s.tier_packs_owed == 0) || util_mono_ns() >= end)
            break;
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    buf b = {0};
    stats_json(&b, r->srv->st);
    return send_buf(r, s.tier_queue == 0 && s.tier_packs_owed == 0 ? 200 : 504, &b);
}

static enum MHD_Result gc(request *r)
{
    uint64_t age;
    if (uint_param(r, "multipart-older-than", 0, &age) != 0)
        return admin_error(r, 400, "multipart-older-than must be a number of seconds");
    uint64_t orphans, expired;
    if (age > 100ull * 365 * 86400)
        age = 100ull * 365 * 86400;
    int rc = store_gc(r->srv->st, age * 1000, &orphans, &expired);
    if (rc != STORE_OK)
        return admin_error(r, 500, store_strerror(rc));
    buf b = {0};
    buf_printf(&b, "{\"orphans_removed\":%llu,\"multipart_expired\":%llu}\n",
               (unsigned long long)orphans, (unsigned long long)expired);
    return send_buf(r, 200, &b);
}

/* ---- backup ------------------------------------------------------------------ */

/* The index, copied consistently and compacted by LMDB into an unnamed file
 * of DATA/tmp while the store goes on, then sent with its length (a copy
 * cut short shows as one). */
static enum MHD_Result backup(request *r)
{
    char dir[4200], path[4300];
    snprintf(dir, sizeof dir, "%s/tmp", store_dir(r->srv->st));
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) { /* no O_TMPFILE here: a named one, unlinked at once */
        snprintf(path, sizeof path, "%s/backup-XXXXXX", dir);
        fd = mkostemp(path, O_CLOEXEC);
        if (fd >= 0)
            unlink(path);
    }
    if (fd < 0)
        return admin_error(r, 500, "cannot make a temporary file for the copy");
    struct stat st;
    if (store_backup(r->srv->st, fd) != STORE_OK || fstat(fd, &st) != 0) {
        close(fd);
        return admin_error(r, 500, "the index copy failed (disk full?)");
    }
    struct MHD_Response *resp = MHD_create_response_from_fd64((uint64_t)st.st_size, fd);
    if (resp == NULL) {
        close(fd);
        return admin_error(r, 500, "out of memory");
    }
    log_msg(LOG_INFO, "backup", "index copy of %lld bytes sent", (long long)st.st_size);
    MHD_add_response_header(resp, "Content-Type", "application/octet-stream");
    return http_queue(r, 200, resp);
}

/* A blob file's stored bytes, as they are on disk (for backups). */
static enum MHD_Result blob_file(request *r, const char *hex)
{
    uint8_t d[32];
    if (!util_is_hex64(hex, strlen(hex)) || util_unhex(hex, 64, d, 32) != 0)
        return admin_error(r, 400, "not a SHA-256 digest");
    int fd;
    uint64_t len;
    int rc = store_blob_file(r->srv->st, d, &fd, &len);
    if (rc != STORE_OK)
        return admin_error(r, rc == STORE_NOTFOUND ? 404 : 500,
                           rc == STORE_NOTFOUND ? "no such blob file" : store_strerror(rc));
    struct MHD_Response *resp = MHD_create_response_from_fd64(len, fd);
    if (resp == NULL) {
        close(fd);
        return admin_error(r, 500, "out of memory");
    }
    MHD_add_response_header(resp, "Content-Type", "application/octet-stream");
    return http_queue(r, 200, resp);
}

/* ---- routing -------------------------------------------------------------- */

int admin_local_client(request *r)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci == NULL || ci->client_addr == NULL)
        return 0;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return 0;
}

enum MHD_Result admin_handle(request *r, const char *path, const buf *body)
{
    if (strcmp(path, "warmup") == 0) {
        if (!http_is(r, "POST"))
            return admin_error(r, 405, "POST a list of items to /admin/warmup");
        return warmup_start(r, body);
    }
    if (strcmp(path, "verify") == 0)
        return http_is(r, "POST") ? verify_start(r) : admin_error(r, 405, "POST /admin/verify");
    if (strncmp(path, "jobs/", 5) == 0) {
        if (!http_is(r, "GET") && !http_is(r, "DELETE"))
            return admin_error(r, 405, "GET or DELETE a job");
        return job_get(r, path + 5);
    }
    if (strcmp(path, "gc") == 0)
        return http_is(r, "POST") ? gc(r) : admin_error(r, 405, "POST /admin/gc");
    if (strcmp(path, "backup") == 0)
        return http_is(r, "GET") ? backup(r) : admin_error(r, 405, "GET /admin/backup");
    if (strncmp(path, "blob/", 5) == 0)
        return http_is(r, "GET") ? blob_file(r, path + 5) : admin_error(r, 405, "GET a blob");
    if (strcmp(path, "hot") == 0)
        return http_is(r, "GET") ? hot(r) : admin_error(r, 405, "GET /admin/hot");
    if (strcmp(path, "keys") == 0)
        return http_is(r, "GET") ? keys(r) : admin_error(r, 405, "GET /admin/keys?prefix=");
    if (strcmp(path, "evict") == 0)
        return http_is(r, "POST") ? evict(r) : admin_error(r, 405, "POST /admin/evict?to=SIZE");
    if (strcmp(path, "drain") == 0)
        return http_is(r, "POST") ? drain(r) : admin_error(r, 405, "POST /admin/drain");
    return admin_error(r, 404,
                       "no such admin endpoint (warmup, verify, jobs/ID, hot, keys, evict, drain, "
                       "gc, backup, blob/DIGEST)");
}

void admin_stop(void)
{
    pthread_mutex_lock(&jobs_mu);
    for (int i = 0; i < JOBS_KEPT; i++)
        if (jobs[i])
            atomic_store(&jobs[i]->cancel, 1);
    for (int i = 0; i < JOBS_KEPT; i++) {
        while (jobs[i] && atomic_load(&jobs[i]->running) > 0)
            pthread_cond_wait(&jobs_cv, &jobs_mu);
        if (jobs[i])
            job_free(jobs[i]);
        jobs[i] = NULL;
    }
    pthread_mutex_unlock(&jobs_mu);
}
