/*
 * store_tier.c - the cold tier: the queue of work for it, the workers that
 * carry the work out, and read-through on a local miss.
 *
 * The queue.  Every write, delete and namespace change that the committer
 * applies queues, in the same LMDB transaction, what the tier owes: a blob
 * to upload ('b' + digest), a key record to upload ('k') or delete ('d'), a
 * namespace to upload ('n') or delete ('x').  An entry's LMDB key is its type
 * and the SHA-256 of its name, so any name fits; the name itself is in the
 * value.  A later change of the same key replaces its entry (a delete cancels
 * a pending upload, and the other way round), so the queue holds at most one
 * piece of work per name.  Since the queue is in the index, a restart resumes
 * it and an acknowledged write is never forgotten.
 *
 * The workers.  tier_workers threads take entries whose time has come, do
 * the request, and hand the outcome to the committer: done (the entry goes;
 * for a blob, its record is marked as held by the tier) or failed (tried
 * again later, with backoff up to five minutes).  An entry carries a sequence
 * number, so an outcome for work that was queued again meanwhile changes
 * nothing.  A key record is uploaded only once its blob is in the tier, so
 * another node never finds a key whose blob is missing.  A blob the tier
 * already has (another node uploaded it) is not uploaded again.
 *
 * Eviction drops only blobs the tier holds, whose keys are all in the tier
 * too: the local copy is then a cache of the tier.
 *
 * Read-through.  A local miss asks the tier for the key record, then for the
 * blob unless it is here already, checks the blob against its digest (every
 * frame and the SHA-256 of the body), and stores both, as a write that owes
 * the tier nothing.  Concurrent misses of one key wait for the first.  A key
 * with a delete still queued is a miss, whatever the tier says.
 *
 * Packs.  A warmup of many small entries would make a request per entry,
 * and a tier answers only so many a second.  So the workers also gather the
 * small key records they upload (those that carry their blob), by
 * namespace, into packs of up to PACK_BYTES, each record with the ETag the
 * tier gave it, and upload each pack as one object.  A pack is only ever a
 * copy: a warmup lists the key records it wants, and takes a record from a
 * pack only when the pack's copy has the ETag the listing shows (the record
 * is the same one, not overwritten or deleted since) and checks out.
 * Anything else is fetched on its own.  A pack that is lost (a crash before
 * it went up) costs nothing but speed; the bucket's lifecycle rules expire
 * old ones (README).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <zstd.h>

#include "../common/log.h"
#include "../common/checksum.h"
#include "../common/util.h"
#include "store_int.h"
#include "tier.h"

#define TQ_BLOB 'b'
#define TQ_KEY 'k'
#define TQ_KEY_DEL 'd'
#define TQ_NS 'n'
#define TQ_NS_DEL 'x'
#define TQ_REFRESH 'r'
#define TQ_KEYLEN 33
#define BACKOFF_FIRST_MS 1000
#define BACKOFF_MAX_MS 300000
#define PROBE_FIRST_MS 1000 /* while the tier seems down: one try this long after the last, */
#define PROBE_MAX_MS 15000  /* doubling up to this (see pick) */
#define HURRY_GAP_MS 30000
#define HURRY_PER_TXN 20000
#define EMBED_MAX STORE_INLINE_LIMIT         /* blobs this small ride in their key records too */
#define RECORD_MAX (EMBED_MAX + (64u << 10)) /* a key record: key, metadata, a small blob */
#define MAX_WORKERS 64

typedef struct worker_arg {
    store *s;
    unsigned me;
} worker_arg;

#define DEL_SLOTS 16384

typedef struct gate {
    uint8_t id[TQ_KEYLEN];
    struct gate *next;
    /* a fill answered before it commits: later readers of the key share
     * it (gate_enter_key) rather than wait for its commit */
    store_entry share; /* what its readers answer with (its meta, and a
                          reference to its fill, are the gate's); no fill: none */
    uint64_t clock;    /* tier_clock when the fill began */
    uint64_t gen;      /* which taking of the key's gate this is */
    /* Its fill's commit may linger (store.c): queued says it is in the
     * committer's queue, hurry that somebody waits for it, so that
     * whichever comes second hurries the committer. */
    int queued, hurry;
    /* A key sharing the blob another key's stream brings (stream_join) is
     * queued once that key's fill committed: hurrying it hurries that
     * key's gate (follow, taking follow_gen). */
    int follows;
    uint8_t follow[TQ_KEYLEN];
    uint64_t follow_gen;
} gate;

/* How a fetch behind a gate ended, for the readers that waited for it. */
enum { GATE_LOOK_AGAIN, GATE_MISSED, GATE_FAILED };
#define GATE_OUTCOMES 256

/* Packs being gathered (see the top of the file). */
#define PACK_BYTES (4u << 20) /* a pack goes up at this many bytes of records */
#define PACK_ENTRIES 1024     /* or this many records */
#define PACK_MIN 16           /* fewer than this, on an idle queue, wait for more */
#define PACK_IDLE_MS 2000     /* an idle queue sends a pack once nothing was added for this long */
#define PACK_AGE_MS 300000 /* a pack waits at most this long, then goes (or, alone, is dropped) */
#define PACK_BUFS 4        /* namespaces gathered at once */
#define PACK_DIR_CAP 200   /* "packs/<namespace>/", the namespace as key_dir names it */

typedef struct pack_buf {
    char dir[PACK_DIR_CAP]; /* "packs/<namespace>/": its name, but for the end */
    uint8_t *idx, *recs;    /* the index, and the records in its order */
    size_t idx_len, idx_cap, recs_len, recs_cap;
    unsigned n;
    uint64_t first_ms, last_ms;
} pack_buf;

#define AHEAD_MAX_MS 86400000u /* a time written by a node is no further ahead of this clock */
#define REVAL_SLOTS 65536      /* keys whose last check is remembered (by hash) */
#define REVAL_WAYS 4           /* ... in sets of this many */
#define REVAL_QUEUE 1024       /* keys waiting for a check; more are checked at a later read */
#define REVAL_THREADS 4        /* checks at once (a HEAD each: tens of ms from S3) */
#define NS_KEPT_SLOTS 256      /* namespaces whose tier record was put lately (ns_keep) */
#define NS_KEPT_WAYS 4         /* ... in sets of this many */
#define HEAD_SLOTS 32768       /* key record heads kept for listings (record_head) */
#define HEAD_WAYS 8            /* ... in sets of this many, the least used taken over */
#define FLEET_LIST_MAX 200000  /* keys of the tier a listing merges with those here */
#define THREADS_MAX 16         /* helpers of one warmup from packs or listing (on_threads) */
#define FLEET_THREADS 16       /* a listing's reads of key records at once */
#define FLEET_SNAPS 4          /* listings of the tier kept for their next pages */
#define FLEET_SNAP_MS 60000    /* ... this long */
#define NS_KEEP_MS (24 * 3600 * 1000ull) /* ... at least this often, with no refreshes */
#define BAD_SLOTS 64                     /* blobs the tier holds damaged, remembered (bad_note) */
#define BAD_HOLD_MS (10 * 60 * 1000ull)  /* for this long */

/* Keys waiting for the revalidation thread (reval_mu held), in order: a
 * copy of each, and when it is due (util_mono_ns). */
typedef struct key_ring {
    char *keys[REVAL_QUEUE];
    size_t lens[REVAL_QUEUE];
    uint64_t due[REVAL_QUEUE];
    unsigned head, n;
} key_ring;

/* Queues a copy of the key: 0, or -1 if the ring is full (or memory short). */
static int ring_push(key_ring *r, const char *key, size_t len, uint64_t due)
{
    char *copy;
    if (r->n == REVAL_QUEUE || (copy = malloc(len ? len : 1)) == NULL)
        return -1;
    memcpy(copy, key, len);
    unsigned at = (r->head + r->n++) % REVAL_QUEUE;
    r->keys[at] = copy;
    r->lens[at] = len;
    r->due[at] = due;
    return 0;
}

/* The first key (the caller frees it); the ring must not be empty. */
static char *ring_pop(key_ring *r, size_t *len)
{
    char *key = r->keys[r->head];
    *len = r->lens[r->head];
    r->head = (r->head + 1) % REVAL_QUEUE;
    r->n--;
    return key;
}

static void ring_free(key_ring *r)
{
    size_t len;
    while (r->n)
        free(ring_pop(r, &len));
}

/* Content-addressed keys ("cas" namespace) have one body for good: never
 * checked against the tier. */
static int content_addressed(const char *nskey, size_t nklen)
{
    return nklen >= 4 && memcmp(nskey, "cas", 4) == 0;
}

typedef struct tier_state {
    tier *t;
    size_t name_max; /* tier_name_max */
    pthread_t workers[MAX_WORKERS];
    worker_arg args[MAX_WORKERS];
    unsigned nworkers;
    pthread_mutex_t mu; /* guards what follows, up to the gates */
    pthread_cond_t cv;  /* workers wait here for work; the drain waits here too */
    int stop;
    unsigned kicks;                       /* tier_kick calls: new work */
    uint8_t busy[MAX_WORKERS][TQ_KEYLEN]; /* entries being worked on */
    int busy_used[MAX_WORKERS];
    uint8_t cursor[TQ_KEYLEN]; /* the round robin's position */
    int have_cursor;
    /* Is the tier back?  An entry that fails waits (backoff_ms), up to
     * minutes: when the tier was down for a while, or after a restart or
     * on a drain, the queue is "in doubt": whenever nothing is due, one
     * entry is tried anyway (a probe, spaced by PROBE_FIRST_MS doubling to
     * PROBE_MAX_MS), and the first success makes every waiting entry due
     * at once (tier_hurry), instead of each at the end of its wait. */
    unsigned fail_streak; /* entries that failed since the last success */
    int in_doubt;
    unsigned probes; /* since in doubt */
    uint64_t probe_at_ms;
    /* a few entries the tier always refuses would put the queue in doubt
     * again and again: one hurry per HURRY_GAP_MS at most, unless asked
     * for (a drain, a start) */
    uint64_t hurried_ms;
    int hurry_asked;
    uint64_t bucket_made_ms; /* a cairnd parent's bucket, last made sure of (worker_main) */
    int drained;             /* store_tier_drain ran (the exit's: once) */
    uint64_t seq;            /* committer only */

    pthread_mutex_t gate_mu; /* read-through in progress, by key */
    pthread_cond_t gate_cv;
    gate *gates;
    struct blob_stream *streams_in; /* large blobs arriving now, for every key that has them */
    uint64_t gate_gen;
    /* how the last takings of gates ended (by gen, GATE_OUTCOMES of them):
     * readers that waited for a fetch of a key that failed, or found no
     * such key, take that answer instead of asking the tier again each in
     * turn (N readers of a key the tier does not answer for would wait N
     * tier timeouts) */
    struct {
        uint64_t gen;
        int outcome;
    } gate_done[GATE_OUTCOMES];

    atomic_ullong uploads, upload_bytes, upload_failures, skipped, refreshes;
    atomic_ullong hits, misses, errors, fetched_bytes, corrupt;
    atomic_ullong lat[2][STORE_TIER_LAT_N + 1], lat_sum_ns[2];
    atomic_int streams; /* fetch threads running (they may outlive their request) */
    atomic_ullong del_clock, del_marks[DEL_SLOTS]; /* tier_key_changed_now */
    /* Does the tier hold key records in the v1 layout (key_name_v1)?  -1
     * until worker 0 has looked (and taken as yes meanwhile), 0 or 1. */
    atomic_int legacy;
    uint64_t legacy_next_ms; /* worker 0: when to look again */
    unsigned legacy_failures;
    pthread_mutex_t pack_mu; /* packs */
    pack_buf packs[PACK_BUFS];
    pack_buf ready[PACK_BUFS]; /* taken out, for a worker to send once its entry is done */
    unsigned nready;
    atomic_uint packs_sending; /* taken from packs (or ready), not up yet */
    atomic_ullong packs_sent, pack_records, pack_hits;
    /* Revalidation (tier_revalidate): when keys read here were last checked
     * against the tier, by a hash of the key, and the keys waiting for a
     * check. */
    atomic_ullong *reval; /* REVAL_SLOTS of (hash << 32 | when, s), 0: empty */
    pthread_mutex_t reval_mu;
    pthread_cond_t reval_cv;
    key_ring reval_wait;
    /* records put a moment ago, checked again once another node's put that
     * was on its way as ours landed has landed too (recheck_later; in
     * order of due: one delay for all) */
    key_ring later;
    int reval_stop;
    unsigned reval_started;
    pthread_t reval_threads[REVAL_THREADS];
    atomic_ullong revalidations, revalidated_stale, revalidated_lost;
    /* Blobs whose tier copy failed its checks here lately (bad_note) */
    pthread_mutex_t bad_mu;
    struct {
        uint8_t digest[32];
        uint64_t until_ms;
        unsigned strikes; /* fetches that failed their checks in a row */
    } bad[BAD_SLOTS];
    atomic_ullong replaced; /* damaged copies uploaded over */
    /* when the records of the namespaces this node writes keys of were last
     * put again, by a hash of the namespace (ns_keep; workers only) */
    pthread_mutex_t ns_kept_mu;
    struct {
        uint64_t hash, at_ms;
    } ns_kept[NS_KEPT_SLOTS];
    /* heads of key records read for listings, by a hash of their name; a
     * head is good while its record's ETag in the tier is the same (heads_mu,
     * which guards snaps too) */
    pthread_mutex_t heads_mu;
    struct record_head *heads[HEAD_SLOTS];
    uint64_t heads_tick;                   /* the use of a head kept (its last, in the head) */
    struct fleet_snap *snaps[FLEET_SNAPS]; /* the tier's keys listed lately (heads_mu) */
    atomic_ullong deletes_put;    /* key deletes put in the tier (a listing's second look) */
    atomic_ullong list_failed_ms; /* when a listing last found the tier not answering (monotonic) */
} tier_state;

const double store_tier_lat_bounds[STORE_TIER_LAT_N] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                        0.5,   1,    2.5,   5,    10,  30};

enum { LAT_UPLOAD, LAT_READ };

static void lat_record(tier_state *q, int kind, uint64_t t0)
{
    uint64_t ns = util_mono_ns() - t0;
    double s = (double)ns / 1e9;
    int b = 0;
    while (b < STORE_TIER_LAT_N && s > store_tier_lat_bounds[b])
        b++;
    atomic_fetch_add_explicit(&q->lat[kind][b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&q->lat_sum_ns[kind], ns, memory_order_relaxed);
}

static uint32_t now_s(void)
{
    return (uint32_t)(util_now_ms() / 1000);
}

static void sha256_of(const void *p, size_t n, uint8_t out[32])
{
    unsigned int len;
    EVP_Digest(p, n, out, &len, cksum_md_sha256(), NULL);
}

static void tq_key(char type, const void *name, size_t len, uint8_t out[TQ_KEYLEN])
{
    out[0] = (uint8_t)type;
    sha256_of(name, len, out + 1);
}

/* ---- blobs the tier holds damaged ------------------------------------------------------
 *
 * A blob fetched from the tier that fails its checks is remembered for
 * BAD_HOLD_MS, or until a fetch of it checks out.  Meanwhile an upload of
 * it from here puts the good copy over the damaged one rather than find it
 * there and skip it.  Damaged twice in a row (not bytes hurt on their way
 * once, then: the tier's copy), the keys that have it are misses here,
 * answered at once rather than fetched again, a HEAD too (a client that
 * asks before it uploads, as ccache does, uploads it again).  A node that
 * never read it cannot know: a damaged copy is left to the nodes that
 * found it. */
static int bad_find(tier_state *q, const uint8_t d[32], uint64_t now)
{
    for (int i = 0; i < BAD_SLOTS; i++)
        if (q->bad[i].until_ms > now && memcmp(q->bad[i].digest, d, 32) == 0)
            return i;
    return -1;
}

static void bad_note(tier_state *q, const uint8_t d[32])
{
    uint64_t now = util_now_ms();
    pthread_mutex_lock(&q->bad_mu);
    int i = bad_find(q, d, now);
    if (i < 0) { /* a free slot, else the one that ends first */
        i = 0;
        for (int k = 0; k < BAD_SLOTS; k++)
            if (q->bad[k].until_ms < q->bad[i].until_ms)
                i = k;
        memcpy(q->bad[i].digest, d, 32);
        q->bad[i].strikes = 0;
    }
    q->bad[i].until_ms = now + BAD_HOLD_MS;
    q->bad[i].strikes++;
    pthread_mutex_unlock(&q->bad_mu);
}

/* Found damaged at least `strikes` times in a row lately?  (Asked only on
 * the way to the tier: the lock costs nothing there.) */
static int bad_has(tier_state *q, const uint8_t d[32], unsigned strikes)
{
    pthread_mutex_lock(&q->bad_mu);
    int i = bad_find(q, d, util_now_ms());
    int bad = i >= 0 && q->bad[i].strikes >= strikes;
    pthread_mutex_unlock(&q->bad_mu);
    return bad;
}

static void bad_clear(tier_state *q, const uint8_t d[32])
{
    pthread_mutex_lock(&q->bad_mu);
    int i = bad_find(q, d, util_now_ms());
    if (i >= 0)
        q->bad[i].until_ms = 0;
    pthread_mutex_unlock(&q->bad_mu);
}

/* A fetch of blob d ended with rc: damaged (TIER_BAD: counted and
 * remembered), checked out (TIER_OK: forgotten), or neither. */
static void fetch_ended(tier_state *q, const uint8_t d[32], int rc)
{
    if (rc == TIER_BAD) {
        atomic_fetch_add(&q->corrupt, 1);
        bad_note(q, d);
    } else if (rc == TIER_OK) {
        bad_clear(q, d);
    }
}

/* ---- in the committer's transaction --------------------------------------- */

static int enqueue(store *s, MDB_txn *t, char type, const void *name, size_t len, uint64_t bytes)
{
    uint8_t k[TQ_KEYLEN];
    tq_key(type, name, len, k);
    tq_rec r = {0, 0, ++s->tier_q->seq, bytes, name, len};
    s->tier_kick_pending = 1;
    return idx_tq_put(t, &s->ix, k, sizeof k, &r);
}

static int dequeue(store *s, MDB_txn *t, char type, const void *name, size_t len)
{
    uint8_t k[TQ_KEYLEN];
    tq_key(type, name, len, k);
    return idx_tq_del(t, &s->ix, k, sizeof k);
}

static int tq_has(store *s, MDB_txn *t, char type, const void *name, size_t len);
static int queued(store *s, char type, const void *name, size_t len);
static void reval_checked(tier_state *q, const char *nskey, size_t nklen);

/* The store's status for a tier call that failed with rc: the tier could not
 * say (STORE_UNAVAILABLE), unless the failure was this node's (STORE_IO). */
static int tier_failed_status(int rc)
{
    return rc == TIER_LOCAL ? STORE_IO : STORE_UNAVAILABLE;
}

/* Is the tier's copy of b older than --tier-refresh-after, so that the
 * bucket's lifecycle rules may have expired it? */
static int tier_copy_old(const store *s, uint64_t tier_time)
{
    uint64_t now = now_s();
    return s->cfg.tier_refresh_ms &&
           (now - (tier_time < now ? tier_time : now)) * 1000ULL >= s->cfg.tier_refresh_ms;
}

/* The tier may have lost blob d (b, its record here) since it had it: the
 * blob is owed again.  upload_blob looks for it, renews a copy that is old
 * and uploads one that is gone; the key records wait for it (must_wait),
 * and the local copy is not evicted until then. */
static int owe_blob_again(store *s, MDB_txn *t, idx_stats *st, const uint8_t d[32],
                          const blob_rec *b)
{
    blob_rec nb = *b;
    nb.tier = 0;
    int rc = idx_put_blob(t, &s->ix, d, &nb);
    if (rc != 0 || tq_has(s, t, TQ_BLOB, d, 32)) /* (counted once) */
        return rc;
    if ((rc = enqueue(s, t, TQ_BLOB, d, 32, b->stored)) != 0)
        return rc;
    st->tier_pending += b->stored;
    return 0;
}

int tier_queue_put(store *s, MDB_txn *t, idx_stats *st, op *o, int created, const blob_rec *b)
{
    if (s->tier_q == NULL)
        return 0;
    int rc;
    if (o->from_tier) {
        /* a read through the tier is a read: a copy there older than
         * --tier-refresh-after is renewed, with its keys' records (this
         * one's too), as for a read of the copy here (tier_touched) */
        if (!b->tier || !s->cfg.tier_refresh_ms || !tier_copy_old(s, b->tier_time))
            return 0;
        blob_rec nb = *b;
        return (rc = tier_touched(s, t, o->cr.sha256, &nb)) != 0
                   ? rc
                   : idx_put_blob(t, &s->ix, o->cr.sha256, &nb);
    }
    reval_checked(s->tier_q, o->nskey, o->nklen); /* written here: the latest */
    if (created) {
        /* the tier is behind: refuse rather than owe it without bound (but
         * a body larger than the bound alone goes when nothing else waits) */
        if (s->cfg.tier_queue_max && st->tier_pending > 0 &&
            st->tier_pending + b->stored > s->cfg.tier_queue_max)
            return RC_TIER_BEHIND;
        if ((rc = enqueue(s, t, TQ_BLOB, o->cr.sha256, 32, b->stored)) != 0)
            return rc;
        st->tier_pending += b->stored;
    } else if (b->tier && (b->stored > EMBED_MAX || tier_copy_old(s, b->tier_time))) {
        /* a body the tier had: its copy there may be gone since (expired
         * by the bucket's rules, the bucket made again, removed by hand),
         * and a record must never point at a blob the tier lacks.  (A small
         * body rides in the record itself: its blob is looked for only when
         * old, to be renewed) */
        if ((rc = owe_blob_again(s, t, st, o->cr.sha256, b)) != 0)
            return rc;
    }
    if ((rc = dequeue(s, t, TQ_KEY_DEL, o->nskey, o->nklen)) != 0)
        return rc;
    return enqueue(s, t, TQ_KEY, o->nskey, o->nklen, 0);
}

int tier_queue_delete(store *s, MDB_txn *t, const char *nskey, size_t nklen)
{
    if (s->tier_q == NULL)
        return 0;
    int rc = dequeue(s, t, TQ_KEY, nskey, nklen);
    /* the entry's bytes hold when the delete was acknowledged: it goes to
     * the tier as a record of that time (upload_delete) */
    return rc != 0 ? rc : enqueue(s, t, TQ_KEY_DEL, nskey, nklen, util_now_ms());
}

int tier_queue_ns(store *s, MDB_txn *t, const char *name, int deleted)
{
    if (s->tier_q == NULL)
        return 0;
    size_t n = strlen(name);
    int rc = dequeue(s, t, deleted ? TQ_NS : TQ_NS_DEL, name, n);
    return rc != 0 ? rc : enqueue(s, t, deleted ? TQ_NS_DEL : TQ_NS, name, n, 0);
}

int tier_blob_dropped(store *s, MDB_txn *t, idx_stats *st, const uint8_t d[32])
{
    if (s->tier_q == NULL)
        return 0;
    uint8_t k[TQ_KEYLEN];
    tq_rec r;
    tq_key(TQ_BLOB, d, 32, k);
    int rc = idx_tq_get(t, &s->ix, k, sizeof k, &r);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    st->tier_pending -= r.bytes < st->tier_pending ? r.bytes : st->tier_pending;
    return idx_tq_del(t, &s->ix, k, sizeof k);
}

int tier_evictable(store *s, MDB_txn *t, const uint8_t d[32], const blob_rec *b)
{
    if (s->tier_q == NULL)
        return 1;
    if (!b->tier)
        return 0;
    MDB_cursor *c;
    if (mdb_cursor_open(t, s->ix.refs, &c) != 0)
        return 0;
    MDB_val k = {32, (void *)d}, v;
    int ok = 1;
    int rc = mdb_cursor_get(c, &k, &v, MDB_SET_KEY);
    while (rc == 0 && ok) {
        uint8_t qk[TQ_KEYLEN];
        tq_rec r;
        tq_key(TQ_KEY, v.mv_data, v.mv_size, qk);
        if (idx_tq_get(t, &s->ix, qk, sizeof qk, &r) != MDB_NOTFOUND)
            ok = 0; /* a key record the tier does not have yet */
        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT_DUP);
    }
    mdb_cursor_close(c);
    return ok;
}

int tier_apply(store *s, MDB_txn *t, idx_stats *st, op *o)
{
    tq_rec r;
    int rc = idx_tq_get(t, &s->ix, o->nskey, TQ_KEYLEN, &r);
    if (rc == MDB_NOTFOUND || (rc == 0 && r.seq != o->seq))
        return 0; /* queued again meanwhile: that work is still owed */
    if (rc != 0)
        return rc;
    if (o->kind == OP_TIER_RETRY) {
        uint8_t name[1024];
        if (r.name_len > sizeof name)
            return MDB_CORRUPTED;
        memcpy(name, r.name, r.name_len); /* r.name points into the page being rewritten */
        r.name = name;
        r.attempts++;
        r.next_ms = o->next_ms;
        return idx_tq_put(t, &s->ix, o->nskey, TQ_KEYLEN, &r);
    }
    if ((o->nskey[0] == TQ_BLOB || o->nskey[0] == TQ_REFRESH) && r.name_len == 32) {
        blob_rec b;
        uint8_t d[32];
        memcpy(d, r.name, 32);
        if ((rc = idx_get_blob(t, &s->ix, d, &b)) == 0) {
            b.tier = 1;
            b.tier_time =
                o->tier_time ? o->tier_time : now_s(); /* (found there: as old as it is) */
            if ((rc = idx_put_blob(t, &s->ix, d, &b)) != 0)
                return rc;
        } else if (rc != MDB_NOTFOUND) {
            return rc;
        }
        st->tier_pending -= r.bytes < st->tier_pending ? r.bytes : st->tier_pending;
    }
    return idx_tq_del(t, &s->ix, o->nskey, TQ_KEYLEN);
}

int tier_owe(store *s, MDB_txn *t, idx_stats *st, op *o)
{
    key_rec kr;
    blob_rec b;
    int rc = idx_get_key(t, &s->ix, o->nskey, o->nklen, &kr);
    if (rc == MDB_NOTFOUND || (rc == 0 && kr.mtime_ms != o->mtime_ms))
        return 0; /* changed here since the check: that change is owed already */
    if (rc != 0 || (rc = idx_get_blob(t, &s->ix, kr.digest, &b)) != 0)
        return rc == MDB_NOTFOUND ? 0 : rc;
    if (tq_has(s, t, TQ_KEY, o->nskey, o->nklen) || tq_has(s, t, TQ_KEY_DEL, o->nskey, o->nklen))
        return 0;
    o->target = 1; /* (owed again: the caller counts it) */
    /* the blob may be gone with the record (one that rides in it goes up
     * with it) */
    if (b.tier && b.stored > EMBED_MAX && (rc = owe_blob_again(s, t, st, kr.digest, &b)) != 0)
        return rc;
    return enqueue(s, t, TQ_KEY, o->nskey, o->nklen, 0);
}

