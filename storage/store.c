/*
 * store.c - the store: uploads, the committer thread, reads, eviction,
 * last-access bookkeeping, quarantine and orphan sweeping.  See store.h.
 *
 * Threads.  Any number of request threads read (lock-free, through their own
 * LMDB read transaction) and upload (into their own temporary file).  Exactly
 * one committer thread writes the index and moves files in blobs/: renaming a
 * finished upload into place, unlinking blobs that lost their last key,
 * evicting, quarantining, sweeping orphans.  Because only it touches blobs/,
 * "is this file referenced?" and "rename it into place" never race.
 *
 * A batch.  The committer takes every queued operation at once, applies each
 * in a nested transaction (one bad operation does not spoil the others),
 * fsyncs the blob directories it renamed into, commits once, and only then
 * unlinks the files of blobs that lost their last reference and wakes the
 * waiting requests.  A crash before the commit leaves renamed files that no
 * record points at (orphans, swept at the next start); a crash after it
 * leaves at worst an unreferenced file too.  Never the reverse.
 *
 * Lingering.  A fill from the cold tier is answered before it commits, and
 * nobody waits for its commit.  A queue that holds such async ops alone
 * waits up to FILL_LINGER_MS (or until FILL_LINGER_OPS are queued) for more,
 * so that a stream of cold reads makes one index sync per batch rather than
 * one per read; any op somebody waits for, or store_hurry, ends the wait.
 * A crash in the meantime loses only local copies of what the tier holds.
 *
 * Last access.  Reads record (digest, time) in a small in-memory table; the
 * committer writes the table out every touch_interval_ms, so a read never
 * costs an LMDB write.
 */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include <openssl/evp.h>

#include "../common/log.h"
#include "../common/checksum.h"
#include "../common/util.h"
#include "codec.h"
#include "index.h"
#include "multipart.h"

#include "store_int.h"

static atomic_ullong next_store_id = 1;

static __thread struct {
    uint64_t store_id;
    MDB_txn *txn;
} tls_reader;

static __thread struct {
    int on, would_block;
} tls_nonblocking;

void store_nonblocking(int on)
{
    tls_nonblocking.on = on;
    tls_nonblocking.would_block = 0;
}

int store_would_block(void)
{
    int w = tls_nonblocking.would_block;
    tls_nonblocking.would_block = 0;
    return w;
}

int store_would_block_peek(void)
{
    return tls_nonblocking.would_block;
}

int store_has_tier(const store *s)
{
    return s->tier_q != NULL;
}

int tier_must_not_wait(void)
{
    if (tls_nonblocking.on)
        tls_nonblocking.would_block = 1;
    return tls_nonblocking.on;
}

const char *store_strerror(int status)
{
    switch (status) {
    case STORE_OK:
        return "ok";
    case STORE_NOTFOUND:
        return "not found";
    case STORE_DIGEST_MISMATCH:
        return "body does not match its digest";
    case STORE_NOSPACE:
        return "no space left in the store";
    case STORE_TOO_LARGE:
        return "body larger than the store can hold";
    case STORE_BAD_KEY:
        return "key too long or malformed";
    case STORE_CORRUPT:
        return "stored blob failed its checksum and was quarantined";
    case STORE_SHUTDOWN:
        return "store is shutting down";
    case STORE_EXISTS:
        return "already exists";
    case STORE_NOT_EMPTY:
        return "not empty";
    case STORE_AGAIN:
        return "would wait for the cold tier";
    case STORE_UNAVAILABLE:
        return "the cold tier could not be reached";
    case STORE_TIER_BEHIND:
        return "the cold tier is behind (--tier-queue-max bytes wait for it); retry later";
    case STORE_NO_NAMESPACE:
        return "the namespace does not exist";
    case STORE_PRECONDITION:
        return "the key changed since its condition was checked";
    default:
        return "I/O error in the store";
    }
}

void store_config_defaults(store_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->dir = "cairn-data";
    cfg->max_size = 10ULL << 30;
    cfg->high_pct = 90;
    cfg->low_pct = 80;
    cfg->zstd_level = 1;
    cfg->map_size = 256ULL << 30;
    cfg->fsync = 1;
    cfg->touch_interval_ms = 2000;
    cfg->multipart_ttl_ms = 7ULL * 24 * 3600 * 1000;
    cfg->inline_max = 16u << 10;
}

static uint64_t percent_of(uint64_t v, unsigned pct)
{
    return v / 100 * pct + v % 100 * pct / 100; /* exact, and no overflow */
}

static uint64_t high_bytes(const store *s)
{
    return percent_of(s->cfg.max_size, s->cfg.high_pct);
}

static uint64_t low_bytes(const store *s)
{
    return percent_of(s->cfg.max_size, s->cfg.low_pct);
}

void blob_path(const store *s, const uint8_t d[32], char *out, size_t cap)
{
    char hex[65];
    util_hex(d, 32, hex);
    snprintf(out, cap, "%s/blobs/%.2s/%s", s->dir, hex, hex);
}

int map_mdb(int rc)
{
    if (rc == 0)
        return STORE_OK;
    if (rc == MDB_NOTFOUND)
        return STORE_NOTFOUND;
    if (rc == MDB_MAP_FULL || rc == ENOSPC)
        return STORE_NOSPACE;
    if (rc == RC_TIER_BEHIND)
        return STORE_TIER_BEHIND;
    if (rc == RC_NO_NAMESPACE)
        return STORE_NO_NAMESPACE;
    if (rc == RC_PRECONDITION)
        return STORE_PRECONDITION;
    if (rc == MDB_BAD_VALSIZE)
        return STORE_BAD_KEY;
    return STORE_IO;
}

static int digest_list_has(const digest_list *l, const uint8_t d[32])
{
    for (size_t i = 0; i < l->n; i++)
        if (memcmp(l->d[i], d, 32) == 0)
            return 1;
    return 0;
}

static int digest_list_push(digest_list *l, const uint8_t d[32])
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        void *p = realloc(l->d, cap * 32);
        if (p == NULL)
            return -1;
        l->d = p;
        l->cap = cap;
    }
    memcpy(l->d[l->n++], d, 32);
    return 0;
}

/* ---- namespaced keys ------------------------------------------------------ */

int store_key_fits(const store *s, const char *ns, size_t klen)
{
    return klen > 0 && strlen(ns) + 1 + klen <= s->ix.max_key;
}

char *make_nskey(const store *s, const char *ns, const void *key, size_t klen, size_t *out)
{
    size_t nl = strlen(ns);
    if (!store_key_fits(s, ns, klen))
        return NULL;
    char *p = malloc(nl + 1 + klen);
    if (p == NULL)
        return NULL;
    memcpy(p, ns, nl + 1);
    memcpy(p + nl + 1, key, klen);
    *out = nl + 1 + klen;
    return p;
}

/* ---- read transactions ---------------------------------------------------- */

MDB_txn *reader_get(store *s)
{
    pthread_rwlock_rdlock(&s->map_lock);
    if (tls_reader.store_id == s->id && tls_reader.txn != NULL) {
        if (mdb_txn_renew(tls_reader.txn) == 0)
            return tls_reader.txn;
        pthread_rwlock_unlock(&s->map_lock);
        return NULL;
    }
    MDB_txn *t;
    if (mdb_txn_begin(s->ix.env, NULL, MDB_RDONLY, &t) != 0) {
        pthread_rwlock_unlock(&s->map_lock);
        return NULL;
    }
    pthread_mutex_lock(&s->readers_mu);
    int kept = s->nreaders < MAX_READERS;
    if (kept)
        s->readers[s->nreaders++] = t;
    pthread_mutex_unlock(&s->readers_mu);
    if (kept) {
        tls_reader.store_id = s->id;
        tls_reader.txn = t;
    }
    return t;
}

void store_thread_done(store *s)
{
    tier_thread_end(s);
    if (tls_reader.store_id != s->id || tls_reader.txn == NULL)
        return;
    pthread_mutex_lock(&s->readers_mu);
    for (size_t i = 0; i < s->nreaders; i++)
        if (s->readers[i] == tls_reader.txn) {
            s->readers[i] = s->readers[--s->nreaders];
            break;
        }
    pthread_mutex_unlock(&s->readers_mu);
    mdb_txn_abort(tls_reader.txn); /* its reader slot goes back to LMDB */
    tls_reader.txn = NULL;
    tls_reader.store_id = 0;
}

void reader_put(store *s, MDB_txn *t)
{
    if (tls_reader.store_id == s->id && tls_reader.txn == t)
        mdb_txn_reset(t);
    else
        mdb_txn_abort(t);
    pthread_rwlock_unlock(&s->map_lock);
}

/* Grows the LMDB map (address space, not disk) before it can fill: when
 * three quarters are used, it doubles.  LMDB allows this only while no
 * transaction is live in the process, hence the lock readers share. */
static void grow_map(store *s, int force)
{
    MDB_envinfo info;
    MDB_stat st;
    if (mdb_env_info(s->ix.env, &info) != 0 || mdb_env_stat(s->ix.env, &st) != 0)
        return;
    uint64_t used = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
    if (!force && used < (uint64_t)info.me_mapsize / 4 * 3)
        return;
    size_t size = info.me_mapsize * 2;
    pthread_rwlock_wrlock(&s->map_lock);
    int rc = mdb_env_set_mapsize(s->ix.env, size);
    pthread_rwlock_unlock(&s->map_lock);
    if (rc == 0)
        log_msg(LOG_INFO, "index_map_grown", "LMDB map grown to %zu bytes (%llu in use)", size,
                (unsigned long long)used);
    else
        log_msg(LOG_ERROR, "index_map_grow_failed", "%s", mdb_strerror(rc));
}

/* ---- the queue ---------------------------------------------------------- */

#define FILL_LINGER_MS 100
#define FILL_LINGER_OPS 64
#define COMMITTER_NAP_NS 200000000ULL /* an idle committer looks at the clock this often */

/* Queues o for the committer; called with s->mu held. */
static void append_op(store *s, op *o)
{
    o->next = NULL;
    o->done = 0;
    if (s->head == NULL)
        s->queued_ns = util_mono_ns();
    s->nqueued++;
    s->urgent |= o->on_done == NULL;
    if (s->tail)
        s->tail->next = o;
    else
        s->head = o;
    s->tail = o;
    pthread_cond_signal(&s->cv_work);
}

int store_broken(store *s)
{
    return atomic_load(&s->broken);
}

/* The disk failed to make the index durable: no more changes (store_broken). */
static void set_broken(store *s, int rc)
{
    if (!atomic_exchange(&s->broken, 1))
        log_msg(LOG_ERROR, "store_broken",
                "the disk failed to make the index durable (%s): changes are refused and "
                "/readyz answers 503 from now on; restart cairnd once the disk is sound",
                mdb_strerror(rc));
}

void store_cut_long(store *s)
{
    atomic_store(&s->cut_long, 1);
}

int store_long_cut(store *s)
{
    return atomic_load(&s->cut_long);
}

int submit_and_wait(store *s, op *o)
{
    pthread_mutex_lock(&s->mu);
    if (s->stopping && o->kind != OP_FLUSH) {
        pthread_mutex_unlock(&s->mu);
        return STORE_SHUTDOWN;
    }
    append_op(s, o);
    while (!o->done)
        pthread_cond_wait(&s->cv_done, &s->mu);
    pthread_mutex_unlock(&s->mu);
    return o->status;
}

void submit_async(store *s, op *o)
{
    pthread_mutex_lock(&s->mu);
    append_op(s, o); /* the committer drains its queue before it stops */
    pthread_mutex_unlock(&s->mu);
}

void store_hurry(store *s)
{
    pthread_mutex_lock(&s->mu);
    if (s->head != NULL) { /* (an empty queue: what comes next may linger) */
        s->urgent = 1;
        pthread_cond_signal(&s->cv_work);
    }
    pthread_mutex_unlock(&s->mu);
}

/* How long the committer may wait (s->mu held) before it takes the queue
 * (or writes last-access times out, at next_touch): 0 to take it now. */
static uint64_t committer_idle_ns(const store *s, uint64_t now, uint64_t next_touch)
{
    if (s->stopping || now >= next_touch)
        return 0;
    uint64_t until = next_touch < now + COMMITTER_NAP_NS ? next_touch : now + COMMITTER_NAP_NS;
    if (s->head != NULL) {
        uint64_t linger_end = s->queued_ns + FILL_LINGER_MS * 1000000ULL;
        if (s->urgent || s->nqueued >= FILL_LINGER_OPS || now >= linger_end)
            return 0;
        if (linger_end < until)
            until = linger_end;
    }
    return until - now;
}

/* ---- committer: operations inside a transaction ---------------------------- */

/* Counts keys coming and going: the totals and their namespace's usage. */
static int count_keys(store *s, MDB_txn *t, idx_stats *st, const char *nskey, size_t nklen,
                      int64_t dkeys, int64_t dbytes)
{
    st->keys += (uint64_t)dkeys;
    st->referenced += (uint64_t)dbytes;
    return idx_usage_add(t, &s->ix, nskey, strnlen(nskey, nklen), dkeys, dbytes);
}

