/*
 * store.h - the content-addressed store: the only door to blobs and index.
 *
 * Model: (namespace, key) -> digest -> blob.  The digest is the SHA-256 of the
 * uncompressed body.  Front ends hand the store a namespace ("cas", "ac/<inst>",
 * later an S3 bucket), a key, and an opaque metadata blob of their own; the
 * store gives back the same.  It knows nothing of HTTP.
 *
 * Writes stream through a store_upload into a temporary file (hashing and
 * compressing on the way, see codec.h), then store_upload_commit() hands the
 * finished file to the one committer thread, which renames it into place (or
 * drops it if the blob already exists: dedup), updates the index in a group
 * commit together with whatever other writes are waiting, and only then lets
 * the caller answer.  A body of at most inline_max bytes is held in memory
 * instead and committed into the index itself: no file is made, synced,
 * linked or unlinked for it, so a small write costs one share of a group
 * commit.  Reads never take a lock: they use a per-thread LMDB read
 * transaction that is reset and renewed.
 *
 * Invariants kept here: the index never points at a missing or incomplete
 * blob; a body is never served unless its zstd frames check out; a commit that
 * returned STORE_OK survives a crash of the process.
 */
#ifndef CAIRN_STORE_H
#define CAIRN_STORE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum store_status {
    STORE_OK = 0,
    STORE_NOTFOUND,
    STORE_DIGEST_MISMATCH, /* body does not hash to the expected digest */
    STORE_NOSPACE,         /* disk full, or nothing left to evict */
    STORE_TOO_LARGE,       /* body larger than the store can ever hold */
    STORE_BAD_KEY,         /* key too long or malformed */
    STORE_CORRUPT,         /* blob failed its checks; it has been quarantined */
    STORE_IO,              /* any other I/O or index error */
    STORE_SHUTDOWN,
    STORE_EXISTS,       /* namespace already exists */
    STORE_NOT_EMPTY,    /* namespace still has keys */
    STORE_AGAIN,        /* would wait for the cold tier: see store_nonblocking */
    STORE_UNAVAILABLE,  /* the cold tier could not be asked (down, slow, refusing) */
    STORE_TIER_BEHIND,  /* a new body while --tier-queue-max bytes wait for the cold tier */
    STORE_NO_NAMESPACE, /* a write into a declared namespace that is gone (store_ns_create) */
    STORE_PRECONDITION, /* the key is no longer as the write's condition saw it (store_cond) */
};

/* A write's condition on its key's current version, checked again in the
 * write's own transaction, so that no other write of the key comes between
 * the caller's check and the write (STORE_PRECONDITION if one did): the
 * key as the caller saw it, absent, or with that body and metadata (the
 * same written again meanwhile is the same).  A key the caller saw read
 * through the cold tier may still be on its way here: absent then, with
 * no change of it here since, it holds too. */
enum { STORE_COND_NONE, STORE_COND_ABSENT, STORE_COND_SAME };
typedef struct store_cond {
    int kind;
    int held;                /* _SAME: held here when seen (not read through the tier) */
    uint64_t clock;          /* store_cond_clock before the lookup */
    uint8_t digest[32];      /* _SAME: the body's SHA-256 ... */
    uint8_t meta_sha256[32]; /* ... and the metadata's */
} store_cond;

const char *store_strerror(int status);
/* The store status for an errno of a failed write: a full disk or quota is
 * STORE_NOSPACE, anything else STORE_IO. */
int store_status_of_errno(int err);

typedef struct store_config {
    const char *dir;
    uint64_t max_size;          /* bytes of blob files; 0 = unlimited */
    unsigned high_pct;          /* start evicting above this percentage of max_size */
    unsigned low_pct;           /* ... down to this one */
    int zstd_level;             /* 0 stores every body raw */
    uint64_t map_size;          /* LMDB map size (virtual address space) */
    int fsync;                  /* fsync blob files and the index before answering */
    unsigned touch_interval_ms; /* how often buffered last-access times are written */
    uint64_t multipart_ttl_ms;  /* unfinished multipart uploads older than this are removed */
    uint64_t inline_max;        /* bodies up to this size live in the index, not in files;
                                   at most STORE_INLINE_LIMIT; 0 = every body has a file */
    /* the cold tier (tier.h), or NULL; the store uses it, the caller owns it */
    struct tier *tier;
    unsigned tier_workers;    /* uploads running at once */
    uint64_t tier_queue_max;  /* stored bytes waiting for the tier before writes are refused */
    uint64_t tier_drain_ms;   /* store_close waits this long for the queue to empty */
    uint64_t tier_refresh_ms; /* a blob read locally whose tier copy is older is refreshed */
    /* a key read here is checked against the tier at most this often, and
     * dropped here if another node changed it since (0 = never) */
    uint64_t tier_revalidate_ms;
} store_config;