typedef struct owe_ns {
    store *s;
    MDB_txn *t;
    op *o;
    int rc;
} owe_ns;

static int owe_ns_each(void *ctx, const char *name, MDB_val *v)
{
    (void)v;
    owe_ns *w = ctx;
    if (!ns_declared(name, strlen(name)))
        return 0; /* (only buckets have records) */
    /* (the queue is another table: the cursor over the buckets stays valid) */
    if ((w->rc = tier_queue_ns(w->s, w->t, name, 0)) != 0)
        return 1;
    w->o->target++;
    return 0;
}

int tier_owe_all_ns(store *s, MDB_txn *t, op *o)
{
    owe_ns w = {s, t, o, 0};
    o->target = 0;
    int rc = scan_names_in(t, s->ix.ns, owe_ns_each, &w);
    return rc != 0 ? rc : w.rc;
}

/* A blob was read: when the tier's copy is older than tier_refresh_ms, queue
 * a refresh of it and of its keys' records, so that the bucket's lifecycle
 * rules expire only what nobody uses.  b is written back by the caller. */
int tier_touched(store *s, MDB_txn *t, const uint8_t d[32], blob_rec *b)
{
    if (s->tier_q == NULL || !s->cfg.tier_refresh_ms || !b->tier)
        return 0;
    if (!tier_copy_old(s, b->tier_time))
        return 0;
    int rc = enqueue(s, t, TQ_REFRESH, d, 32, 0);
    MDB_cursor *c;
    if (rc == 0 && (rc = mdb_cursor_open(t, s->ix.refs, &c)) == 0) {
        MDB_val k = {32, (void *)d}, v;
        int r = mdb_cursor_get(c, &k, &v, MDB_SET_KEY);
        while (r == 0 && rc == 0) {
            uint8_t copy[512];
            if (v.mv_size <= sizeof copy) {
                memcpy(copy, v.mv_data, v.mv_size); /* v points into a page the put may move */
                rc = enqueue(s, t, TQ_KEY, copy, v.mv_size, 0);
            }
            r = mdb_cursor_get(c, &k, &v, MDB_NEXT_DUP);
        }
        mdb_cursor_close(c);
    }
    if (rc == 0)
        b->tier_time = now_s(); /* asked for: not again until the next period */
    return rc;
}

void tier_kick(store *s)
{
    tier_state *q = s->tier_q;
    pthread_mutex_lock(&q->mu);
    q->kicks++;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

/* ---- records in the tier ---------------------------------------------------- */

/* A key record: "CKR1", u32 name length, "<namespace>\0<key>", digest, u64
 * size, u64 mtime (ms), u32 metadata length, metadata; then, for a small
 * blob, u8 codec, u32 length and the blob's stored bytes, so that a cold read
 * of a small object is one request to the tier (its blob is uploaded on its
 * own as well, once, for the keys that come later). */
static uint8_t *key_record(const char *nskey, size_t nklen, const key_rec *kr, int codec,
                           const void *blob, size_t blob_len, size_t *len)
{
    size_t n = 4 + 4 + nklen + 32 + 8 + 8 + 4 + kr->meta_len + (blob ? 5 + blob_len : 0);
    uint8_t *p = malloc(n), *q = p;
    if (p == NULL)
        return NULL;
    memcpy(q, "CKR1", 4);
    util_put_le32(q + 4, (uint32_t)nklen);
    memcpy(q + 8, nskey, nklen);
    q += 8 + nklen;
    memcpy(q, kr->digest, 32);
    util_put_le64(q + 32, kr->size);
    util_put_le64(q + 40, kr->mtime_ms);
    util_put_le32(q + 48, (uint32_t)kr->meta_len);
    if (kr->meta_len)
        memcpy(q + 52, kr->meta, kr->meta_len);
    q += 52 + kr->meta_len;
    if (blob) {
        q[0] = (uint8_t)codec;
        util_put_le32(q + 1, (uint32_t)blob_len);
        if (blob_len)
            memcpy(q + 5, blob, blob_len);
    }
    *len = n;
    return p;
}

/* The head of a key record read for a listing (fleet_read): good while the
 * record's ETag in the tier is the same. */
typedef struct record_head {
    char *name;
    char etag[TIER_ETAG_CAP];
    uint64_t size, mtime_ms;
    void *meta;
    size_t meta_len;
    uint64_t used; /* heads_tick when last used, kept */
} record_head;

static void head_free(record_head *h)
{
    if (h == NULL)
        return;
    free(h->name);
    free(h->meta);
    free(h);
}

/* A key whose record the tier holds, as a listing of the tier found it: one
 * allocation holds its record's name, the record's ETag, then the key. */
typedef struct fleet_key {
    char *name;
    const char *etag;
    const uint8_t *key;
    size_t klen;
    int deleted; /* its record is a delete's: not listed (a copy held here is checked) */
} fleet_key;

/* The tier's keys under a prefix, sorted: kept FLEET_SNAP_MS for the next
 * pages of a listing (heads_mu; freed by the last of its users). */
typedef struct fleet_snap {
    char *ns;
    uint8_t *prefix;
    size_t plen;
    uint64_t at_ms;
    unsigned long long deletes; /* deletes_put before it was listed */
    fleet_key *v;
    size_t n, cap;
    unsigned refs;
} fleet_snap;

static void snap_free(fleet_snap *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->n; i++)
        free(p->v[i].name);
    free(p->v);
    free(p->ns);
    free(p->prefix);
    free(p);
}

typedef struct parsed_record {
    key_rec kr;
    int codec; /* -1: no blob bytes in the record */
    const uint8_t *blob;
    size_t blob_len;
} parsed_record;

/* The head of a key record of nskey (its first n bytes at p, at least the
 * head): into *kr, its meta pointing into p.  The offset just past the
 * head, or 0 if it is not one. */
static size_t parse_key_head(const uint8_t *p, size_t n, const char *nskey, size_t nklen,
                             key_rec *kr)
{
    if (n < 8 || memcmp(p, "CKR1", 4) != 0 || util_get_le32(p + 4) != nklen || n < 8 + nklen + 52 ||
        memcmp(p + 8, nskey, nklen) != 0)
        return 0;
    const uint8_t *q = p + 8 + nklen;
    memcpy(kr->digest, q, 32);
    kr->size = util_get_le64(q + 32);
    kr->mtime_ms = util_get_le64(q + 40);
    kr->meta_len = util_get_le32(q + 48);
    if (n - (8 + nklen) < 52 + kr->meta_len)
        return 0;
    kr->meta = q + 52;
    return 8 + nklen + 52 + kr->meta_len;
}

static int parse_key_record(const uint8_t *p, size_t n, const char *nskey, size_t nklen,
                            parsed_record *pr)
{
    key_rec *kr = &pr->kr;
    size_t head = parse_key_head(p, n, nskey, nklen, kr);
    if (head == 0)
        return -1;
    const uint8_t *q = p + head, *end = p + n;
    pr->codec = -1;
    pr->blob = NULL;
    pr->blob_len = 0;
    if (q == end)
        return 0;
    if (end - q < 5 || (q[0] != CODEC_RAW && q[0] != CODEC_ZSTD) ||
        (size_t)(end - q) != 5 + (size_t)util_get_le32(q + 1))
        return -1;
    pr->codec = q[0];
    pr->blob = q + 5;
    pr->blob_len = util_get_le32(q + 1);
    return 0;
}

/* A namespace record: "CNS1", u64 created (ms), u32 metadata length, metadata. */
static uint8_t *ns_record(uint64_t created, const void *meta, size_t meta_len, size_t *len)
{
    uint8_t *p = malloc(16 + meta_len);
    if (p == NULL)
        return NULL;
    memcpy(p, "CNS1", 4);
    util_put_le64(p + 4, created);
    util_put_le32(p + 12, (uint32_t)meta_len);
    if (meta_len)
        memcpy(p + 16, meta, meta_len);
    *len = 16 + meta_len;
    return p;
}

/* Is p (n bytes) a namespace record, with a date a node could have
 * written?  (A record without its SHA-256, as earlier builds put them,
 * has only this to go by.) */
static int ns_record_ok(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t created = n >= 16 ? util_get_le64(b + 4) : 0;
    return n >= 16 && memcmp(b, "CNS1", 4) == 0 && 16 + (size_t)util_get_le32(b + 12) == n &&
           created > 0 && created <= util_now_ms() + AHEAD_MAX_MS;
}

/* Takes the namespace record (n bytes at p, ns_record_ok) the tier has of
 * ns into the index: made here if it is not (tier_resolve_ns), or, with
 * adopt, over the one made here while the tier could not be asked
 * (upload_ns).  A store status. */
static int ns_take(store *s, const char *ns, const uint8_t *p, size_t n, int adopt)
{
    op o = {0};
    o.kind = OP_NS_CREATE;
    o.from_tier = 1;
    o.adopt = adopt;
    o.nskey = (char *)ns;
    o.created_ms = util_get_le64(p + 4);
    o.meta = (uint8_t *)p + 16;
    o.meta_len = n - 16;
    return submit_and_wait(s, &o);
}

static void blob_name(const uint8_t d[32], char out[80])
{
    char hex[65];
    util_hex(d, 32, hex);
    snprintf(out, 80, "blobs/%s", hex);
}

/* A key record's name, in two layouts:
 *   v2 (written): keys/<namespace>/<key>, both escaped, so that the keys
 *      under a prefix are the names under a prefix (a new node lists them
 *      to warm up).  Bytes other than A-Z a-z 0-9 - _ and, in keys, '/'
 *      are %XX ('.' too: HTTP clients fold "/./" and "/../").  A key that
 *      escapes to more than KEY_PART_MAX bytes is cut (not inside a %XX)
 *      and ends in "~<sha256 of namespace \0 key>"; '~' is escaped anywhere
 *      else, so such names are told apart.  So is a namespace (its name
 *      becomes "~<sha256 of it>") that escapes to more than NS_PART_MAX.
 *   v1 (read, when the tier holds any): keys/<sha256 of namespace \0 key>. */
#define KEY_PART_MAX 500
#define NS_PART_MAX 192 /* "ac/" and an instance of 100 bytes may escape to 303 */
#define KEY_NAME_CAP (5 + NS_PART_MAX + 1 + KEY_PART_MAX + 1)
_Static_assert(PACK_DIR_CAP >= 6 + NS_PART_MAX + 2, "a pack's directory fits");
_Static_assert(sizeof((store_stats *)0)->tier_last_error == TIER_ERROR_TEXT, "room for it");

/* Escapes n bytes of p into out from offset o, up to limit (never inside a
 * %XX); returns the new offset, and into *taken (if given) how many of the
 * n bytes made it. */