/* Removes a blob and every key that uses it; its file goes to `later`. */
static int drop_blob(store *s, MDB_txn *t, idx_stats *st, const uint8_t d[32], const blob_rec *b,
                     digest_list *later)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(t, s->ix.refs, &c);
    if (rc != 0)
        return rc;
    MDB_val k = {32, (void *)d}, v;
    rc = mdb_cursor_get(c, &k, &v, MDB_SET_KEY);
    while (rc == 0) {
        key_rec kr;
        if (idx_get_key(t, &s->ix, v.mv_data, v.mv_size, &kr) == 0) {
            if ((rc = count_keys(s, t, st, v.mv_data, v.mv_size, -1, -(int64_t)kr.size)) != 0 ||
                (rc = idx_del_key(t, &s->ix, v.mv_data, v.mv_size)) != 0)
                break;
            /* a fill that read the tier before (a warmup's listing, say) must
             * not bring back an older value of a key written here since: a
             * write stops it while the key is here (apply_put), this once it
             * is gone */
            tier_key_changed_now(s, v.mv_data, v.mv_size);
        }
        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT_DUP);
    }
    mdb_cursor_close(c);
    if (rc != MDB_NOTFOUND)
        return rc;
    rc = mdb_del(t, s->ix.refs, &k, NULL);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return rc;
    if ((rc = idx_del_blob(t, &s->ix, d, b)) != 0 || (rc = tier_blob_dropped(s, t, st, d)) != 0)
        return rc;
    st->blobs--;
    st->logical -= b->size;
    st->physical -= b->stored;
    if (b->format == BLOB_INLINE)
        return 0; /* its bytes went with its record */
    return digest_list_push(later, d) == 0 ? 0 : ENOMEM;
}

static int unref_blob(store *s, MDB_txn *t, idx_stats *st, const uint8_t d[32])
{
    blob_rec b;
    int rc = idx_get_blob(t, &s->ix, d, &b);
    if (rc != 0)
        return rc;
    if (b.refs > 1) {
        b.refs--;
        return idx_put_blob(t, &s->ix, d, &b);
    }
    if ((rc = idx_del_blob(t, &s->ix, d, &b)) != 0 || (rc = tier_blob_dropped(s, t, st, d)) != 0)
        return rc;
    st->blobs--;
    st->logical -= b.size;
    st->physical -= b.stored;
    if (b.format == BLOB_INLINE)
        return 0;
    return digest_list_push(&s->unlink_later, d) == 0 ? 0 : ENOMEM;
}

/* Puts an upload's file at path: links the unnamed file in, or renames the
 * temporary one.  A file already there has no index record (the committer
 * alone makes them): it is an orphan of a crash, and is replaced. */
static int place_blob(op *o, const char *path)
{
    if (!o->anon)
        return rename(o->tmp, path);
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", o->fd);
    int rc = linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW);
    if (rc != 0 && errno == EEXIST && unlink(path) == 0)
        rc = linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW);
    return rc;
}

static int blob_known(store *s, MDB_txn *t, const uint8_t d[32])
{
    blob_rec b;
    return idx_get_blob(t, &s->ix, d, &b) == 0;
}

/* The bytes a batch's uploads bring.  Near the high mark (known): less
 * those of bodies stored already, which are marked used now (they are being
 * written again), so that the room made for the others does not take them. */
static uint64_t incoming_bytes(store *s, MDB_txn *t, const op *list, int known)
{
    uint64_t n = 0, now = util_now_ms();
    for (const op *o = list; o; o = o->next) {
        if (o->kind != OP_PUT)
            continue;
        blob_rec b;
        MDB_txn *child;
        if (!known || idx_get_blob(t, &s->ix, o->cr.sha256, &b) != 0) {
            n += o->cr.stored;
        } else if (b.atime < now && mdb_txn_begin(s->ix.env, t, 0, &child) == 0) {
            if (idx_move_atime(child, &s->ix, o->cr.sha256, &b, now) == 0)
                mdb_txn_commit(child);
            else
                mdb_txn_abort(child); /* (only the order of eviction is at stake) */
        }
    }
    return n;
}

static int ns_has_keys_in(store *s, MDB_txn *t, const char *ns, int *has);

/* Is the namespace of nskey there, if it is a declared one (a bucket's:
 * see store_ns_create)?  0, RC_NO_NAMESPACE, or an LMDB error.  There is
 * its record, or, as store_ns_get takes it, keys of it held here (read
 * through the tier while the tier could not be asked for the bucket); a
 * DeleteBucket leaves neither.  Asked in the write's own transaction: a
 * bucket deleted while a body came must not get the key, nor a bucket
 * made again later. */
static int ns_there(store *s, MDB_txn *t, const char *nskey, size_t nklen)
{
    if (!ns_declared(nskey, nklen))
        return 0;
    MDB_val k = {strlen(nskey), (void *)nskey}, v; /* (the namespace: up to the NUL) */
    int has, rc = mdb_get(t, s->ix.ns, &k, &v);
    if (rc != MDB_NOTFOUND)
        return rc;
    if ((rc = ns_has_keys_in(s, t, nskey, &has)) != 0)
        return rc;
    return has ? 0 : RC_NO_NAMESPACE;
}

uint64_t store_cond_clock(store *s)
{
    return tier_clock(s);
}

static void meta_sha256(const void *meta, size_t len, uint8_t out[32])
{
    EVP_Digest(len ? meta : "", len, out, NULL, cksum_md_sha256(), NULL);
}

void store_cond_set(store_cond *c, uint64_t clock, const store_entry *e)
{
    memset(c, 0, sizeof *c);
    c->kind = e ? STORE_COND_SAME : STORE_COND_ABSENT;
    c->clock = clock;
    if (e) {
        c->held = !e->from_tier;
        memcpy(c->digest, e->digest, 32);
        meta_sha256(e->meta, e->meta_len, c->meta_sha256);
    }
}

static int cond_same(const store_cond *c, const uint8_t digest[32], const void *meta, size_t len)
{
    uint8_t m[32];
    meta_sha256(meta, len, m);
    return memcmp(digest, c->digest, 32) == 0 && memcmp(m, c->meta_sha256, 32) == 0;
}

int store_cond_is(const store_cond *c, const store_entry *e)
{
    return c->kind == STORE_COND_SAME     ? e && cond_same(c, e->digest, e->meta, e->meta_len)
           : c->kind == STORE_COND_ABSENT ? e == NULL
                                          : 1;
}

/* Is the key still as o->cond saw it?  0, RC_PRECONDITION, or an LMDB error. */
static int cond_holds(store *s, MDB_txn *t, const op *o)
{
    const store_cond *c = o->cond;
    if (c == NULL || c->kind == STORE_COND_NONE)
        return 0;
    key_rec kr;
    int rc = idx_get_key(t, &s->ix, o->nskey, o->nklen, &kr);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return rc;
    int holds = c->kind == STORE_COND_ABSENT ? rc == MDB_NOTFOUND
                : rc == 0                    ? cond_same(c, kr.digest, kr.meta, kr.meta_len)
                          /* read through the tier, not kept yet, and not changed here since */
                          : !c->held && !tier_changed_since(s, o->nskey, o->nklen, c->clock);
    return holds ? 0 : RC_PRECONDITION;
}

static int apply_put(store *s, MDB_txn *t, idx_stats *st, op *o)
{
    const uint8_t *d = o->cr.sha256;
    if (o->from_tier && (tier_key_deleted(s, t, o->nskey, o->nklen) ||
                         tier_changed_since(s, o->nskey, o->nklen, o->fill_clock)))
        return MDB_NOTFOUND; /* deleted here meanwhile: the tier's copy is stale */
    int rc;
    if (!o->from_tier && (rc = ns_there(s, t, o->nskey, o->nklen)) != 0)
        return rc;
    if ((rc = cond_holds(s, t, o)) != 0)
        return rc;
    key_rec old, kr;
    int had_old = idx_get_key(t, &s->ix, o->nskey, o->nklen, &old) == 0;
    if (o->from_tier && had_old &&
        !(o->retime_from && old.mtime_ms == o->retime_from && memcmp(old.digest, d, 32) == 0))
        return MDB_NOTFOUND; /* written here since the fill began: that is newer */
    if (o->retime_from && !had_old)
        return MDB_NOTFOUND; /* a new time for a copy that is gone since (deleted here) */
    int same = had_old && memcmp(old.digest, d, 32) == 0;
    uint64_t old_size = had_old ? old.size : 0;
    uint8_t old_digest[32];
    if (had_old)
        memcpy(old_digest, old.digest, 32);

    blob_rec b;
    rc = idx_get_blob(t, &s->ix, d, &b);
    int create = rc == MDB_NOTFOUND;
    if (rc != 0 && !create)
        return rc;
    if (o->link) {
        if (create)
            return MDB_NOTFOUND;
        o->cr.size = b.size;
    }
    if (create) {
        memset(&b, 0, sizeof b);
        b.format = o->inl ? BLOB_INLINE : BLOB_FILE;
        b.codec = (uint8_t)o->cr.codec;
        b.size = o->cr.size;
        b.stored = o->cr.stored;
        b.refs = 1;
        b.tier = o->from_tier ? 1 : 0;
        b.tier_time = o->from_tier ? o->tier_time : 0;
        b.atime = util_now_ms();
        if ((rc = idx_move_atime(t, &s->ix, d, &b, b.atime)) != 0)
            return rc;
        st->blobs++;
        st->logical += b.size;
        st->physical += b.stored;
    } else if (!same) {
        b.refs++;
        if ((rc = idx_move_atime(t, &s->ix, d, &b, util_now_ms())) != 0)
            return rc;
    }

    memcpy(kr.digest, d, 32);
    kr.size = o->cr.size;
    kr.mtime_ms = o->mtime_ms ? o->mtime_ms : util_now_ms();
    o->mtime_ms = kr.mtime_ms; /* (the caller may give it back: a copy's LastModified) */
    kr.meta = o->meta;
    kr.meta_len = o->meta_len;
    if ((rc = idx_put_key(t, &s->ix, o->nskey, o->nklen, &kr)) != 0)
        return rc;
    if (!same) {
        if ((rc = idx_add_ref(t, &s->ix, d, o->nskey, o->nklen)) != 0)
            return rc;
        if (had_old) {
            if ((rc = idx_del_ref(t, &s->ix, old_digest, o->nskey, o->nklen)) != 0)
                return rc;
            if ((rc = unref_blob(s, t, st, old_digest)) != 0)
                return rc;
        }
    }
    if ((rc = count_keys(s, t, st, o->nskey, o->nklen, had_old ? 0 : 1,
                         (int64_t)o->cr.size - (int64_t)old_size)) != 0)
        return rc;
    if ((rc = tier_queue_put(s, t, st, o, create, &b)) != 0)
        return rc;

    if (create && o->inl) {
        if ((rc = idx_put_inline(t, &s->ix, d, o->inl, o->inl_len)) != 0)
            return rc;
    } else if (create) {
        char path[PATH_MAX];
        blob_path(s, d, path, sizeof path);
        /* an op before it in this batch dropped the blob, whose file goes
         * (or is quarantined) once the batch commits: replacing the file
         * now would lose it if the batch did not commit, and the index
         * still pointed at it (the lists, long after an eviction, are
         * looked at only when a file is there) */
        struct stat sb;
        if (stat(path, &sb) == 0 &&
            (digest_list_has(&s->unlink_later, d) || digest_list_has(&s->quarantine_later, d)))
            return RC_LATER;
        int moved = place_blob(o, path) == 0;
        if (!moved && errno == ENOENT) {
            /* blobs/<xx>/ is made on first use: startup does not pay for 256 mkdirs */
            char dir[PATH_MAX];
            snprintf(dir, sizeof dir, "%.*s", (int)(strrchr(path, '/') - path), path);
            if (mkdir(dir, 0755) == 0)
                s->blobs_dir_dirty = 1;
            moved = place_blob(o, path) == 0;
        }
        if (!moved)
            return errno;
        s->dirs_dirty[d[0]] = 1;
        o->created = 1; /* o->tmp is kept: undo_create may need to move it back */
    } else {
        o->dedup = 1;
    }
    return 0;
}

static int apply_delete(store *s, MDB_txn *t, idx_stats *st, op *o)
{
    key_rec kr;
    int rc = cond_holds(s, t, o);
    if (rc != 0)
        return rc;
    rc = idx_get_key(t, &s->ix, o->nskey, o->nklen, &kr);
    if (rc == MDB_NOTFOUND && o->tier_only)
        return tier_queue_delete(s, t, o->nskey, o->nklen); /* a fill meanwhile yields to it */
    if (rc != 0)
        return rc;
    if (o->forget && (kr.mtime_ms != o->mtime_ms || tier_key_pending(s, t, o->nskey, o->nklen)))
        return MDB_NOTFOUND; /* written here since, or not in the tier yet: it stays */
    uint8_t d[32];
    memcpy(d, kr.digest, 32);
    uint64_t size = kr.size;
    if ((rc = idx_del_key(t, &s->ix, o->nskey, o->nklen)) != 0)
        return rc;
    if ((rc = idx_del_ref(t, &s->ix, d, o->nskey, o->nklen)) != 0)
        return rc;
    if ((rc = count_keys(s, t, st, o->nskey, o->nklen, -1, -(int64_t)size)) != 0)
        return rc;
    if (!o->forget && (rc = tier_queue_delete(s, t, o->nskey, o->nklen)) != 0)
        return rc;
    return unref_blob(s, t, st, d);
}