#define STORE_INLINE_LIMIT (64u << 10)

void store_config_defaults(store_config *cfg);

typedef struct store store;

int store_open(store **s, const store_config *cfg, char *err, size_t errlen);
/* Stops the committer after it has written everything queued. */
void store_close(store *s);

typedef struct store_entry {
    uint8_t digest[32];
    uint64_t size;     /* body bytes */
    uint64_t stored;   /* file bytes */
    uint64_t mtime_ms; /* when the key was written */
    int codec;
    int format;             /* in a file, or in the index (BLOB_FILE, BLOB_INLINE of index.h) */
    struct tier_fill *fill; /* read through the cold tier, not yet committed here */
    int from_tier;          /* this lookup found it in the cold tier, not here */
    int tier_failed;        /* a miss because the tier failed (error, damaged or inconsistent
                               objects), not because it has no such key */
    void *meta; /* malloc'ed copy of the front end's metadata; free with store_entry_clear */
    size_t meta_len;
} store_entry;

/* Taken before the lookup whose entry store_cond_set is given. */
uint64_t store_cond_clock(store *s);
/* The condition that the key stays as e (NULL: absent) is. */
void store_cond_set(store_cond *c, uint64_t clock, const store_entry *e);
/* Is e the version c holds to? */
int store_cond_is(const store_cond *c, const store_entry *e);

void store_entry_clear(store_entry *e);
/* Is the entry's blob still arriving from the tier, to be read (decoded)
 * as it comes, with no file to send as it is? */
int store_entry_arriving(const store_entry *e);

/* Has the store a cold tier? */
int store_has_tier(const store *s);

/* Calls on this thread that would wait for the cold tier (a read through
 * it, a lookup of a namespace or of keys there, the tier's word on a
 * delete) fail at once instead, before they change anything, and the
 * thread remembers that they did: the HTTP threads, which must keep
 * serving local hits, run such a request again on a thread that may wait.
 * store_would_block() tells, and forgets. */
void store_nonblocking(int on);
int store_would_block(void);
/* ... without forgetting. */
int store_would_block_peek(void);
/* The request this thread runs now waited waited_ns for a thread that may
 * ask the cold tier: that much comes out of the budget (--tier-timeout) of
 * each request to the tier it makes, and none is sent once it is spent, so
 * that a miss is answered within it even when many wait.  With one_answer
 * (a read), once one of them times out the rest are not sent: the client
 * has waited its --tier-timeout.  0, 0 when done. */
void store_tier_waited(uint64_t waited_ns, int one_answer);
/* A drain: the tier's queue tries its entries that wait (after failures)
 * now, rather than each at the end of its wait: as soon as one try shows
 * the tier answers, all of them. */
void store_tier_retry_now(store *s);
/* Before an exit: waits up to tier_drain_ms for the tier's queue to empty
 * (a rolling restart), while the caller still answers probes; store_close
 * then does not wait again. */
void store_tier_drain(store *s);

/* Looks a key up; STORE_OK, STORE_NOTFOUND or STORE_IO. */
int store_lookup(store *s, const char *ns, const void *key, size_t klen, store_entry *e);
/* Before a write that depends on the key's current version (a copy of it,
 * a condition on it): the copy held here, if any, is checked against the
 * cold tier now rather than within --tier-revalidate, and dropped if
 * another node changed or deleted the key since (the lookup after this one
 * then reads the tier's), whatever --tier-revalidate.  STORE_OK (checked,
 * or nothing to check: no tier, content-addressed, not held here or
 * changed here last),
 * STORE_AGAIN (it would wait for the tier on a thread that must not),
 * STORE_UNAVAILABLE (the tier did not answer: the copy here stands). */