static size_t escape_into(char *out, size_t o, const uint8_t *p, size_t n, int keep_slash,
                          size_t limit, size_t *taken)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t i = 0;
    for (; i < n; i++) {
        uint8_t c = p[i];
        int keep = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                   c == '-' || c == '_' || (c == '/' && keep_slash);
        if (o + (keep ? 1 : 3) > limit)
            break;
        if (keep) {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    if (taken)
        *taken = i;
    return o;
}

/* "keys/<namespace>/" for namespace ns (nl bytes), or "keys/~<sha256 of
 * it>/" when it escapes to more than NS_PART_MAX bytes; its length. */
static size_t key_dir(const char *ns, size_t nl, char *out)
{
    memcpy(out, "keys/", 5);
    size_t done;
    size_t o = escape_into(out, 5, (const uint8_t *)ns, nl, 0, 5 + NS_PART_MAX, &done);
    if (done < nl) {
        uint8_t h[32];
        sha256_of(ns, nl, h);
        out[5] = '~';
        util_hex(h, 32, out + 6);
        o = 6 + 64;
    }
    out[o++] = '/';
    out[o] = '\0';
    return o;
}

/* How long the key part of a name after a key_dir of dl bytes may be: at
 * most KEY_PART_MAX, and within what the tier takes (a cairnd parent takes
 * shorter names than S3; names it would refuse are never in it, so the
 * names of the keys that fit are the same under every tier). */
static size_t key_part_max(const tier_state *q, size_t dl)
{
    size_t m = q->name_max > dl ? q->name_max - dl : 0;
    return m > KEY_PART_MAX ? KEY_PART_MAX : m < 65 ? 65 : m;
}

/* The names of the key records of ns whose keys begin with prefix (plen
 * bytes) begin with this (into out): key_dir, then the escaped prefix, no
 * longer than any name keeps of a key.  Returns key_dir's length. */
static size_t key_prefix(const tier_state *q, const char *ns, const void *prefix, size_t plen,
                         char out[KEY_NAME_CAP])
{
    size_t dl = key_dir(ns, strlen(ns), out);
    out[escape_into(out, dl, prefix, plen, 1, dl + key_part_max(q, dl) - 65, NULL)] = '\0';
    return dl;
}

/* "packs/<namespace>/" (as key_dir names the namespace) into out. */
static void pack_dir(const char *ns, size_t nl, char out[PACK_DIR_CAP])
{
    size_t kl = key_dir(ns, nl, out + 1); /* "keys/<ns>/" into "packs/<ns>/" */
    memcpy(out, "packs", 5);
    out[kl + 1] = '\0';
}

static void key_name(const tier_state *q, const void *nskey, size_t nklen, char out[KEY_NAME_CAP])
{
    const char *zero = memchr(nskey, '\0', nklen);
    size_t nl = zero ? (size_t)(zero - (const char *)nskey) : nklen;
    size_t o = key_dir(nskey, nl, out);
    const uint8_t *key = (const uint8_t *)nskey + (zero ? nl + 1 : nklen);
    size_t klen = nklen - (size_t)(key - (const uint8_t *)nskey);
    size_t done;
    size_t max = key_part_max(q, o);
    size_t end = escape_into(out, o, key, klen, 1, o + max, &done);
    if (done < klen) {
        end = escape_into(out, o, key, klen, 1, o + max - 65, NULL);
        uint8_t h[32];
        sha256_of(nskey, nklen, h);
        out[end++] = '~';
        util_hex(h, 32, out + end);
        end += 64;
    }
    out[end] = '\0';
}

/* The key that a v2 name (after its key_dir) stands for, unescaped into
 * out (at least KEY_PART_MAX bytes); its length, or -1 for a cut name (the
 * record says which key it is) or one that is not a name of ours. */
static ssize_t key_from_name(const char *part, uint8_t *out)
{
    return strchr(part, '~') ? -1 : util_pct_decode(part, strlen(part), out, KEY_PART_MAX);
}

/* A key record of no bytes is a delete's (upload_delete): the key is gone. */
static int record_deleted(uint64_t length)
{
    return length == 0;
}

static void key_name_v1(const void *nskey, size_t nklen, char out[80])
{
    uint8_t h[32];
    char hex[65];
    sha256_of(nskey, nklen, h);
    util_hex(h, 32, hex);
    snprintf(out, 80, "keys/%s", hex);
}

/* A namespace record's name: ns/<hex of the name>.  (Builds before
 * 2026-11-28 cut the name at 64 bytes, where "s3/" and two bucket names
 * sharing their first 61 bytes met; such a record cannot say which bucket
 * it was, so it is not read: a bucket of 62 or more characters made by
 * such a build is made again on a node that does not know it.) */
#define NS_NAME_CAP (3 + 2 * 128 + 1)

static void ns_name(const char *ns, char out[NS_NAME_CAP])
{
    size_t n = strlen(ns);
    char hex[2 * 128 + 1];
    if (n > 128)
        n = 128; /* "s3/" and a bucket: 66 at most */
    util_hex((const uint8_t *)ns, n, hex);
    snprintf(out, NS_NAME_CAP, "ns/%s", hex);
}

/* ---- the workers ------------------------------------------------------------- */

typedef struct job {
    uint8_t key[TQ_KEYLEN];
    uint64_t seq;
    uint64_t bytes; /* a blob's stored bytes; a delete's time (ms) */
    uint32_t attempts;
    uint32_t found_time; /* a blob found in the tier, not sent: its copy's time (s) */
    uint8_t name[1024];
    size_t name_len;
    int probe; /* tried before its time: is the tier back? */
} job;

/* The job of the queue entry key, as r records it. */
static void job_from(job *j, const uint8_t key[TQ_KEYLEN], const tq_rec *r)
{
    memcpy(j->key, key, TQ_KEYLEN);
    j->seq = r->seq;
    j->bytes = r->bytes;
    j->attempts = r->attempts;
    j->found_time = 0;
    memcpy(j->name, r->name, r->name_len);
    j->name_len = r->name_len;
}

/* Would this entry's work have to wait for another's?  A key record waits
 * for its blob to be in the tier. */
static int must_wait(store *s, MDB_txn *t, const job *j)
{
    if (j->key[0] != TQ_KEY)
        return 0;
    key_rec kr;
    blob_rec b;
    if (idx_get_key(t, &s->ix, j->name, j->name_len, &kr) != 0)
        return 0; /* gone: the worker drops the entry */
    return idx_get_blob(t, &s->ix, kr.digest, &b) == 0 && !b.tier;
}

/* Takes the next entry whose time has come and that nobody works on.
 * 0 with *j filled, or 1 with *wait_ms until the earliest one is due.
 * Called with q->mu held. */
static int pick(store *s, unsigned me, job *j, uint64_t *wait_ms)
{
    tier_state *q = s->tier_q;
    uint64_t now = util_now_ms(), soonest = UINT64_MAX;
    *wait_ms = 1000;
    MDB_txn *t = reader_get(s);
    if (t == NULL)
        return 1;
    MDB_cursor *c;
    int found = 0, probe = 0;
    uint8_t first_due[TQ_KEYLEN]; /* of the entries that wait, the first due */
    if (mdb_cursor_open(t, s->ix.tierq, &c) == 0) {
        MDB_val k, v;
        int rc, wrapped = 0;
        if (q->have_cursor) {
            k.mv_size = TQ_KEYLEN;
            k.mv_data = q->cursor;
            rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
            if (rc == 0 && k.mv_size == TQ_KEYLEN && memcmp(k.mv_data, q->cursor, TQ_KEYLEN) == 0)
                rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
        } else {
            rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
        }
        for (size_t seen = 0;; seen++) {
            if (rc == MDB_NOTFOUND && !wrapped) {
                wrapped = 1;
                rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
            }
            if (rc != 0)
                break;
            if (wrapped && q->have_cursor && memcmp(k.mv_data, q->cursor, TQ_KEYLEN) > 0)
                break; /* around once */
            tq_rec r;
            int busy = 0;
            /* one worker at a time per name, whatever the kind of entry: a
             * record's upload and its deletion (or a blob's upload and its
             * refresh) must reach the tier in the order they were queued */
            for (unsigned i = 0; i < q->nworkers; i++)
                busy |= q->busy_used[i] &&
                        memcmp(q->busy[i] + 1, (uint8_t *)k.mv_data + 1, TQ_KEYLEN - 1) == 0;
            if (k.mv_size == TQ_KEYLEN && !busy && idx_tq_decode(&v, &r) == 0 &&
                r.name_len <= sizeof j->name) {
                /* while every try fails, an entry that failed before waits
                 * for a probe's success (its backoff's end alone would make
                 * every such entry a request to a tier that is down) */
                if (r.next_ms > now || (q->in_doubt && r.attempts > 0)) {
                    if (r.next_ms < soonest) {
                        soonest = r.next_ms;
                        memcpy(first_due, k.mv_data, TQ_KEYLEN);
                    }
                } else {
                    job_from(j, k.mv_data, &r);
                    if (!must_wait(s, t, j)) {
                        found = 1;
                        break;
                    }
                }
            }
            rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
        }
        mdb_cursor_close(c);
    }
    if (!found && soonest != UINT64_MAX && q->in_doubt && now >= q->probe_at_ms) {
        /* nothing due, and the tier may be back: the entry due first is
         * tried now (if it is free to go) */
        MDB_val k = {TQ_KEYLEN, first_due}, v;
        tq_rec r;
        if (mdb_get(t, s->ix.tierq, &k, &v) == 0 && idx_tq_decode(&v, &r) == 0 &&
            r.name_len <= sizeof j->name) {
            job_from(j, first_due, &r);
            found = probe = !must_wait(s, t, j);
        }
        uint64_t gap = (uint64_t)PROBE_FIRST_MS << (q->probes < 4 ? q->probes : 4);
        q->probes++;
        q->probe_at_ms = now + (gap < PROBE_MAX_MS ? gap : PROBE_MAX_MS);
    }
    reader_put(s, t);
    j->probe = probe;
    if (found) {
        memcpy(q->busy[me], j->key, TQ_KEYLEN);
        q->busy_used[me] = 1;
        memcpy(q->cursor, j->key, TQ_KEYLEN);
        q->have_cursor = 1;
        return 0;
    }
    q->have_cursor = 0;
    if (soonest <= now) /* (held back, until the next probe) */
        *wait_ms =
            q->probe_at_ms > now && q->probe_at_ms - now < 1000 ? q->probe_at_ms - now : 1000;
    else if (soonest != UINT64_MAX)
        *wait_ms = soonest - now < 1000 ? soonest - now : 1000;
    return 1;
}

/* ---- packs (see the top of the file) ---------------------------------------- */

/* A pack: "CPK1", u32 records, u32 index bytes; the index, a record each:
 * u32 record bytes, the record's SHA-256, u8 ETag bytes, the ETag, u16 name
 * bytes, the record's name (under the tier's prefix); then the records, one
 * after another in the index's order. */
#define PACK_HEAD 12
#define PACK_ENTRY 39 /* an index entry, but for its ETag and name: 4 + 32 + 1 + 2 */
#define PACK_INDEX_MAX (PACK_ENTRIES * (PACK_ENTRY + 255u + KEY_NAME_CAP))
#define PACK_SIZE_MAX (PACK_HEAD + PACK_INDEX_MAX + PACK_BYTES + RECORD_MAX)

static int grow(uint8_t **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 4096;
    while (c < need)
        c *= 2;
    uint8_t *n = realloc(*p, c);
    if (n == NULL)
        return -1;
    *p = n;
    *cap = c;
    return 0;
}

static void pack_clear(pack_buf *b)
{
    free(b->idx);
    free(b->recs);
    memset(b, 0, sizeof *b);
}

/* Uploads a pack taken out of q->packs, and frees it. */
static void pack_send(tier_state *q, pack_buf *b)
{
    size_t len = PACK_HEAD + b->idx_len + b->recs_len;
    uint8_t *p = malloc(len), rnd[8];
    char name[sizeof b->dir + 40], hex[17];
    if (p && RAND_bytes(rnd, sizeof rnd) == 1) {
        memcpy(p, "CPK1", 4);
        util_put_le32(p + 4, b->n);
        util_put_le32(p + 8, (uint32_t)b->idx_len);
        memcpy(p + PACK_HEAD, b->idx, b->idx_len);
        memcpy(p + PACK_HEAD + b->idx_len, b->recs, b->recs_len);
        util_hex(rnd, sizeof rnd, hex);
        /* by time, backwards, so that a listing has the newest first */
        snprintf(name, sizeof name, "%s%016" PRIx64 "-%s", b->dir, UINT64_MAX - util_now_ms(), hex);
        int rc = tier_put(q->t, name, -1, p, len, NULL);
        if (rc == TIER_OK) {
            atomic_fetch_add(&q->packs_sent, 1);
            atomic_fetch_add(&q->pack_records, b->n);
        } else {
            log_msg(LOG_DEBUG, "tier_pack_failed", "%s: %s (its records are in the tier anyway)",
                    name, tier_why(rc));
        }
    }
    free(p);
    pack_clear(b);
    atomic_fetch_sub(&q->packs_sending, 1);
}

/* Takes buffer i out for sending (pack_mu held): 1, or 0 when it is too
 * small to be worth a pack and is dropped instead. */
static int pack_take(tier_state *q, unsigned i, pack_buf *out, unsigned least)
{
    *out = q->packs[i];
    memset(&q->packs[i], 0, sizeof q->packs[i]);
    if (out->n < least) {
        pack_clear(out);
        return 0;
    }
    atomic_fetch_add(&q->packs_sending, 1);
    return 1;
}

/* Adds a key record that went up (rec, its name and the tier's ETag for it)
 * to its namespace's pack; sends the pack when it is full, or another
 * namespace's to make room. */
static void pack_add(tier_state *q, const char *ns, size_t nl, const char *name, const char *etag,
                     const uint8_t *rec, size_t len)
{
    char dir[PACK_DIR_CAP];
    pack_dir(ns, nl, dir);
    size_t name_len = strlen(name), etag_len = strlen(etag);
    if (etag_len == 0 || etag_len > 255 || name_len > 65535)
        return;
    uint8_t rec_sha[32];
    sha256_of(rec, len, rec_sha); /* not under the lock */
    pack_buf out[2];
    int nout = 0;
    uint64_t now = util_now_ms();
    pthread_mutex_lock(&q->pack_mu);
    unsigned i, lru = 0;
    for (i = 0; i < PACK_BUFS && strcmp(q->packs[i].dir, dir) != 0; i++)
        if (q->packs[i].last_ms < q->packs[lru].last_ms)
            lru = i;
    if (i == PACK_BUFS) {
        i = lru; /* the one used least lately (or an empty one) makes room */
        if (q->packs[i].n && pack_take(q, i, &out[nout], PACK_MIN))
            nout++;
        else
            pack_clear(&q->packs[i]);
        memcpy(q->packs[i].dir, dir, strlen(dir) + 1);
        q->packs[i].first_ms = now;
    }
    pack_buf *b = &q->packs[i];
    size_t ie = PACK_ENTRY + etag_len + name_len;
    if (grow(&b->idx, &b->idx_cap, b->idx_len + ie) == 0 &&
        grow(&b->recs, &b->recs_cap, b->recs_len + len) == 0) {
        uint8_t *e = b->idx + b->idx_len;
        util_put_le32(e, (uint32_t)len);
        memcpy(e + 4, rec_sha, 32);
        e[36] = (uint8_t)etag_len;
        memcpy(e + 37, etag, etag_len);
        e[37 + etag_len] = (uint8_t)(name_len & 0xff);
        e[38 + etag_len] = (uint8_t)(name_len >> 8);
        memcpy(e + PACK_ENTRY + etag_len, name, name_len);
        b->idx_len += ie;
        memcpy(b->recs + b->recs_len, rec, len);
        b->recs_len += len;
        b->n++;
        b->last_ms = now;
    }
    if (b->recs_len >= PACK_BYTES || b->n >= PACK_ENTRIES)
        nout += pack_take(q, i, &out[nout], 1);
    /* sent by the worker once its entry is done (which this must not hold
     * up), unless too many are waiting */
    int k = 0;
    for (; k < nout && q->nready < PACK_BUFS; k++)
        q->ready[q->nready++] = out[k];
    pthread_mutex_unlock(&q->pack_mu);
    for (; k < nout; k++)
        pack_send(q, &out[k]);
}

/* Sends the packs pack_add took out. */
static void pack_send_ready(tier_state *q)
{
    for (;;) {
        pack_buf b;
        pthread_mutex_lock(&q->pack_mu);
        int have = q->nready > 0;
        if (have) {
            b = q->ready[--q->nready];
            memset(&q->ready[q->nready], 0, sizeof b); /* b's buffers are b's now */
        }
        pthread_mutex_unlock(&q->pack_mu);
        if (!have)
            return;
        pack_send(q, &b);
    }
}

/* Sends (or drops) what has waited long enough: on an idle queue, every
 * pack of at least PACK_MIN records that has had none added for
 * PACK_IDLE_MS; any pack after PACK_AGE_MS (dropped if it holds one).
 * Returns how many it sent. */
static int pack_flush(tier_state *q, int idle)
{
    uint64_t now = util_now_ms();
    int sent = 0;
    for (unsigned i = 0; i < PACK_BUFS; i++) {
        pack_buf out;
        int send = 0;
        pthread_mutex_lock(&q->pack_mu);
        pack_buf *b = &q->packs[i];
        if (b->n && ((idle && b->n >= PACK_MIN && now - b->last_ms >= PACK_IDLE_MS) ||
                     now - b->first_ms >= PACK_AGE_MS))
            send = pack_take(q, i, &out, 2);
        pthread_mutex_unlock(&q->pack_mu);
        if (send)
            pack_send(q, &out);
        sent += send;
    }
    return sent;
}

/* Packs a drain waits for: those an idle queue sends, and those on their way. */
static uint64_t packs_owed(tier_state *q)
{
    uint64_t n = atomic_load(&q->packs_sending);
    pthread_mutex_lock(&q->pack_mu);
    for (unsigned i = 0; i < PACK_BUFS; i++)
        n += q->packs[i].n >= PACK_MIN;
    pthread_mutex_unlock(&q->pack_mu);
    return n;
}

static int upload_blob(store *s, job *j)
{
    tier_state *q = s->tier_q;
    blob_rec b;
    MDB_txn *t = reader_get(s);
    if (t == NULL)
        return TIER_ERROR;
    int rc = idx_get_blob(t, &s->ix, j->name, &b);
    uint8_t *inl = NULL;
    if (rc == 0 && b.format == BLOB_INLINE) {
        const void *data;
        size_t len;
        if (idx_get_inline(t, &s->ix, j->name, &data, &len) == 0 && (inl = malloc(len + 1)))
            memcpy(inl, data, len);
        else
            rc = MDB_NOTFOUND;
    }
    reader_put(s, t);
    if (rc != 0)
        return rc == MDB_NOTFOUND ? TIER_OK : TIER_ERROR; /* gone here: nothing owed */
    char name[80];
    blob_name(j->name, name);
    tier_meta m;
    int bad = bad_has(q, j->name, 1); /* there, but damaged: put over it */
    if (!bad && tier_head(q->t, name, &m) == TIER_OK && m.codec >= 0 && m.size == b.size &&
        m.length && (m.codec != CODEC_RAW || m.length == m.size)) {
        /* another node uploaded it (stored its own way, perhaps: any
         * encoding of the body will do); a copy that old is renewed, as a
         * read would, for the key records that now point at it */
        if (m.mtime > 0 && tier_copy_old(s, (uint64_t)m.mtime)) {
            if ((rc = tier_refresh(q->t, name)) == TIER_OK)
                atomic_fetch_add(&q->refreshes, 1);
            if (rc != TIER_NOTFOUND) {
                free(inl);
                return rc;
            }
            /* expired since the HEAD: uploaded below */
        } else {
            atomic_fetch_add(&q->skipped, 1);
            free(inl);
            j->found_time = m.mtime > 0 ? (uint32_t)m.mtime : 0; /* (its age counts on) */
            return TIER_OK;
        }
    }
    tier_meta put = {.codec = b.codec, .size = b.size, .length = b.stored};
    uint64_t t0 = util_mono_ns();
    if (inl) {
        rc = tier_put(q->t, name, -1, inl, b.stored, &put);
        free(inl);
    } else {
        char path[PATH_MAX];
        blob_path(s, j->name, path, sizeof path);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return errno == ENOENT ? TIER_OK : TIER_ERROR;
        rc = tier_put(q->t, name, fd, NULL, b.stored, &put);
        close(fd);
    }
    lat_record(q, LAT_UPLOAD, t0);
    if (rc == TIER_OK) {
        atomic_fetch_add(&q->uploads, 1);
        atomic_fetch_add(&q->upload_bytes, b.stored);
    } else if (tier_put_damaged()) {
        bad_note(q, j->name); /* the tier may hold the damaged bytes: the next try puts over them */
    }
    if (rc == TIER_OK && bad) {
        bad_clear(q, j->name);
        atomic_fetch_add(&q->replaced, 1);
        log_msg(LOG_INFO, "tier_blob_replaced", "%s: the tier's damaged copy replaced", name);
    }
    return rc;
}

/* A copy of a blob's stored bytes when there are at most EMBED_MAX of them. */
static uint8_t *small_blob_bytes(store *s, MDB_txn *t, const uint8_t d[32], int *codec, size_t *len)
{
    blob_rec b;
    if (idx_get_blob(t, &s->ix, d, &b) != 0 || b.stored > EMBED_MAX)
        return NULL;
    uint8_t *p = malloc(b.stored ? b.stored : 1);
    if (p == NULL)
        return NULL;
    const void *data;
    size_t n;
    int ok = 0;
    if (b.format == BLOB_INLINE) {
        ok = idx_get_inline(t, &s->ix, d, &data, &n) == 0 && n == b.stored;
        if (ok && n)
            memcpy(p, data, n);
    } else {
        char path[PATH_MAX];
        blob_path(s, d, path, sizeof path);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ok = fd >= 0 && util_pread_all(fd, p, b.stored, 0) == (ssize_t)b.stored;
        if (fd >= 0)
            close(fd);
    }
    if (!ok) {
        free(p);
        return NULL;
    }
    *codec = b.codec;
    *len = b.stored;
    return p;
}

/* Renews the tier's copy of a blob that is still read: a copy onto itself;
 * when the tier lost it (expired), an upload from the local copy. */
static int refresh_blob(store *s, const job *j)
{
    blob_rec b;
    MDB_txn *t = reader_get(s);
    if (t == NULL)
        return TIER_ERROR;
    int rc = idx_get_blob(t, &s->ix, j->name, &b);
    reader_put(s, t);
    if (rc != 0)
        return rc == MDB_NOTFOUND ? TIER_OK : TIER_ERROR;
    char name[80];
    blob_name(j->name, name);
    rc = tier_refresh(s->tier_q->t, name);
    if (rc == TIER_OK)
        atomic_fetch_add(&s->tier_q->refreshes, 1);
    if (rc == TIER_NOTFOUND) {
        job up = *j;
        up.key[0] = TQ_BLOB;
        return upload_blob(s, &up);
    }
    return rc;
}

/* PUTs the record of a key (name) for a change taken at ms (a write, or,
 * as an empty record, a delete; x-amz-meta-cairn-written), unless the
 * tier's record is newer: then that change was overtaken, here or on
 * another node, and must not reach the tier.  The last change of a key
 * wins, whichever node sends its record last; a record without a time (an
 * earlier build's) is older.  *put says whether it went up (with its ETag
 * in etag, if given).  A tier status: an overtaken change is done. */
static int put_key_record(store *s, const char *nskey, size_t nklen, const char *name,
                          const void *rec, size_t len, uint64_t ms, char etag[TIER_ETAG_CAP],
                          int *put)
{
    tier_meta m = {.codec = -1, .written_ms = ms ? ms : 1};
    *put = 0;
    int rc = tier_head(s->tier_q->t, name, &m);
    if (rc == TIER_OK && m.written_ms > ms && m.length > 0) {
        /* a header may be damaged on the way, and a change must not be
         * dropped for that: the record itself (checked, where it carries its
         * SHA-256) says when its key was written */
        void *data = NULL;
        size_t got = 0;
        key_rec there;
        rc = tier_get(s->tier_q->t, name, -1, &data, &got, RECORD_MAX, NULL);
        if (rc == TIER_OK) /* (not a record of this key: put over) */
            m.written_ms = parse_key_head(data, got, nskey, nklen, &there) ? there.mtime_ms : 0;
        free(data);
        if (rc != TIER_OK && rc != TIER_NOTFOUND)
            return rc;
    }
    if (rc == TIER_OK && m.written_ms > util_now_ms() + AHEAD_MAX_MS)
        m.written_ms = 0; /* (no time a node wrote) */
    if (rc == TIER_OK && m.written_ms > ms) {
        log_msg(LOG_DEBUG, "tier_key_overtaken",
                "%s: the tier holds a later change of this key; this one stays here", name);
        return TIER_OK;
    }
    if (rc != TIER_OK && rc != TIER_NOTFOUND)
        return rc;
    m = (tier_meta){.codec = -1, .written_ms = ms ? ms : 1};
    rc = tier_put_tagged(s->tier_q->t, name, -1, rec, len, &m, etag);
    *put = rc == TIER_OK;
    return rc;
}

/* Puts the record of namespace ns (a bucket's: its date and settings), as
 * this node has it, into the tier; TIER_NOTFOUND for one it has none of. */
static int put_ns_record(store *s, const char *ns)
{
    char name[NS_NAME_CAP];
    uint64_t created;
    void *meta = NULL;
    size_t meta_len = 0;
    int rc = ns_get_local(s, ns, &created, &meta, &meta_len);
    if (rc == STORE_NOTFOUND)
        return TIER_NOTFOUND;
    if (rc != STORE_OK)
        return TIER_ERROR;
    size_t len;
    uint8_t *rec = ns_record(created, meta, meta_len, &len);
    free(meta);
    if (rec == NULL)
        return TIER_ERROR;
    ns_name(ns, name);
    rc = tier_put(s->tier_q->t, name, -1, rec, len, NULL);
    free(rec);
    return rc;
}

static int upload_ns(store *s, const job *j)
{
    char ns[130];
    if (j->name_len >= sizeof ns)
        return TIER_OK;
    memcpy(ns, j->name, j->name_len);
    ns[j->name_len] = '\0';
    /* made here while the tier could not be asked, it may be a bucket the
     * fleet has: then that one's date and settings are taken here, and the
     * tier's record stays as it is */
    char name[NS_NAME_CAP];
    ns_name(ns, name);
    void *data = NULL;
    size_t len = 0;
    int rc = tier_get(s->tier_q->t, name, -1, &data, &len, RECORD_MAX, NULL);
    if (rc == TIER_OK && ns_record_ok(data, len)) {
        int st = ns_take(s, ns, data, len, 1);
        free(data);
        return st == STORE_OK || st == STORE_NOTFOUND ? TIER_OK : TIER_ERROR;
    }
    free(data);
    if (rc != TIER_OK && rc != TIER_NOTFOUND)
        return rc; /* (asked again at the next try: TIER_BAD, damaged on the way) */
    /* none there, or not a record: this one */
    rc = put_ns_record(s, ns);
    return rc == TIER_NOTFOUND ? TIER_OK : rc; /* (deleted here since) */
}

/* After a key record of namespace ns went up: the namespace's own record
 * goes up again once per --tier-refresh-after (a day, without refreshes),
 * so that a bucket in use outlives the lifecycle rule that expires unused
 * entries, and one the tier lost (removed by hand, a bucket made anew) is
 * back for the nodes that do not know it yet.  A node that only read keys of
 * the bucket (a refresh puts their records) learns it from the tier first;
 * it never puts back one the tier does not have.  A failure is tried again
 * at the next key record. */
static void ns_keep(store *s, const char *nskey, size_t nklen)
{
    tier_state *q = s->tier_q;
    const char *zero = memchr(nskey, '\0', nklen);
    size_t nl = zero ? (size_t)(zero - nskey) : 0;
    char ns[130];
    if (!ns_declared(nskey, nl) || nl >= sizeof ns)
        return; /* (only buckets have records) */
    memcpy(ns, nskey, nl);
    ns[nl] = '\0';
    uint64_t h = util_fnv1a(ns, nl), now = util_now_ms(),
             every = s->cfg.tier_refresh_ms ? s->cfg.tier_refresh_ms : NS_KEEP_MS;
    /* its slot in a set of NS_KEPT_WAYS, else the set's oldest (taken over) */
    unsigned set = (unsigned)((h >> 8) % (NS_KEPT_SLOTS / NS_KEPT_WAYS)) * NS_KEPT_WAYS, i = set;
    h |= 1; /* (never 0: an empty slot) */
    pthread_mutex_lock(&q->ns_kept_mu);
    for (unsigned w = set; w < set + NS_KEPT_WAYS; w++) {
        if (q->ns_kept[w].hash == h) {
            i = w;
            break;
        }
        if (q->ns_kept[w].at_ms < q->ns_kept[i].at_ms)
            i = w;
    }
    int due = q->ns_kept[i].hash != h || now - q->ns_kept[i].at_ms >= every;
    pthread_mutex_unlock(&q->ns_kept_mu);
    if (!due || queued(s, TQ_NS, ns, nl))
        return; /* (the bucket's own upload, upload_ns, goes first: it may take the fleet's) */
    int rc = put_ns_record(s, ns), known = STORE_OK;
    if (rc == TIER_NOTFOUND) {
        known = tier_resolve_ns(s, ns);
        if (known == STORE_OK)
            rc = put_ns_record(s, ns);
        else if (known == STORE_NOTFOUND)
            rc = TIER_OK; /* not in the tier (deleted, or lost): left so, for a while */
    }
    if (rc != TIER_OK)
        return;
    if (known != STORE_NOTFOUND && ns_get_local(s, ns, NULL, NULL, NULL) == STORE_NOTFOUND) {
        /* the bucket was deleted here while its record went up: the
         * delete's own request may have gone first (it is queued by the
         * bucket's name, this by a key's), so the record goes again */
        char name[NS_NAME_CAP];
        ns_name(ns, name);
        tier_delete(q->t, name);
        return;
    }
    pthread_mutex_lock(&q->ns_kept_mu);
    q->ns_kept[i].hash = h;
    q->ns_kept[i].at_ms = now;
    pthread_mutex_unlock(&q->ns_kept_mu);
}

/* Another node's record of the same key, older than ours but on its way as
 * ours went up (its HEAD before our PUT landed, its PUT after), would be
 * what the tier keeps, and the fleet would read that change, not the later
 * one, for good.  So a record put is checked again once any such PUT has
 * landed or failed (its HEAD, a GET and its PUT: three --tier-timeouts,
 * and a second): a tier that holds an older change of the key than the
 * copy here gets the copy's record again (revalidate_one).  Best effort:
 * past REVAL_QUEUE records waiting, or with --tier-revalidate 0 (no thread
 * to check), none is. */
static void recheck_later(tier_state *q, const char *nskey, size_t nklen)
{
    if (q->reval == NULL || content_addressed(nskey, nklen))
        return;
    uint64_t due = util_mono_ns() + ((uint64_t)tier_timeout_ms(q->t) * 3 + 1000) * 1000000u;
    pthread_mutex_lock(&q->reval_mu);
    if (!q->reval_stop && ring_push(&q->later, nskey, nklen, due) == 0)
        pthread_cond_signal(&q->reval_cv);
    pthread_mutex_unlock(&q->reval_mu);
}

static int upload_key(store *s, const job *j)
{
    MDB_txn *t = reader_get(s);
    if (t == NULL)
        return TIER_ERROR;
    key_rec kr;
    uint8_t *rec = NULL, *blob = NULL;
    size_t len = 0, blob_len = 0;
    int codec = -1;
    int rc = idx_get_key(t, &s->ix, j->name, j->name_len, &kr);
    if (rc == 0) {
        blob = small_blob_bytes(s, t, kr.digest, &codec, &blob_len);
        rec = key_record((const char *)j->name, j->name_len, &kr, codec, blob, blob_len, &len);
    }
    reader_put(s, t);
    free(blob);
    if (rc != 0)
        return rc == MDB_NOTFOUND ? TIER_OK : TIER_ERROR;
    if (rec == NULL)
        return TIER_ERROR;
    char name[KEY_NAME_CAP], etag[TIER_ETAG_CAP];
    key_name(s->tier_q, j->name, j->name_len, name);
    int put;
    rc = put_key_record(s, (const char *)j->name, j->name_len, name, rec, len, kr.mtime_ms, etag,
                        &put);
    if (rc == TIER_OK)
        ns_keep(s, (const char *)j->name, j->name_len);
    if (put)
        recheck_later(s->tier_q, (const char *)j->name, j->name_len);
    const char *zero = memchr(j->name, '\0', j->name_len);
    if (put && codec >= 0 && zero) /* it carries its blob: packed too, for warmups */
        pack_add(s->tier_q, (const char *)j->name, (size_t)(zero - (const char *)j->name), name,
                 etag, rec, len);
    free(rec);
    return rc;
}

/* A delete goes up as an empty record of its time (the entry's bytes), not
 * as a DELETE: a write it overtook, still on its way from another node,
 * must not bring the key back (put_key_record). */
static int upload_delete(store *s, const job *j)
{
    char name[KEY_NAME_CAP];
    key_name(s->tier_q, j->name, j->name_len, name);
    int put, rc = put_key_record(s, (const char *)j->name, j->name_len, name, "", 0,
                                 j->bytes ? j->bytes : util_now_ms(), NULL, &put);
    atomic_fetch_add(&s->tier_q->deletes_put, 1); /* (before its entry goes) */
    if (rc == TIER_OK && atomic_load(&s->tier_q->legacy) != 0) {
        key_name_v1(j->name, j->name_len, name); /* a record an earlier build wrote */
        rc = tier_delete(s->tier_q->t, name);
    }
    return rc;
}

static int do_job(store *s, job *j)
{
    char name[NS_NAME_CAP];
    switch (j->key[0]) {
    case TQ_BLOB:
        return j->name_len == 32 ? upload_blob(s, j) : TIER_OK;
    case TQ_REFRESH:
        return j->name_len == 32 ? refresh_blob(s, j) : TIER_OK;
    case TQ_KEY:
        return upload_key(s, j);
    case TQ_KEY_DEL:
        return upload_delete(s, j);
    case TQ_NS:
        return upload_ns(s, j);
    case TQ_NS_DEL: {
        char ns[130];
        snprintf(ns, sizeof ns, "%.*s", (int)j->name_len, (const char *)j->name);
        ns_name(ns, name);
        return tier_delete(s->tier_q->t, name);
    }
    default:
        return TIER_OK; /* an entry of a later version: dropped */
    }
}

/* The tier answered again: every waiting entry is due now. */
static void tier_hurry(store *s)
{
    uint64_t n = 0;
    for (;;) {
        op o = {0};
        o.kind = OP_TIER_HURRY;
        o.target = HURRY_PER_TXN;
        if (submit_and_wait(s, &o) != STORE_OK)
            break;
        n += o.target;
        if (o.target < HURRY_PER_TXN)
            break;
    }
    if (n > 0) {
        log_msg(LOG_INFO, "tier_back", "the tier answers again: %" PRIu64 " waiting entries go now",
                n);
        tier_kick(s);
    }
}

void store_tier_retry_now(store *s)
{
    tier_state *q = s->tier_q;
    if (q == NULL)
        return;
    pthread_mutex_lock(&q->mu);
    q->in_doubt = q->hurry_asked = 1;
    q->probes = 0;
    q->probe_at_ms = 0;
    q->kicks++;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

static uint64_t backoff_ms(uint32_t attempts)
{
    uint64_t ms = BACKOFF_FIRST_MS;
    for (uint32_t i = 0; i < attempts && ms < BACKOFF_MAX_MS; i++)
        ms *= 2;
    if (ms > BACKOFF_MAX_MS)
        ms = BACKOFF_MAX_MS;
    return ms - ms / 4 + (uint64_t)rand() % (ms / 2 + 1); /* +-25%: nodes do not move in step */
}

static int v1_seen(void *arg, const char *name)
{
    const char *rest = name + 5; /* after "keys/" */
    if (strlen(rest) == 64 && util_is_hex64(rest, 64)) {
        *(int *)arg = 1;
        return 1;
    }
    return 0;
}

/* Sets q->legacy: are there key records in the v1 layout?  They sit
 * directly under keys/, where v2 has only one folder per namespace.  Looked
 * for again every 10 minutes while there are none (a node of an earlier
 * build may still be writing them during an upgrade). */
static void look_for_v1(tier_state *q)
{
    int seen = 0;
    int rc = tier_list_delimited(q->t, "keys/", "/", v1_seen, &seen);
    uint64_t now = util_now_ms();
    if (rc == TIER_OK) {
        if (seen && atomic_load(&q->legacy) != 1)
            log_msg(LOG_INFO, "tier_v1_records",
                    "the tier holds key records of an earlier layout: they are read too");
        atomic_store(&q->legacy, seen);
        q->legacy_next_ms = now + 600000;
        q->legacy_failures = 0;
    } else {
        if (q->legacy_failures++ % 120 == 0) /* at first, then about hourly */
            log_msg(LOG_WARN, "tier_list_failed",
                    "cannot list the tier's key records (%s; does the key have "
                    "s3:ListBucket?): every miss also looks for a record of the earlier layout",
                    tier_why(rc));
        q->legacy_next_ms = now + 30000;
    }
}

static uint64_t queue_entries(store *s)
{
    MDB_txn *t = reader_get(s);
    if (t == NULL)
        return 0;
    MDB_stat st;
    uint64_t n = mdb_stat(t, s->ix.tierq, &st) == 0 ? st.ms_entries : 0;
    reader_put(s, t);
    return n;
}

static void *worker_main(void *arg)
{
    tier_thread_uploads(); /* (a stop's tier_abort_reads lets a drain go on) */
    worker_arg *wa = arg;
    store *s = wa->s;
    tier_state *q = s->tier_q;
    job j;
    pthread_mutex_lock(&q->mu);
    while (!q->stop) {
        uint64_t wait_ms;
        if (wa->me == 0 && atomic_load(&q->legacy) != 1 && util_now_ms() >= q->legacy_next_ms) {
            pthread_mutex_unlock(&q->mu);
            look_for_v1(q);
            pthread_mutex_lock(&q->mu);
            continue;
        }
        if (pick(s, wa->me, &j, &wait_ms) != 0) {
            if (wa->me == 0) {
                /* nothing due: packs that waited long enough go now */
                unsigned kicks = q->kicks;
                pthread_mutex_unlock(&q->mu);
                pack_flush(q, queue_entries(s) == 0);
                pthread_mutex_lock(&q->mu);
                if (q->stop)
                    break;
                if (q->kicks != kicks)
                    continue; /* work came meanwhile */
            }
            struct timespec ts = util_time_in(CLOCK_REALTIME, wait_ms * 1000000ULL);
            pthread_cond_timedwait(&q->cv, &q->mu, &ts);
            continue;
        }
        pthread_mutex_unlock(&q->mu);

        int rc = do_job(s, &j);
        if (rc == TIER_NOTFOUND && tier_makes_bucket(q->t)) {
            /* a cairnd parent answers 404 for its bucket when it was down
             * as we started, or came back on an empty folder: ours to make */
            uint64_t now = util_now_ms();
            pthread_mutex_lock(&q->mu);
            int ask = now - q->bucket_made_ms >= 10000;
            if (ask)
                q->bucket_made_ms = now;
            pthread_mutex_unlock(&q->mu);
            int made = 0;
            if (ask && tier_ensure_bucket(q->t, &made) == TIER_OK && made) {
                log_msg(LOG_WARN, "tier_bucket",
                        "made the tier's bucket, which was missing (a parent that lost its "
                        "folder lost what this node sent it: a node wiped now loses it too)");
                /* the records of the buckets held here go up again, so that
                 * the other nodes know them (a lost record otherwise reads
                 * as a bucket deleted elsewhere, for --tier-refresh-after);
                 * the keys go up again as nodes that hold them read them
                 * (revalidation finds their records lost) */
                op all = {.kind = OP_TIER_NS_ALL};
                if (submit_and_wait(s, &all) == STORE_OK && all.target)
                    log_msg(LOG_INFO, "tier_bucket",
                            "the records of %" PRIu64 " buckets held here go up again", all.target);
                rc = do_job(s, &j);
            }
        }
        op o = {0};
        o.kind = rc == TIER_OK ? OP_TIER_DONE : OP_TIER_RETRY;
        o.nskey = (char *)j.key;
        o.nklen = TQ_KEYLEN;
        o.seq = j.seq;
        o.tier_time = j.found_time;
        if (rc != TIER_OK && tier_stopping(q->t)) {
            o.next_ms = util_now_ms(); /* not the tier's failure: the next start tries it */
            log_msg(LOG_INFO, "tier_upload_stopped",
                    "'%c' entry cut short by the stop; it stays queued", j.key[0]);
        } else if (rc != TIER_OK) {
            atomic_fetch_add(&q->upload_failures, 1);
            o.next_ms = util_now_ms() + backoff_ms(j.attempts);
            if (j.attempts == 0 || j.attempts % 10 == 0)
                log_msg(LOG_WARN, "tier_upload_failed", "'%c' entry, attempt %u: %s; retrying",
                        j.key[0], j.attempts + 1, tier_why(rc));
        }
        submit_and_wait(s, &o);
        pack_send_ready(q);
        if (rc == TIER_OK)
            tier_abort_abandoned(q->t); /* (the tier answers: what it was left with goes) */

        pthread_mutex_lock(&q->mu);
        int back = 0;
        if (rc == TIER_ERROR || rc == TIER_DENIED ||
            (rc == TIER_NOTFOUND && tier_makes_bucket(q->t))) {
            /* (the network, a timeout, 5xx, keys refused or a clock off, 401
             * and 403: not an answer about this entry) */
            if (++q->fail_streak >= 2 && !q->in_doubt) {
                q->in_doubt = 1; /* every try fails: the tier is down, or its bucket gone */
                q->probes = 0;
                q->probe_at_ms = util_now_ms() + PROBE_FIRST_MS;
            }
        } else if (rc == TIER_OK) {
            /* an entry got through while every try failed (or a drain or a
             * start asked): the tier is back.  A probe, or a new entry: with
             * writes coming, something is always due and no probe is tried,
             * and the first success clearing the doubt alone left the
             * entries that failed to wait out their backoff, minutes.  A
             * tier that throttles (some 503s) gets one hurry per
             * HURRY_GAP_MS at most */
            uint64_t now = util_now_ms();
            int asked = q->hurry_asked;
            back = q->in_doubt && (asked || now - q->hurried_ms >= HURRY_GAP_MS);
            q->fail_streak = 0;
            if (back) { /* (else still in doubt: the next success after the gap says) */
                q->in_doubt = 0;
                if (!asked) /* (one asked for is not counted against the gap) */
                    q->hurried_ms = now;
                q->hurry_asked = 0;
            }
        }
        if (back) {
            pthread_mutex_unlock(&q->mu);
            tier_hurry(s);
            pthread_mutex_lock(&q->mu);
        }
        q->busy_used[wa->me] = 0;
        pthread_cond_broadcast(&q->cv); /* the drain, and key records waiting for this blob */
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

static void *reval_main(void *arg);

int tier_start(store *s, char *err, size_t errlen)
{
    tier_state *q = calloc(1, sizeof *q);
    if (q == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    q->t = s->cfg.tier;
    q->seq = util_now_ms() << 16; /* above any sequence number of an earlier run */
    q->name_max = tier_name_max(q->t);
    atomic_init(&q->legacy, -1);
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    pthread_mutex_init(&q->gate_mu, NULL);
    pthread_cond_init(&q->gate_cv, NULL);
    pthread_mutex_init(&q->pack_mu, NULL);
    pthread_mutex_init(&q->reval_mu, NULL);
    pthread_condattr_t ca; /* (recheck_later's waits: a step of the wall clock moves none) */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->reval_cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&q->bad_mu, NULL);
    pthread_mutex_init(&q->ns_kept_mu, NULL);
    pthread_mutex_init(&q->heads_mu, NULL);
    s->tier_q = q;
    store_tier_retry_now(s); /* entries that waited when it stopped: is the tier back? */
    unsigned n = s->cfg.tier_workers ? s->cfg.tier_workers : 4;
    if (n > MAX_WORKERS)
        n = MAX_WORKERS;
    for (unsigned i = 0; i < n; i++) {
        q->args[i] = (worker_arg){s, i};
        if (pthread_create(&q->workers[i], NULL, worker_main, &q->args[i]) != 0)
            break;
        q->nworkers++;
    }
    if (q->nworkers == 0) {
        snprintf(err, errlen, "cannot start the tier's workers");
        return -1;
    }
    if (s->cfg.tier_revalidate_ms && (q->reval = calloc(REVAL_SLOTS, sizeof *q->reval)) != NULL)
        while (q->reval_started < REVAL_THREADS &&
               pthread_create(&q->reval_threads[q->reval_started], NULL, reval_main, s) == 0)
            q->reval_started++;
    if (q->reval_started == 0) {
        free(q->reval); /* (no thread to check: nothing is queued) */
        q->reval = NULL;
    }
    uint64_t queued = queue_entries(s);
    log_msg(LOG_INFO, "tier", "cold tier %s, %u workers, %" PRIu64 " queued entries",
            tier_describe(q->t), q->nworkers, queued);
    return 0;
}

void store_tier_drain(store *s)
{
    tier_state *q = s->tier_q;
    if (q == NULL || q->drained)
        return;
    q->drained = 1;
    uint64_t end = util_now_ms() + s->cfg.tier_drain_ms, n;
    if (s->cfg.tier_drain_ms && (n = queue_entries(s) + packs_owed(q)) > 0) {
        log_msg(LOG_INFO, "tier_drain",
                "waiting up to %" PRIu64 " ms for %" PRIu64 " queued entries", s->cfg.tier_drain_ms,
                n);
        store_tier_retry_now(s);
        while ((n = queue_entries(s) + packs_owed(q)) > 0 && util_now_ms() < end)
            usleep(50000);
        log_msg(n ? LOG_WARN : LOG_INFO, "tier_drained", "%" PRIu64 " entries left in the queue",
                n);
    }
}

void tier_stop(store *s)
{
    tier_state *q = s->tier_q;
    if (q == NULL)
        return;
    store_tier_drain(s);
    pthread_mutex_lock(&q->mu);
    q->stop = 1;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    pthread_mutex_lock(&q->reval_mu);
    q->reval_stop = 1;
    pthread_cond_broadcast(&q->reval_cv);
    pthread_mutex_unlock(&q->reval_mu);
    /* what is under way now ends within a second, not at the end of its
     * budget (a large blob's upload to a hung tier: minutes): what it was
     * for stays queued, for the next start */
    tier_abort_all(q->t);
    for (unsigned i = 0; i < q->nworkers; i++)
        pthread_join(q->workers[i], NULL);
    for (unsigned i = 0; i < q->reval_started; i++)
        pthread_join(q->reval_threads[i], NULL);
    q->reval_started = 0;
    /* fetches still running hand their fill to the committer: wait for them */
    while (atomic_load(&q->streams) > 0)
        usleep(10000);
}

void tier_thread_end(store *s)
{
    if (s->tier_q != NULL)
        tier_thread_done();
}

void tier_free(store *s)
{
    tier_state *q = s->tier_q;
    if (q == NULL)
        return;
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->gate_mu);
    pthread_cond_destroy(&q->gate_cv);
    for (unsigned i = 0; i < PACK_BUFS; i++) {
        pack_clear(&q->packs[i]); /* not sent: copies only */
        pack_clear(&q->ready[i]);
    }
    pthread_mutex_destroy(&q->pack_mu);
    pthread_mutex_destroy(&q->reval_mu);
    pthread_mutex_destroy(&q->bad_mu);
    pthread_mutex_destroy(&q->ns_kept_mu);
    pthread_mutex_destroy(&q->heads_mu);
    for (unsigned i = 0; i < HEAD_SLOTS; i++)
        head_free(q->heads[i]);
    for (unsigned i = 0; i < FLEET_SNAPS; i++)
        snap_free(q->snaps[i]); /* (no listing runs any more) */
    pthread_cond_destroy(&q->reval_cv);
    ring_free(&q->reval_wait);
    ring_free(&q->later);
    free(q->reval);
    free(q);
    s->tier_q = NULL;
}

void tier_stats(store *s, store_stats *st)
{
    tier_state *q = s->tier_q;
    if (q == NULL)
        return;
    st->tier_queue = queue_entries(s);
    st->tier_packs_owed = packs_owed(q);
    st->tier_packs = atomic_load(&q->packs_sent);
    st->tier_pack_records = atomic_load(&q->pack_records);
    st->tier_pack_hits = atomic_load(&q->pack_hits);
    st->tier_uploads = atomic_load(&q->uploads);
    st->tier_upload_bytes = atomic_load(&q->upload_bytes);
    st->tier_upload_failures = atomic_load(&q->upload_failures);
    st->tier_skipped = atomic_load(&q->skipped);
    st->tier_refreshes = atomic_load(&q->refreshes);
    st->tier_hits = atomic_load(&q->hits);
    st->tier_misses = atomic_load(&q->misses);
    st->tier_errors = atomic_load(&q->errors);
    st->tier_fetched_bytes = atomic_load(&q->fetched_bytes);
    st->tier_corrupt = atomic_load(&q->corrupt);
    st->tier_replaced = atomic_load(&q->replaced);
    st->tier_revalidations = atomic_load(&q->revalidations);
    st->tier_revalidated_stale = atomic_load(&q->revalidated_stale);
    st->tier_revalidated_lost = atomic_load(&q->revalidated_lost);
    tier_last_failure(q->t, st->tier_last_error, sizeof st->tier_last_error,
                      &st->tier_last_error_ms);
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i <= STORE_TIER_LAT_N; i++)
            st->tier_lat[k][i] = atomic_load(&q->lat[k][i]);
        st->tier_lat_sum_ns[k] = atomic_load(&q->lat_sum_ns[k]);
    }
}

/* ---- read-through ------------------------------------------------------------ */

/* The gate of id (gate_mu held), or NULL. */
static gate *gate_find(tier_state *q, const uint8_t id[TQ_KEYLEN])
{
    gate *g = q->gates;
    while (g && memcmp(g->id, id, TQ_KEYLEN) != 0)
        g = g->next;
    return g;
}

/* Somebody waits (gate_mu held) for the commit of g's fill: the committer
 * is hurried now if the fill is queued, else by gate_queued. */
static void gate_hurry(store *s, gate *g)
{
    g->hurry = 1;
    if (g->queued) {
        store_hurry(s);
    } else if (g->follows) {
        gate *o = gate_find(s->tier_q, g->follow); /* (a stream's owner follows nobody) */
        if (o && o->gen == g->follow_gen)
            gate_hurry(s, o);
    }
}

/* The fill of the gate of id, taking gen, is in the committer's queue
 * now: hurried if somebody waits for it.  (It may have committed, and the
 * gate gone, already.) */
static void gate_queued(store *s, const uint8_t id[TQ_KEYLEN], uint64_t gen)
{
    tier_state *q = s->tier_q;
    pthread_mutex_lock(&q->gate_mu);
    gate *g = gate_find(q, id);
    int hurry = 0;
    if (g && g->gen == gen) {
        g->queued = 1;
        hurry = g->hurry;
        pthread_cond_broadcast(&q->gate_cv); /* readers waiting for it may hurry it */
    }
    pthread_mutex_unlock(&q->gate_mu);
    if (hurry)
        store_hurry(s);
}

/* Waits (gate_mu held) until nobody holds the gate of id, hurrying its
 * commit; 1 if it waited, and *waited_for (if not NULL) is the gen of the
 * last taking waited for. */
static int gate_wait(store *s, const uint8_t id[TQ_KEYLEN], uint64_t *waited_for)
{
    tier_state *q = s->tier_q;
    int waited = 0;
    for (gate *g; (g = gate_find(q, id)) != NULL; waited = 1) {
        if (waited_for)
            *waited_for = g->gen;
        gate_hurry(s, g);
        pthread_cond_wait(&q->gate_cv, &q->gate_mu);
    }
    return waited;
}

/* How the taking gen of a gate ended (gate_mu held), if it is still on
 * record; GATE_LOOK_AGAIN if it is not, or if nothing was waited for. */
static int gate_outcome(const tier_state *q, int waited, uint64_t gen)
{
    return waited && q->gate_done[gen % GATE_OUTCOMES].gen == gen
               ? q->gate_done[gen % GATE_OUTCOMES].outcome
               : GATE_LOOK_AGAIN;
}

/* Takes the gate of id (gate_mu held) unless it waited for it: 1 if this
 * thread is the one to fetch, 0 if another was and has finished (look
 * again locally). */
static int gate_take(tier_state *q, const uint8_t id[TQ_KEYLEN], int waited, uint64_t *gen)
{
    gate *g = waited ? NULL : calloc(1, sizeof *g);
    if (g) {
        g->gen = *gen = ++q->gate_gen;
        memcpy(g->id, id, TQ_KEYLEN);
        g->next = q->gates;
        q->gates = g;
    }
    return g != NULL;
}

/* Enters the gate of id: 1 if this thread is the one to ask the tier
 * (*gen: which taking of the gate this is); 0 if another one did
 * meanwhile, and *outcome (if not NULL) is how that ended (GATE_*). */
static int gate_enter(store *s, const uint8_t id[TQ_KEYLEN], int *outcome, uint64_t *gen)
{
    tier_state *q = s->tier_q;
    pthread_mutex_lock(&q->gate_mu);
    uint64_t waited_for = 0;
    int waited = gate_wait(s, id, &waited_for);
    if (outcome)
        *outcome = gate_outcome(q, waited, waited_for);
    int entered = gate_take(q, id, waited, gen);
    pthread_mutex_unlock(&q->gate_mu);
    return entered;
}

/* Leaves the gate of id; outcome (GATE_*) is what the readers that waited
 * for it make of it. */
static void gate_leave(tier_state *q, const uint8_t id[TQ_KEYLEN], int outcome)
{
    pthread_mutex_lock(&q->gate_mu);
    for (gate **p = &q->gates; *p; p = &(*p)->next) {
        if (memcmp((*p)->id, id, TQ_KEYLEN) == 0) {
            gate *g = *p;
            *p = g->next;
            q->gate_done[g->gen % GATE_OUTCOMES].gen = g->gen;
            q->gate_done[g->gen % GATE_OUTCOMES].outcome = outcome;
            store_entry_clear(&g->share); /* (and its reference to the fill) */
            free(g);
            break;
        }
    }
    pthread_cond_broadcast(&q->gate_cv);
    pthread_mutex_unlock(&q->gate_mu);
}

/* Is (type, name) in the queue, in transaction t? */
static int tq_has(store *s, MDB_txn *t, char type, const void *name, size_t len)
{
    uint8_t k[TQ_KEYLEN];
    tq_rec r;
    tq_key(type, name, len, k);
    return idx_tq_get(t, &s->ix, k, sizeof k, &r) == 0;
}

/* ... in a read snapshot of its own. */
static int queued(store *s, char type, const void *name, size_t len)
{
    MDB_txn *t = reader_get(s);
    if (t == NULL)
        return 0;
    int rc = tq_has(s, t, type, name, len);
    reader_put(s, t);
    return rc;
}

static int have_blob(store *s, const uint8_t d[32])
{
    blob_rec b;
    MDB_txn *t = reader_get(s);
    if (t == NULL)
        return 0;
    int rc = idx_get_blob(t, &s->ix, d, &b);
    reader_put(s, t);
    return rc == 0;
}

/* Takes a fetched blob file (fd, written from offset 0) into o once it
 * checks out: every frame, and the SHA-256 of the body. */
static int adopt_file(store *s, const key_rec *kr, const tier_meta *m, int fd, int anon, op *o)
{
    int rc = TIER_OK, v = m->codec < 0 || m->size != kr->size
                              ? CODEC_ERR_CORRUPT
                              : codec_verify(fd, m->codec, m->size, m->length, kr->digest);
    if (v == CODEC_ERR_CORRUPT)
        rc = TIER_BAD;
    else if (v != 0)
        rc = TIER_LOCAL; /* (reading the copy here failed: not the tier's copy) */
    if (rc == TIER_OK && s->cfg.fsync && fdatasync(fd) != 0)
        rc = TIER_LOCAL;
    op_take_file(o, fd, anon);
    if (rc != TIER_OK) {
        op_release_file(o);
        return rc;
    }
    o->cr.stored = m->length;
    o->cr.codec = m->codec;
    atomic_fetch_add(&s->tier_q->fetched_bytes, m->length);
    return TIER_OK;
}

/* Writes fetched bytes (data, owned from here) to a temporary file and takes
 * it into o: checked from the file, unless `checked` says the bytes were
 * already (one frame, readable without a seek table). */
static int bytes_to_file(store *s, const key_rec *kr, const tier_meta *m, void *data, op *o,
                         int checked)
{
    int anon;
    int fd = store_tmp_open(s, o->tmp, &anon);
    int rc = fd < 0 ? -1 : util_write_all(fd, data, m->length);
    free(data);
    if (rc == 0 && checked && s->cfg.fsync && fdatasync(fd) != 0)
        rc = -1;
    if (rc != 0) {
        if (fd >= 0)
            op_take_file(o, fd, anon);
        op_release_file(o);
        return TIER_LOCAL;
    }
    if (!checked)
        return adopt_file(s, kr, m, fd, anon, o);
    op_take_file(o, fd, anon);
    o->cr.stored = m->length;
    o->cr.codec = m->codec;
    atomic_fetch_add(&s->tier_q->fetched_bytes, m->length);
    return TIER_OK;
}

/* Takes a blob's stored bytes, fetched into memory (data, which this owns
 * from here), into o once they check out: kept inline when the body is small
 * enough, else written to a temporary file. */
static int adopt_bytes(store *s, const key_rec *kr, const tier_meta *m, void *data, op *o,
                       uint8_t **inl)
{
    if (m->codec < 0 || m->size != kr->size) {
        free(data);
        return TIER_BAD;
    }
    if (kr->size > CODEC_FRAME_SIZE)
        return bytes_to_file(s, kr, m, data, o, 0); /* several frames: checked from the file */
    uint8_t *body = malloc(kr->size ? kr->size : 1), d[32];
    if (body == NULL) {
        free(data);
        return TIER_LOCAL;
    }
    int v = codec_decode_small(m->codec, data, m->length, body, kr->size);
    if (v == 0)
        sha256_of(body, kr->size, d);
    free(body);
    if (v != 0 && v != CODEC_ERR_CORRUPT) {
        free(data);
        return TIER_LOCAL; /* (no memory to decode it here) */
    }
    if (v != 0 || memcmp(d, kr->digest, 32) != 0) {
        free(data);
        return TIER_BAD;
    }
    /* Kept in the index when small enough to have come in memory: up to
     * inline_max bytes of body, or EMBED_MAX stored (a cold read should not
     * wait for a file to be made and synced); unless files are wanted for all. */
    if (kr->size > s->cfg.inline_max && (s->cfg.inline_max == 0 || m->length > EMBED_MAX))
        return bytes_to_file(s, kr, m, data, o, 1);
    *inl = data;
    o->inl = data;
    o->inl_len = m->length;
    o->cr.stored = m->length;
    o->cr.codec = m->codec;
    atomic_fetch_add(&s->tier_q->fetched_bytes, m->length);
    return TIER_OK;
}

/* A fetch's rc, but a body that failed its checks (TIER_BAD) in an answer
 * that did not say its length is no proof of damage: it may have been cut
 * short, a failed read (TIER_ERROR), neither counted nor remembered. */
static int cut_or_damaged(int rc, const tier_meta *m)
{
    return rc == TIER_BAD && m->unsized ? TIER_ERROR : rc;
}

/* Fetches the blob of kr into o (inline bytes, or a temporary file), checked
 * against its digest.  TIER_OK, or a tier status. */
static int fetch_blob_once(store *s, const key_rec *kr, op *o, uint8_t **inl)
{
    tier_state *q = s->tier_q;
    char name[80];
    tier_meta m;
    blob_name(kr->digest, name);
    uint64_t max = kr->size + kr->size / 16 + (1u << 20); /* the stored form never grows more */
    uint64_t t0 = util_mono_ns();
    if (kr->size <= s->cfg.inline_max) {
        void *data = NULL;
        size_t len = 0;
        int rc = tier_get(q->t, name, -1, &data, &len, max, &m);
        lat_record(q, LAT_READ, t0);
        if (rc == TIER_OK) { /* (TIER_BAD: longer than any encoding of the body, or damaged) */
            m.length = len;
            o->tier_time = (uint32_t)m.mtime;
            rc = adopt_bytes(s, kr, &m, data, o, inl);
        }
        return cut_or_damaged(rc, &m);
    }
    int anon;
    int fd = store_tmp_open(s, o->tmp, &anon);
    if (fd < 0)
        return TIER_LOCAL;
    int rc = tier_get(q->t, name, fd, NULL, NULL, max, &m);
    lat_record(q, LAT_READ, t0);
    o->tier_time = (uint32_t)m.mtime;
    if (rc != TIER_OK) {
        op_take_file(o, fd, anon);
        op_release_file(o);
        return rc;
    }
    return cut_or_damaged(adopt_file(s, kr, &m, fd, anon, o), &m);
}

/* Fetches the blob of kr into o, checked; TIER_BAD if the tier's copy is
 * damaged (counted, and remembered: fetch_ended). */
static int fetch_blob(store *s, const key_rec *kr, op *o, uint8_t **inl)
{
    int rc = fetch_blob_once(s, kr, o, inl);
    fetch_ended(s->tier_q, kr->digest, rc);
    return rc;
}

/* ---- answering from checked bytes while the local copy is committed ---- */

typedef struct tier_fill {
    atomic_int refs;
    uint8_t *bytes; /* an inline-sized blob's stored bytes, or NULL */
    size_t len;
    int fd; /* else the temporary file */
    /* A large blob is answered while it arrives: readers wait for the bytes
     * they need, and the end of the body only once all of it checked out. */
    int streaming;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t have;         /* stored bytes written so far */
    uint64_t wake_at;      /* the least `have` a reader waits for: fewer wake-ups */
    int state;             /* 0 arriving, 1 complete and checked, -1 failed */
    int damaged;           /* a reader found a frame damaged: shared with no new reader */
    store_waiter *waiters; /* readers that would not wait: woken, and dropped, as wake_at */
    /* zstd: where each frame checked so far ends (stored, body offsets), so
     * that a reader that starts elsewhere than at the body's start (a
     * range) seeks instead of decoding every frame before it */
    uint64_t (*frames)[2];
    size_t nframes, frames_cap;
    int frames_lost;
    int codec, headers;
    uint64_t size, stored;
} tier_fill;

/* A reader's place in a streaming fill of zstd frames. */
typedef struct fill_cursor {
    uint64_t coff;   /* stored offset of the next frame */
    uint64_t dstart; /* body offset of the frame in dbuf */
    size_t dlen;
    uint8_t *cbuf, *dbuf;
    size_t cbuf_cap;
} fill_cursor;

void tier_fill_release(tier_fill *f)
{
    if (f == NULL || atomic_fetch_sub(&f->refs, 1) != 1)
        return;
    free(f->bytes);
    free(f->frames);
    if (f->fd >= 0)
        close(f->fd);
    if (f->streaming) {
        pthread_mutex_destroy(&f->mu);
        pthread_cond_destroy(&f->cv);
    }
    free(f);
}

int tier_fill_streaming(const tier_fill *f)
{
    return f->streaming;
}

int tier_fill_open(tier_fill *f, const uint8_t **bytes, size_t *len, int *fd)
{
    *bytes = f->bytes;
    *len = f->len;
    if (f->bytes)
        return 0;
    if (f->streaming) {
        /* A raw blob that has all arrived and checked out (as one waits
         * for, wait_whole) is read as a local file is: sent with sendfile,
         * not copied through the reader's buffer. */
        pthread_mutex_lock(&f->mu);
        int whole = f->state > 0 && f->codec == CODEC_RAW;
        pthread_mutex_unlock(&f->mu);
        if (!whole) {
            *fd = -1; /* read through tier_fill_read */
            atomic_fetch_add(&f->refs, 1);
            return 1;
        }
    }
    *fd = dup(f->fd);
    return *fd >= 0 ? 0 : -1;
}

#define FILL_DONE UINT64_MAX /* fill_need: the whole blob, checked */

/* Waits until n stored bytes are here (or, for FILL_DONE, the whole blob
 * has checked out): 0, or -1 if the fill failed or ended short.  With a
 * waiter, registers it instead of waiting, and returns 1.  The writer wakes
 * readers only once `have` reaches the least of their targets, not for
 * every piece that arrives. */
static int fill_need(tier_fill *f, uint64_t n, store_waiter *w)
{
    pthread_mutex_lock(&f->mu);
    for (;;) {
        int here = n == FILL_DONE ? f->state == 1 : f->have >= n;
        if (here || f->state != 0) {
            int failed = f->state < 0 || !here;
            pthread_mutex_unlock(&f->mu);
            return failed ? -1 : 0;
        }
        if (n < f->wake_at)
            f->wake_at = n;
        if (w) {
            w->at = n;
            if (!w->linked) { /* (a reader woken for another reason may ask again) */
                w->linked = 1;
                w->next = f->waiters;
                f->waiters = w;
            }
            pthread_mutex_unlock(&f->mu);
            return 1;
        }
        pthread_cond_wait(&f->cv, &f->mu);
    }
}

/* Wakes (f->mu held) the waiters whose target is here, or all of them once
 * the fill has ended; wake_at becomes the least target left. */
static void fill_wake(tier_fill *f)
{
    uint64_t least = UINT64_MAX;
    for (store_waiter **p = &f->waiters; *p;) {
        store_waiter *w = *p;
        if (f->state != 0 || (w->at != FILL_DONE && f->have >= w->at)) {
            *p = w->next;
            w->linked = 0;
            w->wake(w->arg);
        } else {
            least = w->at < least ? w->at : least;
            p = &w->next;
        }
    }
    f->wake_at = least;
}

void tier_fill_forget(tier_fill *f, store_waiter *w)
{
    if (!f->streaming)
        return;
    pthread_mutex_lock(&f->mu);
    for (store_waiter **p = &f->waiters; *p && w->linked; p = &(*p)->next) {
        if (*p == w) {
            *p = w->next;
            w->linked = 0;
            break;
        }
    }
    pthread_mutex_unlock(&f->mu);
}

void tier_fill_cursor_free(void *p)
{
    fill_cursor *c = p;
    if (c == NULL)
        return;
    free(c->cbuf);
    free(c->dbuf);
    free(c);
}

/* Decodes the next zstd frame of a streaming fill into c->dbuf. */
static int next_frame(tier_fill *f, fill_cursor *c, store_waiter *w)
{
    size_t cap = ZSTD_compressBound(CODEC_FRAME_SIZE) + 64;
    if (c->cbuf == NULL &&
        ((c->cbuf = malloc(cap)) == NULL || (c->dbuf = malloc(CODEC_FRAME_SIZE)) == NULL))
        return -STORE_IO;
    c->cbuf_cap = cap;
    for (;;) {
        int rc = fill_need(f, c->coff + 1, w);
        if (rc != 0)
            return rc > 0 ? -STORE_AGAIN : -STORE_CORRUPT;
        pthread_mutex_lock(&f->mu);
        uint64_t have = f->have, stored = f->stored;
        int arriving = f->state == 0;
        pthread_mutex_unlock(&f->mu);
        size_t avail = (size_t)(have - c->coff < cap ? have - c->coff : cap);
        if (util_pread_all(f->fd, c->cbuf, avail, (off_t)c->coff) != (ssize_t)avail)
            return -STORE_IO;
        size_t fsz = ZSTD_findFrameCompressedSize(c->cbuf, avail);
        if (ZSTD_isError(fsz)) {
            if (!arriving || avail == cap)
                return -STORE_CORRUPT;
            /* the frame is not all here yet: wait for 64 KiB more of it,
             * or for the end (where the tier said how long it is) */
            uint64_t more = have + 65536;
            if (fill_need(f, stored && stored < more ? stored : more, w) > 0)
                return -STORE_AGAIN;
            continue; /* a failure shows on the next round */
        }
        size_t n = ZSTD_decompress(c->dbuf, CODEC_FRAME_SIZE, c->cbuf, fsz);
        if (ZSTD_isError(n)) {
            pthread_mutex_lock(&f->mu); /* (the fetch finds it too, and fails the fill) */
            f->damaged = 1;
            pthread_mutex_unlock(&f->mu);
            return -STORE_CORRUPT;
        }
        c->dstart += c->dlen;
        c->dlen = n;
        c->coff += fsz;
        return 0;
    }
}

/* A raw blob has no frame checksums to check it by as it arrives: one of
 * up to RAW_WHOLE_MAX is checked whole before any of it is answered (a
 * damaged one is a miss, never bytes under a 200).  A larger one is
 * answered while it arrives, but for its end, held until the whole is
 * checked (a damaged one is cut short), lest clients time out waiting. */
#define RAW_WHOLE_MAX (256ull << 20)

static int raw_whole_first(const tier_fill *f)
{
    return f->codec == CODEC_RAW && f->size <= RAW_WHOLE_MAX;
}

#define WHOLE_WAIT_MS 500

/* The reader that began or joined the stream of such a blob waits for its
 * checks, WHOLE_WAIT_MS at most (a thread that may wait for the tier is
 * not held for a whole download), before its answer begins: STORE_OK, or
 * STORE_NOTFOUND (e cleared) if they failed meanwhile, a miss.  Past that
 * wait, the answer's headers go, and its bytes wait for the checks (its
 * connection parked): damaged, it is cut short before its first byte. */
static int wait_whole(tier_fill *f, store_entry *e)
{
    if (!raw_whole_first(f))
        return STORE_OK;
    struct timespec ts = util_time_in(CLOCK_REALTIME, WHOLE_WAIT_MS * 1000000ULL); /* (f->cv's) */
    pthread_mutex_lock(&f->mu);
    int rc = 0;
    while (f->state == 0 && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&f->cv, &f->mu, &ts);
    int failed = f->state < 0;
    pthread_mutex_unlock(&f->mu);
    if (!failed)
        return STORE_OK;
    store_entry_clear(e);
    e->tier_failed = 1;
    return STORE_NOTFOUND;
}

ssize_t tier_fill_read(tier_fill *f, void **cursor, uint64_t off, void *buf, size_t len,
                       uint64_t end, store_waiter *w)
{
    int rc;
    if (off >= f->size || len == 0)
        return 0;
    if (len > f->size - off)
        len = (size_t)(f->size - off);
    if (end > f->size || end <= off)
        end = f->size;
    /* The end of the answer (of the body, or of a range) waits for the
     * checks of the whole body: an answer cut short is all a damaged blob
     * can give. */
    uint64_t hold = end < 65536 || raw_whole_first(f) ? end : 65536, free_end = end - hold;
    if (f->codec == CODEC_RAW) {
        /* what is here goes at once, but for the end */
        rc = fill_need(f, off >= free_end ? FILL_DONE : off + 1, w);
        if (rc != 0)
            return rc > 0 ? -STORE_AGAIN : -STORE_CORRUPT;
        if (off < free_end) {
            pthread_mutex_lock(&f->mu);
            uint64_t here = (f->have < free_end ? f->have : free_end) - off;
            pthread_mutex_unlock(&f->mu);
            if (len > here)
                len = (size_t)here;
        }
        ssize_t n = util_pread_all(f->fd, buf, len, (off_t)off);
        return n < 0 ? -STORE_IO : n;
    }
    fill_cursor *c = *cursor;
    if (c == NULL && (c = *cursor = calloc(1, sizeof *c)) == NULL)
        return -STORE_IO;
    if (off < c->dstart || off >= c->dstart + c->dlen) {
        /* not in the frame at hand: start from the last checked frame
         * that ends at or before off (or from the first) */
        pthread_mutex_lock(&f->mu);
        size_t lo = 0, hi = f->nframes; /* the frames ending at or before off: [0, lo) */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (f->frames[mid][1] <= off)
                lo = mid + 1;
            else
                hi = mid;
        }
        uint64_t coff = lo ? f->frames[lo - 1][0] : 0, dstart = lo ? f->frames[lo - 1][1] : 0;
        pthread_mutex_unlock(&f->mu);
        if (off < c->dstart || dstart > c->dstart + c->dlen) {
            c->coff = coff;
            c->dstart = dstart;
            c->dlen = 0;
        }
    }
    /* one frame's worth at most: while the blob arrives, what is here goes
     * at once */
    size_t done = 0;
    while (done == 0) {
        while (off >= c->dstart + c->dlen) {
            if ((rc = next_frame(f, c, w)) != 0)
                return rc;
        }
        if (c->dstart + c->dlen >= end) {
            /* the answer's last frame waits for the SHA-256 */
            if ((rc = fill_need(f, FILL_DONE, w)) != 0)
                return rc > 0 ? -STORE_AGAIN : -STORE_CORRUPT;
        }
        size_t n = (size_t)(c->dstart + c->dlen - off);
        if (n > len - done)
            n = len - done;
        memcpy((uint8_t *)buf + done, c->dbuf + (off - c->dstart), n);
        done += n;
        off += n;
    }
    return (ssize_t)done;
}

