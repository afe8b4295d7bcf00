/*
 * multipart.h - multipart uploads: parts arrive separately, in any order and
 * concurrently, and become one blob when the upload completes.
 *
 * State lives in the file system under DATA/multipart/<upload id>/:
 *   info            namespace, key, creation time and the front end's
 *                   metadata, written once (temporary file + rename);
 *   <part>.<md5>    each part's bytes, raw, renamed into place only when
 *                   complete, so a crash never leaves a partial part visible.
 * Parts are kept raw because completion streams them, in order, through the
 * normal upload path (hashing and compressing once, for the whole object).
 * Completed and aborted uploads are removed; uploads older than the expiry
 * are removed by mpu_expire(), which the store runs periodically.
 */
#ifndef CAIRN_MULTIPART_H
#define CAIRN_MULTIPART_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define MPU_ID_LEN 32
#define MPU_MAX_PARTS 10000

typedef struct mpu_info {
    char id[MPU_ID_LEN + 1];
    char *ns;
    char *key;
    size_t klen;
    uint64_t created_ms;
    void *meta;
    size_t meta_len;
} mpu_info;

typedef struct mpu_part {
    int number;
    uint64_t size;
    uint8_t md5[16];
    uint64_t mtime_ms;
} mpu_part;

int mpu_create(store *s, const char *ns, const void *key, size_t klen, const void *meta,
               size_t meta_len, char id[MPU_ID_LEN + 1]);
/* STORE_NOTFOUND if there is no such upload (or it completed). */
int mpu_get(store *s, const char *id, mpu_info *info);
void mpu_info_clear(mpu_info *info);

typedef struct mpu_writer mpu_writer;
int mpu_part_begin(store *s, const char *id, int number, mpu_writer **w);
int mpu_part_write(mpu_writer *w, const void *buf, size_t len);
/* Ends the part's bytes (on disk, fsynced) and gives its MD5, SHA-256 and size. */
int mpu_part_finish(mpu_writer *w, uint8_t md5[16], uint8_t sha256[32], uint64_t *size);
/* Makes the finished part visible (replacing an earlier one of that
 * number).  Frees w. */
int mpu_part_commit(mpu_writer *w);
void mpu_part_abort(mpu_writer *w);
/* The bytes of the copy of w's part already there, which it replaces. */
uint64_t mpu_part_replaces(mpu_writer *w);

/* The parts uploaded so far, sorted by number; *parts is malloc'ed. */
int mpu_parts(store *s, const char *id, mpu_part **parts, size_t *n);

/* Streams the given parts, in order, into one new blob and points the
 * upload's key at it with meta; then removes the upload.  Each part must
 * still be the bytes of its MD5 in md5s (hex), the ones the caller checked:
 * STORE_DIGEST_MISMATCH if one was sent again, or is gone, meanwhile; with
 * cond (or NULL), STORE_PRECONDITION if the key changed since it was seen. */
int mpu_complete(store *s, const char *id, const int *numbers, const char (*md5s)[33], size_t n,
                 const void *meta, size_t meta_len, const store_cond *cond, store_put_result *res);
int mpu_abort(store *s, const char *id);
/* At start, before anything else: completions a stop cut short give their
 * upload back, and what a crash left half made or half removed goes. */
void mpu_recover(store *s);
/* Is the upload being completed or aborted now (its info claimed)? */
int mpu_closing(store *s, const char *id);

/* Uploads of namespace ns, oldest first; cb returns non-zero to stop. */
int mpu_list(store *s, const char *ns, int (*cb)(void *ctx, const mpu_info *info), void *ctx);
/* Removes uploads older than max_age_ms; returns how many. */
int mpu_expire(store *s, uint64_t max_age_ms);
/* Aborts every upload into namespace ns (its bucket is gone); the count. */
int mpu_drop_ns(store *s, const char *ns);
/* The bytes of every part on disk (the store counts them from here on:
 * store_multipart_bytes). */
uint64_t mpu_bytes_on_disk(store *s);

#endif