int store_check_key(store *s, const char *ns, const void *key, size_t klen);

/* An open blob: read ranges of the body, or send the file itself. */
typedef struct store_blob store_blob;
/* Opens the blob an entry points at and counts a read of it for eviction.
 * STORE_NOTFOUND if it was evicted meanwhile; STORE_CORRUPT if the file has
 * the wrong size (the blob is then quarantined; a wrong seek table or frame
 * is found, and handled the same way, by the read that meets it). */
int store_blob_open(store *s, const store_entry *e, store_blob **b);
/* Reads body bytes; on a checksum failure quarantines the blob and returns
 * -STORE_CORRUPT.  Returns bytes read (0 at end) or a negative store status;
 * a blob still arriving from the tier may give fewer than len bytes. */
ssize_t store_blob_read(store_blob *b, uint64_t off, void *buf, size_t len);
/* Someone to wake when a blob still arriving has more: a read that would
 * wait (store_blob_read_or_wait) registers it instead, and wake(arg) is
 * called once, from another thread, when the read may go on. */
typedef struct store_waiter {
    void (*wake)(void *arg);
    void *arg;
    uint64_t at; /* (the store's: what it waits for, and whether it is registered) */
    int linked;
    struct store_waiter *next;
} store_waiter;
/* store_blob_read, but where it would wait for the tier it registers w and
 * returns -STORE_AGAIN. */
ssize_t store_blob_read_or_wait(store_blob *b, uint64_t off, void *buf, size_t len,
                                store_waiter *w);
/* Takes w back if it is still registered (a reader that gives up). */
void store_blob_forget_waiter(store_blob *b, store_waiter *w);
/* Announces a long sequential read: decoding runs ahead on another thread. */
void store_blob_sequential(store_blob *b);
/* The answer being read ends at body offset end (a range): of a blob still
 * arriving from the tier, the last bytes before end wait until the whole
 * body has checked out, as the end of the body does (the default). */
void store_blob_answer_end(store_blob *b, uint64_t end);
/* The blob file's descriptor, for sendfile; the blob keeps owning it.  -1
 * for a small blob kept in the index: see store_blob_bytes. */
int store_blob_fd(const store_blob *b);
/* A blob kept in the index: its stored bytes (the body, or one zstd frame),
 * owned by the blob.  Returns 0, or -1 for a blob with a file. */
int store_blob_bytes(const store_blob *b, const void **data, size_t *len);
/* Gives the descriptor away (the blob no longer closes it). */
int store_blob_take_fd(store_blob *b);
void store_blob_close(store_blob *b);

typedef struct store_upload store_upload;

typedef struct store_put_result {
    uint8_t digest[32];
    uint8_t md5[16];
    uint64_t size;
    uint64_t stored;
    int codec;
    int deduplicated; /* the blob was already there */
} store_put_result;

/* expect_size: the declared body size if known, or -1.  STORE_TOO_LARGE if it
 * can never fit; STORE_NOSPACE if the temporary file cannot be made. */
int store_upload_begin(store *s, int64_t expect_size, int want_md5, store_upload **u);
int store_upload_write(store_upload *u, const void *buf, size_t len);
uint64_t store_upload_size(const store_upload *u);
/* Ends the body and computes its digests, without committing: for front ends
 * whose metadata depends on them (S3's ETag is the MD5).  Optional. */
int store_upload_finish(store_upload *u, store_put_result *res);
/* Finishes the body and makes (ns, key) point at it, replacing what it
 * pointed at.  With expect_digest, a body that hashes otherwise is dropped
 * (STORE_DIGEST_MISMATCH); with cond (or NULL), one whose key changed since
 * (STORE_PRECONDITION).  Frees u in every case. */
int store_upload_commit(store_upload *u, const char *ns, const void *key, size_t klen,
                        const uint8_t *expect_digest, const void *meta, size_t meta_len,
                        const store_cond *cond, store_put_result *res);
void store_upload_abort(store_upload *u);

/* Makes (ns, key) point at a blob the store already holds (a copy that moves
 * no bytes); the key's time into *mtime_ms if given.  STORE_NOTFOUND if the
 * blob is gone; cond as for store_upload_commit. */
