/*
 * store_int.h - the store's insides, shared by store.c and store_tier.c (the
 * cold tier's queue, workers and read-through).  Nothing outside storage/
 * includes it.
 */
#ifndef CAIRN_STORE_INT_H
#define CAIRN_STORE_INT_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/types.h>

#include "codec.h"
#include "index.h"
#include "store.h"

#define TOUCH_SLOTS 8192
#define TOUCH_PROBE 8
#define MAX_READERS IDX_MAX_READERS
#define EVICT_PER_TXN 2000
#define SWEEP_BATCH 1024

enum op_kind {
    OP_PUT,
    OP_DELETE,
    OP_QUARANTINE,
    OP_SWEEP,
    OP_DROP_MISSING, /* after a restore: blob records whose files are not here */
    OP_EVICT,
    OP_FLUSH,
    OP_NS_CREATE,
    OP_NS_DELETE,
    OP_TIER_DONE,   /* a queue entry was carried out */
    OP_TIER_RETRY,  /* ... failed: try again later */
    OP_TIER_HURRY,  /* the tier is back: every waiting entry is due now */
    OP_TIER_OWE,    /* the tier lost the record of a key held here: owe it again */
    OP_TIER_NS_ALL, /* the tier lost everything (made anew): owe every bucket's record */
};

typedef struct op {
    int kind;
    struct op *next;
    int status;
    int done;
    /* OP_PUT, OP_DELETE */
    char *nskey;
    size_t nklen;
    const void *meta;
    size_t meta_len;
    char tmp[PATH_MAX];
    codec_result cr;
    int dedup;
    int link; /* point a key at an existing blob: no file comes with it */
    int anon; /* the body is an unnamed file (O_TMPFILE), open as fd */
    int fd;
    const uint8_t *inl; /* a small body's stored bytes, kept in the index: no file */
    size_t inl_len;
    int created;          /* this op renamed a new blob file into place */
    uint64_t parts_freed; /* OP_PUT of a multipart upload: its parts' bytes, which go after it */
    int map_full;         /* failed for want of index space: worth another try */
    int later;            /* its body's file goes in this batch: it goes in the next */
    /* OP_QUARANTINE, OP_SWEEP, OP_DROP_MISSING */
    uint8_t (*digests)[32];
    size_t ndigests;
    ino_t ino; /* quarantine only the file that failed */
    /* OP_DELETE of a key held only in the cold tier: queue its deletion there */
    int tier_only;
    /* OP_PUT, OP_DELETE of a client's: the key as it must still be (or NULL) */
    const store_cond *cond;
    /* OP_DELETE of the local copy of a key another node changed since
     * (store_forget_key): nothing goes to the tier, and the key stays if
     * its time here is no longer mtime_ms or a change of it is queued */
    int forget;
    /* OP_EVICT; OP_TIER_HURRY: at most that many entries, then how many;
     * OP_TIER_OWE: set to 1 if the key was owed to the tier again */
    uint64_t target;
    /* from the cold tier: no upload is queued, the blob is marked as in the
     * tier, and the key keeps the writer's time */
    int from_tier;
    /* ... of a key held here with the same body, written again elsewhere:
     * only its time and metadata change, if its time here is still this */
    uint64_t retime_from;
    /* OP_NS_CREATE from the tier: its date and settings replace those of
     * the namespace here (made here while the tier could not be asked);
     * one not here (deleted since) is not made */
    int adopt;
    uint64_t fill_clock; /* from the tier: tier_clock when the fill began */
    uint64_t mtime_ms;
    uint32_t tier_time; /* from the tier: when its copy was last written (s) */
    /* OP_TIER_DONE, OP_TIER_RETRY: the queue entry (nskey, nklen) and the
     * sequence number it had when its work began */
    uint64_t seq;
    uint64_t next_ms;
    /* OP_NS_CREATE from the tier: its creation time */
    uint64_t created_ms;
    /* nobody waits for an async op: when it is done, the committer calls
     * on_done, which owns it from then on */
    void (*on_done)(store *s, struct op *o);
} op;

typedef struct touch_slot {
    uint8_t digest[32];
    uint64_t t;
    int used;
} touch_slot;

typedef struct digest_list {
    uint8_t (*d)[32];
    size_t n, cap;
} digest_list;

struct store {
    store_config cfg;
    char dir[PATH_MAX - 256]; /* room for the longest name inside it */
    uint64_t id;
    int lock_fd;
    idx ix;

    pthread_mutex_t mu; /* guards the queue */
    pthread_cond_t cv_work, cv_done, cv_stop;
    op *head, *tail;
    /* A queue of async ops alone (fills from the tier, which nobody waits
     * for) lingers a little, so that one commit, and one sync, takes many
     * of them: see committer_main. */
    uint64_t queued_ns; /* when the queue's first op came */
    unsigned nqueued;
    int urgent; /* an op somebody waits for is queued, or store_hurry was called */
    int stopping;
    pthread_t committer;
    pthread_t sweeper;
    int sweeper_started;