/* Drops the records of blobs whose files are missing or of the wrong size
 * (their keys with them: a key the tier holds is read through it again). */
static int apply_drop_missing(store *s, MDB_txn *t, idx_stats *st, op *o)
{
    for (size_t i = 0; i < o->ndigests; i++) {
        blob_rec b;
        int rc = idx_get_blob(t, &s->ix, o->digests[i], &b);
        if (rc == MDB_NOTFOUND || (rc == 0 && b.format != BLOB_FILE))
            continue;
        if (rc != 0)
            return rc;
        char path[PATH_MAX];
        struct stat sb;
        blob_path(s, o->digests[i], path, sizeof path);
        if (stat(path, &sb) == 0 && (uint64_t)sb.st_size == b.stored)
            continue; /* it is here after all */
        if ((rc = drop_blob(s, t, st, o->digests[i], &b, &s->unlink_later)) != 0)
            return rc;
    }
    return 0;
}

static int apply_quarantine(store *s, MDB_txn *t, idx_stats *st, op *o)
{
    blob_rec b;
    int rc = idx_get_blob(t, &s->ix, o->digests[0], &b);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    if (b.format == BLOB_INLINE) {
        if (o->ino != 0)
            return 0; /* the failing file was replaced by an inline copy */
        char hex[65];
        util_hex(o->digests[0], 32, hex);
        s->batch_corrupt++;
        log_msg(LOG_WARN, "blob_quarantined", "inline blob %s failed its checks, dropped", hex);
        return drop_blob(s, t, st, o->digests[0], &b, NULL);
    }
    char path[PATH_MAX];
    struct stat sb;
    blob_path(s, o->digests[0], path, sizeof path);
    if (stat(path, &sb) != 0 || sb.st_ino != o->ino)
        return 0; /* already replaced or gone */
    return drop_blob(s, t, st, o->digests[0], &b, &s->quarantine_later);
}

static int apply_sweep(store *s, MDB_txn *t, op *o)
{
    for (size_t i = 0; i < o->ndigests; i++) {
        blob_rec b;
        if (idx_get_blob(t, &s->ix, o->digests[i], &b) == MDB_NOTFOUND)
            digest_list_push(&s->unlink_later, o->digests[i]);
    }
    return 0;
}

/* Evicts least recently used blobs until physical <= target (at most max_n). */
static int evict_in_txn(store *s, MDB_txn *t, idx_stats *st, uint64_t target, size_t max_n,
                        size_t *evicted)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(t, s->ix.atime, &c);
    if (rc != 0)
        return rc;
    *evicted = 0;
    uint8_t skip[40]; /* the last atime entry passed over: a blob the tier does not hold yet */
    int skipping = 0;
    while (st->physical > target && *evicted < max_n) {
        MDB_val k, v;
        if (skipping) {
            k.mv_size = sizeof skip;
            k.mv_data = skip;
            rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
            if (rc == 0 && k.mv_size == sizeof skip && memcmp(k.mv_data, skip, sizeof skip) == 0)
                rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
        } else {
            rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
        }
        if (rc != 0)
            break;
        uint8_t d[32];
        memcpy(d, (uint8_t *)k.mv_data + 8, 32);
        blob_rec b;
        if ((rc = idx_get_blob(t, &s->ix, d, &b)) != 0) {
            if (rc != MDB_NOTFOUND || (rc = mdb_cursor_del(c, 0)) != 0)
                break; /* a stray atime entry is dropped; anything else stops */
            continue;
        }
        if (!tier_evictable(s, t, d, &b)) {
            memcpy(skip, k.mv_data, sizeof skip);
            skipping = 1;
            continue;
        }
        uint64_t stored = b.stored;
        char hex[65];
        util_hex(d, 32, hex);
        log_msg(LOG_DEBUG, "evict", "blob %s last used %llu", hex, (unsigned long long)b.atime);
        if ((rc = drop_blob(s, t, st, d, &b, &s->unlink_later)) != 0)
            break;
        (*evicted)++;
        s->batch_evicted_blobs++;
        s->batch_evicted_bytes += stored;
    }
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static void sync_dirty_dirs(store *s)
{
    if (s->blobs_dir_dirty && s->cfg.fsync) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/blobs", s->dir);
        util_fsync_dir(path);
    }
    s->blobs_dir_dirty = 0;
    for (int i = 0; i < 256; i++) {
        if (!s->dirs_dirty[i])
            continue;
        s->dirs_dirty[i] = 0;
        if (!s->cfg.fsync)
            continue;
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/blobs/%02x", s->dir, i);
        util_fsync_dir(path);
    }
}

/* Keeps, from a list of blobs to unlink, only those the index does not know. */
static void keep_unreferenced(store *s, MDB_txn *t, digest_list *l)
{
    size_t j = 0;
    for (size_t i = 0; i < l->n; i++) {
        blob_rec b;
        if (idx_get_blob(t, &s->ix, l->d[i], &b) == MDB_NOTFOUND)
            memmove(l->d[j++], l->d[i], 32);
    }
    l->n = j;
}

static void unlink_files(store *s, digest_list *l, int quarantine)
{
    for (size_t i = 0; i < l->n; i++) {
        char path[PATH_MAX];
        blob_path(s, l->d[i], path, sizeof path);
        if (quarantine) {
            char hex[65], dst[PATH_MAX];
            util_hex(l->d[i], 32, hex);
            snprintf(dst, sizeof dst, "%s/quarantine/%s", s->dir, hex);
            if (rename(path, dst) == 0) {
                atomic_fetch_add(&s->corrupt_blobs, 1);
                log_msg(LOG_WARN, "blob_quarantined", "blob %s failed its checks, moved to %s", hex,
                        dst);
            }
        } else if (unlink(path) != 0 && errno != ENOENT) {
            log_msg(LOG_WARN, "unlink_failed", "%s: %s", path, strerror(errno));
        }
    }
    l->n = 0;
}

/* Namespace records: be64(created ms) followed by the front end's metadata. */
static int apply_ns_create(store *s, MDB_txn *t, op *o)
{
    MDB_val k = {strlen(o->nskey), o->nskey}, v;
    if (o->adopt && mdb_get(t, s->ix.ns, &k, &v) != 0)
        return MDB_NOTFOUND; /* deleted here since: it stays so */
    v.mv_size = 8 + o->meta_len;
    int rc = mdb_put(t, s->ix.ns, &k, &v, (o->adopt ? 0 : MDB_NOOVERWRITE) | MDB_RESERVE);
    if (rc != 0)
        return rc;
    uint64_t now = o->created_ms ? o->created_ms : util_now_ms();
    for (int i = 0; i < 8; i++)
        ((uint8_t *)v.mv_data)[i] = (uint8_t)(now >> (56 - 8 * i));
    if (o->meta_len)
        memcpy((uint8_t *)v.mv_data + 8, o->meta, o->meta_len);
    return o->from_tier ? 0 : tier_queue_ns(s, t, o->nskey, 0);
}