int store_link(store *s, const char *ns, const void *key, size_t klen, const uint8_t digest[32],
               const void *meta, size_t meta_len, const store_cond *cond, uint64_t *mtime_ms);

/* Deletes (ns, key); the delete reaches the cold tier too.  STORE_NOTFOUND
 * when there was no such key: one not held here is looked up in the tier,
 * which can wait for it. */
int store_delete(store *s, const char *ns, const void *key, size_t klen);
/* store_delete for an answer that does not depend on whether the key
 * existed (S3's DELETE, DeleteObjects): the tier is not asked, so the call
 * never waits for it.  STORE_OK or STORE_NOTFOUND, both meaning gone; with
 * cond (or NULL), STORE_PRECONDITION if the key is no longer as seen. */
int store_delete_blind(store *s, const char *ns, const void *key, size_t klen,
                       const store_cond *cond);
/* Can a key of klen bytes be stored in namespace ns (the index's key limit)? */
int store_key_fits(const store *s, const char *ns, size_t klen);

/* Latency buckets of requests to the cold tier, in seconds (+Inf after). */
#define STORE_TIER_LAT_N 12
extern const double store_tier_lat_bounds[STORE_TIER_LAT_N];

typedef struct store_stats {
    uint64_t blobs, keys, logical, physical, referenced;
    uint64_t inline_blobs; /* of blobs, those kept in the index */
    uint64_t max_size, high_bytes, low_bytes;
    uint64_t evicted_blobs, evicted_bytes; /* since start */
    uint64_t multipart_bytes;              /* parts of unfinished multipart uploads */
    uint64_t corrupt_blobs;                /* quarantined since start */
    uint64_t orphans_removed;              /* since start */
    uint64_t commits, commit_batches;      /* since start */
    /* the cold tier */
    uint64_t tier_revalidations, tier_revalidated_stale; /* checks of keys held here; dropped */
    uint64_t tier_revalidated_lost;                      /* ... not in the tier: put back */
    uint64_t tier_queue, tier_pending_bytes;      /* queue entries; blob bytes not yet there */
    uint64_t tier_uploads, tier_upload_bytes;     /* since start */
    uint64_t tier_upload_failures;                /* attempts that failed, since start */
    uint64_t tier_skipped;                        /* blobs the tier had already */
    uint64_t tier_refreshes;                      /* blobs copied onto themselves */
    uint64_t tier_hits, tier_misses, tier_errors; /* local misses resolved from the tier */
    uint64_t tier_fetched_bytes, tier_corrupt;    /* ... its bytes; objects that failed checks */
    uint64_t tier_replaced;   /* damaged tier copies of blobs uploaded over (in tier_uploads too) */
    uint64_t tier_packs_owed; /* packs of key records an idle queue still sends (a drain waits) */
    uint64_t tier_packs;      /* packs sent since start */
    uint64_t tier_pack_records; /* ... the key records in them */
    uint64_t tier_pack_hits;    /* keys a warmup took from packs (in tier_hits too) */
    /* durations of tier requests: [0] uploads (blob PUTs), [1] reads (GETs of a key
     * record or blob); per bucket, not cumulative */
    uint64_t tier_lat[2][STORE_TIER_LAT_N + 1];
    uint64_t tier_lat_sum_ns[2];
    /* the tier's last failure in its own words ("" if none since start),
     * and when (ms since the epoch) */
    char tier_last_error[320];
    uint64_t tier_last_error_ms;
} store_stats;

int store_get_stats(store *s, store_stats *st);
/* The data directory (absolute). */
const char *store_dir(const store *s);

/* Makes a key local: looks it up here, else reads it through the cold tier
 * and waits until its local copy is committed.  *state says which; *size is
 * the body's size.  STORE_NOTFOUND when neither here nor in the tier. */
enum { STORE_WARM_LOCAL = 1, STORE_WARM_FETCHED = 2 };
int store_warm(store *s, const char *ns, const void *key, size_t klen, int *state, uint64_t *size);
/* The hot set: calls cb with each key whose blob was read or written since
 * since_ms, most recent first, at most limit of them; cb returns non-zero to
 * stop.  Access times kept in memory are written first. */