int tier_key_deleted(store *s, MDB_txn *t, const char *nskey, size_t nklen)
{
    return s->tier_q != NULL && tq_has(s, t, TQ_KEY_DEL, nskey, nklen);
}

/* Deletes leave a mark in a small table, by key: a fill that began before
 * the mark does not commit.  Keys that share a slot only cost a fill that
 * is not kept (its read was answered all the same). */
static atomic_ullong *del_slot(tier_state *q, const char *nskey, size_t nklen)
{
    uint8_t id[TQ_KEYLEN];
    tq_key(TQ_KEY, nskey, nklen, id);
    return &q->del_marks[util_get_le32(id + 1) % DEL_SLOTS];
}

uint64_t tier_clock(store *s)
{
    return s->tier_q ? atomic_load(&s->tier_q->del_clock) : 0;
}

void tier_key_changed_now(store *s, const char *nskey, size_t nklen)
{
    tier_state *q = s->tier_q;
    if (q == NULL)
        return;
    uint64_t mark = atomic_fetch_add(&q->del_clock, 1) + 1;
    atomic_store(del_slot(q, nskey, nklen), mark);
}

int tier_changed_since(store *s, const char *nskey, size_t nklen, uint64_t clock)
{
    tier_state *q = s->tier_q;
    return q != NULL && atomic_load(del_slot(q, nskey, nklen)) > clock;
}