/* Whether namespace ns has keys here (*has); 0, or an LMDB error. */
static int ns_has_keys_in(store *s, MDB_txn *t, const char *ns, int *has)
{
    size_t nl = strlen(ns);
    MDB_val k = {nl + 1, (void *)ns}, v; /* "<ns>\0": the first possible key */
    MDB_cursor *c;
    *has = 0;
    int rc = mdb_cursor_open(t, s->ix.keys, &c);
    if (rc != 0)
        return rc;
    rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    *has = rc == 0 && k.mv_size > nl && memcmp(k.mv_data, ns, nl + 1) == 0;
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int apply_ns_delete(store *s, MDB_txn *t, op *o)
{
    size_t nl = strlen(o->nskey);
    int has, rc = ns_has_keys_in(s, t, o->nskey, &has);
    if (rc != 0)
        return rc;
    if (has)
        return MDB_KEYEXIST; /* mapped to STORE_NOT_EMPTY by the caller */
    MDB_val name = {nl, o->nskey};
    if ((rc = mdb_del(t, s->ix.ns, &name, NULL)) != 0)
        return rc;
    return tier_queue_ns(s, t, o->nskey, 1);
}

static int apply_op(store *s, MDB_txn *t, idx_stats *st, op *o)
{
    switch (o->kind) {
    case OP_PUT:
        return apply_put(s, t, st, o);
    case OP_DELETE:
        return apply_delete(s, t, st, o);
    case OP_QUARANTINE:
        return apply_quarantine(s, t, st, o);
    case OP_SWEEP:
        return apply_sweep(s, t, o);
    case OP_DROP_MISSING:
        return apply_drop_missing(s, t, st, o);
    case OP_NS_CREATE:
        return apply_ns_create(s, t, o);
    case OP_NS_DELETE:
        return apply_ns_delete(s, t, o);
    case OP_TIER_DONE:
    case OP_TIER_RETRY:
        return tier_apply(s, t, st, o);
    case OP_TIER_OWE:
        return tier_owe(s, t, st, o);
    case OP_TIER_NS_ALL:
        return tier_owe_all_ns(s, t, o);
    case OP_TIER_HURRY: {
        int rc;
        o->target = idx_tq_due_now(t, &s->ix, util_now_ms(), o->target, &rc);
        return rc;
    }
    case OP_EVICT: {
        size_t n;
        int rc;
        do
            rc = evict_in_txn(s, t, st, o->target, EVICT_PER_TXN, &n);
        while (rc == 0 && n == EVICT_PER_TXN && st->physical > o->target);
        return rc;
    }
    default:
        return 0;
    }
}

static void finish_batch(store *s, op *list, int fail_status)
{
    op *async = NULL;
    pthread_mutex_lock(&s->mu);
    for (op *o = list; o;) {
        op *next = o->next;
        if (fail_status != STORE_OK && o->status == STORE_OK)
            o->status = fail_status;
        if (o->on_done) {
            o->next = async;
            async = o;
        } else {
            o->done = 1; /* from here the waiter owns o: do not touch it */
        }
        o = next;
    }
    pthread_cond_broadcast(&s->cv_done);
    pthread_mutex_unlock(&s->mu);
    while (async) {
        op *next = async->next;
        async->on_done(s, async);
        async = next;
    }
}

/* Moves a blob file that this op renamed into place back where it came from. */
static void undo_create(store *s, op *o)
{
    if (!o->created)
        return;
    char path[PATH_MAX];
    blob_path(s, o->cr.sha256, path, sizeof path);
    if (o->anon || rename(path, o->tmp) != 0)
        unlink(path); /* an unnamed file lives on through its descriptor */
    o->created = 0;
}

#define MAP_FULL_RETRIES 3
#define NEARLY_FULL (8u << 20)

/* LMDB reports a short write of its pages as EIO.  Writes come up short when
 * the disk fills in the middle of one: with the disk (nearly) full, the
 * failure is a want of space, to be answered as such. */
static int commit_error(store *s, int rc)
{
    struct statvfs vs;
    if (rc == EIO && statvfs(s->dir, &vs) == 0 && (uint64_t)vs.f_bavail * vs.f_frsize < NEARLY_FULL)
        return ENOSPC;
    return rc;
}

/* Ops that free no room: on a full disk they would take what deletions need
 * (a hurry of the tier's queue rewrites many entries) */
static int op_takes_room(const op *o)
{
    return o->kind == OP_PUT || o->kind == OP_NS_CREATE || o->kind == OP_TIER_HURRY;
}

/* The bytes of multipart uploads' parts (never below 0: two removals of one upload at once may both
 * count it) */
static uint64_t multipart_bytes(store *s)
{
    long long v = atomic_load(&s->mpu_bytes);
    return v > 0 ? (uint64_t)v : 0;
}

/* Ops that go again in a batch of their own, after this one */
static int op_again(const op *o)
{
    return o->map_full || o->later;
}

/* Must the op's commit be durable before it is finished?  The index is
 * opened with MDB_NOMETASYNC: a commit's data pages are synced, its meta
 * page only by the next commit, so a power loss may take back the last
 * commit.  That is fine for a fill from the cold tier (read again), a tier
 * queue entry carried out (looked at again) or an eviction's record, not
 * for a write or delete a client was answered for. */
static int op_needs_sync(const op *o)
{
    switch (o->kind) {
    case OP_PUT:
        return !o->from_tier;
    case OP_EVICT:
    case OP_TIER_DONE:
    case OP_TIER_RETRY:
    case OP_TIER_HURRY:
    case OP_TIER_OWE: /* (lost: the next check finds the record missing again) */
        return 0;
    default:
        return 1;
    }
}

/* Splits a batch in two, keeping the order: the ops pick() holds for, and the rest */
static void split_batch(op *list, int (*pick)(const op *), op **picked, op **rest)
{
    op **ptail = picked, **rtail = rest;
    for (op *o = list, *next; o; o = next) {
        next = o->next;
        o->next = NULL;
        op ***tail = pick(o) ? &ptail : &rtail;
        **tail = o;
        *tail = &o->next;
    }
    *ptail = NULL;
    *rtail = NULL;
}

/* Applies a batch of ops in one transaction, and finishes them; the
 * commit's error (0 if it committed) */
static int process_batch(store *s, op *list, int attempt)
{
    MDB_txn *t;
    idx_stats st;
    if (store_broken(s)) {
        finish_batch(s, list, STORE_IO);
        return EIO;
    }
    grow_map(s, 0);
    s->tier_kick_pending = 0;
    s->batch_evicted_blobs = s->batch_evicted_bytes = s->batch_corrupt = 0;
    int rc = mdb_txn_begin(s->ix.env, NULL, 0, &t);
    if (rc == 0 && (rc = idx_get_stats(t, &s->ix, &st)) != 0)
        mdb_txn_abort(t);
    if (rc != 0) {
        log_msg(LOG_ERROR, "index_txn_failed", "%s", mdb_strerror(rc));
        finish_batch(s, list, map_mdb(rc));
        return rc;
    }

    /* Make room before the new bodies land, if they would cross the high
     * mark.  Bodies stored already need none, and are kept (looked up only
     * near the mark). */
    uint64_t parts = multipart_bytes(s); /* (they take room too) */
    uint64_t incoming = incoming_bytes(s, t, list, 0);
    if (s->cfg.max_size && st.physical + parts + incoming > high_bytes(s))
        incoming = incoming_bytes(s, t, list, 1);
    if (s->cfg.max_size && st.physical + parts + incoming > high_bytes(s)) {
        /* down to the low mark; while parts (or one large body) take
         * more than that, only as far as needed, not the whole cache */
        uint64_t low = low_bytes(s), high = high_bytes(s), need = parts + incoming;
        uint64_t target = need < low               ? low - need
                          : need < high            ? high - need
                          : need < s->cfg.max_size ? s->cfg.max_size - need
                                                   : 0;
        size_t n;
        do
            rc = evict_in_txn(s, t, &st, target, EVICT_PER_TXN, &n);
        while (rc == 0 && n == EVICT_PER_TXN && st.physical > target);
    }

    int any_map_full = 0, any_later = 0;
    for (op *o = list; o; o = o->next) {
        MDB_txn *child;
        idx_stats saved = st;
        size_t unl = s->unlink_later.n, quar = s->quarantine_later.n;
        uint64_t ev_blobs = s->batch_evicted_blobs, ev_bytes = s->batch_evicted_bytes,
                 corrupt = s->batch_corrupt;
        o->status = STORE_OK;
        o->map_full = o->later = 0;
        uint64_t others = parts > o->parts_freed ? parts - o->parts_freed : 0;
        if (o->kind == OP_PUT && s->cfg.max_size &&
            st.physical + others + o->cr.stored > s->cfg.max_size &&
            !blob_known(s, t, o->cr.sha256)) { /* a body already stored takes no room */
            o->status = STORE_NOSPACE;
            continue;
        }
        if ((rc = mdb_txn_begin(s->ix.env, t, 0, &child)) != 0) {
            o->status = map_mdb(rc);
            continue;
        }
        rc = apply_op(s, child, &st, o);
        if (rc == 0)
            rc = mdb_txn_commit(child);
        else
            mdb_txn_abort(child);
        if (rc != 0) {
            undo_create(s, o);
            if (rc == MDB_KEYEXIST)
                o->status = o->kind == OP_NS_CREATE ? STORE_EXISTS : STORE_NOT_EMPTY;
            else
                o->status = rc == EXDEV || rc == ENOENT ? STORE_IO : map_mdb(rc);
            o->map_full = rc == MDB_MAP_FULL;
            any_map_full |= o->map_full;
            if ((o->later = rc == RC_LATER) != 0) {
                o->status = STORE_OK; /* (so far: it has yet to go) */
                any_later = 1;
            }
            st = saved;
            s->unlink_later.n = unl;
            s->quarantine_later.n = quar;
            s->batch_evicted_blobs = ev_blobs;
            s->batch_evicted_bytes = ev_bytes;
            s->batch_corrupt = corrupt;
        }
    }
    keep_unreferenced(s, t, &s->unlink_later);
    keep_unreferenced(s, t, &s->quarantine_later);
    rc = idx_put_stats(t, &s->ix, &st);
    sync_dirty_dirs(s);
    if (rc == 0)
        rc = commit_error(s, mdb_txn_commit(t));
    else
        mdb_txn_abort(t);

    if (rc != 0) {
        /* Nothing of this batch happened: take back the files it put in place. */
        s->unlink_later.n = 0;
        s->quarantine_later.n = 0;
        for (op *o = list; o; o = o->next)
            undo_create(s, o);
        if (rc == MDB_MAP_FULL && attempt < MAP_FULL_RETRIES) {
            grow_map(s, 1);
            return process_batch(s, list, attempt + 1);
        }
        log_msg(LOG_ERROR, "index_commit_failed", "%s", mdb_strerror(rc));
        if (rc == EIO) /* (a commit syncs its pages: the disk failed that) */
            set_broken(s, rc);
        if (rc == ENOSPC && list->next != NULL) {
            /* A full disk.  LMDB copies on write, so deletions need new
             * pages too, and pages freed by the last transactions cannot be
             * used yet: a batch may need the file to grow where one op
             * would not.  The writes are refused; the rest (deletions, which
             * free room) go again one by one, each freeing pages for those
             * after it, until one fails before any went through */
            op *refused, *again;
            split_batch(list, op_takes_room, &refused, &again);
            finish_batch(s, refused, STORE_NOSPACE);
            int went = 0;
            while (again) {
                op *o = again;
                again = o->next;
                o->next = NULL;
                int orc = process_batch(s, o, attempt);
                if (orc == 0) {
                    went = 1;
                } else if (orc == ENOSPC && !went) {
                    finish_batch(s, again, STORE_NOSPACE);
                    break;
                }
            }
            return rc;
        }
        finish_batch(s, list, map_mdb(rc));
        return rc;
    }
    /* Durable before anyone is answered, and before a file goes that the
     * index a power loss would bring back still names (invariant 1) */
    int need_sync = s->unlink_later.n || s->quarantine_later.n;
    for (op *o = list; o && !need_sync; o = o->next)
        need_sync = op_needs_sync(o);
    int synced = 1;
    if (need_sync && (rc = mdb_env_sync(s->ix.env, 1)) != 0) {
        /* committed, but not known to be on disk: the answers say the
         * writes failed (a client sends again), and the files stay (an
         * orphan is swept, a missing file would be a lost body); the ops
         * to go again still go */
        log_msg(LOG_ERROR, "index_sync_failed", "%s", mdb_strerror(rc));
        if (rc == EIO)
            set_broken(s, rc);
        synced = 0;
        s->unlink_later.n = 0;
        s->quarantine_later.n = 0;
    }
    unlink_files(s, &s->unlink_later, 0);
    unlink_files(s, &s->quarantine_later, 1);
    if (s->tier_kick_pending && s->tier_q)
        tier_kick(s);
    atomic_fetch_add(&s->batches, 1);
    atomic_fetch_add(&s->commits, 1);
    atomic_fetch_add(&s->evicted_blobs, s->batch_evicted_blobs);
    atomic_fetch_add(&s->evicted_bytes, s->batch_evicted_bytes);
    atomic_fetch_add(&s->corrupt_blobs, s->batch_corrupt);
    if (any_map_full && attempt >= MAP_FULL_RETRIES) {
        for (op *o = list; o; o = o->next)
            o->map_full = 0; /* (they failed: STORE_NOSPACE) */
        any_map_full = 0;
    }
    if (!any_map_full && !any_later) {
        finish_batch(s, list, synced ? STORE_OK : STORE_IO);
        return 0;
    }
    /* Operations that found the map full get another go in a bigger one, and
     * those whose body's file this batch dropped go now it is gone; the rest
     * are done (split the list first: a finished op may vanish at once) */
    op *retry, *done;
    split_batch(list, op_again, &retry, &done);
    finish_batch(s, done, synced ? STORE_OK : STORE_IO);
    if (any_map_full)
        grow_map(s, 1);
    process_batch(s, retry, any_map_full ? attempt + 1 : attempt);
    return 0;
}

/* ---- last access ---------------------------------------------------------- */

static void touch(store *s, const uint8_t d[32])
{
    uint64_t now = util_now_ms();
    uint32_t h;
    memcpy(&h, d, sizeof h);
    pthread_mutex_lock(&s->touch_mu);
    for (int i = 0; i < TOUCH_PROBE; i++) {
        touch_slot *slot = &s->touches[(h + (uint32_t)i) % TOUCH_SLOTS];
        if (slot->used && memcmp(slot->digest, d, 32) == 0) {
            slot->t = now;
            break;
        }
        if (!slot->used) {
            memcpy(slot->digest, d, 32);
            slot->t = now;
            slot->used = 1;
            s->ntouches++;
            break;
        }
    }
    pthread_mutex_unlock(&s->touch_mu);
}

static void flush_touches(store *s)
{
    pthread_mutex_lock(&s->touch_mu);
    if (s->ntouches == 0) {
        pthread_mutex_unlock(&s->touch_mu);
        return;
    }
    touch_slot *full = s->touches;
    s->touches = s->touches_spare;
    s->touches_spare = full;
    s->ntouches = 0;
    pthread_mutex_unlock(&s->touch_mu);

    MDB_txn *t;
    grow_map(s, 0);
    if (mdb_txn_begin(s->ix.env, NULL, 0, &t) != 0)
        goto clear;
    size_t n = 0;
    for (size_t i = 0; i < TOUCH_SLOTS; i++) {
        blob_rec b;
        if (!full[i].used || idx_get_blob(t, &s->ix, full[i].digest, &b) != 0)
            continue;
        uint32_t day = b.tier_time;
        if (tier_touched(s, t, full[i].digest, &b) != 0)
            break;
        if (full[i].t > b.atime) {
            if (idx_move_atime(t, &s->ix, full[i].digest, &b, full[i].t) != 0)
                break;
        } else if (b.tier_time != day && idx_put_blob(t, &s->ix, full[i].digest, &b) != 0) {
            break;
        }
        n++;
    }
    if (mdb_txn_commit(t) == 0) {
        atomic_fetch_add(&s->commits, 1);
        if (s->tier_kick_pending && s->tier_q)
            tier_kick(s);
    }
    s->tier_kick_pending = 0;
    log_msg(LOG_DEBUG, "touches_flushed", "%zu last-access times written", n);
clear:
    memset(full, 0, TOUCH_SLOTS * sizeof *full);
}

static void *committer_main(void *arg)
{
    store *s = arg;
    uint64_t next_touch = util_mono_ns() + s->cfg.touch_interval_ms * 1000000ULL;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        for (uint64_t idle; (idle = committer_idle_ns(s, util_mono_ns(), next_touch)) > 0;) {
            struct timespec ts = util_time_in(CLOCK_MONOTONIC, idle); /* (cv_work's clock) */
            pthread_cond_timedwait(&s->cv_work, &s->mu, &ts);
        }
        op *list = s->head;
        s->head = s->tail = NULL;
        s->nqueued = 0;
        s->urgent = 0;
        int stop = s->stopping && list == NULL;
        pthread_mutex_unlock(&s->mu);

        int flush = 0;
        for (op *o = list; o; o = o->next)
            flush |= o->kind == OP_FLUSH;
        if (flush || stop || util_mono_ns() >= next_touch) {
            flush_touches(s);
            next_touch = util_mono_ns() + s->cfg.touch_interval_ms * 1000000ULL;
        }
        if (list)
            process_batch(s, list, 0);
        if (stop)
            break;
    }
    return NULL;
}

/* ---- orphan sweep --------------------------------------------------------- */

static void sweep_submit(store *s, op *o)
{
    if (o->ndigests == 0)
        return;
    o->kind = OP_SWEEP;
    submit_and_wait(s, o);
    o->ndigests = 0;
}

/* Finds blob files the index does not know (left by a crash between rename
 * and commit) and hands them to the committer, which re-checks and unlinks.
 * Returns how many it found. */
static size_t sweep_orphans(store *s)
{
    op o = {0};
    o.digests = malloc(SWEEP_BATCH * 32);
    if (o.digests == NULL)
        return 0;
    size_t found = 0;
    for (int i = 0; i < 256 && !s->stopping; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/blobs/%02x", s->dir, i);
        DIR *dir = opendir(path);
        if (dir == NULL)
            continue;
        struct dirent *de;
        while ((de = readdir(dir)) != NULL) {
            uint8_t d[32];
            size_t len = strlen(de->d_name);
            if (!util_is_hex64(de->d_name, len) || util_unhex(de->d_name, 64, d, 32) != 0)
                continue;
            MDB_txn *t = reader_get(s);
            if (t == NULL)
                continue;
            blob_rec b;
            int rc = idx_get_blob(t, &s->ix, d, &b);
            reader_put(s, t);
            if (rc != MDB_NOTFOUND)
                continue;
            memcpy(o.digests[o.ndigests++], d, 32);
            found++;
            if (o.ndigests == SWEEP_BATCH)
                sweep_submit(s, &o);
        }
        closedir(dir);
    }
    sweep_submit(s, &o);
    free(o.digests);
    if (found)
        log_msg(LOG_INFO, "orphans_swept", "%zu blob files without an index record removed", found);
    atomic_fetch_add(&s->orphans_removed, found);
    return found;
}