/* Calls each for every key of ns under prefix that the cold tier holds a
 * record of (written by any node of the fleet), in the tier's order (not
 * byte order: names are escaped); each returns nonzero to stop.  Records
 * written by builds before the v2 layout are not listed.  STORE_OK (also
 * without a tier), STORE_UNAVAILABLE when the tier failed, or STORE_IO. */
int store_tier_keys(store *s, const char *ns, const void *prefix, size_t plen,
                    int (*each)(void *ctx, const void *key, size_t klen), void *ctx);
/* Warms, from the cold tier's packs of small key records, what it can of
 * the keys keys[i] (klens[i] bytes; i < n) of namespace ns that are not
 * here: lists their key records, and takes a record from a pack only where
 * the pack's copy has the ETag the listing shows, and checks out.  Reads
 * packs on up to `parallel` threads.  Calls warmed(ctx, i, size), from the
 * committer's thread, once key i is committed here.  The keys it does not
 * warm are for store_warm.  Stops early when *cancel is set.  Returns how
 * many keys it warmed; 0 for fewer than 32 keys (one request each is as
 * good) or without a tier. */
size_t store_warm_packs(store *s, const char *ns, const char *const *keys, const size_t *klens,
                        size_t n, unsigned parallel, atomic_int *cancel,
                        void (*warmed)(void *ctx, size_t i, uint64_t size), void *ctx);
int store_hot(store *s, uint64_t since_ms, size_t limit,
              int (*cb)(void *ctx, const char *ns, const void *key, size_t klen, uint64_t size),
              void *ctx);

/* Scrubs one blob: reads all of it (every frame's checksum) and checks its
 * SHA-256, without counting as a use.  A damaged blob is quarantined, as a
 * read would have done, and STORE_CORRUPT returned; STORE_NOTFOUND if it is
 * gone.  *size is the body's size. */
int store_verify(store *s, const uint8_t digest[32], uint64_t *size);
/* The digests of every blob now (malloc'ed, for the caller to free). */
int store_digests(store *s, uint8_t (**out)[32], size_t *n);
/* Garbage: blob files the index does not know (*orphans, removed), and
 * multipart uploads older than multipart_age_ms (0: the configured TTL;
 * *expired, removed). */
int store_gc(store *s, uint64_t multipart_age_ms, uint64_t *orphans, uint64_t *expired);

/* A consistent copy of the index, compacted, written to fd (a hot backup:
 * the store goes on serving).  Together with the blob files it names, it
 * rebuilds a node: put both in an empty data folder with a file named
 * RESTORED, and the store, when it opens, drops the records of blobs whose
 * files did not come along (with their keys; the cold tier serves those it
 * holds). */
int store_backup(store *s, int fd);
/* The stored bytes of a blob kept in a file (as they are on disk). */
int store_blob_file(store *s, const uint8_t digest[32], int *fd, uint64_t *len);

/* A thread that used the store and is about to end gives back the read
 * transaction the store keeps for it (and its LMDB reader slot), and frees
 * its context for signing requests to the tier. */
void store_thread_done(store *s);

/* Runs eviction now until physical bytes are at most target. */
int store_evict_to(store *s, uint64_t target);
/* The parts of unfinished multipart uploads count against --max-size with
 * the blobs: multipart.c tells the store of the bytes each part adds and
 * each removal takes away. */
void store_multipart_bytes(store *s, int64_t delta);
/* Room for a part of len bytes: STORE_OK (after evicting what may be
 * evicted, if that is needed), or STORE_NOSPACE. */
int store_room_for_part(store *s, uint64_t len);
/* store_room_for_part, and the room counted with the parts' at once, so
 * that parts written at the same time (copies) cannot all take the same
 * room; the caller gives it back with store_multipart_bytes(-len). */
int store_reserve_part(store *s, uint64_t len);
/* The body of u is made of a multipart upload's parts, parts_bytes in all,
 * removed once it is committed: the room they take is its own. */
void store_upload_of_parts(store_upload *u, uint64_t parts_bytes);
/* Waits until buffered last-access times are written (tests, shutdown). */
int store_flush(store *s);
/* Did the disk fail to make the index durable (EIO from its sync)?  What
 * it held back may be lost, and the index file may not hold together after
 * a power loss: from then on every change is refused (STORE_IO) until the
 * process starts again, and the node says it is not ready. */