int tier_has_key(store *s, const char *nskey, size_t nklen)
{
    tier_state *q = s->tier_q;
    if (queued(s, TQ_KEY_DEL, nskey, nklen))
        return STORE_NOTFOUND; /* deleted here already; the tier will hear of it */
    char name[KEY_NAME_CAP];
    key_name(s->tier_q, nskey, nklen, name);
    tier_meta m = {.codec = -1};
    int rc = tier_head(q->t, name, &m);
    if (rc == TIER_OK && record_deleted(m.length))
        return STORE_NOTFOUND;
    if (rc == TIER_NOTFOUND && atomic_load(&q->legacy) != 0) {
        key_name_v1(nskey, nklen, name);
        rc = tier_head(q->t, name, NULL);
    }
    return rc == TIER_OK ? STORE_OK : rc == TIER_NOTFOUND ? STORE_NOTFOUND : STORE_IO;
}

/* A fill committed in the background: the op and what it owns. */
typedef struct fill_job {
    op o; /* first: the committer hands back &o */
    uint8_t id[TQ_KEYLEN];
    uint64_t gen; /* the taking of the key's gate this job holds */
    char *nskey;
    void *meta;
    uint8_t *inl;
    struct blob_stream *bs;     /* the blob this job's stream brings (stream_claim) */
    struct fill_job *next_link; /* in a blob_stream's links */
} fill_job;

/* A large blob arriving from the tier for one key (its owner, the fill
 * job of the stream): another key with the same body, read meanwhile,
 * answers from the same fill rather than fetch the blob again, and is
 * linked to the blob once the owner committed it (in gate_mu's list). */
typedef struct blob_stream {
    struct blob_stream *next;
    uint8_t digest[32];
    uint8_t owner[TQ_KEYLEN]; /* the owner's gate, and its taking */
    uint64_t owner_gen;
    tier_fill *f;    /* a reference */
    fill_job *links; /* the other keys' jobs, each with link set */
    int ok;          /* the body checked out (stream_checked_out) */
} blob_stream;

/* A streaming fill that failed, or whose answer is no blob (f->mu held). */
static int fill_failed(const tier_fill *f)
{
    return f->state < 0 || (f->headers && f->codec < 0);
}

static int stream_claim(tier_state *q, fill_job *owner, tier_fill *f, blob_stream *bs)
{
    memcpy(bs->digest, owner->o.cr.sha256, 32);
    memcpy(bs->owner, owner->id, TQ_KEYLEN);
    bs->owner_gen = owner->gen;
    bs->f = f;
    pthread_mutex_lock(&q->gate_mu);
    for (blob_stream *o = q->streams_in; o; o = o->next)
        if (memcmp(o->digest, bs->digest, 32) == 0 && o->f->size == f->size) {
            pthread_mutex_lock(&o->f->mu);
            int failed = fill_failed(o->f); /* (and not yet out of the list) */
            pthread_mutex_unlock(&o->f->mu);
            if (failed)
                continue;
            pthread_mutex_unlock(&q->gate_mu);
            return 0; /* another key's read began it meanwhile */
        }
    atomic_fetch_add(&f->refs, 1);
    owner->bs = bs;
    bs->next = q->streams_in;
    q->streams_in = bs;
    pthread_mutex_unlock(&q->gate_mu);
    return 1;
}

/* Takes the owner's stream out of the list: its links, from now on the
 * caller's, or NULL. */
static fill_job *stream_unregister(tier_state *q, fill_job *owner)
{
    blob_stream *bs = owner->bs;
    if (bs == NULL)
        return NULL;
    owner->bs = NULL;
    pthread_mutex_lock(&q->gate_mu);
    for (blob_stream **p = &q->streams_in; *p; p = &(*p)->next)
        if (*p == bs) {
            *p = bs->next;
            break;
        }
    fill_job *links = bs->links;
    pthread_mutex_unlock(&q->gate_mu);
    tier_fill_release(bs->f);
    free(bs);
    return links;
}

/* The owner's stream checked out: it and the keys that share it count as
 * hits (tier reads that gave a body), now or as they join. */
static void stream_checked_out(tier_state *q, fill_job *owner)
{
    atomic_fetch_add(&q->hits, 1);
    pthread_mutex_lock(&q->gate_mu);
    if (owner->bs) {
        owner->bs->ok = 1;
        for (fill_job *l = owner->bs->links; l; l = l->next_link)
            atomic_fetch_add(&q->hits, 1);
    }
    pthread_mutex_unlock(&q->gate_mu);
}

/* Waits for the headers of a streaming fill's answer (and, for zstd, its
 * stored length, part of the entry): does it go on? */
static int fill_wait_headers(tier_fill *f)
{
    pthread_mutex_lock(&f->mu);
    while ((!f->headers || (f->codec == CODEC_ZSTD && f->stored == 0)) && f->state == 0)
        pthread_cond_wait(&f->cv, &f->mu);
    int good = !fill_failed(f);
    pthread_mutex_unlock(&f->mu);
    return good;
}

/* Joins j (a key whose record names kr's blob) to a stream of that blob
 * that another key's read began: 1 with *fp a reference to its fill (the
 * stream owns j now), or 0 when there is none, or it failed. */
static int stream_join(tier_state *q, const key_rec *kr, fill_job *j, tier_fill **fp)
{
    tier_fill *f = NULL;
    pthread_mutex_lock(&q->gate_mu);
    for (blob_stream *bs = q->streams_in; bs; bs = bs->next)
        if (memcmp(bs->digest, kr->digest, 32) == 0 && bs->f->size == kr->size) {
            f = bs->f;
            atomic_fetch_add(&f->refs, 1);
            break;
        }
    pthread_mutex_unlock(&q->gate_mu);
    if (f == NULL)
        return 0;
    int joined = 0;
    if (fill_wait_headers(f)) {
        /* still arriving, or not committed yet: linked once it is */
        pthread_mutex_lock(&q->gate_mu);
        for (blob_stream *bs = q->streams_in; bs && !joined; bs = bs->next)
            if (bs->f == f) {
                j->o.link = 1;
                j->next_link = bs->links;
                bs->links = j;
                joined = 1;
                if (bs->ok)
                    atomic_fetch_add(&q->hits, 1); /* (else once it checks out) */
                gate *g = gate_find(q, j->id);
                if (g && g->gen == j->gen) {
                    g->follows = 1;
                    memcpy(g->follow, bs->owner, TQ_KEYLEN);
                    g->follow_gen = bs->owner_gen;
                }
            }
        pthread_mutex_unlock(&q->gate_mu);
    }
    if (!joined) {
        tier_fill_release(f);
        return 0;
    }
    *fp = f;
    return 1;
}

/* Drops a fill job, its file (unless committed in place) and its buffers. */
static void fill_job_free(fill_job *j)
{
    if (j == NULL)
        return;
    op_release_file(&j->o);
    free(j->nskey);
    free(j->meta);
    free(j->inl);
    free(j);
}

/* The keys that joined the owner's stream, when it failed: their readers
 * take outcome (GATE_*) as the owner's do. */
static void stream_fail_links(tier_state *q, fill_job *owner, int outcome)
{
    for (fill_job *l = stream_unregister(q, owner), *next; l; l = next) {
        next = l->next_link;
        gate_leave(q, l->id, outcome);
        fill_job_free(l);
    }
}

/* Hands j to the committer, which calls on_done once it is done (a
 * reader or a warmup waiting at the key's gate hurries it). */
static void fill_submit(store *s, fill_job *j, void (*on_done)(store *s, op *o))
{
    uint8_t id[TQ_KEYLEN];
    uint64_t gen = j->gen;
    memcpy(id, j->id, sizeof id); /* (j is the committer's from here on) */
    j->o.on_done = on_done;
    submit_async(s, &j->o);
    gate_queued(s, id, gen);
}

static void fill_done(store *s, op *o)
{
    fill_job *j = (fill_job *)o;
    if (o->status == STORE_NOTFOUND) /* deleted or written here meanwhile: that stands */
        log_msg(LOG_DEBUG, "tier_fill_dropped", "a key read through the tier changed here first");
    else if (o->status != STORE_OK)
        log_msg(LOG_WARN, "tier_fill_failed", "a key read through the tier was not kept: %s",
                store_strerror(o->status));
    gate_leave(s->tier_q, j->id, GATE_LOOK_AGAIN); /* waiters find it here now */
    /* the keys that shared the stream point at the blob now (or, if it was
     * not kept, find it missing, and their readers look again) */
    fill_job *l = stream_unregister(s->tier_q, j);
    while (l) {
        fill_job *next = l->next_link;
        fill_submit(s, l, fill_done);
        l = next;
    }
    fill_job_free(j);
}

/* ---- a large blob, answered while it arrives ---- */

typedef struct stream_job {
    store *s;
    fill_job *j;
    tier_fill *f;
    char name[80];
    key_rec kr;
    int wfd; /* the temporary file, written here */
    /* The checks run as the bytes arrive, so the end of the body is not held
     * for a second pass over it.  A raw blob's are on a thread of their own
     * (the checker), which reads what the fetch wrote, so that hashing does
     * not slow the fetch, nor the readers it feeds.  zstd frames are checked
     * by the fetch itself: the table of where they end must keep up with
     * the bytes, for readers of ranges to seek in it. */
    EVP_MD_CTX *sha;
    ZSTD_DStream *zs;
    uint8_t *zout;
    uint64_t body; /* body bytes hashed */
    int bad;
    pthread_t checker;
    int checker_on, checker_tried;
    uint8_t *check_buf;      /* the checker's */
    int local_err;           /* a failure of this node's, not the tier's (readers waiting retry) */
    pthread_cond_t check_cv; /* (with f->mu) the checker waits for bytes here */
    int fetch_rc; /* (f->mu) once the fetch ended: 0 it succeeded, 1 it failed; else -1 */
    /* the blob's stored bytes as its key record carried them (several
     * frames, too many to check before the answer): checked here as if they
     * arrived, with no request to the tier */
    uint8_t *carried;
    tier_meta carried_m;
} stream_job;

#define ZOUT_SIZE (128u << 10)

/* Notes (f->mu held) that a frame ends at stored offset coff, body offset body. */
static void frame_ended(tier_fill *f, uint64_t coff, uint64_t body)
{
    if (f->nframes == f->frames_cap) {
        size_t cap = f->frames_cap ? f->frames_cap * 2 : 64;
        void *p = realloc(f->frames, cap * sizeof *f->frames);
        if (p == NULL) {
            f->frames_lost = 1; /* (readers then decode from an earlier frame) */
            return;
        }
        f->frames = p;
        f->frames_cap = cap;
    }
    f->frames[f->nframes][0] = coff;
    f->frames[f->nframes][1] = body;
    f->nframes++;
}

/* Checks the piece of the tier's answer that starts at stored offset at. */
static void check_piece(stream_job *sj, int codec, const void *piece, size_t len, uint64_t at)
{
    if (sj->bad)
        return;
    /* (a failure of this node's own, such as memory, is no damage of the tier's copy) */
    if (codec == CODEC_RAW) {
        sj->bad = sj->local_err = !EVP_DigestUpdate(sj->sha, piece, len);
        sj->body += len;
        return;
    }
    if (sj->zs == NULL &&
        ((sj->zs = ZSTD_createDStream()) == NULL || (sj->zout = malloc(ZOUT_SIZE)) == NULL)) {
        sj->bad = sj->local_err = 1;
        return;
    }
    ZSTD_inBuffer in = {piece, len, 0};
    while (in.pos < in.size && !sj->bad) {
        ZSTD_outBuffer out = {sj->zout, ZOUT_SIZE, 0};
        size_t r = ZSTD_decompressStream(sj->zs, &out, &in); /* frame checksums too */
        if (ZSTD_isError(r))
            sj->bad = 1;
        else if (out.pos && !EVP_DigestUpdate(sj->sha, sj->zout, out.pos))
            sj->bad = sj->local_err = 1;
        sj->body += out.pos;
        if (r == 0 && !sj->bad) {
            pthread_mutex_lock(&sj->f->mu);
            frame_ended(sj->f, at + in.pos, sj->body);
            pthread_mutex_unlock(&sj->f->mu);
        }
    }
}

/* The checker: checks the stored bytes of a raw blob in the order the fetch
 * wrote them, until the fetch ends (and all it wrote is checked) or fails. */
static void *check_main(void *arg)
{
    stream_job *sj = arg;
    tier_fill *f = sj->f;
    size_t cap = CODEC_FRAME_SIZE;
    uint8_t *buf = sj->check_buf;
    uint64_t at = 0;
    while (!sj->bad) {
        pthread_mutex_lock(&f->mu);
        while (f->have == at && sj->fetch_rc < 0)
            pthread_cond_wait(&sj->check_cv, &f->mu);
        uint64_t have = f->have;
        int over = sj->fetch_rc > 0;
        pthread_mutex_unlock(&f->mu);
        if (over || have == at)
            break; /* failed (nothing more to check for), or all checked */
        size_t n = have - at < cap ? (size_t)(have - at) : cap;
        if (util_pread_all(f->fd, buf, n, at) != (ssize_t)n)
            sj->bad = sj->local_err = 1;
        else
            check_piece(sj, CODEC_RAW, buf, n, at);
        at += n;
    }
    return NULL;
}

/* Tells readers of the piece that arrived, and checks it (or has the
 * checker do so): non-zero once a zstd frame failed its checks, which ends
 * the fetch there, so that the next reader fetches the blob again at once
 * rather than wait for the rest of a copy known to be damaged. */
static int stream_progress(void *arg, const void *piece, size_t len, uint64_t written,
                           const tier_meta *m)
{
    stream_job *sj = arg;
    tier_fill *f = sj->f;
    if (!sj->checker_tried) {
        sj->checker_tried = 1;
        sj->checker_on = m->codec == CODEC_RAW && !sj->bad &&
                         (sj->check_buf = malloc(CODEC_FRAME_SIZE)) != NULL &&
                         pthread_create(&sj->checker, NULL, check_main, sj) == 0;
    }
    pthread_mutex_lock(&f->mu);
    int wake = 0;
    if (!f->headers) {
        f->codec = m->codec;
        f->stored = m->length;
        f->headers = wake = 1;
    }
    f->have = written;
    if (sj->checker_on)
        pthread_cond_signal(&sj->check_cv);
    if (written >= f->wake_at) {
        fill_wake(f);
        wake = 1;
    }
    if (wake)
        pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    /* checked after readers have it: the first bytes (the answer's headers)
     * wait for no check, and the end of the body waits for all of them */
    if (sj->checker_on)
        return 0; /* (a raw blob's damage shows only once all of it is hashed) */
    check_piece(sj, m->codec, piece, len, written - len);
    return sj->bad && !sj->local_err;
}

static void *stream_main(void *arg)
{
    stream_job *sj = arg;
    store *s = sj->s;
    tier_state *q = s->tier_q;
    tier_fill *f = sj->f;
    op *o = &sj->j->o;
    uint64_t max = sj->kr.size + sj->kr.size / 16 + (1u << 20);
    tier_meta m;
    sj->sha = EVP_MD_CTX_new();
    sj->bad = sj->local_err =
        sj->sha == NULL || !EVP_DigestInit_ex(sj->sha, cksum_md_sha256(), NULL);
    sj->fetch_rc = -1;
    pthread_cond_init(&sj->check_cv, NULL);
    int rc, carried = sj->carried != NULL;
    if (carried) {
        m = sj->carried_m;
        rc = util_write_all(sj->wfd, sj->carried, m.length) == 0 ? TIER_OK : TIER_LOCAL;
        /* a piece at a time, as a fetch would: readers begin at the first frame */
        for (uint64_t at = 0; rc == TIER_OK && at < m.length;) {
            size_t n = m.length - at < ZOUT_SIZE ? (size_t)(m.length - at) : ZOUT_SIZE;
            if (stream_progress(sj, sj->carried + at, n, at + n, &m) != 0)
                break; /* (damaged: no use checking the rest) */
            at += n;
        }
        free(sj->carried);
    } else {
        uint64_t t0 = util_mono_ns();
        rc = tier_get_stream(q->t, sj->name, sj->wfd, max, &m, stream_progress, sj);
        lat_record(q, LAT_READ, t0);
    }
    if (sj->checker_on) {
        /* the checker checks what is left, unless the fetch failed */
        pthread_mutex_lock(&f->mu);
        sj->fetch_rc = rc == TIER_OK ? 0 : 1;
        pthread_cond_signal(&sj->check_cv);
        pthread_mutex_unlock(&f->mu);
        pthread_join(sj->checker, NULL);
    }
    pthread_cond_destroy(&sj->check_cv);
    free(sj->check_buf);
    uint8_t d[32];
    unsigned int dl;
    int ok = rc == TIER_OK && !sj->bad && m.codec >= 0 && m.size == sj->kr.size &&
             sj->body == sj->kr.size && EVP_DigestFinal_ex(sj->sha, d, &dl) &&
             memcmp(d, sj->kr.digest, 32) == 0;
    if (ok && m.codec == CODEC_ZSTD) {
        /* the file must also be what the local reader expects: a seek table
         * of the frames that arrived (frames_lost: memory ran short for
         * their list, so only the table's own form is checked) */
        codec_reader *r;
        if (!f->frames_lost)
            ok = codec_check_seek_table(sj->wfd, m.size, m.length, f->frames, f->nframes) == 0;
        else if ((ok = codec_reader_open(&r, sj->wfd, m.codec, m.size, m.length) == 0))
            codec_reader_free(r);
    }
    EVP_MD_CTX_free(sj->sha);
    ZSTD_freeDStream(sj->zs);
    free(sj->zout);
    /* (failed checks are damage, unless this node failed them itself) */
    int ended = ok                               ? TIER_OK
                : rc == TIER_OK && sj->local_err ? TIER_LOCAL
                : rc == TIER_OK                  ? cut_or_damaged(TIER_BAD, &m)
                                                 : rc;
    if (!carried)
        fetch_ended(q, sj->kr.digest, ended);
    else if (ended == TIER_BAD) /* (the record's copy: the blob's own may be sound) */
        atomic_fetch_add(&q->corrupt, 1);
    if (ok)
        stream_checked_out(q, sj->j); /* (before its readers get the end of the body) */
    pthread_mutex_lock(&f->mu);
    if (!f->headers) {
        f->codec = m.codec;
        f->stored = m.length;
        f->headers = 1;
    }
    f->have = m.length;
    if (f->stored == 0)
        f->stored = m.length; /* the tier's answer did not say its length */
    f->state = ok ? 1 : -1;
    fill_wake(f);
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    /* readers have their answer; the local copy is made durable after it */
    if (ok && s->cfg.fsync && fdatasync(sj->wfd) != 0) {
        ok = 0;
        sj->local_err = 1;
        log_msg(LOG_WARN, "tier_fill_failed", "blob %s: cannot sync its local copy", sj->name);
    }
    op_take_file(o, sj->wfd, o->anon);
    if (ok) {
        atomic_fetch_add(&q->fetched_bytes, m.length);
        o->cr.stored = m.length;
        o->cr.codec = m.codec;
        o->tier_time = (uint32_t)m.mtime;
        fill_submit(s, sj->j, fill_done); /* fill_done cleans up and leaves the gate */
    } else {
        int local = sj->local_err || rc == TIER_LOCAL || rc == TIER_LATE;
        if (rc != TIER_OK && rc != TIER_BAD && !local) /* (damaged: counted as such) */
            atomic_fetch_add(rc == TIER_NOTFOUND ? &q->misses : &q->errors, 1);
        log_msg(LOG_WARN, "tier_read_failed", "blob %s%s: %s", sj->name,
                carried ? " (a key record's copy)" : "",
                rc != TIER_OK   ? tier_why(rc)
                : sj->local_err ? tier_strerror(TIER_LOCAL)
                                : "failed its checks");
        /* readers waiting for the gate take a failure of the tier's as
         * theirs; after one of this node's, they try again (so do those of
         * the keys that shared the stream, and, when the bytes were one key
         * record's copy, those of the other keys, whose records may be sound) */
        gate_leave(q, sj->j->id, local ? GATE_LOOK_AGAIN : GATE_FAILED);
        stream_fail_links(q, sj->j, local || carried ? GATE_LOOK_AGAIN : GATE_FAILED);
        fill_job_free(sj->j);
    }
    tier_fill_release(f);
    free(sj);
    tier_thread_done();
    atomic_fetch_sub(&q->streams, 1); /* last: tier_stop waits for it */
    return NULL;
}

#define STREAM_TAKEN (-1) /* start_stream: another key's read began the blob's stream first */

/* Starts fetching the blob of kr on its own thread and waits for the
 * answer's headers.  On success *fp is a streaming fill (a reference for
 * the caller) and the thread owns j; on failure, or STREAM_TAKEN (join
 * that stream instead), the caller still owns j.  With pr (a key record
 * that carried the blob's bytes, taken at tier time mtime), the thread
 * checks those instead of fetching. */
static int start_stream(store *s, const key_rec *kr, fill_job *j, const parsed_record *pr,
                        int64_t mtime, tier_fill **fp)
{
    op *o = &j->o;
    stream_job *sj = calloc(1, sizeof *sj);
    tier_fill *f = calloc(1, sizeof *f);
    if (sj && f && pr) {
        sj->carried = malloc(pr->blob_len ? pr->blob_len : 1);
        if (sj->carried && pr->blob_len)
            memcpy(sj->carried, pr->blob, pr->blob_len);
        sj->carried_m = (tier_meta){
            .codec = pr->codec, .size = pr->kr.size, .length = pr->blob_len, .mtime = mtime};
    }
    if (sj == NULL || f == NULL || (pr && sj->carried == NULL)) {
        if (sj)
            free(sj->carried);
        free(sj);
        free(f);
        return TIER_LOCAL;
    }
    f->streaming = 1;
    f->fd = -1;
    f->size = kr->size;
    f->codec = -1;
    f->wake_at = UINT64_MAX;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    atomic_init(&f->refs, 2); /* the thread's and the caller's */
    /* claimed before anything slow, so that a reader of another key with
     * this body joins this stream rather than begin its own */
    blob_stream *bs = calloc(1, sizeof *bs); /* (without memory for it: not shared) */
    if (bs && !stream_claim(s->tier_q, j, f, bs)) {
        free(bs);
        tier_fill_release(f);
        tier_fill_release(f);
        free(sj->carried);
        free(sj);
        return STREAM_TAKEN;
    }
    int anon = 0;
    int wfd = store_tmp_open(s, o->tmp, &anon);
    o->anon = anon;
    if (wfd >= 0)
        f->fd = anon ? dup(wfd) : open(o->tmp, O_RDONLY | O_CLOEXEC);
    sj->s = s;
    sj->j = j;
    sj->f = f;
    sj->kr = *kr;
    sj->kr.meta = NULL;
    sj->wfd = wfd;
    blob_name(kr->digest, sj->name);
    pthread_t th;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    atomic_fetch_add(&s->tier_q->streams, 1);
    if (f->fd < 0 || pthread_create(&th, &at, stream_main, sj) != 0) {
        atomic_fetch_sub(&s->tier_q->streams, 1);
        pthread_attr_destroy(&at);
        pthread_mutex_lock(&f->mu);
        f->state = -1; /* for keys that joined it meanwhile */
        pthread_cond_broadcast(&f->cv);
        pthread_mutex_unlock(&f->mu);
        stream_fail_links(s->tier_q, j, GATE_LOOK_AGAIN);
        if (wfd >= 0)
            op_take_file(o, wfd, anon);
        op_release_file(o);
        tier_fill_release(f); /* the thread's, */
        tier_fill_release(f); /* and the caller's */
        free(sj->carried);
        free(sj);
        return TIER_LOCAL;
    }
    pthread_attr_destroy(&at);
    /* (a zstd blob without Content-Length: all of it, for its stored length) */
    int good = fill_wait_headers(f);
    *fp = f;
    return good ? TIER_OK : TIER_BAD;
}

