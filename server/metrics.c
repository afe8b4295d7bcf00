/*
 * metrics.c - see metrics.h.  Names follow Prometheus's conventions: a
 * cairn_ prefix, base units (seconds, bytes), _total on counters; the
 * process_* names are the standard ones.
 */
#include "metrics.h"
#include "s3.h"

#include <dirent.h>
#include <sys/statvfs.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../common/util.h"
#include "server.h"

#define NCLASS 5 /* 1xx .. 5xx */
static const double BOUNDS[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                0.25,   0.5,   1,      2.5,   5,    10,    30};
#define NB (sizeof BOUNDS / sizeof *BOUNDS)

static const char *FE[MFE_N] = {"native", "s3", "ops", "other"};
static const char *OP[MOP_N] = {"get",       "head", "put",    "delete", "list",
                                "multipart", "copy", "bucket", "admin",  "other"};

static void head(buf *b, const char *name, const char *type, const char *help);
struct counters;
static void ns_count(struct counters *c, const request_metrics *m);

/* Each thread counts into a block of its own (no cache line bounces between
 * cores on the hot path); a scrape sums the blocks.  Blocks live as long as
 * the process, so counts survive their threads. */
#define NS_SLOTS_MAX 1024
enum { NS_HITS, NS_MISSES, NS_RECEIVED, NS_SENT, NS_N };

typedef struct counters {
    atomic_ullong ns[NS_SLOTS_MAX + 1][NS_N]; /* per namespace slot; the last is _other */
    atomic_ullong requests[MFE_N][MOP_N][NCLASS];
    atomic_ullong buckets[MFE_N][MOP_N][NB + 1];
    atomic_ullong dur_sum_ns[MFE_N][MOP_N];
    atomic_ullong hits[MFE_N][2]; /* local, tier */
    atomic_ullong misses[MFE_N];
    atomic_ullong received[MFE_N], sent[MFE_N];
    struct counters *next;
} counters;

static pthread_mutex_t all_mu = PTHREAD_MUTEX_INITIALIZER;
static counters *all;
static _Thread_local counters *mine;

static counters *own(void)
{
    if (mine == NULL && (mine = calloc(1, sizeof *mine)) != NULL) {
        pthread_mutex_lock(&all_mu);
        mine->next = all;
        all = mine;
        pthread_mutex_unlock(&all_mu);
    }
    return mine;
}

/* Only the owning thread writes a block: a plain add, visible to readers. */
static void add(atomic_ullong *a, uint64_t v)
{
    atomic_store_explicit(a, atomic_load_explicit(a, memory_order_relaxed) + v,
                          memory_order_relaxed);
}

const char *metrics_fe_name(unsigned fe)
{
    return FE[fe < MFE_N ? fe : MFE_OTHER];
}

const char *metrics_op_name(unsigned op)
{
    return OP[op < MOP_N ? op : MOP_OTHER];
}

void metrics_request_done(const request_metrics *m, unsigned status)
{
    counters *c = own();
    if (c == NULL)
        return;
    unsigned fe = m->fe < MFE_N ? m->fe : MFE_OTHER, op = m->op < MOP_N ? m->op : MOP_OTHER;
    unsigned cls = status >= 100 && status < 600 ? status / 100 - 1 : 4;
    uint64_t ns = util_mono_ns() - m->start_ns;
    double s = (double)ns / 1e9;
    size_t b = 0;
    while (b < NB && s > BOUNDS[b])
        b++;
    add(&c->requests[fe][op][cls], 1);
    add(&c->buckets[fe][op][b], 1);
    add(&c->dur_sum_ns[fe][op], ns);
    if (m->cache == MC_MISS)
        add(&c->misses[fe], 1);
    else if (m->cache == MC_LOCAL || m->cache == MC_TIER)
        add(&c->hits[fe][m->cache == MC_TIER], 1);
    if (m->received)
        add(&c->received[fe], m->received);
    if (m->sent)
        add(&c->sent[fe], m->sent);
    ns_count(c, m);
}

static uint64_t total(size_t off);
#define SUM(field) total(offsetof(counters, field))

/* ---- per namespace, for cost attribution ---- */

typedef struct ns_slot {
    _Atomic(int) used; /* 0 free, 1 being named, 2 named */
    char name[72];
} ns_slot;

static ns_slot ns_slots[NS_SLOTS_MAX + 1]; /* the last one is "_other" */
static unsigned ns_limit = 50;

void metrics_set_namespace_limit(unsigned n)
{
    ns_limit = n < NS_SLOTS_MAX ? n : NS_SLOTS_MAX;
}