int store_gc(store *s, uint64_t multipart_age_ms, uint64_t *orphans, uint64_t *expired)
{
    *orphans = sweep_orphans(s);
    int n = mpu_expire(s, multipart_age_ms ? multipart_age_ms : s->cfg.multipart_ttl_ms);
    *expired = n > 0 ? (uint64_t)n : 0;
    if (n > 0)
        log_msg(LOG_INFO, "multipart_expired", "%d abandoned multipart uploads removed", n);
    return n < 0 ? STORE_IO : STORE_OK;
}

/* After a restore (the marker file RESTORED in the data folder): the index
 * came from a backup, and some of its blobs may not have come with it. */
static int reconcile_restored(store *s)
{
    char marker[PATH_MAX];
    snprintf(marker, sizeof marker, "%s/RESTORED", s->dir);
    if (access(marker, F_OK) != 0)
        return 0;
    uint8_t(*d)[32];
    size_t n;
    if (store_digests(s, &d, &n) != STORE_OK)
        return -1;
    store_stats before, after;
    store_get_stats(s, &before);
    op o = {0};
    for (size_t i = 0; i < n && !s->stopping; i += SWEEP_BATCH) {
        o.kind = OP_DROP_MISSING;
        o.digests = d + i;
        o.ndigests = n - i < SWEEP_BATCH ? n - i : SWEEP_BATCH;
        if (submit_and_wait(s, &o) != STORE_OK) {
            free(d);
            return -1; /* the marker stays: tried again at the next start */
        }
    }
    free(d);
    store_get_stats(s, &after);
    log_msg(LOG_INFO, "restore_checked",
            "restored index: %llu blobs, %llu of them not in the backup dropped (with their keys; "
            "the cold tier serves those it holds)",
            (unsigned long long)before.blobs, (unsigned long long)(before.blobs - after.blobs));
    return unlink(marker) == 0 ? 0 : -1;
}

int store_backup(store *s, int fd)
{
    /* the map must not move under the copy: growing it waits until it is done */
    pthread_rwlock_rdlock(&s->map_lock);
    int rc = mdb_env_copyfd2(s->ix.env, fd, MDB_CP_COMPACT);
    pthread_rwlock_unlock(&s->map_lock);
    return rc == 0 ? STORE_OK : STORE_IO;
}

int store_blob_file(store *s, const uint8_t digest[32], int *fd, uint64_t *len)
{
    char path[PATH_MAX];
    struct stat sb;
    blob_path(s, digest, path, sizeof path);
    *fd = open(path, O_RDONLY | O_CLOEXEC);
    if (*fd < 0)
        return errno == ENOENT ? STORE_NOTFOUND : STORE_IO;
    if (fstat(*fd, &sb) != 0) {
        close(*fd);
        *fd = -1;
        return STORE_IO;
    }
    *len = (uint64_t)sb.st_size;
    return STORE_OK;
}

static void *sweeper_main(void *arg)
{
    store *s = arg;
    sweep_orphans(s);

    /* then, for the life of the store, expire abandoned multipart uploads */
    pthread_mutex_lock(&s->mu);
    while (!s->stopping) {
        pthread_mutex_unlock(&s->mu);
        int n = mpu_expire(s, s->cfg.multipart_ttl_ms);
        if (n > 0)
            log_msg(LOG_INFO, "multipart_expired", "%d abandoned multipart uploads removed", n);
        pthread_mutex_lock(&s->mu);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 3600;
        if (!s->stopping)
            pthread_cond_timedwait(&s->cv_stop, &s->mu, &ts);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- open and close ------------------------------------------------------- */

static int make_dirs(store *s, char *err, size_t errlen)
{
    char path[PATH_MAX];
    const char *subs[] = {"", "/blobs", "/tmp", "/quarantine", "/multipart"};
    int made = 0;
    for (size_t i = 0; i < 5; i++) {
        snprintf(path, sizeof path, "%s%s", s->dir, subs[i]);
        if (mkdir(path, 0755) == 0)
            made |= 1 << i;
        else if (errno != EEXIST) {
            snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
            return -1;
        }
    }
    /* the folders made here on disk before a write into them is answered */
    if (made & 1) {
        snprintf(path, sizeof path, "%s/..", s->dir);
        util_fsync_dir(path);
    }
    if (made)
        util_fsync_dir(s->dir);
    return 0;
}

/* Temporary files belong to uploads of an earlier process: none can finish. */
static void clear_tmp(store *s)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/tmp", s->dir);
    DIR *dir = opendir(path);
    if (dir == NULL)
        return;
    int dfd = dirfd(dir);
    struct dirent *de;
    while ((de = readdir(dir)) != NULL)
        if (de->d_name[0] != '.')
            unlinkat(dfd, de->d_name, 0);
    closedir(dir);
}

/* Can this file system make unnamed files and link them in (O_TMPFILE)? */
static int probe_tmpfile(store *s)
{
    char dir[PATH_MAX], name[PATH_MAX], proc[64];
    snprintf(dir, sizeof dir, "%s/tmp", s->dir);
    snprintf(name, sizeof name, "%s/tmp/probe", s->dir);
    int fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0)
        return 0;
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    int ok = linkat(AT_FDCWD, proc, AT_FDCWD, name, AT_SYMLINK_FOLLOW) == 0;
    if (ok)
        unlink(name);
    close(fd);
    return ok;
}

int store_open(store **out, const store_config *cfg, char *err, size_t errlen)
{
    store *s = calloc(1, sizeof *s);
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->cfg = *cfg;
    s->lock_fd = -1;
    s->id = atomic_fetch_add(&next_store_id, 1);
    if (s->cfg.high_pct == 0 || s->cfg.high_pct > 100 || s->cfg.low_pct > s->cfg.high_pct) {
        snprintf(err, errlen, "watermarks must satisfy 0 <= low <= high <= 100");
        free(s);
        return -1;
    }
    if (strlen(cfg->dir) >= sizeof s->dir) {
        snprintf(err, errlen, "data directory path is too long");
        free(s);
        return -1;
    }
    memcpy(s->dir, cfg->dir, strlen(cfg->dir) + 1);
    char real[PATH_MAX];
    if (make_dirs(s, err, errlen) != 0) {
        free(s);
        return -1;
    }
    if (realpath(cfg->dir, real) == NULL || strlen(real) >= sizeof s->dir) {
        snprintf(err, errlen, "%s: cannot resolve the data directory", cfg->dir);
        free(s);
        return -1;
    }
    memcpy(s->dir, real, strlen(real) + 1);
    s->cfg.dir = s->dir;

    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/LOCK", s->dir);
    s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (s->lock_fd < 0 || flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        snprintf(err, errlen, "data directory %s is in use by another cairnd", s->dir);
        if (s->lock_fd >= 0)
            close(s->lock_fd);
        free(s);
        return -1;
    }
    clear_tmp(s);
    s->tmpfile_ok = probe_tmpfile(s);
    if (idx_open(&s->ix, s->dir, cfg->map_size, 1, err, errlen) != 0) {
        close(s->lock_fd);
        free(s);
        return -1;
    }
    mpu_recover(s);
    atomic_store(&s->mpu_bytes, (long long)mpu_bytes_on_disk(s));
    s->touches = calloc(TOUCH_SLOTS, sizeof *s->touches);
    s->touches_spare = calloc(TOUCH_SLOTS, sizeof *s->touches_spare);
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t mono; /* the committer's waits are short: a clock that does not step */
    pthread_condattr_init(&mono);
    pthread_condattr_setclock(&mono, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv_work, &mono);
    pthread_condattr_destroy(&mono);
    pthread_cond_init(&s->cv_done, NULL);
    pthread_cond_init(&s->cv_stop, NULL);
    pthread_mutex_init(&s->touch_mu, NULL);
    pthread_mutex_init(&s->readers_mu, NULL);
    pthread_rwlockattr_t rwa;
    pthread_rwlockattr_init(&rwa);
    pthread_rwlockattr_setkind_np(&rwa, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&s->map_lock, &rwa);
    pthread_rwlockattr_destroy(&rwa);
    if (s->touches == NULL || s->touches_spare == NULL ||
        pthread_create(&s->committer, NULL, committer_main, s) != 0) {
        snprintf(err, errlen, "cannot start the committer thread");
        idx_close(&s->ix);
        close(s->lock_fd);
        free(s->touches);
        free(s->touches_spare);
        free(s);
        return -1;
    }
    s->sweeper_started = pthread_create(&s->sweeper, NULL, sweeper_main, s) == 0;
    if (cfg->tier && tier_start(s, err, errlen) != 0) {
        store_close(s);
        return -1;
    }
    /* before anything is served: a restored index must not point at blobs
     * that did not come with it */
    if (reconcile_restored(s) != 0) {
        snprintf(err, errlen, "%s/RESTORED: cannot check the restored index against its blobs",
                 s->dir);
        store_close(s);
        return -1;
    }
    *out = s;
    return 0;
}

void store_close(store *s)
{
    if (s == NULL)
        return;
    tier_stop(s); /* its workers commit their outcomes: before the committer stops */
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_cond_signal(&s->cv_work);
    pthread_cond_broadcast(&s->cv_stop);
    pthread_mutex_unlock(&s->mu);
    if (s->sweeper_started)
        pthread_join(s->sweeper, NULL);
    pthread_join(s->committer, NULL);
    tier_free(s);
    pthread_mutex_lock(&s->readers_mu);
    for (size_t i = 0; i < s->nreaders; i++)
        mdb_txn_abort(s->readers[i]);
    s->nreaders = 0;
    pthread_mutex_unlock(&s->readers_mu);
    if (tls_reader.store_id == s->id)
        tls_reader.txn = NULL;
    idx_close(&s->ix);
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    free(s->touches);
    free(s->touches_spare);
    free(s->unlink_later.d);
    free(s->quarantine_later.d);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv_work);
    pthread_cond_destroy(&s->cv_done);
    pthread_cond_destroy(&s->cv_stop);
    pthread_mutex_destroy(&s->touch_mu);
    pthread_mutex_destroy(&s->readers_mu);
    pthread_rwlock_destroy(&s->map_lock);
    free(s);
}

/* ---- reads ---------------------------------------------------------------- */

int store_entry_arriving(const store_entry *e)
{
    return e->fill != NULL && tier_fill_streaming(e->fill);
}

void store_entry_clear(store_entry *e)
{
    if (e->fill)
        tier_fill_release(e->fill);
    e->fill = NULL;
    free(e->meta);
    e->meta = NULL;
    e->meta_len = 0;
}

static int fill_entry(store *s, MDB_txn *t, const uint8_t d[32], store_entry *e)
{
    blob_rec b;
    int rc = idx_get_blob(t, &s->ix, d, &b);
    if (rc != 0)
        return map_mdb(rc);
    memcpy(e->digest, d, 32);
    e->size = b.size;
    e->stored = b.stored;
    e->codec = b.codec;
    e->format = b.format;
    return STORE_OK;
}

static int lookup_local(store *s, const char *nskey, size_t nklen, store_entry *e)
{
    memset(e, 0, sizeof *e);
    MDB_txn *t = reader_get(s);
    if (t == NULL)
        return STORE_IO;
    key_rec kr;
    int rc = map_mdb(idx_get_key(t, &s->ix, nskey, nklen, &kr));
    if (rc == STORE_OK)
        rc = fill_entry(s, t, kr.digest, e);
    if (rc == STORE_OK) {
        e->mtime_ms = kr.mtime_ms;
        if (kr.meta_len) {
            e->meta = malloc(kr.meta_len);
            if (e->meta == NULL)
                rc = STORE_IO;
            else
                memcpy(e->meta, kr.meta, kr.meta_len);
            e->meta_len = kr.meta_len;
        }
    }
    reader_put(s, t);
    return rc;
}

/* Here, else through the cold tier (*filled: answered from a fill still
 * being committed). */
static int lookup_nskey(store *s, const char *nskey, size_t nklen, store_entry *e, int *filled)
{
    *filled = 0;
    int rc = lookup_local(s, nskey, nklen, e);
    if (rc == STORE_OK && s->tier_q)
        tier_revalidate(s, nskey, nklen);
    /* "look again" and still not here: a fill dropped (deleted here, or a
     * mark of another key in its slot); asked once more, the tier says which */
    for (int tries = 0; rc == STORE_NOTFOUND && s->tier_q && tries < 2; tries++) {
        if (tier_resolve_key(s, nskey, nklen, e, filled) != STORE_OK)
            break;
        rc = *filled ? STORE_OK : lookup_local(s, nskey, nklen, e);
        e->from_tier = rc == STORE_OK;
    }
    return rc;
}