/* The entry a cold read answers with, while its local copy commits. */
static void fill_entry_from(store_entry *e, const key_rec *kr, uint64_t stored, int codec,
                            int format, tier_fill *f)
{
    memcpy(e->digest, kr->digest, 32);
    e->size = kr->size;
    e->stored = stored;
    e->codec = codec;
    e->format = format;
    e->mtime_ms = kr->mtime_ms;
    e->meta = kr->meta_len ? malloc(kr->meta_len) : NULL;
    if (e->meta)
        memcpy(e->meta, kr->meta, kr->meta_len);
    e->meta_len = e->meta ? kr->meta_len : 0;
    e->fill = f;
}

/* Sets up j to commit key nskey as kr says, read from the tier: a fill
 * that began at clock (a delete or write here after it drops the fill),
 * of a tier copy as old as tier_time.  -1 when memory runs short. */
static int fill_job_init(fill_job *j, const uint8_t id[TQ_KEYLEN], uint64_t gen, const char *nskey,
                         size_t nklen, const key_rec *kr, uint64_t clock, uint32_t tier_time)
{
    if ((j->nskey = malloc(nklen)) == NULL ||
        (kr->meta_len && (j->meta = malloc(kr->meta_len)) == NULL))
        return -1;
    op *o = &j->o;
    memcpy(j->id, id, TQ_KEYLEN);
    j->gen = gen;
    memcpy(j->nskey, nskey, nklen);
    if (kr->meta_len)
        memcpy(j->meta, kr->meta, kr->meta_len);
    o->kind = OP_PUT;
    o->from_tier = 1;
    o->fill_clock = clock;
    o->fd = -1;
    o->nskey = j->nskey;
    o->nklen = nklen;
    o->meta = j->meta;
    o->meta_len = kr->meta_len;
    o->mtime_ms = kr->mtime_ms;
    o->tier_time = tier_time;
    memcpy(o->cr.sha256, kr->digest, 32);
    o->cr.size = kr->size;
    return 0;
}

/* Takes the blob bytes a key record carried into j, checked. */
static int adopt_carried(store *s, const parsed_record *pr, fill_job *j)
{
    tier_meta m = {.codec = pr->codec, .size = pr->kr.size, .length = pr->blob_len};
    void *copy = malloc(pr->blob_len ? pr->blob_len : 1);
    if (copy == NULL)
        return TIER_LOCAL;
    if (pr->blob_len)
        memcpy(copy, pr->blob, pr->blob_len);
    int rc = adopt_bytes(s, &pr->kr, &m, copy, &j->o, &j->inl);
    if (rc == TIER_BAD) /* (the record's copy: the blob's own may be sound, not remembered) */
        atomic_fetch_add(&s->tier_q->corrupt, 1);
    return rc;
}

/* *to = from, with a copy of its meta and a reference to its fill of its
 * own; -1 (nothing taken) when memory runs short. */
static int entry_share(store_entry *to, const store_entry *from)
{
    void *meta = from->meta_len ? malloc(from->meta_len) : NULL;
    if (from->meta_len && meta == NULL)
        return -1;
    *to = *from;
    to->meta = meta;
    if (meta)
        memcpy(meta, from->meta, from->meta_len);
    if (to->fill)
        atomic_fetch_add(&to->fill->refs, 1);
    return 0;
}

/* gate_enter for a key: 2 if another thread is streaming the key's blob
 * and this reader shares its fill (*e is its entry), without waiting for
 * the commit; a fill that failed, or began before a delete of the key
 * here, is not shared.  3 if the fetch this reader waited for found no
 * such key in the tier, 4 if it failed: the reader answers that too. */
static int gate_enter_key(store *s, const uint8_t id[TQ_KEYLEN], const char *nskey, size_t nklen,
                          store_entry *e, uint64_t *gen)
{
    tier_state *q = s->tier_q;
    int waited = 0, entered = 0;
    uint64_t waited_for = 0; /* the gen of the last gate waited for */
    pthread_mutex_lock(&q->gate_mu);
    for (gate *g; (g = gate_find(q, id)) != NULL; waited = 1) {
        waited_for = g->gen;
        tier_fill *f = g->share.fill;
        if (f && !tier_changed_since(s, nskey, nklen, g->clock)) {
            int ok = 1; /* (a fill that is not streaming is here, and checked) */
            if (f->streaming) {
                pthread_mutex_lock(&f->mu);
                ok = f->state >= 0 && !f->damaged;
                pthread_mutex_unlock(&f->mu);
            }
            if (ok && entry_share(e, &g->share) == 0) {
                pthread_mutex_unlock(&q->gate_mu);
                return 2;
            }
        }
        /* a fill this reader cannot share (or a warmup's, which shares
         * none): it waits for its commit (a fetch still under way shares
         * its fill, or fails, without one) */
        if (f || g->queued)
            gate_hurry(s, g);
        pthread_cond_wait(&q->gate_cv, &q->gate_mu);
    }
    int outcome = gate_outcome(q, waited, waited_for);
    entered = outcome == GATE_MISSED   ? 3
              : outcome == GATE_FAILED ? 4
                                       : gate_take(q, id, waited, gen);
    pthread_mutex_unlock(&q->gate_mu);
    return entered;
}

/* Lets later readers of the key share the fill e answers with, if the gate
 * is still the one this reader took (gen): its fill may have ended, and
 * another reader taken the gate, before this one got here. */
static void gate_share(tier_state *q, const uint8_t id[TQ_KEYLEN], uint64_t gen,
                       const store_entry *e, uint64_t clock)
{
    pthread_mutex_lock(&q->gate_mu);
    gate *g = gate_find(q, id);
    if (g && g->gen == gen && g->share.fill == NULL && entry_share(&g->share, e) == 0) {
        g->clock = clock;
        pthread_cond_broadcast(&q->gate_cv); /* readers waiting for the gate join in */
    }
    pthread_mutex_unlock(&q->gate_mu);
}

/* A read whose time for the tier ran out: a miss not known to be one
 * (tier_failed: a conditional write must not take the key as missing),
 * counted as the tier's error if the time went in waiting for a thread to
 * ask it (else the failure that spent it was counted). */
static void ran_out(tier_state *q, store_entry *e)
{
    if (tier_waited_out(q->t))
        atomic_fetch_add(&q->errors, 1);
    e->tier_failed = 1;
}

int tier_resolve_key(store *s, const char *nskey, size_t nklen, store_entry *e, int *filled)
{
    tier_state *q = s->tier_q;
    *filled = 0;
    if (q == NULL || queued(s, TQ_KEY_DEL, nskey, nklen))
        return STORE_NOTFOUND; /* deleted here; the tier will hear of it */
    if (tier_must_not_wait())
        return STORE_AGAIN;
    if (!tier_time_left(q->t)) {
        ran_out(q, e); /* a miss, the tier not asked: the reader waited enough */
        return STORE_NOTFOUND;
    }
    uint8_t id[TQ_KEYLEN];
    tq_key(TQ_KEY, nskey, nklen, id);
    uint64_t gen = 0;
    int entered = gate_enter_key(s, id, nskey, nklen, e, &gen);
    if (entered == 2) {
        *filled = 1; /* another request's fill, shared (a tier read counted once) */
        return STORE_OK;
    }
    if (entered >= 3) {
        /* the fetch this reader waited for found no such key, or failed */
        e->tier_failed = entered == 4;
        if (e->tier_failed)
            tier_spent(); /* (it waited for that fetch: no second wait for the bucket) */
        return STORE_NOTFOUND;
    }
    if (!entered)
        return STORE_OK;            /* another request fetched it (or it was dropped): look again */
    uint64_t clock = tier_clock(s); /* a delete from here on drops the fill */
    if (queued(s, TQ_KEY_DEL, nskey, nklen)) {
        gate_leave(q, id, GATE_LOOK_AGAIN); /* deleted just now */
        return STORE_NOTFOUND;
    }
    char name[KEY_NAME_CAP];
    key_name(s->tier_q, nskey, nklen, name);
    void *data = NULL;
    size_t len = 0;
    uint64_t t0 = util_mono_ns();
    tier_meta rm = {0};
    int rc = tier_get(q->t, name, -1, &data, &len, RECORD_MAX, &rm);
    if (rc == TIER_OK && record_deleted(len)) {
        rc = TIER_NOTFOUND; /* (and not to be looked for under the earlier layout) */
    } else if (rc == TIER_NOTFOUND && atomic_load(&q->legacy) != 0) {
        key_name_v1(nskey, nklen, name); /* written by an earlier build */
        rc = tier_get(q->t, name, -1, &data, &len, RECORD_MAX, &rm);
    }
    uint64_t t1 = util_mono_ns();
    lat_record(q, LAT_READ, t0);
    parsed_record pr;
    int status = STORE_NOTFOUND;
    fill_job *j = NULL;
    if (rc == TIER_NOTFOUND) {
        atomic_fetch_add(&q->misses, 1);
    } else if (rc == TIER_LATE) {
        ran_out(q, e); /* a miss, the tier not asked; readers waiting for the gate ask it */
    } else if (rc != TIER_OK) {
        atomic_fetch_add(&q->errors, 1);
        e->tier_failed = 1;
        log_msg(LOG_WARN, "tier_read_failed", "key record %s: %s", name, tier_why(rc));
    } else if (parse_key_record(data, len, nskey, nklen, &pr) != 0) {
        atomic_fetch_add(&q->corrupt, 1);
        e->tier_failed = 1;
        log_msg(LOG_WARN, "tier_corrupt", "key record %s does not parse", name);
    } else if ((j = calloc(1, sizeof *j)) == NULL ||
               /* the tier's copy is as old as the record that carried it, or
                * as the blob object (set by fetch_blob) */
               fill_job_init(j, id, gen, nskey, nklen, &pr.kr, clock, (uint32_t)rm.mtime) != 0) {
        status = STORE_IO;
    } else {
        reval_checked(q, nskey, nklen);
        key_rec kr = pr.kr;
        op *o = &j->o;
        int link = have_blob(s, kr.digest), known_bad = 0;
        /* a blob of several frames that came in the record is answered
         * while they are checked, as a large one is while it arrives */
        int carried_frames = pr.blob && kr.size > CODEC_FRAME_SIZE;
        if (link) {
            o->link = 1;
        } else if (pr.blob && !carried_frames) {
            rc = adopt_carried(s, &pr, j); /* a small blob came in the record: no second request */
        } else if (!pr.blob && bad_has(q, kr.digest, 2)) {
            known_bad = 1; /* (not fetched again) */
            rc = TIER_BAD;
        } else if (kr.size > s->cfg.inline_max || carried_frames) {
            /* large: answered while it arrives, on its own thread; or from
             * the stream another key with the same body began */
            tier_fill *f = NULL;
            int joined = 0;
            for (int tries = 0; tries < 3; tries++) {
                if ((joined = stream_join(q, &kr, j, &f)) != 0)
                    break;
                if (have_blob(s, kr.digest)) {
                    link = o->link = 1; /* its stream (another key's) ended, and committed */
                    rc = TIER_OK;
                    break;
                }
                if ((rc = start_stream(s, &kr, j, carried_frames ? &pr : NULL, rm.mtime, &f)) !=
                    STREAM_TAKEN)
                    break;
                rc = TIER_LOCAL; /* (three times over: give up) */
            }
            /* (a hit is counted once the body checked out: stream_checked_out) */
            if (joined) {
                fill_entry_from(e, &kr, f->stored, f->codec, BLOB_FILE, f);
                gate_share(q, id, gen, e, clock);
                free(data);
                /* the stream's owner links j once it committed */
                return (*filled = wait_whole(f, e) == STORE_OK) ? STORE_OK : STORE_NOTFOUND;
            }
            if (f && rc == TIER_OK) {
                fill_entry_from(e, &kr, f->stored, f->codec, BLOB_FILE, f);
                gate_share(q, id, gen, e, clock);
                free(data);
                /* the thread owns j, and leaves the gate */
                return (*filled = wait_whole(f, e) == STORE_OK) ? STORE_OK : STORE_NOTFOUND;
            }
            if (f) {
                /* failed before its headers: the thread cleans up after itself */
                tier_fill_release(f);
                free(data);
                e->tier_failed = 1;
                return STORE_NOTFOUND;
            }
        } else {
            rc = fetch_blob(s, &kr, o, &j->inl);
        }
        uint64_t t2 = util_mono_ns();
        tier_fill *f = NULL;
        if (rc == TIER_OK && !link) {
            /* answer from the checked bytes; the local copy commits meanwhile */
            f = calloc(1, sizeof *f);
            if (f) {
                f->fd = -1;
                f->state = 1;             /* here, and checked */
                atomic_init(&f->refs, 2); /* the entry's, and ours until submitted */
                if (j->inl) {
                    f->len = o->inl_len;
                    f->bytes = malloc(f->len ? f->len : 1);
                    if (f->bytes && f->len)
                        memcpy(f->bytes, j->inl, f->len);
                } else {
                    f->fd = o->anon ? dup(o->fd) : open(o->tmp, O_RDONLY | O_CLOEXEC);
                }
                if (f->bytes == NULL && f->fd < 0) {
                    free(f->bytes);
                    free(f);
                    f = NULL;
                }
            }
        }
        if (rc == TIER_OK && f) {
            fill_entry_from(e, &kr, o->cr.stored, o->cr.codec, j->inl ? BLOB_INLINE : BLOB_FILE, f);
            tier_fill_release(f); /* ours */
            /* until it commits (which may linger), later readers answer
             * from the same bytes */
            gate_share(q, id, gen, e, clock);
            *filled = 1;
            status = STORE_OK;
            atomic_fetch_add(&q->hits, 1);
            fill_submit(s, j, fill_done); /* fill_done leaves the gate */
            log_msg(LOG_DEBUG, "tier_fetch",
                    "%s: %" PRIu64 " bytes; key record %.1f ms, blob %.1f ms", name, kr.size,
                    (double)(t1 - t0) / 1e6, (double)(t2 - t1) / 1e6);
            free(data);
            return status;
        }
        if (rc == TIER_OK) {
            /* the blob is here already (or memory ran short): commit, then look again */
            status = submit_and_wait(s, o);
            if (status == STORE_OK)
                atomic_fetch_add(&q->hits, 1);
            if (status == STORE_NOTFOUND)
                status = STORE_OK; /* dropped: written or deleted here meanwhile; look again */
        } else if (rc == TIER_LOCAL || rc == TIER_LATE) {
            /* (not the tier's fault: readers waiting try again) */
            status = rc == TIER_LOCAL ? STORE_IO : STORE_UNAVAILABLE;
            log_msg(LOG_WARN, "tier_read_failed", "blob of %s: %s", name, tier_strerror(rc));
        } else if (known_bad) {
            atomic_fetch_add(&q->misses, 1);
            e->tier_failed = 1;
            log_msg(LOG_DEBUG, "tier_read_failed", "blob of %s: its tier copy is damaged", name);
        } else {
            if (rc != TIER_BAD) /* (damaged: counted as such) */
                atomic_fetch_add(rc == TIER_NOTFOUND ? &q->misses : &q->errors, 1);
            e->tier_failed = 1; /* its key record is there: the blob must be too */
            log_msg(LOG_WARN, "tier_read_failed", "blob of %s: %s", name, tier_why(rc));
        }
    }
    fill_job_free(j);
    free(data);
    gate_leave(q, id,
               status == STORE_OK || rc == TIER_LATE ? GATE_LOOK_AGAIN /* (they ask it) */
               : e->tier_failed                      ? GATE_FAILED
               : status == STORE_NOTFOUND            ? GATE_MISSED
                                                     : GATE_LOOK_AGAIN);
    return status;
}

/* ---- revalidation: keys another node changed -----------------------------------------
 *
 * A node answers a key it holds from its copy; another node may have
 * written or deleted the key since (a GitLab cache key behind a balancer).
 * A key read here is checked against the tier at most once per
 * --tier-revalidate, on a thread of its own, so that the read that brings
 * the check about is never held up: a HEAD of its key record, whose time
 * (x-amz-meta-cairn-written, the writer's) is compared with the copy's.
 * Newer there: the copy is dropped here (nothing goes to the tier), and the
 * next read takes the tier's version, or its delete.  Content-addressed
 * keys ("cas") never change and are never checked. */

int tier_key_pending(store *s, MDB_txn *t, const char *nskey, size_t nklen)
{
    return tq_has(s, t, TQ_KEY, nskey, nklen) || tq_has(s, t, TQ_KEY_DEL, nskey, nklen);
}

/* The slot of a key's last check: its own in its set, else the set's
 * oldest (*v its value, *last its time).  A key that is not remembered is
 * due when that one is, so that however many keys are read, a set asks for
 * one check a period at most; and a key in no slot of a set never used
 * (one not read or filled since the start) is due at once, as the copy
 * may be older than anything this run saw. */
static atomic_ullong *reval_slot(tier_state *q, uint32_t h, uint64_t *v, uint32_t *last)
{
    atomic_ullong *set = &q->reval[(h >> 2) % (REVAL_SLOTS / REVAL_WAYS) * REVAL_WAYS];
    atomic_ullong *slot = NULL;
    for (unsigned w = 0; w < REVAL_WAYS; w++) {
        uint64_t x = atomic_load_explicit(&set[w], memory_order_relaxed);
        uint32_t at = (uint32_t)x; /* (0: empty, never checked) */
        if ((uint32_t)(x >> 32) == h) {
            *v = x, *last = at;
            return &set[w];
        }
        if (slot == NULL || at < *last)
            slot = &set[w], *v = x, *last = at;
    }
    return slot;
}

static uint32_t reval_hash(const char *nskey, size_t nklen)
{
    return (uint32_t)(util_fnv1a(nskey, nklen) >> 32) | 1; /* (never 0: an empty slot) */
}

/* A key whose record was just read from the tier is as current as a check
 * would make it: its next check is a period away. */
static void reval_checked(tier_state *q, const char *nskey, size_t nklen)
{
    if (q->reval == NULL || content_addressed(nskey, nklen))
        return; /* (they take no slot) */
    uint32_t h = reval_hash(nskey, nklen), last;
    uint64_t v;
    atomic_store_explicit(reval_slot(q, h, &v, &last), (uint64_t)h << 32 | now_s(),
                          memory_order_relaxed);
}

void tier_revalidate(store *s, const char *nskey, size_t nklen)
{
    tier_state *q = s->tier_q;
    if (q->reval == NULL || content_addressed(nskey, nklen))
        return;
    uint32_t h = reval_hash(nskey, nklen), last;
    uint32_t now = now_s(), every = (uint32_t)(s->cfg.tier_revalidate_ms / 1000);
    /* (no lock for a read whose key is not due: nearly every one) */
    uint64_t v;
    atomic_ullong *slot = reval_slot(q, h, &v, &last);
    if (now - last < (every ? every : 1))
        return;
    pthread_mutex_lock(&q->reval_mu);
    if (atomic_load_explicit(slot, memory_order_relaxed) == v && !q->reval_stop &&
        ring_push(&q->reval_wait, nskey, nklen, 0) == 0) {
        atomic_store_explicit(slot, (uint64_t)h << 32 | now, memory_order_relaxed);
        pthread_cond_signal(&q->reval_cv);
    }
    pthread_mutex_unlock(&q->reval_mu);
}

/* Does the tier's record of the key hold the same body and metadata as the
 * copy here, kr (the same bytes written again elsewhere)?  Its head is
 * enough: a range of it. */
static int record_same(tier_state *q, const char *name, const char *nskey, size_t nklen,
                       const key_rec *kr, uint64_t *written_ms)
{
    void *data = NULL;
    size_t got = 0;
    key_rec there;
    int same =
        tier_get_range(q->t, name, 0, 8 + nklen + 52 + kr->meta_len, &data, &got) == TIER_OK &&
        parse_key_head(data, got, nskey, nklen, &there) != 0 &&
        memcmp(there.digest, kr->digest, 32) == 0 && there.size == kr->size &&
        there.meta_len == kr->meta_len &&
        (kr->meta_len == 0 || memcmp(there.meta, kr->meta, kr->meta_len) == 0);
    if (same)
        *written_ms = there.mtime_ms; /* (the record's own, not its header's) */
    free(data);
    return same;
}

/* The record of a key held here is not in the tier under its name: is it
 * lost?  Not if an earlier build's record of it is there (a fleet being
 * upgraded: that one's nodes still change it there), nor if its bucket is
 * gone from the tier (deleted through another node: its keys are not to
 * come back). */
static int record_lost(store *s, const char *nskey, size_t nklen)
{
    tier_state *q = s->tier_q;
    tier_meta m = {.codec = -1};
    if (atomic_load(&q->legacy) != 0) {
        char v1[80];
        key_name_v1(nskey, nklen, v1);
        int rc = tier_head(q->t, v1, &m);
        if (rc != TIER_NOTFOUND)
            return 0; /* there (or the tier failed: looked at again next period) */
    }
    if (ns_declared(nskey, nklen)) {
        char name[NS_NAME_CAP];
        ns_name(nskey, name); /* (the namespace: nskey up to its NUL) */
        if (tier_head(q->t, name, &m) != TIER_OK)
            return 0;
    }
    return 1;
}

/* The record of the key held here at mtime_ms goes up to the tier again
 * (OP_TIER_OWE): 1 if it was owed again (still so here, and not queued). */
static int owe_key_again(store *s, const char *nskey, size_t nklen, uint64_t mtime_ms)
{
    op o = {.kind = OP_TIER_OWE, .nskey = (char *)nskey, .nklen = nklen, .mtime_ms = mtime_ms};
    return submit_and_wait(s, &o) == STORE_OK && o.target;
}

/* Checks the copy here of a key against the tier's record: STORE_OK, or
 * STORE_UNAVAILABLE if the tier did not answer (checked again later).
 * counted: a check of a copy (revalidations), not the look after a put. */
static int revalidate_one(store *s, const char *nskey, size_t nklen, int counted)
{
    tier_state *q = s->tier_q;
    uint64_t clock = tier_clock(s); /* a change here from now on stands */
    MDB_txn *t = reader_get(s);
    if (t == NULL)
        return STORE_IO;
    key_rec kr;
    int rc = idx_get_key(t, &s->ix, nskey, nklen, &kr);
    int pending = rc == 0 && tier_key_pending(s, t, nskey, nklen);
    void *meta = rc == 0 && kr.meta_len ? malloc(kr.meta_len) : NULL;
    if (meta)
        memcpy(meta, kr.meta, kr.meta_len);
    reader_put(s, t);
    kr.meta = meta; /* (it pointed into the index) */
    if (rc != 0 || pending || (kr.meta_len && meta == NULL)) {
        free(meta);
        return STORE_OK; /* gone, or changed here and not up yet: this node's is the latest */
    }
    char name[KEY_NAME_CAP];
    key_name(q, nskey, nklen, name);
    tier_meta m = {.codec = -1};
    rc = tier_head(q->t, name, &m);
    if (counted && (rc == TIER_OK || rc == TIER_NOTFOUND))
        atomic_fetch_add(&q->revalidations, 1); /* (a failure: checked again next period) */
    /* a later change there; the same bytes written again only give the
     * copy here the later time (fetching them again would move them for
     * nothing) */
    uint64_t again_ms = 0;
    int stale = rc == TIER_OK && m.written_ms > kr.mtime_ms &&
                (record_deleted(m.length) || !record_same(q, name, nskey, nklen, &kr, &again_ms));
    if (rc == TIER_OK && !stale && again_ms > kr.mtime_ms) {
        op o = {.kind = OP_PUT,
                .from_tier = 1,
                .link = 1,
                .fd = -1,
                .fill_clock = clock,
                .retime_from = kr.mtime_ms,
                .nskey = (char *)nskey,
                .nklen = nklen,
                .meta = kr.meta,
                .meta_len = kr.meta_len,
                .mtime_ms = again_ms};
        memcpy(o.cr.sha256, kr.digest, 32);
        o.cr.size = kr.size;
        if (submit_and_wait(s, &o) == STORE_OK)
            log_msg(LOG_DEBUG, "tier_revalidated",
                    "%s: written again by another node, with the same bytes; the copy here "
                    "takes its time",
                    name);
    }
    free(meta);
    if (rc != TIER_OK && rc != TIER_NOTFOUND)
        return STORE_UNAVAILABLE;
    if (rc == TIER_NOTFOUND && !record_lost(s, nskey, nklen))
        return STORE_OK;
    if (rc == TIER_OK && m.written_ms && m.written_ms < kr.mtime_ms &&
        kr.mtime_ms <= util_now_ms() + AHEAD_MAX_MS) { /* (no time a node wrote: not put back) */
        /* an earlier change than the copy here (another node's, that
         * landed after ours: recheck_later): ours goes up again, and wins */
        if (owe_key_again(s, nskey, nklen, kr.mtime_ms))
            log_msg(LOG_INFO, "tier_record_older",
                    "%s: the tier holds an earlier change of this key than the copy here; "
                    "the copy's goes up again",
                    name);
        return STORE_OK;
    }
    if (rc == TIER_NOTFOUND) {
        /* the tier lost the record (removed by hand or by the bucket's
         * rules, or a store that answered its PUT and kept nothing): put
         * back, with its blob if need be, since this node holds both */
        if (owe_key_again(s, nskey, nklen, kr.mtime_ms)) {
            if (counted)
                atomic_fetch_add(&q->revalidated_lost, 1);
            log_msg(LOG_WARN, "tier_record_lost",
                    "%s: not in the tier; it goes up again from the copy here", name);
        }
        return STORE_OK;
    }
    if (stale && store_forget_key(s, nskey, nklen, kr.mtime_ms) == STORE_OK) {
        if (counted)
            atomic_fetch_add(&q->revalidated_stale, 1);
        log_msg(LOG_DEBUG, "tier_revalidated", "%s: %s by another node; the copy here dropped",
                name, record_deleted(m.length) ? "deleted" : "changed");
    }
    return STORE_OK;
}

