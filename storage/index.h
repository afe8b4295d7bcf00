/*
 * index.h - the LMDB index: record layouts and the named databases.
 *
 * One environment, nine named databases:
 *
 *   keys   "<namespace>\0<key>" -> key record (digest, size, mtime, the front
 *          end's opaque metadata).  Ordered, so a prefix listing is a range scan.
 *   blobs  digest (32 bytes)    -> blob record (format, codec, sizes, reference
 *          count, last access, tier state).
 *   atime  be64(last access) + digest -> "" : the eviction order, oldest first.
 *   refs   digest -> "<namespace>\0<key>" (duplicates sorted): the keys that use
 *          a blob, so that evicting a blob removes exactly its keys.
 *   meta   "stats" -> totals, "version" -> index format version.
 *   ns     namespace name -> creation time and the front end's metadata, for
 *          front ends whose namespaces are created explicitly (S3 buckets).
 *   inline digest -> the stored bytes of a small blob kept in the index
 *          instead of a file of its own (blob format BLOB_INLINE).
 *   tierq  the cold tier's work queue: a type byte and a name -> attempts,
 *          next try, sequence number and bytes (see store.c, "cold tier").
 *   usage  namespace name -> its keys and their body bytes, kept in the same
 *          transactions as the keys themselves (cost attribution).
 *
 * Records are encoded little-endian with explicit offsets (no struct images),
 * and each starts with a version byte so the layout can evolve.  Everything
 * here runs inside a transaction the caller owns; this file never decides
 * when to commit.
 */
#ifndef CAIRN_INDEX_H
#define CAIRN_INDEX_H

#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

#define INDEX_FORMAT 1

/* blob_rec.format: where the stored bytes are */
#define BLOB_FILE 1   /* blobs/xx/<digest>, laid out as codec.h says */
#define BLOB_INLINE 2 /* the `inline` database: raw, or one zstd frame */

typedef struct idx {
    MDB_env *env;
    MDB_dbi keys, blobs, atime, refs, meta, ns, inl, tierq, usage;
    size_t max_key; /* LMDB's key size limit */
} idx;

typedef struct blob_rec {
    uint8_t format; /* BLOB_FILE or BLOB_INLINE */
    uint8_t codec;  /* CODEC_RAW or CODEC_ZSTD */
    uint8_t tier;   /* 1: the cold tier holds a copy; 0: local only */
    uint32_t refs;  /* keys that point at this blob */
    uint64_t size;  /* body bytes */
    uint64_t stored;
    uint64_t atime;     /* last access, milliseconds since the epoch */
    uint32_t tier_time; /* when the tier's copy was written or refreshed (s since the epoch) */
} blob_rec;

typedef struct key_rec {
    uint8_t digest[32];
    uint64_t size;
    uint64_t mtime_ms;
    const void *meta; /* points into LMDB memory: valid until the txn ends */
    size_t meta_len;
} key_rec;

typedef struct idx_stats {
    uint64_t blobs;
    uint64_t keys;
    uint64_t logical;      /* body bytes of all blobs */
    uint64_t physical;     /* file bytes of all blobs */
    uint64_t referenced;   /* body bytes of all keys: referenced - logical is dedup's saving */
    uint64_t tier_pending; /* stored bytes of blobs queued for the cold tier */
} idx_stats;

/* A cold-tier queue entry's value. */
typedef struct tq_rec {
    uint32_t attempts;
    uint64_t next_ms; /* not before */
    uint64_t seq;     /* changes whenever the entry is queued again */
    uint64_t bytes;   /* stored bytes, for blob uploads */
    const void *name; /* what the work is about (a digest, a namespaced key); on a get,
                         it points into LMDB memory: valid until the txn ends */
    size_t name_len;
} tq_rec;

int idx_tq_get(MDB_txn *t, idx *ix, const void *k, size_t klen, tq_rec *r);
int idx_tq_put(MDB_txn *t, idx *ix, const void *k, size_t klen, const tq_rec *r);
int idx_tq_del(MDB_txn *t, idx *ix, const void *k, size_t klen);
/* Makes the entries that wait for a later time due at now (attempts are
 * kept), max of them at most.  Returns how many; *err an LMDB error. */
size_t idx_tq_due_now(MDB_txn *t, idx *ix, uint64_t now, size_t max, int *err);
int idx_tq_decode(const MDB_val *v, tq_rec *r);

/* LMDB reader slots: every HTTP and offload thread keeps one (eight of
 * each per core by default), with room for the other threads */
#define IDX_MAX_READERS 4096

int idx_open(idx *ix, const char *dir, uint64_t map_size, int nosync_meta, char *err,
             size_t errlen);
void idx_close(idx *ix);

int idx_get_blob(MDB_txn *t, idx *ix, const uint8_t d[32], blob_rec *b);
int idx_put_blob(MDB_txn *t, idx *ix, const uint8_t d[32], const blob_rec *b);
/* Removes the blob record, its place in the eviction order, and its inline
 * bytes if it has any. */
int idx_del_blob(MDB_txn *t, idx *ix, const uint8_t d[32], const blob_rec *b);
int idx_put_inline(MDB_txn *t, idx *ix, const uint8_t d[32], const void *data, size_t len);
/* The stored bytes point into LMDB memory: valid until the txn ends. */
int idx_get_inline(MDB_txn *t, idx *ix, const uint8_t d[32], const void **data, size_t *len);
/* Number of records in the inline database. */
uint64_t idx_count_inline(MDB_txn *t, idx *ix);
/* A key of the atime database: the access time, and the digest in it. */
int idx_atime_decode(const MDB_val *k, uint64_t *atime, const uint8_t **digest);
int idx_move_atime(MDB_txn *t, idx *ix, const uint8_t d[32], blob_rec *b, uint64_t atime);

int idx_get_key(MDB_txn *t, idx *ix, const void *k, size_t klen, key_rec *r);
int idx_put_key(MDB_txn *t, idx *ix, const void *k, size_t klen, const key_rec *r);
int idx_del_key(MDB_txn *t, idx *ix, const void *k, size_t klen);

int idx_add_ref(MDB_txn *t, idx *ix, const uint8_t d[32], const void *k, size_t klen);
int idx_del_ref(MDB_txn *t, idx *ix, const uint8_t d[32], const void *k, size_t klen);

/* Adds dkeys keys and dbytes body bytes to namespace ns's usage. */
int idx_usage_add(MDB_txn *t, idx *ix, const char *ns, size_t nslen, int64_t dkeys, int64_t dbytes);
int idx_usage_decode(const MDB_val *v, uint64_t *keys, uint64_t *bytes);
/* Counts usage again from the keys themselves: for an index written before
 * usage was kept (idx_open calls it when `usage` is empty but `keys` is not). */
int idx_usage_rebuild(MDB_txn *t, idx *ix);

int idx_get_stats(MDB_txn *t, idx *ix, idx_stats *s);
int idx_put_stats(MDB_txn *t, idx *ix, const idx_stats *s);

#endif