int store_lookup(store *s, const char *ns, const void *key, size_t klen, store_entry *e)
{
    size_t nklen;
    memset(e, 0, sizeof *e);
    char *nskey = make_nskey(s, ns, key, klen, &nklen);
    if (nskey == NULL)
        return STORE_BAD_KEY;
    int filled;
    int rc = lookup_nskey(s, nskey, nklen, e, &filled);
    free(nskey);
    return rc;
}

int store_check_key(store *s, const char *ns, const void *key, size_t klen)
{
    if (s->tier_q == NULL)
        return STORE_OK;
    size_t nklen;
    char *nskey = make_nskey(s, ns, key, klen, &nklen);
    if (nskey == NULL)
        return STORE_BAD_KEY;
    int rc = tier_check_key(s, nskey, nklen);
    free(nskey);
    return rc;
}

struct store_blob {
    store *s;
    int fd; /* -1 for an inline blob */
    ino_t ino;
    codec_reader *r; /* made on the first read */
    int codec;
    uint64_t size, stored;
    uint8_t digest[32];
    uint8_t *inl;           /* an inline blob's stored bytes (a copy: the read txn is gone) */
    uint8_t *body;          /* ... and its body, decoded on the first read */
    struct tier_fill *fill; /* a blob still arriving from the cold tier */
    void *fill_cursor;
    uint64_t answer_end; /* where the answer read from it ends (store_blob_answer_end) */
};

static void quarantine(store *s, const uint8_t d[32], ino_t ino)
{
    op o = {0};
    uint8_t dd[1][32];
    memcpy(dd[0], d, 32);
    o.kind = OP_QUARANTINE;
    o.digests = dd;
    o.ndigests = 1;
    o.ino = ino;
    submit_and_wait(s, &o);
}

/* Copies an inline blob's bytes out of the index.  STORE_NOTFOUND for a blob
 * that has a file (or none any more). */
static int open_inline(store *s, store_blob *b)
{
    MDB_txn *t = reader_get(s);
    if (t == NULL)
        return STORE_IO;
    const void *data;
    size_t len;
    int rc = map_mdb(idx_get_inline(t, &s->ix, b->digest, &data, &len));
    if (rc == STORE_OK && len != b->stored) {
        rc = STORE_CORRUPT;
    } else if (rc == STORE_OK) {
        b->inl = malloc(len ? len : 1);
        if (b->inl == NULL)
            rc = STORE_IO;
        else if (len)
            memcpy(b->inl, data, len);
    }
    reader_put(s, t);
    return rc;
}

static int blob_open(store *s, const store_entry *e, store_blob **out, int touch_it)
{
    store_blob *b = calloc(1, sizeof *b);
    if (b == NULL)
        return STORE_IO;
    b->s = s;
    b->fd = -1;
    b->codec = e->codec;
    b->size = e->size;
    b->stored = e->stored;
    b->answer_end = e->size;
    memcpy(b->digest, e->digest, 32);
    int rc = STORE_NOTFOUND;
    if (e->fill) {
        /* read through the tier and checked; its local copy is on its way */
        const uint8_t *bytes;
        size_t len;
        int r = tier_fill_open(e->fill, &bytes, &len, &b->fd);
        if (r == 1)
            b->fill = e->fill; /* streaming: a reference of our own */
        rc = r >= 0 ? STORE_OK : STORE_IO;
        if (rc == STORE_OK && bytes && (b->inl = malloc(len ? len : 1)) == NULL)
            rc = STORE_IO;
        else if (rc == STORE_OK && bytes && len)
            memcpy(b->inl, bytes, len);
        if (rc != STORE_OK) {
            store_blob_close(b);
            return rc;
        }
        *out = b;
        return STORE_OK;
    }
    if (e->format == BLOB_INLINE && (rc = open_inline(s, b)) == STORE_CORRUPT)
        quarantine(s, e->digest, 0);
    if (rc == STORE_NOTFOUND) {
        /* a file, or an inline blob that was dropped since the lookup: a
         * later upload of the same body may have brought it back as a file */
        char path[PATH_MAX];
        struct stat sb;
        blob_path(s, e->digest, path, sizeof path);
        b->fd = open(path, O_RDONLY | O_CLOEXEC);
        if (b->fd < 0) {
            rc = errno == ENOENT ? STORE_NOTFOUND : STORE_IO;
        } else if (fstat(b->fd, &sb) != 0) {
            rc = STORE_IO;
        } else {
            b->ino = sb.st_ino;
            rc = STORE_OK;
            if ((uint64_t)sb.st_size != e->stored) {
                quarantine(s, e->digest, b->ino);
                rc = STORE_CORRUPT;
            }
        }
    }
    if (rc != STORE_OK) {
        store_blob_close(b);
        return rc;
    }
    if (touch_it)
        touch(s, e->digest);
    *out = b;
    return STORE_OK;
}

int store_blob_open(store *s, const store_entry *e, store_blob **out)
{
    return blob_open(s, e, out, 1);
}

static int inline_body(store_blob *b)
{
    if (b->body)
        return 0;
    b->body = malloc(b->size ? b->size : 1);
    if (b->body == NULL)
        return -ENOMEM;
    int rc = codec_decode_small(b->codec, b->inl, b->stored, b->body, b->size);
    if (rc != 0) {
        free(b->body);
        b->body = NULL;
        if (rc == CODEC_ERR_CORRUPT)
            quarantine(b->s, b->digest, 0);
    }
    return rc;
}

/* The reader (and, for zstd, the seek table) is made on the first read: a
 * blob sent whole with sendfile never needs it. */
static int blob_reader(store_blob *b)
{
    if (b->r)
        return 0;
    int rc = codec_reader_open(&b->r, b->fd, b->codec, b->size, b->stored);
    if (rc == CODEC_ERR_CORRUPT)
        quarantine(b->s, b->digest, b->ino);
    return rc;
}

ssize_t store_blob_read(store_blob *b, uint64_t off, void *buf, size_t len)
{
    return store_blob_read_or_wait(b, off, buf, len, NULL);
}

void store_blob_forget_waiter(store_blob *b, store_waiter *w)
{
    if (b->fill)
        tier_fill_forget(b->fill, w);
}

ssize_t store_blob_read_or_wait(store_blob *b, uint64_t off, void *buf, size_t len, store_waiter *w)
{
    if (b->fill)
        return tier_fill_read(b->fill, &b->fill_cursor, off, buf, len, b->answer_end, w);
    if (b->inl) {
        int rc = inline_body(b);
        if (rc != 0)
            return rc == CODEC_ERR_CORRUPT ? -STORE_CORRUPT : -STORE_IO;
        if (off >= b->size)
            return 0;
        if (len > b->size - off)
            len = (size_t)(b->size - off);
        memcpy(buf, b->body + off, len);
        return (ssize_t)len;
    }
    int rc = blob_reader(b);
    if (rc != 0)
        return rc == CODEC_ERR_CORRUPT ? -STORE_CORRUPT : -STORE_IO;
    ssize_t n = codec_reader_read(b->r, off, buf, len);
    if (n == CODEC_ERR_CORRUPT) {
        quarantine(b->s, b->digest, b->ino);
        return -STORE_CORRUPT;
    }
    return n < 0 ? -STORE_IO : n;
}

void store_blob_answer_end(store_blob *b, uint64_t end)
{
    b->answer_end = end < b->size ? end : b->size;
}

void store_blob_sequential(store_blob *b)
{
    if (b->fd >= 0 && blob_reader(b) == 0)
        codec_reader_readahead(b->r);
}

int store_blob_fd(const store_blob *b)
{
    return b->fd;
}

int store_blob_bytes(const store_blob *b, const void **data, size_t *len)
{
    if (b->inl == NULL)
        return -1;
    *data = b->inl;
    *len = b->stored;
    return 0;
}

int store_blob_take_fd(store_blob *b)
{
    int fd = b->fd;
    b->fd = -1;
    return fd;
}

int store_verify(store *s, const uint8_t digest[32], uint64_t *size)
{
    *size = 0;
    store_entry e;
    memset(&e, 0, sizeof e);
    MDB_txn *t = reader_get(s);
    if (t == NULL)
        return STORE_IO;
    int rc = fill_entry(s, t, digest, &e);
    reader_put(s, t);
    store_blob *b;
    if (rc != STORE_OK || (rc = blob_open(s, &e, &b, 0)) != STORE_OK)
        return rc; /* gone meanwhile, or damaged at open (quarantined then) */
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t cap = 1u << 20;
    uint8_t *buf = malloc(cap);
    rc = ctx && buf && EVP_DigestInit_ex(ctx, cksum_md_sha256(), NULL) ? STORE_OK : STORE_IO;
    uint64_t off = 0;
    int damaged = 0; /* found here, not by the reader (which quarantines what it finds) */
    while (rc == STORE_OK && off < e.size) {
        /* every frame's checksum on the way */
        ssize_t n = store_blob_read(b, off, buf, cap);
        if (n < 0)
            rc = (int)-n;
        else if (n == 0)
            rc = STORE_CORRUPT, damaged = 1; /* shorter than its record says */
        else if (!EVP_DigestUpdate(ctx, buf, (size_t)n))
            rc = STORE_IO;
        off += n > 0 ? (uint64_t)n : 0;
    }
    uint8_t d[32];
    unsigned int dl;
    if (rc == STORE_OK && (!EVP_DigestFinal_ex(ctx, d, &dl) || memcmp(d, digest, 32) != 0))
        rc = STORE_CORRUPT, damaged = 1; /* frames fine, but not the body it claims to be */
    if (damaged)
        quarantine(s, digest, b->ino); /* which counts it */
    EVP_MD_CTX_free(ctx);
    free(buf);
    store_blob_close(b);
    if (rc == STORE_OK)
        *size = e.size;
    return rc;
}

int store_digests(store *s, uint8_t (**out)[32], size_t *n)
{
    *out = NULL;
    *n = 0;
    MDB_txn *t = reader_get(s);
    if (t == NULL)
        return STORE_IO;
    MDB_stat st;
    MDB_cursor *c = NULL;
    int rc = mdb_stat(t, s->ix.blobs, &st);
    uint8_t(*d)[32] = rc == 0 ? malloc((st.ms_entries ? st.ms_entries : 1) * 32) : NULL;
    if (d == NULL || (rc = mdb_cursor_open(t, s->ix.blobs, &c)) != 0) {
        free(d);
        reader_put(s, t);
        return STORE_IO;
    }
    size_t k = 0;
    MDB_val key, v;
    for (rc = mdb_cursor_get(c, &key, &v, MDB_FIRST); rc == 0 && k < st.ms_entries;
         rc = mdb_cursor_get(c, &key, &v, MDB_NEXT))
        if (key.mv_size == 32)
            memcpy(d[k++], key.mv_data, 32);
    mdb_cursor_close(c);
    reader_put(s, t);
    *out = d;
    *n = k;
    return STORE_OK;
}

void store_blob_close(store_blob *b)
{
    if (b == NULL)
        return;
    codec_reader_free(b->r);
    if (b->fd >= 0)
        close(b->fd);
    free(b->inl);
    free(b->body);
    tier_fill_cursor_free(b->fill_cursor);
    tier_fill_release(b->fill);
    free(b);
}

/* ---- writes --------------------------------------------------------------- */

struct store_upload {
    store *s;
    int fd;
    int anon; /* fd is an unnamed file; tmp is empty */
    char tmp[PATH_MAX];
    codec_writer *w;
    int status;
    int finished;
    int want_md5;
    codec_result cr;
    /* A body that may still be small enough for the index is kept here; it
     * goes to a file (w) once it grows past inline_max. */
    int in_memory;
    uint8_t *mem;
    size_t mem_len, mem_cap;
    uint8_t *inl;         /* after finish: the stored bytes of an inline body */
    uint64_t parts_freed; /* store_upload_of_parts */
};

int store_status_of_errno(int e)
{
    return e == ENOSPC || e == EDQUOT ? STORE_NOSPACE : STORE_IO;
}

/* Opens the temporary file and its writer. */
int store_tmp_open(store *s, char path[PATH_MAX], int *anon)
{
    *anon = 0;
    path[0] = '\0';
    if (s->tmpfile_ok) {
        /* no name, so nothing to create in tmp/, unlink, or clean after a crash */
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s/tmp", s->dir);
        int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0644);
        if (fd >= 0) {
            *anon = 1;
            return fd;
        }
    }
    snprintf(path, PATH_MAX, "%s/tmp/%ld.%llu", s->dir, (long)getpid(),
             (unsigned long long)atomic_fetch_add(&s->tmp_seq, 1));
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        path[0] = '\0';
    return fd;
}

void op_take_file(op *o, int fd, int anon)
{
    o->anon = anon;
    o->fd = fd; /* an unnamed file is linked in through it */
    if (!anon) {
        close(fd); /* a named one by its name, o->tmp */
        o->fd = -1;
    }
}