static unsigned ns_find(const char *ns)
{
    for (unsigned i = 0; i < ns_limit; i++) {
        ns_slot *sl = &ns_slots[i];
        int u = atomic_load(&sl->used);
        if (u == 2 && strcmp(sl->name, ns) == 0)
            return i;
        if (u == 0) {
            int expect = 0;
            if (atomic_compare_exchange_strong(&sl->used, &expect, 1)) {
                snprintf(sl->name, sizeof sl->name, "%s", ns);
                atomic_store(&sl->used, 2);
                return i;
            }
            i--; /* somebody took it: look at it again */
            continue;
        }
        if (u == 1) {
            while (atomic_load(&sl->used) == 1)
                ; /* a name being written: a few instructions */
            i--;
        }
    }
    return NS_SLOTS_MAX;
}

static void ns_count(counters *c, const request_metrics *m)
{
    if (m->ns == NULL || m->ns[0] == '\0')
        return;
    atomic_ullong *n = c->ns[ns_find(m->ns)];
    if (m->cache == MC_MISS)
        add(&n[NS_MISSES], 1);
    else if (m->cache == MC_LOCAL || m->cache == MC_TIER)
        add(&n[NS_HITS], 1);
    if (m->received)
        add(&n[NS_RECEIVED], m->received);
    if (m->sent)
        add(&n[NS_SENT], m->sent);
}

/* The label value of slot i, escaped for the text format. */
static const char *ns_label(unsigned i, char *esc, size_t cap)
{
    const char *name = i == NS_SLOTS_MAX ? "_other" : ns_slots[i].name;
    size_t o = 0;
    for (const char *p = name; *p && o + 2 < cap; p++) {
        if (*p == '\\' || *p == '"')
            esc[o++] = '\\';
        esc[o++] = *p;
    }
    esc[o] = '\0';
    return esc;
}

typedef struct ns_usage {
    uint64_t keys[NS_SLOTS_MAX + 1], bytes[NS_SLOTS_MAX + 1];
} ns_usage;

static int ns_usage_add(void *ctx, const char *ns, uint64_t keys, uint64_t bytes)
{
    ns_usage *u = ctx;
    /* labelled as requests are: a bucket by its name, native ones as stored */
    const char *bucket = s3_ns_bucket(ns);
    unsigned i = ns_find(bucket ? bucket : ns);
    u->keys[i] += keys;
    u->bytes[i] += bytes;
    return 0;
}

static void ns_render(buf *b, store *st)
{
    static const struct {
        const char *name, *help;
        int k;
    } f[] = {
        {"cairn_namespace_hits_total", "Reads that found their entry, by namespace.", NS_HITS},
        {"cairn_namespace_misses_total", "Reads that found nothing, by namespace.", NS_MISSES},
        {"cairn_namespace_received_bytes_total", "Request body bytes received, by namespace.",
         NS_RECEIVED},
        {"cairn_namespace_sent_bytes_total", "Response body bytes sent, by namespace.", NS_SENT},
    };
    /* first, so that namespaces that store something have their slots */
    ns_usage *u = calloc(1, sizeof *u);
    int have_usage = u != NULL && store_ns_usage(st, ns_usage_add, u) == STORE_OK;
    char esc[160];
    for (size_t k = 0; k < sizeof f / sizeof *f; k++) {
        head(b, f[k].name, "counter", f[k].help);
        for (unsigned i = 0; i <= NS_SLOTS_MAX; i++) {
            if (i < NS_SLOTS_MAX && atomic_load(&ns_slots[i].used) != 2)
                continue;
            uint64_t v = SUM(ns[i][f[k].k]);
            if (i == NS_SLOTS_MAX && v == 0)
                continue;
            buf_printf(b, "%s{namespace=\"%s\"} %" PRIu64 "\n", f[k].name,
                       ns_label(i, esc, sizeof esc), v);
        }
    }
    if (have_usage) {
        head(b, "cairn_namespace_keys", "gauge", "Keys stored, by namespace.");
        for (unsigned i = 0; i <= NS_SLOTS_MAX; i++)
            if (u->keys[i])
                buf_printf(b, "cairn_namespace_keys{namespace=\"%s\"} %" PRIu64 "\n",
                           ns_label(i, esc, sizeof esc), u->keys[i]);
        head(b, "cairn_namespace_stored_bytes", "gauge",
             "Body bytes of the keys stored, by namespace (before deduplication and "
             "compression).");
        for (unsigned i = 0; i <= NS_SLOTS_MAX; i++)
            if (u->keys[i])
                buf_printf(b, "cairn_namespace_stored_bytes{namespace=\"%s\"} %" PRIu64 "\n",
                           ns_label(i, esc, sizeof esc), u->bytes[i]);
    }
    free(u);
}