int store_broken(store *s);
/* From now on, long work under way (a copy into a multipart part, the copy
 * of its parts a completion makes) stops at its next MiB with
 * STORE_SHUTDOWN, and leaves nothing: for a stop whose time is up. */
void store_cut_long(store *s);
int store_long_cut(store *s);

/* ---- namespaces that are created explicitly (S3 buckets) ---- */

/* A namespace whose name begins "s3/" (a bucket's) is declared: it holds
 * keys only while it exists.  A write into one that is not there (deleted
 * while the body came) is STORE_NO_NAMESPACE, decided in the commit itself;
 * other namespaces ("cas", "ac", "ac/<instance>") need no making. */

/* STORE_EXISTS when the namespace exists, here or (with a cold tier) in
 * the tier, made by another node; made here when the tier cannot say. */
int store_ns_create(store *s, const char *ns, const void *meta, size_t meta_len);
/* created_ms and meta (malloc'ed, may be NULL) are optional.  A namespace
 * unknown here is looked for in the cold tier: STORE_UNAVAILABLE if the tier
 * could not say, unless keys of it are held here (read through the tier):
 * then STORE_OK, its date 0 and no meta. */
int store_ns_get(store *s, const char *ns, uint64_t *created_ms, void **meta, size_t *meta_len);
/* STORE_NOT_EMPTY while any key of the namespace exists (here or in the
 * tier); a namespace only the tier knows is deleted too. */
int store_ns_delete(store *s, const char *ns);
/* Calls cb with each namespace that has keys, in name order: how many, and
 * their body bytes (what the namespace stores, before dedup and compression).
 * Kept in the index with the keys, so this reads one record a namespace. */
int store_ns_usage(store *s, int (*cb)(void *ctx, const char *ns, uint64_t keys, uint64_t bytes),
                   void *ctx);
/* Calls cb for each namespace in name order; cb returns non-zero to stop.
 * With a cold tier, namespaces other nodes made are looked up there first
 * (and made known here); STORE_AGAIN when that would wait. */
int store_ns_list(store *s, int (*cb)(void *ctx, const char *ns, uint64_t created_ms), void *ctx);

/* ---- listing keys in order ---- */

typedef struct store_list_item {
    const char *key; /* not NUL-terminated */
    size_t klen;
    const uint8_t *digest;
    uint64_t size;
    uint64_t mtime_ms;
    const void *meta;
    size_t meta_len;
} store_list_item;

enum { STORE_LIST_NEXT, STORE_LIST_STOP, STORE_LIST_SEEK };

/* Calls cb for the keys of ns in byte order, from `from` (inclusive, or
 * exclusive when after is set).  cb returns STORE_LIST_NEXT, STORE_LIST_STOP,
 * or STORE_LIST_SEEK after writing a key into seek/seek_len (at most 1024
 * bytes): the listing goes on from that key, inclusive.  The item's pointers
 * are valid during the call only.  One read snapshot serves the whole call. */
typedef int (*store_list_cb)(void *ctx, const store_list_item *it, char *seek, size_t *seek_len);
int store_list(store *s, const char *ns, const void *from, size_t from_len, int after,
               store_list_cb cb, void *ctx);
/* store_list of the keys under prefix, and with a cold tier, the fleet's:
 * the keys whose records the tier holds (written through other nodes, or
 * here and evicted since) come in their places, with their records' size,
 * date and metadata (digest NULL).  Keys held here are listed from here;
 * keys deleted here are not listed.  A key's record is read only when cb
 * may list it: the first `want` keys not rolled up at delim (dlen bytes;
 * none when 0), as cb does.  next_page: the request goes on from an
 * earlier page (a continuation token, a marker), and may take the tier's
 * keys that page found (a minute at most).  Without a tier, the keys held
 * here; STORE_UNAVAILABLE when the tier does not answer (logged), the keys
 * held here alone past 200,000 under the prefix (logged); STORE_AGAIN when
 * that would wait. */
int store_list_fleet(store *s, const char *ns, const void *prefix, size_t plen, const char *delim,
                     size_t dlen, long want, const void *from, size_t from_len, int after,
                     int next_page, store_list_cb cb, void *ctx);

#endif