void op_release_file(op *o)
{
    if (o->anon && o->fd >= 0)
        close(o->fd); /* not linked (deduplicated or failed): the file goes with it */
    else if (!o->created && o->tmp[0])
        unlink(o->tmp); /* deduplicated, or failed: the copy is not needed */
    o->fd = -1;
    o->tmp[0] = '\0';
}

/* Opens the temporary file and its writer. */
static int upload_open_file(store_upload *u)
{
    store *s = u->s;
    u->fd = store_tmp_open(s, u->tmp, &u->anon);
    if (u->fd < 0)
        return store_status_of_errno(errno);
    u->w = codec_writer_new(u->fd, s->cfg.zstd_level, u->want_md5);
    return u->w ? STORE_OK : STORE_IO;
}

int store_upload_begin(store *s, int64_t expect_size, int want_md5, store_upload **out)
{
    if (expect_size >= 0 && s->cfg.max_size && (uint64_t)expect_size > s->cfg.max_size)
        return STORE_TOO_LARGE;
    store_upload *u = calloc(1, sizeof *u);
    if (u == NULL)
        return STORE_IO;
    u->s = s;
    u->fd = -1;
    u->want_md5 = want_md5;
    int rc = STORE_OK;
    if (s->cfg.inline_max > 0 && (expect_size < 0 || (uint64_t)expect_size <= s->cfg.inline_max)) {
        u->in_memory = 1;
        u->mem_cap = expect_size > 0 ? (size_t)expect_size : 0;
        if (u->mem_cap && (u->mem = malloc(u->mem_cap)) == NULL)
            rc = STORE_IO;
    } else {
        rc = upload_open_file(u);
    }
    if (rc != STORE_OK) {
        store_upload_abort(u);
        return rc;
    }
    *out = u;
    return STORE_OK;
}

/* Appends to the in-memory body, or moves it to a file when it outgrows the
 * index. */
static int upload_write_memory(store_upload *u, const void *buf, size_t len)
{
    if (len <= u->s->cfg.inline_max - u->mem_len) {
        if (u->mem_len + len > u->mem_cap) {
            size_t cap = u->mem_cap ? u->mem_cap : 4096;
            while (cap < u->mem_len + len)
                cap *= 2;
            if (cap > u->s->cfg.inline_max)
                cap = u->s->cfg.inline_max;
            uint8_t *p = realloc(u->mem, cap);
            if (p == NULL)
                return STORE_IO;
            u->mem = p;
            u->mem_cap = cap;
        }
        memcpy(u->mem + u->mem_len, buf, len);
        u->mem_len += len;
        return STORE_OK;
    }
    int rc = upload_open_file(u);
    if (rc != STORE_OK)
        return rc;
    u->in_memory = 0;
    if (u->mem_len && (rc = codec_writer_write(u->w, u->mem, u->mem_len)) != 0)
        return store_status_of_errno(-rc);
    free(u->mem);
    u->mem = NULL;
    u->mem_len = u->mem_cap = 0;
    rc = codec_writer_write(u->w, buf, len);
    return rc == 0 ? STORE_OK : store_status_of_errno(-rc);
}

int store_upload_write(store_upload *u, const void *buf, size_t len)
{
    if (u->status != STORE_OK)
        return u->status;
    if (u->in_memory) {
        u->status = upload_write_memory(u, buf, len);
        return u->status;
    }
    int rc = codec_writer_write(u->w, buf, len);
    if (rc != 0)
        u->status = store_status_of_errno(-rc);
    return u->status;
}

uint64_t store_upload_size(const store_upload *u)
{
    return u->in_memory ? u->mem_len : codec_writer_size(u->w);
}

void store_upload_abort(store_upload *u)
{
    if (u == NULL)
        return;
    codec_writer_free(u->w);
    if (u->fd >= 0)
        close(u->fd);
    if (u->tmp[0])
        unlink(u->tmp);
    free(u->mem);
    free(u->inl);
    free(u);
}

static void fill_result(const codec_result *cr, store_put_result *res)
{
    memcpy(res->digest, cr->sha256, 32);
    memcpy(res->md5, cr->md5, 16);
    res->size = cr->size;
    res->stored = cr->stored;
    res->codec = cr->codec;
}

int store_upload_finish(store_upload *u, store_put_result *res)
{
    if (u->status == STORE_OK && !u->finished && u->in_memory) {
        u->inl = malloc(codec_small_bound(u->mem_len));
        int e = u->inl ? codec_encode_small(u->s->cfg.zstd_level, u->want_md5, u->mem, u->mem_len,
                                            u->inl, &u->cr)
                       : -ENOMEM;
        if (e != 0)
            u->status = STORE_IO;
        free(u->mem);
        u->mem = NULL;
        u->finished = 1;
    } else if (u->status == STORE_OK && !u->finished) {
        int e = codec_writer_finish(u->w, &u->cr);
        if (e != 0)
            u->status = store_status_of_errno(-e);
        u->finished = 1;
    }
    if (u->status == STORE_OK && res)
        fill_result(&u->cr, res);
    return u->status;
}

int store_upload_commit(store_upload *u, const char *ns, const void *key, size_t klen,
                        const uint8_t *expect_digest, const void *meta, size_t meta_len,
                        const store_cond *cond, store_put_result *res)
{
    store *s = u->s;
    op o = {0};
    o.cond = cond;
    int rc = store_upload_finish(u, NULL);
    o.cr = u->cr;
    if (rc == STORE_OK && expect_digest && memcmp(expect_digest, o.cr.sha256, 32) != 0)
        rc = STORE_DIGEST_MISMATCH;
    if (rc == STORE_OK && s->cfg.max_size && o.cr.stored > s->cfg.max_size)
        rc = STORE_TOO_LARGE;
    if (rc == STORE_OK && u->fd >= 0 && s->cfg.fsync && fdatasync(u->fd) != 0)
        rc = store_status_of_errno(errno);
    if (rc == STORE_OK && (o.nskey = make_nskey(s, ns, key, klen, &o.nklen)) == NULL)
        rc = STORE_BAD_KEY;
    if (rc != STORE_OK) {
        store_upload_abort(u);
        return rc;
    }
    o.kind = OP_PUT;
    o.parts_freed = u->parts_freed;
    o.meta = meta;
    o.meta_len = meta_len;
    o.inl = u->inl;
    o.inl_len = u->inl ? (size_t)o.cr.stored : 0;
    o.fd = -1;
    if (u->fd >= 0)
        op_take_file(&o, u->fd, u->anon);
    u->fd = -1;
    memcpy(o.tmp, u->tmp, sizeof o.tmp);
    rc = submit_and_wait(s, &o);
    op_release_file(&o);
    u->tmp[0] = '\0';
    if (rc == STORE_OK && res) {
        fill_result(&o.cr, res);
        res->deduplicated = o.dedup;
    }
    free(o.nskey);
    store_upload_abort(u);
    return rc;
}

void store_upload_of_parts(store_upload *u, uint64_t parts_bytes)
{
    u->parts_freed = parts_bytes;
}

int store_link(store *s, const char *ns, const void *key, size_t klen, const uint8_t digest[32],
               const void *meta, size_t meta_len, const store_cond *cond, uint64_t *mtime_ms)
{
    op o = {0};
    o.kind = OP_PUT;
    o.cond = cond;
    o.link = 1;
    memcpy(o.cr.sha256, digest, 32);
    o.meta = meta;
    o.meta_len = meta_len;
    if ((o.nskey = make_nskey(s, ns, key, klen, &o.nklen)) == NULL)
        return STORE_BAD_KEY;
    int rc = submit_and_wait(s, &o);
    free(o.nskey);
    if (rc == STORE_OK && mtime_ms)
        *mtime_ms = o.mtime_ms;
    return rc;
}

static int delete_key(store *s, const char *ns, const void *key, size_t klen, int ask_tier,
                      const store_cond *cond)
{
    op o = {0};
    o.kind = OP_DELETE;
    o.cond = cond;
    if ((o.nskey = make_nskey(s, ns, key, klen, &o.nklen)) == NULL)
        return STORE_BAD_KEY;
    int rc = submit_and_wait(s, &o);
    if (rc == STORE_NOTFOUND && s->tier_q) {
        if (ask_tier && tier_must_not_wait()) {
            free(o.nskey); /* the tier is asked on a thread that may wait */
            return STORE_AGAIN;
        }
        /* not here: a key another node wrote is deleted in the tier, where
         * every node would find it.  The delete is queued even when the
         * tier does not hold the key (or does not answer): a write another
         * node took before it may still be on its way there, and must not
         * land after it.  The answer says whether the tier had the key,
         * when the caller asks. */
        int in_tier = ask_tier ? tier_has_key(s, o.nskey, o.nklen) : STORE_NOTFOUND;
        op d = {0};
        d.kind = OP_DELETE;
        d.nskey = o.nskey;
        d.nklen = o.nklen;
        d.tier_only = 1;
        rc = submit_and_wait(s, &d);
        if (rc == STORE_OK && in_tier == STORE_NOTFOUND)
            rc = STORE_NOTFOUND;
    }
    /* a fill of the key that began before now (it read the tier before the
     * delete reached it) must not bring it back */
    tier_key_changed_now(s, o.nskey, o.nklen);
    free(o.nskey);
    return rc;
}

int store_forget_key(store *s, const char *nskey, size_t nklen, uint64_t mtime_ms)
{
    op o = {0};
    o.kind = OP_DELETE;
    o.forget = 1;
    o.mtime_ms = mtime_ms;
    o.nskey = (char *)nskey;
    o.nklen = nklen;
    int rc = submit_and_wait(s, &o);
    if (rc == STORE_OK) /* a fill (a warmup's) of the version before must not bring it back */
        tier_key_changed_now(s, nskey, nklen);
    return rc;
}

int store_delete(store *s, const char *ns, const void *key, size_t klen)
{
    return delete_key(s, ns, key, klen, 1, NULL);
}

int store_delete_blind(store *s, const char *ns, const void *key, size_t klen,
                       const store_cond *cond)
{
    return delete_key(s, ns, key, klen, 0, cond);
}

int store_evict_to(store *s, uint64_t target)
{
    op o = {0};
    o.kind = OP_EVICT;
    o.target = target;
    return submit_and_wait(s, &o);
}

void store_multipart_bytes(store *s, int64_t delta)
{
    atomic_fetch_add(&s->mpu_bytes, delta);
}

int store_room_for_part(store *s, uint64_t len)
{
    uint64_t max = s->cfg.max_size;
    if (max == 0 || len == 0)
        return STORE_OK;
    if (multipart_bytes(s) + len > max)
        return STORE_NOSPACE; /* (evicting every blob would not make room) */
    for (int tries = 0; tries < 2; tries++) {
        idx_stats is;
        MDB_txn *t = reader_get(s);
        int rc = t ? idx_get_stats(t, &s->ix, &is) : -1;
        if (t)
            reader_put(s, t);
        if (rc != 0)
            return STORE_IO;
        uint64_t others = multipart_bytes(s) + len;
        if (is.physical + others <= max)
            return STORE_OK;
        if (tries == 0)
            store_evict_to(s, others < max ? max - others : 0);
    }
    return STORE_NOSPACE;
}

int store_reserve_part(store *s, uint64_t len)
{
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&mu); /* (the check and the count as one) */
    int rc = store_room_for_part(s, len);
    if (rc == STORE_OK)
        store_multipart_bytes(s, (int64_t)len);
    pthread_mutex_unlock(&mu);
    return rc;
}

int store_flush(store *s)
{
    op o = {0};
    o.kind = OP_FLUSH;
    return submit_and_wait(s, &o);
}

const char *store_dir(const store *s)
{
    return s->dir;
}

int store_get_stats(store *s, store_stats *st)
{
    memset(st, 0, sizeof *st);
    MDB_txn *t = reader_get(s);
    if (t == NULL)
        return STORE_IO;
    idx_stats is;
    int rc = idx_get_stats(t, &s->ix, &is);
    st->inline_blobs = idx_count_inline(t, &s->ix);
    reader_put(s, t);
    if (rc != 0)
        return STORE_IO;
    st->blobs = is.blobs;
    st->keys = is.keys;
    st->logical = is.logical;
    st->physical = is.physical;
    st->referenced = is.referenced;
    st->max_size = s->cfg.max_size;
    st->high_bytes = high_bytes(s);
    st->multipart_bytes = multipart_bytes(s);
    st->low_bytes = low_bytes(s);
    st->evicted_blobs = atomic_load(&s->evicted_blobs);
    st->evicted_bytes = atomic_load(&s->evicted_bytes);
    st->corrupt_blobs = atomic_load(&s->corrupt_blobs);
    st->orphans_removed = atomic_load(&s->orphans_removed);
    st->commits = atomic_load(&s->commits);
    st->commit_batches = atomic_load(&s->batches);
    st->tier_pending_bytes = is.tier_pending;
    tier_stats(s, st);
    return STORE_OK;
}

/* ---- namespaces ----------------------------------------------------------- */