/* The sum over every thread's block of the counter at byte offset off. */
static uint64_t total(size_t off)
{
    uint64_t v = 0;
    pthread_mutex_lock(&all_mu);
    for (counters *c = all; c; c = c->next)
        v += atomic_load_explicit((atomic_ullong *)((char *)c + off), memory_order_relaxed);
    pthread_mutex_unlock(&all_mu);
    return v;
}

static void head(buf *b, const char *name, const char *type, const char *help)
{
    buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void one(buf *b, const char *name, const char *type, const char *help, uint64_t v)
{
    head(b, name, type, help);
    buf_printf(b, "%s %" PRIu64 "\n", name, v);
}

static void process_metrics(buf *b, const server *srv)
{
    long page = sysconf(_SC_PAGESIZE);
    unsigned long long size = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%llu %llu", &size, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    one(b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
        (uint64_t)rss * (uint64_t)page);
    one(b, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
        (uint64_t)size * (uint64_t)page);
    uint64_t fds = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL)
            fds += de->d_name[0] != '.';
        closedir(d);
        fds--; /* the directory's own descriptor */
    }
    one(b, "process_open_fds", "gauge", "Number of open file descriptors.", fds);
    long maxfd = sysconf(_SC_OPEN_MAX);
    one(b, "process_max_fds", "gauge", "Maximum number of open file descriptors.",
        maxfd > 0 ? (uint64_t)maxfd : 0);
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    head(b, "process_cpu_seconds_total", "counter",
         "Total user and system CPU time spent in seconds.");
    buf_printf(b, "process_cpu_seconds_total %.3f\n", (double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
    head(b, "process_start_time_seconds", "gauge",
         "Start time of the process since unix epoch in seconds.");
    buf_printf(b, "process_start_time_seconds %.3f\n", (double)srv->start_ms / 1000.0);
}

void metrics_render(server *srv, buf *b)
{
    head(b, "cairn_build_info", "gauge", "Version of cairnd; always 1.");
    buf_printf(b, "cairn_build_info{version=\"%s\"} 1\n", CAIRN_VERSION);

    head(b, "cairn_http_requests_total", "counter",
         "HTTP requests answered, by front end, operation and status class.");
    for (int fe = 0; fe < MFE_N; fe++)
        for (int op = 0; op < MOP_N; op++)
            for (int c = 0; c < NCLASS; c++) {
                uint64_t v = SUM(requests[fe][op][c]);
                if (v)
                    buf_printf(b,
                               "cairn_http_requests_total{frontend=\"%s\",operation=\"%s\","
                               "status_class=\"%dxx\"} %" PRIu64 "\n",
                               FE[fe], OP[op], c + 1, v);
            }

    head(b, "cairn_http_request_duration_seconds", "histogram",
         "Time from a request's first byte to its answer's last, by front end and operation.");
    for (int fe = 0; fe < MFE_N; fe++)
        for (int op = 0; op < MOP_N; op++) {
            uint64_t n = 0, cum[NB + 1];
            for (size_t i = 0; i <= NB; i++)
                cum[i] = n += SUM(buckets[fe][op][i]);
            if (n == 0)
                continue;
            for (size_t i = 0; i < NB; i++)
                buf_printf(b,
                           "cairn_http_request_duration_seconds_bucket{frontend=\"%s\","
                           "operation=\"%s\",le=\"%g\"} %" PRIu64 "\n",
                           FE[fe], OP[op], BOUNDS[i], cum[i]);
            buf_printf(b,
                       "cairn_http_request_duration_seconds_bucket{frontend=\"%s\","
                       "operation=\"%s\",le=\"+Inf\"} %" PRIu64 "\n",
                       FE[fe], OP[op], n);
            buf_printf(b,
                       "cairn_http_request_duration_seconds_sum{frontend=\"%s\",operation=\"%s\"} "
                       "%.6f\n",
                       FE[fe], OP[op], (double)SUM(dur_sum_ns[fe][op]) / 1e9);
            buf_printf(b,
                       "cairn_http_request_duration_seconds_count{frontend=\"%s\","
                       "operation=\"%s\"} %" PRIu64 "\n",
                       FE[fe], OP[op], n);
        }

    one(b, "cairn_http_requests_in_flight", "gauge", "Requests being handled now.",
        (uint64_t)atomic_load(&srv->in_flight));
    one(b, "cairn_tier_waiting_requests", "gauge",
        "Requests waiting for the cold tier now: on an offload thread, or parked until the "
        "next bytes of a body arrive from it.",
        (uint64_t)atomic_load(&srv->tier_waiting));
    head(b, "cairn_http_received_bytes_total", "counter", "Request body bytes received.");
    for (int fe = 0; fe < MFE_N; fe++)
        buf_printf(b, "cairn_http_received_bytes_total{frontend=\"%s\"} %" PRIu64 "\n", FE[fe],
                   SUM(received[fe]));
    head(b, "cairn_http_sent_bytes_total", "counter", "Response body bytes sent.");
    for (int fe = 0; fe < MFE_N; fe++)
        buf_printf(b, "cairn_http_sent_bytes_total{frontend=\"%s\"} %" PRIu64 "\n", FE[fe],
                   SUM(sent[fe]));

    head(b, "cairn_cache_hits_total", "counter",
         "Reads (GET, HEAD) that found their entry, by front end and level (local disk, or "
         "the cold tier after a local miss).");
    head(b, "cairn_cache_misses_total", "counter",
         "Reads (GET, HEAD) that found nothing, locally or in the tier, by front end.");
    for (int fe = 0; fe < 2; fe++) {
        buf_printf(b, "cairn_cache_hits_total{frontend=\"%s\",level=\"local\"} %" PRIu64 "\n",
                   FE[fe], SUM(hits[fe][0]));
        buf_printf(b, "cairn_cache_hits_total{frontend=\"%s\",level=\"tier\"} %" PRIu64 "\n",
                   FE[fe], SUM(hits[fe][1]));
        buf_printf(b, "cairn_cache_misses_total{frontend=\"%s\"} %" PRIu64 "\n", FE[fe],
                   SUM(misses[fe]));
    }

    ns_render(b, srv->st);

    store_stats st;
    if (store_get_stats(srv->st, &st) == STORE_OK) {
        head(b, "cairn_store_entries", "gauge", "Keys, blobs, and blobs kept inline in the index.");
        buf_printf(b, "cairn_store_entries{kind=\"keys\"} %" PRIu64 "\n", st.keys);
        buf_printf(b, "cairn_store_entries{kind=\"blobs\"} %" PRIu64 "\n", st.blobs);
        buf_printf(b, "cairn_store_entries{kind=\"inline_blobs\"} %" PRIu64 "\n", st.inline_blobs);
        one(b, "cairn_store_stored_bytes", "gauge", "Bytes the blobs take on disk (compressed).",
            st.physical);
        one(b, "cairn_store_logical_bytes", "gauge", "Body bytes of the blobs (uncompressed).",
            st.logical);
        one(b, "cairn_store_multipart_bytes", "gauge",
            "Bytes of the parts of unfinished multipart uploads (they count against --max-size).",
            st.multipart_bytes);
        one(b, "cairn_store_referenced_bytes", "gauge",
            "Body bytes of all keys: what the store would hold without deduplication.",
            st.referenced);
        one(b, "cairn_store_dedup_saved_bytes", "gauge", "Bytes deduplication saves.",
            st.referenced - st.logical);
        one(b, "cairn_store_max_bytes", "gauge", "The size limit of stored blobs.", st.max_size);
        struct statvfs vs;
        if (statvfs(store_dir(srv->st), &vs) == 0) {
            one(b, "cairn_disk_free_bytes", "gauge",
                "Bytes free (to unprivileged users) on the data folder's file system.",
                (uint64_t)vs.f_bavail * vs.f_frsize);
            one(b, "cairn_disk_size_bytes", "gauge", "Size of the data folder's file system.",
                (uint64_t)vs.f_blocks * vs.f_frsize);
        }
        one(b, "cairn_store_high_watermark_bytes", "gauge", "Eviction starts above this.",
            st.high_bytes);
        one(b, "cairn_evictions_total", "counter", "Blobs evicted since start.", st.evicted_blobs);
        one(b, "cairn_evicted_bytes_total", "counter", "Stored bytes evicted since start.",
            st.evicted_bytes);
        one(b, "cairn_quarantined_blobs_total", "counter",
            "Blobs that failed their checks since start.", st.corrupt_blobs);
        one(b, "cairn_orphans_removed_total", "counter",
            "Blob files without an index entry removed since start.", st.orphans_removed);
        one(b, "cairn_index_commits_total", "counter", "Index transactions committed.", st.commits);

        one(b, "cairn_tier_enabled", "gauge", "1 when a cold tier is configured.",
            srv->cfg->tier[0] ? 1 : 0);
        one(b, "cairn_tier_queue_entries", "gauge", "Work queued for the cold tier.",
            st.tier_queue);
        one(b, "cairn_tier_queue_bytes", "gauge",
            "Stored bytes of blobs waiting to be uploaded to the cold tier.",
            st.tier_pending_bytes);
        head(b, "cairn_tier_uploads_total", "counter",
             "Blob uploads to the cold tier, by result (already_there: another node had "
             "uploaded it).");
        buf_printf(b, "cairn_tier_uploads_total{result=\"ok\"} %" PRIu64 "\n", st.tier_uploads);
        buf_printf(b, "cairn_tier_uploads_total{result=\"already_there\"} %" PRIu64 "\n",
                   st.tier_skipped);
        one(b, "cairn_tier_upload_failures_total", "counter",
            "Attempts at queued tier work that failed (they are retried).",
            st.tier_upload_failures);
        one(b, "cairn_tier_uploaded_bytes_total", "counter", "Blob bytes uploaded to the tier.",
            st.tier_upload_bytes);
        one(b, "cairn_tier_refreshes_total", "counter", "Blobs in use whose tier copy was renewed.",
            st.tier_refreshes);
        one(b, "cairn_tier_replaced_total", "counter",
            "Damaged tier copies of blobs that an upload from here put a good copy over (in "
            "cairn_tier_uploads_total too).",
            st.tier_replaced);
        head(b, "cairn_tier_reads_total", "counter",
             "Local misses asked of the cold tier, by result.");
        buf_printf(b, "cairn_tier_reads_total{result=\"hit\"} %" PRIu64 "\n", st.tier_hits);
        buf_printf(b, "cairn_tier_reads_total{result=\"miss\"} %" PRIu64 "\n", st.tier_misses);
        buf_printf(b, "cairn_tier_reads_total{result=\"error\"} %" PRIu64 "\n", st.tier_errors);
        buf_printf(b, "cairn_tier_reads_total{result=\"corrupt\"} %" PRIu64 "\n", st.tier_corrupt);
        one(b, "cairn_tier_read_bytes_total", "counter", "Stored bytes read from the tier.",
            st.tier_fetched_bytes);
        head(b, "cairn_tier_revalidations_total", "counter",
             "Keys held here checked against the tier (--tier-revalidate), by result "
             "(stale: another node had changed or deleted the key; the copy here was dropped; "
             "lost: the tier had no record of it; it went up again).");
        uint64_t changed = st.tier_revalidated_stale + st.tier_revalidated_lost;
        buf_printf(b, "cairn_tier_revalidations_total{result=\"current\"} %" PRIu64 "\n",
                   st.tier_revalidations > changed ? st.tier_revalidations - changed : 0);
        buf_printf(b, "cairn_tier_revalidations_total{result=\"stale\"} %" PRIu64 "\n",
                   st.tier_revalidated_stale);
        buf_printf(b, "cairn_tier_revalidations_total{result=\"lost\"} %" PRIu64 "\n",
                   st.tier_revalidated_lost);
        one(b, "cairn_tier_packs_total", "counter",
            "Packs of small key records sent to the tier (for warmups).", st.tier_packs);
        one(b, "cairn_tier_packed_records_total", "counter", "Key records in those packs.",
            st.tier_pack_records);
        one(b, "cairn_tier_pack_reads_total", "counter",
            "Keys warmups took from packs (counted as hits in cairn_tier_reads_total too).",
            st.tier_pack_hits);
        head(b, "cairn_tier_request_duration_seconds", "histogram",
             "Durations of requests to the cold tier: blob uploads, and reads of key records "
             "and blobs.");
        static const char *kinds[2] = {"upload", "read"};
        for (int k = 0; k < 2; k++) {
            uint64_t n = 0;
            for (int i = 0; i <= STORE_TIER_LAT_N; i++) {
                n += st.tier_lat[k][i];
                if (i < STORE_TIER_LAT_N)
                    buf_printf(b,
                               "cairn_tier_request_duration_seconds_bucket{kind=\"%s\",le=\"%g\"} "
                               "%" PRIu64 "\n",
                               kinds[k], store_tier_lat_bounds[i], n);
            }
            buf_printf(b,
                       "cairn_tier_request_duration_seconds_bucket{kind=\"%s\",le=\"+Inf\"} "
                       "%" PRIu64 "\n",
                       kinds[k], n);
            buf_printf(b, "cairn_tier_request_duration_seconds_sum{kind=\"%s\"} %.6f\n", kinds[k],
                       (double)st.tier_lat_sum_ns[k] / 1e9);
            buf_printf(b, "cairn_tier_request_duration_seconds_count{kind=\"%s\"} %" PRIu64 "\n",
                       kinds[k], n);
        }
    }
    process_metrics(b, srv);
}