int tier_check_key(store *s, const char *nskey, size_t nklen)
{
    tier_state *q = s->tier_q;
    if (q == NULL || content_addressed(nskey, nklen))
        return STORE_OK;
    /* (--tier-revalidate 0 turns the checks after reads off, not these) */
    if (tier_must_not_wait())
        return STORE_AGAIN;
    int rc = revalidate_one(s, nskey, nklen, 1);
    if (rc == STORE_OK)
        reval_checked(q, nskey, nklen); /* (the next background check, a period away) */
    return rc;
}

static void *reval_main(void *arg)
{
    store *s = arg;
    tier_state *q = s->tier_q;
    pthread_mutex_lock(&q->reval_mu);
    for (;;) {
        key_ring *later = &q->later;
        uint64_t now = util_mono_ns();
        while (q->reval_wait.n == 0 && !q->reval_stop &&
               !(later->n && later->due[later->head] <= now)) {
            if (later->n) {
                struct timespec ts =
                    util_time_in(CLOCK_MONOTONIC, later->due[later->head] - now); /* (cv's) */
                pthread_cond_timedwait(&q->reval_cv, &q->reval_mu, &ts);
            } else {
                pthread_cond_wait(&q->reval_cv, &q->reval_mu);
            }
            now = util_mono_ns();
        }
        if (q->reval_stop)
            break;
        int counted = q->reval_wait.n > 0; /* (a check of a copy, not the look after a put) */
        size_t nklen;
        char *nskey = ring_pop(counted ? &q->reval_wait : later, &nklen);
        pthread_mutex_unlock(&q->reval_mu);
        revalidate_one(s, nskey, nklen, counted);
        free(nskey);
        pthread_mutex_lock(&q->reval_mu);
    }
    pthread_mutex_unlock(&q->reval_mu);
    tier_thread_done();
    return NULL;
}

/* ---- the keys the tier knows, by prefix ---------------------------------------------- */

typedef struct tier_keys_walk {
    store *s;
    const char *ns;
    const uint8_t *prefix;
    size_t plen, dir_len;
    int (*each)(void *ctx, const void *key, size_t klen);
    void *ctx;
    int stopped, failed;
} tier_keys_walk;

/* The key of namespace ns whose record has the cut name `name` (a long
 * key's), read from the record: into *key (malloc'ed; NULL when the record
 * is gone or not of a key of ns) and *klen.  A tier status. */
static int cut_key(store *s, const char *ns, const char *name, uint8_t **key, size_t *klen)
{
    *key = NULL;
    void *data = NULL;
    size_t len = 0;
    int rc = tier_get(s->tier_q->t, name, -1, &data, &len, RECORD_MAX, NULL);
    if (rc == TIER_NOTFOUND)
        return TIER_OK; /* deleted since the listing */
    if (rc != TIER_OK)
        return rc;
    const uint8_t *p = data;
    size_t nsl = strlen(ns);
    if (len >= 8 && memcmp(p, "CKR1", 4) == 0) {
        size_t nkl = util_get_le32(p + 4);
        const char *nskey = (const char *)p + 8;
        char check[KEY_NAME_CAP];
        if (nkl <= len - 8 && nkl > nsl && memcmp(nskey, ns, nsl) == 0 && nskey[nsl] == '\0') {
            key_name(s->tier_q, nskey, nkl, check);
            if (strcmp(check, name) == 0) {
                *klen = nkl - nsl - 1;
                if ((*key = malloc(*klen + 1)) == NULL)
                    rc = TIER_ERROR;
                else
                    memcpy(*key, nskey + nsl + 1, *klen);
            }
        }
    }
    free(data);
    return rc;
}

static int tier_keys_each(void *arg, const tier_object *o)
{
    tier_keys_walk *w = arg;
    const char *name = o->name;
    if (record_deleted(o->size))
        return 0;
    uint8_t key[KEY_PART_MAX + 1];
    ssize_t kl = key_from_name(name + w->dir_len, key);
    if (kl >= 0) {
        if ((size_t)kl < w->plen || memcmp(key, w->prefix, w->plen) != 0)
            return 0;
        if (w->each(w->ctx, key, (size_t)kl) != 0)
            w->stopped = 1;
        return w->stopped;
    }
    if (strchr(name + w->dir_len, '~') == NULL)
        return 0; /* not a name of ours */
    /* a long key, cut in its name: its record says which */
    uint8_t *cut;
    size_t cl = 0;
    if (cut_key(w->s, w->ns, name, &cut, &cl) != TIER_OK) {
        w->failed = 1;
        return 1;
    }
    if (cut && cl >= w->plen && memcmp(cut, w->prefix, w->plen) == 0 &&
        w->each(w->ctx, cut, cl) != 0)
        w->stopped = 1;
    free(cut);
    return w->stopped;
}

int store_tier_keys(store *s, const char *ns, const void *prefix, size_t plen,
                    int (*each)(void *ctx, const void *key, size_t klen), void *ctx)
{
    if (s->tier_q == NULL)
        return STORE_OK;
    if (tier_must_not_wait())
        return STORE_AGAIN;
    char lp[KEY_NAME_CAP];
    size_t dl = key_prefix(s->tier_q, ns, prefix, plen, lp);
    tier_keys_walk w = {s, ns, prefix, plen, dl, each, ctx, 0, 0};
    int rc = tier_list_objects(s->tier_q->t, lp, NULL, tier_keys_each, &w);
    if (rc != TIER_OK)
        return tier_failed_status(rc);
    return w.failed ? STORE_IO : STORE_OK;
}

/* Runs fn(arg) on n threads at once (at most THREADS_MAX), this one among
 * them, and waits for them: the others let go of their store state
 * (store_thread_done) as they end. */
typedef struct helper {
    void *(*fn)(void *);
    void *arg;
    store *s;
} helper;

static void *helper_main(void *p)
{
    helper *h = p;
    h->fn(h->arg);
    store_thread_done(h->s); /* its read transaction and LMDB slot */
    return NULL;
}

static void on_threads(store *s, unsigned n, void *(*fn)(void *), void *arg)
{
    helper h = {fn, arg, s};
    pthread_t th[THREADS_MAX];
    unsigned started = 0;
    for (unsigned k = 1; k < n && k < THREADS_MAX; k++)
        if (pthread_create(&th[started], NULL, helper_main, &h) == 0)
            started++;
    fn(arg);
    for (unsigned k = 0; k < started; k++)
        pthread_join(th[k], NULL);
}

/* ---- listings of the fleet's keys ------------------------------------------ */

static void snap_put(tier_state *q, fleet_snap *p)
{
    pthread_mutex_lock(&q->heads_mu);
    int last = p && --p->refs == 0;
    pthread_mutex_unlock(&q->heads_mu);
    if (last)
        snap_free(p);
}

/* A listing of the tier under ns and prefix made since FLEET_SNAP_MS, with
 * none of this node's deletes reaching the tier since; NULL if none. */
static fleet_snap *snap_find(tier_state *q, const char *ns, const void *prefix, size_t plen,
                             unsigned long long deletes)
{
    fleet_snap *found = NULL, *gone[FLEET_SNAPS];
    unsigned ngone = 0;
    uint64_t now = util_now_ms();
    pthread_mutex_lock(&q->heads_mu);
    for (unsigned i = 0; i < FLEET_SNAPS; i++) {
        fleet_snap *p = q->snaps[i];
        if (p == NULL)
            continue;
        if (now - p->at_ms > FLEET_SNAP_MS || p->at_ms > now || p->deletes != deletes) {
            q->snaps[i] = NULL; /* too old */
            if (--p->refs == 0)
                gone[ngone++] = p;
        } else if (!found && strcmp(p->ns, ns) == 0 && p->plen == plen &&
                   memcmp(p->prefix, prefix, plen) == 0) {
            found = p;
            p->refs++;
        }
    }
    pthread_mutex_unlock(&q->heads_mu);
    for (unsigned i = 0; i < ngone; i++)
        snap_free(gone[i]);
    return found;
}

/* Keeps p for the next pages, in place of an earlier listing of its prefix,
 * else of the oldest kept. */
static void snap_keep(tier_state *q, fleet_snap *p)
{
    pthread_mutex_lock(&q->heads_mu);
    unsigned o = 0;
    for (unsigned i = 0; i < FLEET_SNAPS; i++) {
        fleet_snap *k = q->snaps[i];
        if (k && strcmp(k->ns, p->ns) == 0 && k->plen == p->plen &&
            memcmp(k->prefix, p->prefix, p->plen) == 0) {
            o = i;
            break;
        }
        if (q->snaps[o] && (k == NULL || k->at_ms < q->snaps[o]->at_ms))
            o = i;
    }
    fleet_snap *old = q->snaps[o];
    q->snaps[o] = p;
    p->refs++;
    int last = old && --old->refs == 0;
    pthread_mutex_unlock(&q->heads_mu);
    if (last)
        snap_free(old);
}

/* One listing's walk of a snapshot, from its first key on. */
typedef struct fleet_list {
    store *s;
    const char *ns;
    const uint8_t *prefix;
    size_t plen, dir_len;
    fleet_snap *snap;
    int failed, too_many;
    size_t first, end; /* the keys looked at here (fleet_pick): [first, end) */
    const char *delim; /* cb's, dlen bytes */
    size_t dlen;
    long taken, budget;   /* items cb could list from the keys looked at; at most */
    const uint8_t *group; /* the common prefix of the last key rolled up */
    size_t group_len;
    int group_live;     /* ... a key of which is listed or held here */
    uint8_t *skip;      /* by key - first: held here (listed from here), or deleted here */
    record_head **head; /* ... its record's head, once read */
    /* the heads to read (indexes into the snapshot), a thread taking the next */
    size_t *want;
    size_t nwant;
    atomic_size_t next;
    atomic_int bad;
} fleet_list;

static int key_cmp(const void *a, size_t al, const void *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    return c ? c : al < bl ? -1 : al > bl;
}

static int fleet_key_cmp(const void *a, const void *b)
{
    const fleet_key *x = a, *y = b;
    return key_cmp(x->key, x->klen, y->key, y->klen);
}

static int fleet_listed(void *arg, const tier_object *o)
{
    fleet_list *l = arg;
    fleet_snap *p = l->snap;
    uint8_t key[KEY_PART_MAX + 1], *cut = NULL;
    ssize_t kl = key_from_name(o->name + l->dir_len, key);
    if (kl < 0) {
        if (strchr(o->name + l->dir_len, '~') == NULL || record_deleted(o->size))
            return 0; /* not a name of ours, or a long key's delete (its record names no key) */
        size_t cl = 0;
        if (cut_key(l->s, l->ns, o->name, &cut, &cl) != TIER_OK) {
            l->failed = 1;
            return 1;
        }
        if (cut == NULL)
            return 0;
        kl = (ssize_t)cl;
    }
    const uint8_t *k = cut ? cut : key;
    int take = (size_t)kl >= l->plen && memcmp(k, l->prefix, l->plen) == 0;
    if (take && p->n >= FLEET_LIST_MAX) {
        l->too_many = 1;
        free(cut);
        return 1;
    }
    size_t nl = strlen(o->name), el = strlen(o->etag ? o->etag : "");
    char *one = NULL;
    if (take && util_grow(&p->v, &p->cap, p->n, sizeof *p->v, 256) == 0 &&
        (one = malloc(nl + 1 + el + 1 + (size_t)kl + 1)) != NULL) {
        memcpy(one, o->name, nl + 1);
        memcpy(one + nl + 1, o->etag ? o->etag : "", el + 1);
        memcpy(one + nl + 1 + el + 1, k, (size_t)kl);
        p->v[p->n++] = (fleet_key){one, one + nl + 1, (uint8_t *)one + nl + 1 + el + 1, (size_t)kl,
                                   record_deleted(o->size)};
    }
    free(cut);
    if (take && one == NULL) {
        l->failed = 1;
        return 1;
    }
    return 0;
}

/* The tier's keys under l's prefix, listed and sorted, into a new snapshot
 * (one reference: l's).  0, or -1 (l->failed, l->too_many, or *rc). */
static int snap_list(fleet_list *l, unsigned long long deletes, int *rc)
{
    tier_state *q = l->s->tier_q;
    char lp[KEY_NAME_CAP];
    fleet_snap *p = calloc(1, sizeof *p);
    if (p == NULL || (p->ns = strdup(l->ns)) == NULL || (p->prefix = malloc(l->plen + 1)) == NULL) {
        snap_free(p);
        l->failed = 1;
        return -1;
    }
    memcpy(p->prefix, l->prefix, l->plen);
    p->plen = l->plen;
    p->at_ms = util_now_ms();
    p->deletes = deletes;
    p->refs = 1;
    l->snap = p;
    l->dir_len = key_prefix(q, l->ns, l->prefix, l->plen, lp);
    *rc = tier_list_any_order(q->t, lp, fleet_listed, l);
    if (*rc != TIER_OK || l->failed || l->too_many) {
        if (l->too_many)
            log_msg(LOG_WARN, "list_tier_long",
                    "%s: more than %d keys in the tier under the prefix; the listing shows "
                    "the keys held here",
                    lp, FLEET_LIST_MAX);
        return -1;
    }
    if (p->n > 1)
        qsort(p->v, p->n, sizeof *p->v, fleet_key_cmp);
    return 0;
}

/* The set of the heads kept where the head of the record `name` goes. */
static unsigned head_set(const char *name)
{
    return (unsigned)(util_fnv1a(name, strlen(name)) >> 8) % (HEAD_SLOTS / HEAD_WAYS) * HEAD_WAYS;
}

/* A head of the record `name` (whose ETag is etag), from kr; NULL if memory
 * runs short. */
static record_head *head_make(const char *name, const char *etag, const key_rec *kr)
{
    record_head *h = calloc(1, sizeof *h);
    if (h == NULL)
        return NULL;
    h->size = kr->size;
    h->mtime_ms = kr->mtime_ms;
    h->meta_len = kr->meta_len;
    snprintf(h->etag, sizeof h->etag, "%s", etag);
    h->name = strdup(name);
    h->meta = kr->meta_len ? malloc(kr->meta_len) : NULL;
    if (h->name == NULL || (kr->meta_len && h->meta == NULL)) {
        head_free(h);
        return NULL;
    }
    if (kr->meta_len)
        memcpy(h->meta, kr->meta, kr->meta_len);
    return h;
}

static record_head *head_copy(const record_head *h)
{
    key_rec kr = {
        .size = h->size, .mtime_ms = h->mtime_ms, .meta = h->meta, .meta_len = h->meta_len};
    return head_make(h->name, h->etag, &kr);
}

/* Keeps a copy of h (of a record with an ETag) for later listings: in place
 * of its record's earlier head, else of an empty or the least used. */
static void head_keep(tier_state *q, const record_head *h)
{
    record_head *c = h->etag[0] ? head_copy(h) : NULL, *old;
    if (c == NULL)
        return;
    unsigned set = head_set(h->name), o = set;
    pthread_mutex_lock(&q->heads_mu);
    for (unsigned i = set; i < set + HEAD_WAYS && q->heads[o]; i++)
        if (q->heads[i] == NULL || q->heads[i]->used < q->heads[o]->used)
            o = i;
    for (unsigned i = set; i < set + HEAD_WAYS; i++)
        if (q->heads[i] && strcmp(q->heads[i]->name, h->name) == 0)
            o = i;
    old = q->heads[o];
    c->used = ++q->heads_tick;
    q->heads[o] = c;
    pthread_mutex_unlock(&q->heads_mu);
    head_free(old);
}

/* The head of f's record, into *out: kept from an earlier listing if the
 * record's ETag is the same, else read from the tier (a ranged GET) and
 * kept.  A tier status: TIER_NOTFOUND when the record is gone or not f's. */
static int fleet_read(store *s, const char *ns, const fleet_key *f, record_head **out)
{
    tier_state *q = s->tier_q;
    unsigned set = head_set(f->name);
    pthread_mutex_lock(&q->heads_mu);
    for (unsigned i = set; i < set + HEAD_WAYS; i++) {
        record_head *kept = q->heads[i];
        if (kept && f->etag[0] && strcmp(kept->name, f->name) == 0 &&
            strcmp(kept->etag, f->etag) == 0) {
            kept->used = ++q->heads_tick;
            *out = head_copy(kept);
            break;
        }
    }
    pthread_mutex_unlock(&q->heads_mu);
    if (*out)
        return TIER_OK;
    size_t nklen;
    char *nskey = make_nskey(s, ns, f->key, f->klen, &nklen);
    if (nskey == NULL)
        return TIER_NOTFOUND; /* (a key too long to be held here is not listed) */
    size_t fixed = 8 + nklen + 52, ask = fixed + 4096;
    void *data = NULL;
    size_t got = 0;
    int rc = tier_get_range(q->t, f->name, 0, ask, &data, &got);
    if (rc == TIER_ERROR || rc == TIER_BAD) {
        /* a record deleted since the listing has no bytes, and a range of
         * none is a 416 (S3: an empty answer, tier.c) or worse (s3rver cuts
         * it short): its HEAD says whether that is all */
        tier_meta m = {.codec = -1};
        int hr = tier_head(q->t, f->name, &m);
        if (hr == TIER_NOTFOUND || (hr == TIER_OK && record_deleted(m.length)))
            rc = TIER_NOTFOUND;
    }
    if (rc == TIER_OK && got == ask) {
        /* metadata longer than asked for: once more, all of it */
        uint64_t whole = fixed + (uint64_t)util_get_le32((const uint8_t *)data + fixed - 4);
        if (whole > got && whole <= RECORD_MAX) {
            free(data);
            data = NULL;
            rc = tier_get_range(q->t, f->name, 0, whole, &data, &got);
        }
    }
    key_rec kr;
    if (rc == TIER_OK && parse_key_head(data, got, nskey, nklen, &kr) == 0)
        rc = TIER_NOTFOUND; /* deleted since the listing (no bytes), or not f's record */
    if (rc == TIER_OK && (*out = head_make(f->name, f->etag, &kr)) == NULL)
        rc = TIER_ERROR;
    free(data);
    free(nskey);
    if (*out)
        head_keep(q, *out);
    return rc;
}

static void *fleet_reader(void *arg)
{
    fleet_list *l = arg;
    for (;;) {
        size_t i = atomic_fetch_add(&l->next, 1);
        if (i >= l->nwant || atomic_load(&l->bad))
            break;
        size_t k = l->want[i];
        if (l->head[k - l->first])
            continue; /* (from a pack) */
        int rc = fleet_read(l->s, l->ns, &l->snap->v[k], &l->head[k - l->first]);
        if (rc == TIER_NOTFOUND)
            l->skip[k - l->first] = 1; /* deleted or changed since, or not a key of ours */
        else if (rc != TIER_OK)
            atomic_store(&l->bad, 1);
    }
    return NULL;
}

/* The length of the common prefix cb rolls f up into (the prefix, then up
 * to the delimiter's end), or 0 if it lists f itself. */
static size_t rolled_into(const fleet_list *l, const fleet_key *f)
{
    if (l->dlen == 0)
        return 0;
    for (size_t i = l->plen; i + l->dlen <= f->klen; i++)
        if (memcmp(f->key + i, l->delim, l->dlen) == 0)
            return i + l->dlen;
    return 0;
}

enum { FK_LISTED, FK_DELETED, FK_HELD };

/* Is f held here (listed from here), deleted here (its delete still
 * queued), or neither?  A key held here whose record in the tier is a
 * delete's is listed from here this time, and checked, as a read of it
 * would be. */
static int held_or_deleted(fleet_list *l, MDB_txn *t, const fleet_key *f)
{
    size_t nklen;
    char *nskey = make_nskey(l->s, l->ns, f->key, f->klen, &nklen);
    key_rec kr;
    int what = nskey == NULL                                       ? FK_DELETED
               : idx_get_key(t, &l->s->ix, nskey, nklen, &kr) == 0 ? FK_HELD
               : tq_has(l->s, t, TQ_KEY_DEL, nskey, nklen)         ? FK_DELETED
                                                                   : FK_LISTED;
    if (what == FK_HELD && f->deleted)
        tier_revalidate(l->s, nskey, nklen);
    free(nskey);
    return what;
}

/* Looks at the snapshot's keys from l->end on (from l->first the first
 * time), until cb could have listed `more` items more (a key listed or held
 * here, or a new common prefix, takes one): marks those held here or
 * deleted here (their deletes still queued), and picks those whose heads
 * cb needs.  0, or -1. */
static int fleet_pick(fleet_list *l, long more)
{
    store *s = l->s;
    fleet_snap *p = l->snap;
    if (l->skip == NULL) {
        size_t room = p->n - l->first;
        l->skip = calloc(room ? room : 1, 1);
        l->head = calloc(room ? room : 1, sizeof *l->head);
        l->end = l->first;
        if (l->skip == NULL || l->head == NULL)
            return -1;
    }
    size_t *w = realloc(l->want, (l->nwant + (size_t)more + 1) * sizeof *l->want);
    if (w == NULL)
        return -1;
    l->want = w;
    l->budget += more;
    size_t cap = l->nwant + (size_t)more;
    MDB_txn *t = reader_get(s);
    if (t == NULL)
        return -1;
    size_t i;
    for (i = l->end; i < p->n && l->taken <= l->budget; i++) {
        const fleet_key *f = &p->v[i];
        size_t cpl = rolled_into(l, f);
        if (cpl) {
            if (l->group == NULL || cpl != l->group_len || memcmp(f->key, l->group, cpl) != 0) {
                l->group = f->key;
                l->group_len = cpl;
                l->group_live = 0;
            } else if (l->group_live) {
                continue; /* its common prefix is counted (and no key of it is listed) */
            }
        }
        int what = held_or_deleted(l, t, f);
        l->skip[i - l->first] = what != FK_LISTED || f->deleted;
        if (what == FK_DELETED || f->deleted)
            continue;
        l->taken++;
        if (cpl)
            l->group_live = 1;
        else if (what == FK_LISTED && l->nwant < cap)
            l->want[l->nwant++] = i;
    }
    l->end = i;
    reader_put(s, t);
    return 0;
}

/* Reads the heads picked from want[start] on, FLEET_THREADS at once.  0,
 * or -1 if the tier could not be read. */
static int fleet_read_heads(fleet_list *l, size_t start)
{
    size_t n = l->nwant - start;
    atomic_store(&l->next, start);
    on_threads(l->s, n < FLEET_THREADS ? (unsigned)n : FLEET_THREADS, fleet_reader, l);
    return atomic_load(&l->bad) ? -1 : 0;
}

/* The walk of the keys held here, with the tier's keys passed to cb in
 * their places. */
typedef struct fleet_merge {
    fleet_list *l;
    store_list_cb cb;
    void *ctx;
    size_t i; /* the tier's next key */
    char floor[1024];
    size_t floor_len; /* cb's last seek: keys below are passed over */
    int stopped, failed;
} fleet_merge;

static int fleet_seeks(fleet_merge *m, int what, const char *seek, size_t seek_len)
{
    if (what == STORE_LIST_SEEK && key_cmp(seek, seek_len, m->floor, m->floor_len) > 0) {
        memcpy(m->floor, seek, seek_len);
        m->floor_len = seek_len;
    }
    if (what == STORE_LIST_STOP)
        m->stopped = 1;
    return what;
}

/* Passes the tier's keys up to (not including) key (all of them when key
 * is NULL) to cb. */
static void fleet_pass(fleet_merge *m, const char *key, size_t klen, char *seek)
{
    fleet_list *l = m->l;
    fleet_snap *p = l->snap;
    for (; !m->stopped && m->i < p->n; m->i++) {
        const fleet_key *f = &p->v[m->i];
        int c = key ? key_cmp(f->key, f->klen, key, klen) : -1;
        if (c >= 0) {
            if (c == 0)
                m->i++; /* the copy here is listed instead */
            break;
        }
        /* (past l->end cb has stopped: fleet_pick looked as far as it lists) */
        size_t j = m->i - l->first;
        if (f->deleted || (m->i < l->end && l->skip[j]) ||
            key_cmp(f->key, f->klen, m->floor, m->floor_len) < 0)
            continue;
        record_head **h = &l->head[j];
        int rc = *h || rolled_into(l, f) ? TIER_OK : fleet_read(l->s, l->ns, f, h);
        if (rc != TIER_OK) {           /* (rare: the heads cb takes were read) */
            if (rc != TIER_NOTFOUND) { /* (not gone since: the tier failed) */
                m->failed = m->stopped = 1;
                break;
            }
            continue;
        }
        store_list_item it = {.key = (const char *)f->key, .klen = f->klen};
        if (*h) {
            it.size = (*h)->size;
            it.mtime_ms = (*h)->mtime_ms;
            it.meta = (*h)->meta;
            it.meta_len = (*h)->meta_len;
        }
        size_t seek_len = 0;
        int what = m->cb(m->ctx, &it, seek, &seek_len);
        fleet_seeks(m, what, seek, seek_len);
    }
}

static int fleet_local(void *ctx, const store_list_item *it, char *seek, size_t *seek_len)
{
    fleet_merge *m = ctx;
    fleet_pass(m, it->key, it->klen, seek);
    if (m->stopped)
        return STORE_LIST_STOP;
    if (key_cmp(it->key, it->klen, m->floor, m->floor_len) < 0) {
        memcpy(seek, m->floor, m->floor_len);
        *seek_len = m->floor_len;
        return STORE_LIST_SEEK;
    }
    int what = m->cb(m->ctx, it, seek, seek_len);
    return fleet_seeks(m, what, seek, *seek_len);
}

static void fleet_done(fleet_list *l)
{
    if (l->head)
        for (size_t i = l->first; i < l->snap->n; i++)
            head_free(l->head[i - l->first]);
    free(l->head);
    free(l->skip);
    free(l->want);
    snap_put(l->s->tier_q, l->snap);
    l->head = NULL;
    l->skip = NULL;
    l->want = NULL;
    l->snap = NULL;
    l->nwant = 0;
}

static int fleet_packs(fleet_list *l);

/* A listing the tier did not answer: STORE_UNAVAILABLE (a 503, retried),
 * not the keys held here alone, which a client would take for all of them
 * (aws s3 sync --delete would delete the others).  For a --tier-timeout
 * after, listings give up at once rather than each wait for a tier that
 * does not answer. */
static int fleet_failed(tier_state *q, const char *ns, const char *why)
{
    log_msg(LOG_WARN, "list_tier_failed", "%s: the tier's keys could not be listed (%s)", ns, why);
    atomic_store(&q->list_failed_ms, (util_mono_ns() / 1000000));
    return STORE_UNAVAILABLE;
}