static int ns_op(store *s, int kind, const char *ns, const void *meta, size_t meta_len)
{
    if (*ns == '\0' || strlen(ns) >= s->ix.max_key)
        return STORE_BAD_KEY;
    op o = {0};
    o.kind = kind;
    o.nskey = (char *)ns;
    o.meta = meta;
    o.meta_len = meta_len;
    return submit_and_wait(s, &o);
}

int store_ns_create(store *s, const char *ns, const void *meta, size_t meta_len)
{
    /* one another node made exists already, with its date */
    if (s->tier_q && store_ns_get(s, ns, NULL, NULL, NULL) == STORE_OK)
        return STORE_EXISTS;
    if (store_would_block_peek())
        return STORE_AGAIN; /* the tier was not asked: nothing changes before it is */
    /* unknown, or the tier cannot say (down): made here, as a write is
     * taken while the tier is down; its record goes up when it is back */
    return ns_op(s, OP_NS_CREATE, ns, meta, meta_len);
}

/* Whether namespace ns has keys here (*has); a store status. */
static int ns_has_local_keys(store *s, const char *ns, int *has)
{
    MDB_txn *t = reader_get(s);
    *has = 0;
    if (t == NULL)
        return STORE_IO;
    int rc = ns_has_keys_in(s, t, ns, has);
    reader_put(s, t);
    return map_mdb(rc);
}

int store_ns_delete(store *s, const char *ns)
{
    if (s->tier_q) {
        /* one another node made: known here first, as for any other request */
        int rc = store_ns_get(s, ns, NULL, NULL, NULL);
        if (rc != STORE_OK)
            return rc;
        int has;
        if ((rc = ns_has_local_keys(s, ns, &has)) != STORE_OK || has)
            return rc != STORE_OK ? rc : STORE_NOT_EMPTY; /* (no need to ask the tier) */
        /* empty only if the keys other nodes put in it are gone too */
        rc = tier_must_not_wait() ? STORE_AGAIN : tier_ns_has_keys(s, ns);
        if (rc != STORE_NOTFOUND)
            return rc == STORE_OK ? STORE_NOT_EMPTY : rc;
    }
    return ns_op(s, OP_NS_DELETE, ns, NULL, 0);
}

static uint64_t ns_created(const MDB_val *v)
{
    uint64_t t = 0;
    for (int i = 0; i < 8 && (size_t)i < v->mv_size; i++)
        t = t << 8 | ((uint8_t *)v->mv_data)[i];
    return t;
}

int store_ns_get(store *s, const char *ns, uint64_t *created_ms, void **meta, size_t *meta_len)
{
    int rc = ns_get_local(s, ns, created_ms, meta, meta_len), has;
    if (rc == STORE_NOTFOUND && s->tier_q && *ns) {
        int t = tier_resolve_ns(s, ns);
        if (t == STORE_OK)
            rc = ns_get_local(s, ns, created_ms, meta, meta_len);
        else if (t != STORE_NOTFOUND && t != STORE_AGAIN)
            /* the tier could not say: not "no such namespace"; but keys of it
             * held here (read through the tier) tell it exists */
            rc = ns_has_local_keys(s, ns, &has) == STORE_OK && has ? STORE_OK : t;
        if (rc == STORE_OK && t != STORE_OK) { /* (its date and meta unknown) */
            if (created_ms)
                *created_ms = 0;
            if (meta)
                *meta = NULL, *meta_len = 0;
        }
    }
    return rc;
}

int ns_get_local(store *s, const char *ns, uint64_t *created_ms, void **meta, size_t *meta_len)
{
    if (*ns == '\0' || strlen(ns) >= s->ix.max_key)
        return STORE_NOTFOUND;
    MDB_txn *t = reader_get(s);
    if (t == NULL)
        return STORE_IO;
    MDB_val k = {strlen(ns), (void *)ns}, v;
    int rc = map_mdb(mdb_get(t, s->ix.ns, &k, &v));
    if (rc == STORE_OK && v.mv_size < 8)
        rc = STORE_IO;
    if (rc == STORE_OK) {
        if (created_ms)
            *created_ms = ns_created(&v);
        if (meta) {
            *meta_len = v.mv_size - 8;
            *meta = malloc(*meta_len + 1);
            if (*meta == NULL)
                rc = STORE_IO;
            else
                memcpy(*meta, (uint8_t *)v.mv_data + 8, *meta_len);
        }
    }
    reader_put(s, t);
    return rc;
}

int scan_names_in(MDB_txn *t, MDB_dbi dbi, int (*each)(void *ctx, const char *name, MDB_val *v),
                  void *ctx)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(t, dbi, &c);
    if (rc != 0)
        return rc;
    MDB_val k, v;
    char name[1024];
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size >= sizeof name)
            continue;
        memcpy(name, k.mv_data, k.mv_size);
        name[k.mv_size] = '\0';
        if (each(ctx, name, &v) != 0)
            break; /* (rc 0) */
    }
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Calls each with every record of dbi whose key is a name (NUL-terminated
 * copy) until it returns non-zero. */
static int scan_names(store *s, MDB_dbi dbi, int (*each)(void *ctx, const char *name, MDB_val *v),
                      void *ctx)
{
    MDB_txn *t = reader_get(s);
    if (t == NULL)
        return STORE_IO;
    int rc = scan_names_in(t, dbi, each, ctx);
    reader_put(s, t);
    return rc == 0 ? STORE_OK : STORE_IO;
}

typedef struct ns_list_ctx {
    int (*cb)(void *ctx, const char *ns, uint64_t created_ms);
    void *ctx;
} ns_list_ctx;

static int ns_list_each(void *ctx, const char *name, MDB_val *v)
{
    ns_list_ctx *c = ctx;
    return c->cb(c->ctx, name, ns_created(v));
}

int store_ns_list(store *s, int (*cb)(void *ctx, const char *ns, uint64_t created_ms), void *ctx)
{
    /* the fleet's namespaces: those other nodes made too (if the tier
     * cannot be listed, those known here) */
    if (s->tier_q && tier_resolve_all_ns(s) == STORE_AGAIN)
        return STORE_AGAIN;
    ns_list_ctx c = {cb, ctx};
    return scan_names(s, s->ix.ns, ns_list_each, &c);
}

typedef struct ns_usage_ctx {
    int (*cb)(void *ctx, const char *ns, uint64_t keys, uint64_t bytes);
    void *ctx;
} ns_usage_ctx;

static int ns_usage_each(void *ctx, const char *name, MDB_val *v)
{
    ns_usage_ctx *c = ctx;
    uint64_t keys, bytes;
    return idx_usage_decode(v, &keys, &bytes) == 0 ? c->cb(c->ctx, name, keys, bytes) : 0;
}

int store_ns_usage(store *s, int (*cb)(void *ctx, const char *ns, uint64_t keys, uint64_t bytes),
                   void *ctx)
{
    ns_usage_ctx c = {cb, ctx};
    return scan_names(s, s->ix.usage, ns_usage_each, &c);
}

int store_warm(store *s, const char *ns, const void *key, size_t klen, int *state, uint64_t *size)
{
    size_t nklen;
    int tries = 0;
    *state = 0;
    *size = 0;
    char *nskey = make_nskey(s, ns, key, klen, &nklen);
    if (nskey == NULL)
        return STORE_BAD_KEY;
    store_entry e;
    int filled, rc;
    uint64_t clock;
again:
    clock = tier_clock(s);
    rc = lookup_nskey(s, nskey, nklen, &e, &filled);
    if (rc == STORE_NOTFOUND && e.tier_failed)
        rc = STORE_IO; /* the tier failed: not the same as not having it */
    if (rc == STORE_OK && !e.from_tier) {
        *state = STORE_WARM_LOCAL;
    } else if (rc == STORE_OK) {
        store_entry_clear(&e); /* not read here: a fill goes on without us */
        if (filled)
            tier_wait_key(s, nskey, nklen);
        /* warmed means committed here; a fill that did not commit (its blob
         * failed its checks as it arrived, say) failed */
        rc = lookup_local(s, nskey, nklen, &e);
        if (rc == STORE_OK)
            *state = STORE_WARM_FETCHED;
        else if (rc == STORE_NOTFOUND && filled && !tier_changed_since(s, nskey, nklen, clock))
            rc = STORE_IO; /* (deleted meanwhile, it is missing) */
        else if (rc == STORE_NOTFOUND && filled && tries++ == 0)
            goto again; /* the mark may be another key's: the tier says whether it is gone */
    }
    if (rc == STORE_OK) {
        *size = e.size;
        store_entry_clear(&e);
    }
    free(nskey);
    return rc;
}

int store_hot(store *s, uint64_t since_ms, size_t limit,
              int (*cb)(void *ctx, const char *ns, const void *key, size_t klen, uint64_t size),
              void *ctx)
{
    int rc = store_flush(s);
    if (rc != STORE_OK)
        return rc;
    MDB_txn *t = reader_get(s);
    if (t == NULL)
        return STORE_IO;
    MDB_cursor *ac = NULL, *rcur = NULL;
    rc = mdb_cursor_open(t, s->ix.atime, &ac);
    if (rc == 0)
        rc = mdb_cursor_open(t, s->ix.refs, &rcur);
    size_t n = 0;
    int stop = 0;
    MDB_val k, v;
    /* the atime database is ordered oldest first: walk it from the end */
    for (rc = rc ? rc : mdb_cursor_get(ac, &k, &v, MDB_LAST); rc == 0 && !stop && n < limit;
         rc = mdb_cursor_get(ac, &k, &v, MDB_PREV)) {
        uint64_t atime;
        const uint8_t *digest;
        if (idx_atime_decode(&k, &atime, &digest) != 0 || atime < since_ms)
            break;
        MDB_val d = {32, (void *)digest}, kv;
        int r2;
        for (r2 = mdb_cursor_get(rcur, &d, &kv, MDB_SET_KEY); r2 == 0 && n < limit;
             r2 = mdb_cursor_get(rcur, &d, &kv, MDB_NEXT_DUP)) {
            key_rec kr;
            const char *nk = kv.mv_data;
            size_t nl = strnlen(nk, kv.mv_size);
            if (nl == kv.mv_size || idx_get_key(t, &s->ix, kv.mv_data, kv.mv_size, &kr) != 0)
                continue;
            n++;
            if (cb(ctx, nk, nk + nl + 1, kv.mv_size - nl - 1, kr.size) != 0) {
                stop = 1;
                break;
            }
        }
    }
    if (rcur)
        mdb_cursor_close(rcur);
    if (ac)
        mdb_cursor_close(ac);
    reader_put(s, t);
    return rc == 0 || rc == MDB_NOTFOUND ? STORE_OK : STORE_IO;
}

/* ---- listing -------------------------------------------------------------- */

int store_list(store *s, const char *ns, const void *from, size_t from_len, int after,
               store_list_cb cb, void *ctx)
{
    size_t nl = strlen(ns);
    char *pos = malloc(s->ix.max_key + 1);
    char *seek = malloc(1024);
    if (pos == NULL || seek == NULL) {
        free(pos);
        free(seek);
        return STORE_IO;
    }
    MDB_txn *t = reader_get(s);
    MDB_cursor *c = NULL;
    if (t == NULL || mdb_cursor_open(t, s->ix.keys, &c) != 0) {
        if (t)
            reader_put(s, t);
        free(pos);
        free(seek);
        return STORE_IO;
    }
    memcpy(pos, ns, nl + 1);
    if (from_len > s->ix.max_key - nl - 1)
        from_len = s->ix.max_key - nl - 1;
    memcpy(pos + nl + 1, from, from_len);
    MDB_val k = {nl + 1 + from_len, pos}, v;
    int rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    int status = STORE_OK;
    while (rc == 0) {
        if (k.mv_size <= nl + 1 || memcmp(k.mv_data, ns, nl + 1) != 0)
            break; /* past the namespace */
        if (after && k.mv_size == nl + 1 + from_len &&
            memcmp((char *)k.mv_data + nl + 1, from, from_len) == 0) {
            after = 0;
            rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
            continue;
        }
        key_rec kr;
        if (idx_get_key(t, &s->ix, k.mv_data, k.mv_size, &kr) != 0) {
            status = STORE_IO;
            break;
        }
        store_list_item it = {(const char *)k.mv_data + nl + 1,
                              k.mv_size - nl - 1,
                              kr.digest,
                              kr.size,
                              kr.mtime_ms,
                              kr.meta,
                              kr.meta_len};
        size_t seek_len = 0;
        int what = cb(ctx, &it, seek, &seek_len);
        if (what == STORE_LIST_STOP)
            break;
        if (what == STORE_LIST_SEEK) {
            if (seek_len > s->ix.max_key - nl - 1)
                seek_len = s->ix.max_key - nl - 1;
            memcpy(pos + nl + 1, seek, seek_len);
            k.mv_size = nl + 1 + seek_len;
            k.mv_data = pos;
            after = 0;
            rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
        } else {
            rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
        }
    }
    if (rc != 0 && rc != MDB_NOTFOUND)
        status = STORE_IO;
    mdb_cursor_close(c);
    reader_put(s, t);
    free(pos);
    free(seek);
    return status;
}