    pthread_mutex_t touch_mu;
    touch_slot *touches;       /* filled by readers */
    touch_slot *touches_spare; /* written out by the committer */
    size_t ntouches;

    pthread_mutex_t readers_mu; /* registry of per-thread read transactions */
    pthread_rwlock_t map_lock;  /* readers share it while a read txn is live; growing the map
                                   takes it alone */
    MDB_txn *readers[MAX_READERS];
    size_t nreaders;

    atomic_ullong tmp_seq;
    atomic_ullong evicted_blobs, evicted_bytes, corrupt_blobs, orphans_removed;
    atomic_ullong commits, batches;
    atomic_llong mpu_bytes; /* parts of unfinished multipart uploads (store_multipart_bytes) */
    atomic_int cut_long;    /* store_cut_long was called */
    atomic_int broken;      /* the disk failed a sync of the index: store_broken */

    /* committer-only scratch, reset per batch */
    digest_list unlink_later;
    digest_list quarantine_later;
    uint8_t dirs_dirty[256];
    int blobs_dir_dirty;
    int tmpfile_ok; /* uploads go to unnamed files (O_TMPFILE), linked in when committed */

    /* the cold tier (store_tier.c); tier_q is NULL without one */
    struct tier_state *tier_q;
    int tier_kick_pending; /* committer: this batch queued tier work */
    /* committer: what this batch counts once it commits */
    uint64_t batch_evicted_blobs, batch_evicted_bytes, batch_corrupt;
};

/* helpers of store.c */
void blob_path(const store *s, const uint8_t d[32], char *out, size_t cap);
int map_mdb(int rc);
/* An operation's return for STORE_TIER_BEHIND (neither an errno nor one of
 * LMDB's codes, -30799 to -30780) */
#define RC_TIER_BEHIND (-1000)
#define RC_LATER (-1001) /* apply_put: the op goes in the next batch */
#define RC_NO_NAMESPACE (-1002)
#define RC_PRECONDITION (-1003) /* o->cond does not hold */

/* Is the namespace of nskey (its first nklen bytes, "<ns>\0<key>", or a
 * namespace's name alone) a declared one, a bucket's (see store.h)? */
static inline int ns_declared(const char *nskey, size_t nklen)
{
    return nklen > 3 && memcmp(nskey, "s3/", 3) == 0;
}
char *make_nskey(const store *s, const char *ns, const void *key, size_t klen, size_t *out);
MDB_txn *reader_get(store *s);
void reader_put(store *s, MDB_txn *t);
int submit_and_wait(store *s, op *o);
/* Queues o for the committer, which calls o->on_done once it is done;
 * nobody waits for it, so it may linger a little (FILL_LINGER_MS). */
void submit_async(store *s, op *o);
/* Somebody waits for async ops queued now (a reader for a fill of its key,
 * a warmup): the committer takes them without lingering. */
void store_hurry(store *s);
/* A temporary file in DATA/tmp, read-write: unnamed (O_TMPFILE, *anon set)
 * where the file system allows, else named in path.  -1 on failure. */
int store_tmp_open(store *s, char path[PATH_MAX], int *anon);
/* Hands a finished temporary file (from store_tmp_open) to o: an unnamed
 * one by its descriptor, a named one by its name (the descriptor is closed). */
void op_take_file(op *o, int fd, int anon);
/* After o ran: drops its file unless the committer put it in place. */
void op_release_file(op *o);
int ns_get_local(store *s, const char *ns, uint64_t *created_ms, void **meta, size_t *meta_len);
/* Calls each with every record of dbi in t whose key is a name (a
 * NUL-terminated copy), until it returns non-zero: 0, or LMDB's error. */
int scan_names_in(MDB_txn *t, MDB_dbi dbi, int (*each)(void *ctx, const char *name, MDB_val *v),
                  void *ctx);

/* store_tier.c: everything of the cold tier */
int tier_start(store *s, char *err, size_t errlen); /* after the committer runs */
void tier_stop(store *s);                           /* drains first, up to tier_drain_ms */
void tier_free(store *s);                           /* after the committer stopped */
/* a thread about to end: its context for signing requests to the tier */
void tier_thread_end(store *s);
void tier_stats(store *s, store_stats *st);
/* In the committer's transaction: queue work after a write, a delete, a namespace change. */
int tier_queue_put(store *s, MDB_txn *t, idx_stats *st, op *o, int created, const blob_rec *b);
int tier_queue_delete(store *s, MDB_txn *t, const char *nskey, size_t nklen);
int tier_queue_ns(store *s, MDB_txn *t, const char *name, int deleted);
/* A blob's local copy is gone: its upload is no longer owed. */
int tier_blob_dropped(store *s, MDB_txn *t, idx_stats *st, const uint8_t d[32]);
/* May eviction drop this blob?  Only when the tier holds it and its keys. */
int tier_evictable(store *s, MDB_txn *t, const uint8_t d[32], const blob_rec *b);
int tier_apply(store *s, MDB_txn *t, idx_stats *st, op *o);
/* OP_TIER_NS_ALL: every bucket held here queued for its record to go up
 * (o->target: how many) */