int store_list_fleet(store *s, const char *ns, const void *prefix, size_t plen, const char *delim,
                     size_t dlen, long want, const void *from, size_t from_len, int after,
                     int next_page, store_list_cb cb, void *ctx)
{
    tier_state *q = s->tier_q;
    if (q == NULL)
        return store_list(s, ns, from, from_len, after, cb, ctx);
    if (tier_must_not_wait())
        return STORE_AGAIN;
    uint64_t failed = atomic_load(&q->list_failed_ms);
    if (failed && (util_mono_ns() / 1000000) - failed < (uint64_t)tier_timeout_ms(q->t))
        return STORE_UNAVAILABLE; /* (fleet_failed) */
    const fleet_list fresh = {
        .s = s, .ns = ns, .prefix = prefix, .plen = plen, .delim = delim, .dlen = dlen};
    fleet_list l = fresh;
    int rc = TIER_OK;
    for (int tries = 0;; tries++) {
        /* a key deleted here whose delete left the queue between the tier's
         * listing and the look at the queue is listed, deleted: look again */
        unsigned long long deletes = atomic_load(&q->deletes_put);
        int listed = 0;
        /* a page after the first takes the tier's keys its first page found
         * (FLEET_SNAP_MS at most): a listing page by page lists the tier once */
        if ((l.snap = next_page && tries == 0 ? snap_find(q, ns, prefix, plen, deletes) : NULL) ==
            NULL) {
            if (snap_list(&l, deletes, &rc) != 0)
                break;
            listed = 1;
        }
        fleet_snap *p = l.snap;
        size_t lo = 0, hi = p->n; /* the first key from `from` on (after it, with after) */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            int c = key_cmp(p->v[mid].key, p->v[mid].klen, from, from_len);
            if (c < 0 || (c == 0 && after))
                lo = mid + 1;
            else
                hi = mid;
        }
        l.first = lo;
        if (fleet_pick(&l, want) != 0) {
            l.failed = 1;
            break;
        }
        if (atomic_load(&q->deletes_put) == deletes || tries == 2) {
            if (listed)
                snap_keep(q, p);
            if (fleet_packs(&l) != 0 || fleet_read_heads(&l, 0) != 0)
                l.failed = 1;
            /* keys found deleted since the listing take no item: as many
             * more are looked at (a few rounds; past them cb may need keys
             * not looked at, which fleet_pass reads then) */
            for (int round = 0, start = 0; !l.failed && round < 4; round++) {
                long gone = 0;
                for (size_t k = (size_t)start; k < l.nwant; k++)
                    gone += l.skip[l.want[k] - l.first];
                if (gone == 0 || l.end >= p->n)
                    break;
                start = (int)l.nwant;
                if (fleet_pick(&l, gone) != 0 || fleet_read_heads(&l, (size_t)start) != 0)
                    l.failed = 1;
            }
            break;
        }
        fleet_done(&l);
        l = fresh;
    }
    if (l.too_many) {
        /* the keys held here, as a node without a tier lists them (logged) */
        fleet_done(&l);
        return store_list(s, ns, from, from_len, after, cb, ctx);
    }
    if (rc != TIER_OK || l.failed) {
        if (l.snap)
            fleet_done(&l);
        return fleet_failed(q, ns, rc != TIER_OK ? tier_why(rc) : "a key record could not be read");
    }
    fleet_merge m = {.l = &l, .cb = cb, .ctx = ctx, .i = l.first};
    int st = store_list(s, ns, from, from_len, after, fleet_local, &m);
    char seek[1024];
    if (st == STORE_OK)
        fleet_pass(&m, NULL, 0, seek);
    fleet_done(&l);
    if (st == STORE_OK && m.failed)
        return fleet_failed(q, ns, "a key record could not be read");
    if (st == STORE_OK)
        atomic_store(&q->list_failed_ms, 0);
    return st;
}

typedef struct ns_keys {
    store *s;
    const char *ns;
    int found;
} ns_keys;

static int ns_key_seen(void *ctx, const void *key, size_t klen)
{
    ns_keys *k = ctx;
    size_t nklen;
    char *nskey = make_nskey(k->s, k->ns, key, klen, &nklen);
    /* a key deleted here whose delete is still on its way does not count,
     * nor one whose delete landed since the listing (tier_has_key asks the
     * queue, then the tier) */
    k->found = nskey == NULL || tier_has_key(k->s, nskey, nklen) != STORE_NOTFOUND;
    free(nskey);
    return k->found;
}

int tier_ns_has_keys(store *s, const char *ns)
{
    ns_keys k = {s, ns, 0};
    int rc = store_tier_keys(s, ns, "", 0, ns_key_seen, &k);
    return rc != STORE_OK ? rc : k.found ? STORE_OK : STORE_NOTFOUND;
}

void tier_wait_key(store *s, const char *nskey, size_t nklen)
{
    tier_state *q = s->tier_q;
    if (q == NULL)
        return;
    uint8_t id[TQ_KEYLEN];
    tq_key(TQ_KEY, nskey, nklen, id);
    /* wait for its gate to go, without taking it (a reader that found it
     * taken would give up on the key); the fill's commit need not linger */
    pthread_mutex_lock(&q->gate_mu);
    gate_wait(s, id, NULL);
    pthread_mutex_unlock(&q->gate_mu);
}

/* A namespace record listed in the tier: made known here if it is not.
 * (A name of 64 bytes may be a record of a build before 2026-11-28, cut
 * there: such a name is looked up only when a request names it.) */
static int ns_listed(void *arg, const char *name)
{
    store *s = arg;
    char ns[130];
    size_t hl = strncmp(name, "ns/", 3) == 0 ? strlen(name + 3) : 0;
    if (hl == 0 || hl % 2 || hl / 2 >= sizeof ns || hl / 2 == 64 ||
        util_unhex(name + 3, hl, (uint8_t *)ns, hl / 2) != 0)
        return 0;
    ns[hl / 2] = '\0';
    /* a tier that lists but does not answer: the rest is not waited for */
    return strlen(ns) == hl / 2 && ns_get_local(s, ns, NULL, NULL, NULL) == STORE_NOTFOUND &&
           tier_resolve_ns(s, ns) == STORE_UNAVAILABLE;
}

int tier_resolve_all_ns(store *s)
{
    if (s->tier_q == NULL)
        return STORE_OK;
    if (tier_must_not_wait())
        return STORE_AGAIN;
    int rc = tier_list(s->tier_q->t, "ns/", ns_listed, s);
    return rc == TIER_OK ? STORE_OK : tier_failed_status(rc);
}

void store_tier_waited(uint64_t waited_ns, int one_answer)
{
    tier_waited(waited_ns, one_answer);
}

int tier_resolve_ns(store *s, const char *ns)
{
    tier_state *q = s->tier_q;
    if (q == NULL || queued(s, TQ_NS_DEL, ns, strlen(ns)))
        return STORE_NOTFOUND;
    if (tier_must_not_wait())
        return STORE_AGAIN;
    uint8_t id[TQ_KEYLEN];
    tq_key(TQ_NS, ns, strlen(ns), id);
    int outcome;
    uint64_t gen;
    for (int tries = 0;; tries++) {
        if (!tier_time_left(q->t))
            return STORE_UNAVAILABLE; /* the reader waited enough: neither asks nor waits */
        if (gate_enter(s, id, &outcome, &gen))
            break;
        /* another reader asked: its answer, if it got one (else ask) */
        if (outcome == GATE_FAILED) {
            tier_spent();
            return STORE_UNAVAILABLE;
        }
        if (outcome == GATE_MISSED)
            return STORE_NOTFOUND;
        if (ns_get_local(s, ns, NULL, NULL, NULL) == STORE_OK)
            return STORE_OK; /* found, and kept here */
        if (tries == 2)
            return STORE_UNAVAILABLE;
    }
    char name[NS_NAME_CAP];
    ns_name(ns, name);
    void *data = NULL;
    size_t len = 0;
    int status = STORE_NOTFOUND;
    int rc = tier_get(q->t, name, -1, &data, &len, RECORD_MAX, NULL);
    if (rc == TIER_OK && ns_record_ok(data, len)) {
        status = ns_take(s, ns, data, len, 0);
        if (status == STORE_EXISTS)
            status = STORE_OK;
    } else if (rc == TIER_BAD || rc == TIER_OK) {
        /* damaged (on the way, most likely: asked again at the next
         * request), or not a record: the tier cannot say now */
        status = STORE_UNAVAILABLE;
        atomic_fetch_add(&q->errors, 1);
        log_msg(LOG_WARN, "tier_corrupt", "bucket record %s: %s", name,
                rc == TIER_OK ? "not a bucket record" : tier_why(rc));
    } else if (rc != TIER_NOTFOUND) {
        status = tier_failed_status(rc); /* not a namespace that does not exist */
        if (rc != TIER_LOCAL && rc != TIER_LATE)
            atomic_fetch_add(&q->errors, 1);
    }
    free(data);
    gate_leave(q, id,
               status == STORE_UNAVAILABLE && rc != TIER_LATE ? GATE_FAILED
               : rc == TIER_NOTFOUND                          ? GATE_MISSED
                                                              : GATE_LOOK_AGAIN);
    return status;
}

/* ---- warmups from packs (see the top of the file) ---------------------------- */

#define PACK_WARM_MIN 32       /* fewer keys than this to warm: one request each is as good */
#define PACK_PROBE (64u << 10) /* the first read of a pack: its index, mostly */

typedef struct pack_want {
    char *name;  /* its key record's name in the tier */
    char *nskey; /* namespace \0 key */
    size_t nklen, i;
    char etag[TIER_ETAG_CAP]; /* as the listing has it; empty: not listed */
    int64_t mtime;            /* the record's Last-Modified, as listed */
} pack_want;

typedef struct pack_obj {
    char *name;
    uint64_t size;
} pack_obj;

typedef struct pack_warm {
    store *s;
    pack_want *w;
    size_t nw;
    atomic_uchar *taken; /* by want: claimed by a pack */
    pack_obj *packs;
    size_t npacks, packs_cap;
    atomic_size_t next;      /* the next pack to read (newest first) */
    atomic_size_t unclaimed; /* listed wants no pack has given yet */
    atomic_size_t reads;     /* pack indexes read */
    size_t reads_max;        /* ... at most: beyond that, one request a key is cheaper */
    uint64_t clock;          /* tier_clock before the listing */
    size_t seen, seen_max, listed, packs_max;
    atomic_int *cancel;
    void (*warmed)(void *ctx, size_t i, uint64_t size);
    void *ctx;
    /* a record found in a pack, checked, for a listing: its head is taken,
     * and no fill made */
    void (*found)(struct pack_warm *pw, pack_want *w, const uint8_t *rec, size_t len);
    pthread_mutex_t mu; /* pending */
    pthread_cond_t cv;
    size_t pending;   /* fills handed to the committer, not yet done */
    atomic_size_t ok; /* keys warmed */
} pack_warm;

/* A fill from a pack, committed in the background. */
typedef struct pack_fill {
    fill_job j; /* first */
    pack_warm *pw;
    size_t i;
    uint64_t size;
} pack_fill;

static int want_cmp(const void *a, const void *b)
{
    return strcmp(((const pack_want *)a)->name, ((const pack_want *)b)->name);
}

static pack_want *want_find(pack_warm *pw, const char *name)
{
    pack_want k = {.name = (char *)name};
    return bsearch(&k, pw->w, pw->nw, sizeof *pw->w, want_cmp);
}

static int want_listed(void *arg, const tier_object *o)
{
    pack_warm *pw = arg;
    pack_want *w = want_find(pw, o->name);
    if (w && o->etag[0] && !w->etag[0] && !record_deleted(o->size)) {
        snprintf(w->etag, sizeof w->etag, "%s", o->etag);
        w->mtime = o->mtime;
        pw->listed++;
    }
    /* a listing much larger than the keys wanted costs more than it saves
     * (or finds few of them, past its first pages): what it found so far is
     * used */
    ++pw->seen;
    return pw->seen > pw->seen_max || (pw->seen >= 3000 && pw->listed * 16 < pw->seen) ||
           (pw->cancel && atomic_load(pw->cancel));
}

static int pack_listed(void *arg, const tier_object *o)
{
    pack_warm *pw = arg;
    if (pw->npacks == pw->packs_cap) {
        size_t cap = pw->packs_cap ? 2 * pw->packs_cap : 64;
        pack_obj *n = realloc(pw->packs, cap * sizeof *n);
        if (n == NULL)
            return 1;
        pw->packs = n;
        pw->packs_cap = cap;
    }
    if ((pw->packs[pw->npacks].name = strdup(o->name)) == NULL)
        return 1;
    pw->packs[pw->npacks++].size = o->size;
    /* newest first (their names say so): the oldest are left unlisted */
    return pw->npacks >= pw->packs_max || (pw->cancel && atomic_load(pw->cancel));
}

static void pack_fill_done(store *s, op *o)
{
    pack_fill *f = (pack_fill *)o;
    pack_warm *pw = f->pw;
    if (o->status == STORE_OK) {
        atomic_fetch_add(&pw->ok, 1);
        atomic_fetch_add(&s->tier_q->hits, 1);
        atomic_fetch_add(&s->tier_q->pack_hits, 1);
        pw->warmed(pw->ctx, f->i, f->size);
    }
    gate_leave(s->tier_q, f->j.id, GATE_LOOK_AGAIN);
    fill_job_free(&f->j); /* frees f: j is its first member */
    pthread_mutex_lock(&pw->mu);
    if (--pw->pending == 0)
        pthread_cond_broadcast(&pw->cv);
    pthread_mutex_unlock(&pw->mu);
}

/* Commits the key record rec (a pack's copy, checked) for want w, as a
 * read through the tier would; in the background. */
static void pack_fill_one(pack_warm *pw, pack_want *w, const uint8_t *rec, size_t len)
{
    store *s = pw->s;
    tier_state *q = s->tier_q;
    parsed_record pr;
    if (parse_key_record(rec, len, w->nskey, w->nklen, &pr) != 0 || pr.blob == NULL) {
        atomic_fetch_add(&q->corrupt, 1);
        return; /* fetched on its own */
    }
    uint8_t id[TQ_KEYLEN];
    tq_key(TQ_KEY, w->nskey, w->nklen, id);
    uint64_t gen;
    if (!gate_enter(s, id, NULL, &gen))
        return; /* a read fetched it meanwhile */
    pack_fill *f = calloc(1, sizeof *f);
    fill_job *j = f ? &f->j : NULL;
    /* a delete or a write here since the listing drops the fill (the
     * listing's ETag may be stale by then); the tier's copy is as old as its
     * record there */
    if (j == NULL || queued(s, TQ_KEY_DEL, w->nskey, w->nklen) ||
        fill_job_init(j, id, gen, w->nskey, w->nklen, &pr.kr, pw->clock, (uint32_t)w->mtime) != 0) {
        if (j)
            fill_job_free(j);
        gate_leave(q, id, GATE_LOOK_AGAIN);
        return;
    }
    reval_checked(q, w->nskey, w->nklen);
    op *o = &j->o;
    f->pw = pw;
    f->i = w->i;
    f->size = pr.kr.size;
    int rc = TIER_OK;
    if (have_blob(s, pr.kr.digest))
        o->link = 1;
    else
        rc = adopt_carried(s, &pr, j);
    if (rc != TIER_OK) {
        fill_job_free(j);
        gate_leave(q, id, GATE_LOOK_AGAIN);
        return;
    }
    pthread_mutex_lock(&pw->mu);
    pw->pending++;
    pthread_mutex_unlock(&pw->mu);
    fill_submit(s, j, pack_fill_done);
}

typedef struct pack_pick {
    size_t w;     /* the want */
    uint64_t off; /* of its record in the pack */
    uint32_t len;
    const uint8_t *sha;
} pack_pick;

/* Reads one pack: its index, then the span of the records it holds for
 * wants not yet taken, whose ETags match the listing. */
static void pack_read(pack_warm *pw, const pack_obj *po)
{
    tier *t = pw->s->tier_q->t;
    void *head = NULL, *rest = NULL, *span = NULL;
    size_t got = 0, rest_got = 0, span_got = 0, np = 0;
    pack_pick *picks = NULL;
    uint64_t want_len = po->size < PACK_PROBE ? po->size : PACK_PROBE;
    if (po->size > PACK_SIZE_MAX)
        goto out; /* not a pack this build writes */
    atomic_fetch_add(&pw->reads, 1);
    if (want_len < PACK_HEAD || tier_get_range(t, po->name, 0, want_len, &head, &got) != TIER_OK ||
        got < PACK_HEAD || memcmp(head, "CPK1", 4) != 0)
        goto out;
    uint32_t count = util_get_le32((uint8_t *)head + 4),
             idx_len = util_get_le32((uint8_t *)head + 8);
    if ((uint64_t)PACK_HEAD + idx_len > po->size || idx_len > PACK_INDEX_MAX ||
        count > PACK_ENTRIES || count > idx_len / PACK_ENTRY + 1)
        goto out;
    const uint8_t *idx = (uint8_t *)head + PACK_HEAD;
    if (PACK_HEAD + (size_t)idx_len > got) {
        /* a long index: the rest of it */
        size_t more = PACK_HEAD + (size_t)idx_len - got;
        uint8_t *all = malloc(idx_len);
        if (all == NULL || tier_get_range(t, po->name, got, more, &rest, &rest_got) != TIER_OK ||
            rest_got != more) {
            free(all);
            goto out;
        }
        memcpy(all, idx, got - PACK_HEAD);
        memcpy(all + got - PACK_HEAD, rest, more);
        free(rest);
        rest = all;
        idx = all;
    }
    picks = malloc((count ? count : 1) * sizeof *picks);
    if (picks == NULL)
        goto out;
    size_t p = 0;
    uint64_t off = PACK_HEAD + (uint64_t)idx_len, lo = UINT64_MAX, hi = 0, useful = 0;
    char name[KEY_NAME_CAP + 1], etag[TIER_ETAG_CAP];
    for (uint32_t k = 0; k < count; k++) {
        if (idx_len - p < PACK_ENTRY)
            goto out;
        uint32_t rl = util_get_le32(idx + p);
        const uint8_t *sha = idx + p + 4;
        size_t el = idx[p + 36];
        if (idx_len - p < PACK_ENTRY + el)
            goto out;
        memcpy(etag, idx + p + 37, el < sizeof etag ? el : sizeof etag - 1);
        etag[el < sizeof etag ? el : sizeof etag - 1] = '\0';
        size_t nl = idx[p + 37 + el] | (size_t)idx[p + 38 + el] << 8;
        if (idx_len - p < PACK_ENTRY + el + nl)
            goto out;
        int fits = nl < sizeof name;
        if (fits) {
            memcpy(name, idx + p + PACK_ENTRY + el, nl);
            name[nl] = '\0';
        }
        p += PACK_ENTRY + el + nl;
        pack_want *w = fits ? want_find(pw, name) : NULL;
        if (rl < 8 || rl > RECORD_MAX)
            goto out;
        if (w && w->etag[0] && strcmp(w->etag, etag) == 0 && off + rl <= po->size &&
            !atomic_exchange(&pw->taken[w - pw->w], 1)) {
            atomic_fetch_sub(&pw->unclaimed, 1);
            picks[np++] = (pack_pick){(size_t)(w - pw->w), off, rl, sha};
            lo = off < lo ? off : lo;
            hi = off + rl > hi ? off + rl : hi;
            useful += rl;
        }
        off += rl;
    }
    if (np == 0)
        goto out;
    if (useful * 4 < hi - lo) {
        /* mostly records not wanted: those wanted are fetched on their own */
        np = 0;
        goto out;
    }
    if (tier_get_range(t, po->name, lo, hi - lo, &span, &span_got) != TIER_OK ||
        span_got != hi - lo)
        goto out; /* each fetched on its own */
    for (size_t k = 0; k < np; k++) {
        const uint8_t *rec = (uint8_t *)span + (picks[k].off - lo);
        uint8_t d[32];
        sha256_of(rec, picks[k].len, d);
        if (memcmp(d, picks[k].sha, 32) != 0) {
            atomic_fetch_add(&pw->s->tier_q->corrupt, 1);
            continue;
        }
        if (pw->found)
            pw->found(pw, &pw->w[picks[k].w], rec, picks[k].len);
        else
            pack_fill_one(pw, &pw->w[picks[k].w], rec, picks[k].len);
    }
    np = 0;
out:
    /* claims this pack did not fill are someone else's to try */
    for (size_t k = 0; k < np; k++) {
        atomic_store(&pw->taken[picks[k].w], 0);
        atomic_fetch_add(&pw->unclaimed, 1);
    }
    free(picks);
    free(head);
    free(rest);
    free(span);
}

static void *pack_thread(void *arg)
{
    pack_warm *pw = arg;
    for (;;) {
        size_t k = atomic_fetch_add(&pw->next, 1);
        if (k >= pw->npacks || atomic_load(&pw->unclaimed) == 0 ||
            atomic_load(&pw->reads) >= pw->reads_max || (pw->cancel && atomic_load(pw->cancel)))
            break;
        pack_read(pw, &pw->packs[k]); /* listed newest first */
    }
    return NULL;
}

/* Lets go of what a warmup from packs (or a listing's) gathered. */
static void pack_warm_free(pack_warm *pw)
{
    for (size_t i = 0; i < pw->nw; i++) {
        free(pw->w[i].name);
        free(pw->w[i].nskey);
    }
    for (size_t i = 0; i < pw->npacks; i++)
        free(pw->packs[i].name);
    free(pw->packs);
    free(pw->w);
    free((void *)pw->taken);
    pthread_mutex_destroy(&pw->mu);
    pthread_cond_destroy(&pw->cv);
}

static void fleet_found(pack_warm *pw, pack_want *w, const uint8_t *rec, size_t len)
{
    fleet_list *l = pw->ctx;
    key_rec kr;
    record_head *h;
    if (parse_key_head(rec, len, w->nskey, w->nklen, &kr) == 0 ||
        (h = head_make(w->name, w->etag, &kr)) == NULL)
        return; /* read on its own */
    l->head[w->i - l->first] = h;
    head_keep(l->s->tier_q, h);
}

/* The heads picked for a listing, from the namespace's packs where they are
 * (small keys' records, as a warmup reads them); the others are read one
 * by one.  0, or -1 if the tier did not list the packs. */
static int fleet_packs(fleet_list *l)
{
    store *s = l->s;
    int rc = TIER_OK;
    if (l->nwant < PACK_WARM_MIN)
        return 0;
    pack_warm pw = {.s = s, .ctx = l, .found = fleet_found};
    pthread_mutex_init(&pw.mu, NULL);
    pthread_cond_init(&pw.cv, NULL);
    pw.w = calloc(l->nwant, sizeof *pw.w);
    for (size_t k = 0; pw.w && k < l->nwant; k++) {
        const fleet_key *f = &l->snap->v[l->want[k]];
        pack_want *w = &pw.w[pw.nw];
        if ((w->nskey = make_nskey(s, l->ns, f->key, f->klen, &w->nklen)) == NULL ||
            (w->name = strdup(f->name)) == NULL) {
            free(w->nskey);
            continue;
        }
        w->i = l->want[k];
        snprintf(w->etag, sizeof w->etag, "%s", f->etag);
        pw.nw++;
    }
    if (pw.nw >= PACK_WARM_MIN) {
        qsort(pw.w, pw.nw, sizeof *pw.w, want_cmp);
        pw.listed = pw.nw;
        pw.reads_max = pw.nw / 8 + 4;
        pw.packs_max = pw.reads_max;
        atomic_store(&pw.unclaimed, pw.nw);
        char pd[PACK_DIR_CAP];
        pack_dir(l->ns, strlen(l->ns), pd);
        rc = tier_list_objects(s->tier_q->t, pd, NULL, pack_listed, &pw);
        pw.taken = calloc(pw.nw, sizeof *pw.taken);
        if (rc == TIER_OK && pw.taken && pw.npacks)
            on_threads(s, pw.npacks < FLEET_THREADS ? (unsigned)pw.npacks : FLEET_THREADS,
                       pack_thread, &pw);
    }
    pack_warm_free(&pw);
    return rc == TIER_OK ? 0 : -1;
}

size_t store_warm_packs(store *s, const char *ns, const char *const *keys, const size_t *klens,
                        size_t n, unsigned parallel, atomic_int *cancel,
                        void (*warmed)(void *ctx, size_t i, uint64_t size), void *ctx)
{
    tier_state *q = s->tier_q;
    if (q == NULL || n < PACK_WARM_MIN)
        return 0;
    pack_warm pw = {.s = s, .cancel = cancel, .warmed = warmed, .ctx = ctx, .clock = tier_clock(s)};
    pthread_mutex_init(&pw.mu, NULL);
    pthread_cond_init(&pw.cv, NULL);
    pw.w = calloc(n, sizeof *pw.w);
    MDB_txn *t = pw.w ? reader_get(s) : NULL;
    size_t common = SIZE_MAX;
    for (size_t i = 0; t && i < n; i++) {
        size_t nklen;
        char *nskey = make_nskey(s, ns, keys[i], klens[i], &nklen);
        key_rec kr;
        if (nskey == NULL || idx_get_key(t, &s->ix, nskey, nklen, &kr) == 0) {
            free(nskey); /* here already (or not a key): store_warm says which */
            continue;
        }
        pack_want *w = &pw.w[pw.nw];
        char name[KEY_NAME_CAP];
        key_name(s->tier_q, nskey, nklen, name);
        if ((w->name = strdup(name)) == NULL) {
            free(nskey);
            break;
        }
        w->nskey = nskey;
        w->nklen = nklen;
        w->i = i;
        if (pw.nw == 0)
            common = klens[i];
        size_t c = 0;
        while (c < common && c < klens[i] && keys[i][c] == keys[pw.w[0].i][c])
            c++;
        common = c;
        pw.nw++;
    }
    if (t)
        reader_put(s, t);
    if (pw.nw >= PACK_WARM_MIN) {
        qsort(pw.w, pw.nw, sizeof *pw.w, want_cmp);
        /* the key records' ETags, listed under the keys' common prefix */
        char lp[KEY_NAME_CAP];
        key_prefix(q, ns, keys[pw.w[0].i], common, lp);
        pw.seen_max = 4 * pw.nw + 5000;
        int rc = tier_list_objects(q->t, lp, NULL, want_listed, &pw); /* stops past seen_max */
        /* and the namespace's newest packs (names sort newest first) */
        char pd[PACK_DIR_CAP];
        pack_dir(ns, strlen(ns), pd);
        /* one index read per 8 keys at most (a pack that gives keys gives
         * dozens), and as many packs listed */
        pw.reads_max = pw.listed / 8 + 4;
        pw.packs_max = pw.reads_max;
        atomic_store(&pw.unclaimed, pw.listed);
        if (rc == TIER_OK && pw.listed >= PACK_WARM_MIN)
            rc = tier_list_objects(q->t, pd, NULL, pack_listed, &pw);
        if (rc != TIER_OK)
            log_msg(LOG_DEBUG, "tier_pack_list", "%s: %s (keys are fetched one by one)", pd,
                    tier_why(rc));
        pw.taken = calloc(pw.nw, sizeof *pw.taken);
        if (pw.taken && pw.npacks)
            on_threads(s, parallel < pw.npacks ? parallel : (unsigned)pw.npacks, pack_thread, &pw);
        store_hurry(s); /* the fills are waited for */
        pthread_mutex_lock(&pw.mu);
        while (pw.pending > 0)
            pthread_cond_wait(&pw.cv, &pw.mu);
        pthread_mutex_unlock(&pw.mu);
    }
    pack_warm_free(&pw);
    return atomic_load(&pw.ok);
}