int tier_owe_all_ns(store *s, MDB_txn *t, op *o);
/* OP_TIER_OWE: the record of key o->nskey, as written at o->mtime_ms, and
 * its blob if that does not ride in it, are queued for the tier again. */
int tier_owe(store *s, MDB_txn *t, idx_stats *st, op *o);
/* flush_touches: a blob was read; may queue a refresh and change b->tier_time. */
int tier_touched(store *s, MDB_txn *t, const uint8_t d[32], blob_rec *b);
/* Wakes the workers after a commit that queued work. */
void tier_kick(store *s);
/* A local miss: fetch the key (and its blob) from the tier.  STORE_OK once
 * the key is stored locally, else STORE_NOTFOUND (or STORE_IO). */
int tier_resolve_key(store *s, const char *nskey, size_t nklen, store_entry *e, int *filled);
/* A key was found here: checks it against the tier in the background if
 * its time has come (--tier-revalidate). */
void tier_revalidate(store *s, const char *nskey, size_t nklen);
/* The copy here of a key checked against the tier now, as tier_revalidate
 * has it checked later: STORE_OK (checked, or nothing to check),
 * STORE_AGAIN (not on this thread), STORE_UNAVAILABLE (the tier did not
 * answer: the copy stands). */
int tier_check_key(store *s, const char *nskey, size_t nklen);
/* Is a change of this key here still owed to the tier? */
int tier_key_pending(store *s, MDB_txn *t, const char *nskey, size_t nklen);
/* Drops the local copy of a key whose time here is mtime_ms (see op.forget):
 * STORE_OK, or STORE_NOTFOUND when it was not dropped. */
int store_forget_key(store *s, const char *nskey, size_t nklen, uint64_t mtime_ms);
/* Waits until no read-through of this key is in progress (its local copy
 * committed or dropped). */
void tier_wait_key(store *s, const char *nskey, size_t nklen);
/* A key read through the tier is answered from the checked bytes while its
 * local copy is being committed: the entry holds them (store_entry.fill). */
void tier_fill_release(struct tier_fill *f);
/* The fill's bytes (inline-sized blobs) or, with *bytes NULL, a new
 * descriptor of its file. */
int tier_fill_open(struct tier_fill *f, const uint8_t **bytes, size_t *len, int *fd);
/* ... returns 1 for a fill still arriving: read it with tier_fill_read (the
 * caller now holds a reference, and a cursor to free), for an answer that
 * ends at body offset end: its last bytes wait for the body's checks. */
ssize_t tier_fill_read(struct tier_fill *f, void **cursor, uint64_t off, void *buf, size_t len,
                       uint64_t end, store_waiter *w);
/* Takes a waiter back that tier_fill_read registered (if not woken yet). */
void tier_fill_forget(struct tier_fill *f, store_waiter *w);
/* store_nonblocking is on for this thread: notes that a call would have
 * waited for the tier, and returns 1 (the call fails without waiting). */
int tier_must_not_wait(void);
void tier_fill_cursor_free(void *cursor);
/* Is the fill a large blob still arriving (read only through tier_fill_read)? */
int tier_fill_streaming(const struct tier_fill *f);
/* The tier holds a delete of this key that is not done yet. */
int tier_key_deleted(store *s, MDB_txn *t, const char *nskey, size_t nklen);
/* A delete marks its key when done, and so does the eviction or quarantine
 * of its blob (tier_key_changed_now); a fill that began (tier_clock) before
 * a mark of its key does not commit.  Marks share DEL_SLOTS slots by hash:
 * a fill dropped for another key's mark is fetched again (lookup_nskey,
 * store_warm). */
uint64_t tier_clock(store *s);
void tier_key_changed_now(store *s, const char *nskey, size_t nklen);
int tier_changed_since(store *s, const char *nskey, size_t nklen, uint64_t clock);
/* Does the tier hold a record of this key?  STORE_OK, STORE_NOTFOUND, or
 * STORE_IO when it did not say. */
int tier_has_key(store *s, const char *nskey, size_t nklen);
/* Does the tier hold a key of namespace ns (one not deleted here since)?
 * STORE_OK (yes), STORE_NOTFOUND (no), STORE_UNAVAILABLE (the tier did not
 * say) or STORE_IO. */
int tier_ns_has_keys(store *s, const char *ns);
/* Makes namespace ns known here if the tier has its record: STORE_OK (now
 * known, or being made known by another reader), STORE_NOTFOUND,
 * STORE_UNAVAILABLE (the tier could not be asked), STORE_AGAIN or STORE_IO. */
int tier_resolve_ns(store *s, const char *ns);
/* Makes every namespace the tier has a record of known here: STORE_OK,
 * STORE_AGAIN, STORE_UNAVAILABLE (the tier could not be listed) or
 * STORE_IO. */
int tier_resolve_all_ns(store *s);

#endif
