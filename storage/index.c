/*
 * index.c - see index.h.
 */
#include "index.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/util.h"

#define BLOB_REC_SIZE 36
#define KEY_REC_HEAD 49

int idx_open(idx *ix, const char *dir, uint64_t map_size, int nosync_meta, char *err, size_t errlen)
{
    int rc;
    MDB_txn *t = NULL;
    memset(ix, 0, sizeof *ix);
    if ((rc = mdb_env_create(&ix->env)) != 0)
        goto fail;
    mdb_env_set_maxdbs(ix->env, 16);
    mdb_env_set_maxreaders(ix->env, IDX_MAX_READERS);
    if ((rc = mdb_env_set_mapsize(ix->env, (size_t)map_size)) != 0)
        goto fail;
    unsigned flags = MDB_NOTLS | MDB_NOSUBDIR | (nosync_meta ? MDB_NOMETASYNC : 0);
    char path[4096];
    snprintf(path, sizeof path, "%s/index.mdb", dir);
    if ((rc = mdb_env_open(ix->env, path, flags, 0644)) != 0)
        goto fail;
    int dead = 0;
    mdb_reader_check(ix->env, &dead); /* slots left by a process killed with -9 */
    ix->max_key = (size_t)mdb_env_get_maxkeysize(ix->env);

    if ((rc = mdb_txn_begin(ix->env, NULL, 0, &t)) != 0)
        goto fail;
    if ((rc = mdb_dbi_open(t, "keys", MDB_CREATE, &ix->keys)) != 0 ||
        (rc = mdb_dbi_open(t, "blobs", MDB_CREATE, &ix->blobs)) != 0 ||
        (rc = mdb_dbi_open(t, "atime", MDB_CREATE, &ix->atime)) != 0 ||
        (rc = mdb_dbi_open(t, "refs", MDB_CREATE | MDB_DUPSORT, &ix->refs)) != 0 ||
        (rc = mdb_dbi_open(t, "meta", MDB_CREATE, &ix->meta)) != 0 ||
        (rc = mdb_dbi_open(t, "ns", MDB_CREATE, &ix->ns)) != 0 ||
        (rc = mdb_dbi_open(t, "inline", MDB_CREATE, &ix->inl)) != 0 ||
        (rc = mdb_dbi_open(t, "tierq", MDB_CREATE, &ix->tierq)) != 0 ||
        (rc = mdb_dbi_open(t, "usage", MDB_CREATE, &ix->usage)) != 0)
        goto fail;
    MDB_stat ks, us;
    if ((rc = mdb_stat(t, ix->keys, &ks)) != 0 || (rc = mdb_stat(t, ix->usage, &us)) != 0 ||
        (ks.ms_entries > 0 && us.ms_entries == 0 && (rc = idx_usage_rebuild(t, ix)) != 0))
        goto fail;
    MDB_val k = {7, "version"}, v;
    rc = mdb_get(t, ix->meta, &k, &v);
    if (rc == MDB_NOTFOUND) {
        uint8_t ver = INDEX_FORMAT;
        v.mv_size = 1;
        v.mv_data = &ver;
        if ((rc = mdb_put(t, ix->meta, &k, &v, 0)) != 0)
            goto fail;
    } else if (rc != 0) {
        goto fail;
    } else if (v.mv_size != 1 || *(uint8_t *)v.mv_data != INDEX_FORMAT) {
        snprintf(err, errlen, "index %s has format %d, this cairnd reads format %d", path,
                 v.mv_size == 1 ? *(uint8_t *)v.mv_data : -1, INDEX_FORMAT);
        mdb_txn_abort(t);
        mdb_env_close(ix->env);
        ix->env = NULL;
        return -1;
    }
    if ((rc = mdb_txn_commit(t)) != 0) {
        t = NULL;
        goto fail;
    }
    return 0;
fail:
    snprintf(err, errlen, "index in %s: %s", dir, mdb_strerror(rc));
    if (t)
        mdb_txn_abort(t);
    if (ix->env)
        mdb_env_close(ix->env);
    ix->env = NULL;
    return -1;
}

void idx_close(idx *ix)
{
    if (ix->env)
        mdb_env_close(ix->env);
    ix->env = NULL;
}

static void encode_blob(uint8_t *p, const blob_rec *b)
{
    p[0] = 1;
    p[1] = b->format;
    p[2] = b->codec;
    p[3] = b->tier;
    util_put_le32(p + 4, b->refs);
    util_put_le64(p + 8, b->size);
    util_put_le64(p + 16, b->stored);
    util_put_le64(p + 24, b->atime);
    util_put_le32(p + 32, b->tier_time);
}

int idx_get_blob(MDB_txn *t, idx *ix, const uint8_t d[32], blob_rec *b)
{
    MDB_val k = {32, (void *)d}, v;
    int rc = mdb_get(t, ix->blobs, &k, &v);
    if (rc != 0)
        return rc;
    const uint8_t *p = v.mv_data;
    if (v.mv_size < BLOB_REC_SIZE || p[0] != 1)
        return MDB_CORRUPTED;
    b->format = p[1];
    b->codec = p[2];
    b->tier = p[3];
    b->refs = util_get_le32(p + 4);
    b->size = util_get_le64(p + 8);
    b->stored = util_get_le64(p + 16);
    b->atime = util_get_le64(p + 24);
    b->tier_time = util_get_le32(p + 32);
    return 0;
}

int idx_put_blob(MDB_txn *t, idx *ix, const uint8_t d[32], const blob_rec *b)
{
    uint8_t buf[BLOB_REC_SIZE];
    encode_blob(buf, b);
    MDB_val k = {32, (void *)d}, v = {sizeof buf, buf};
    return mdb_put(t, ix->blobs, &k, &v, 0);
}

static void atime_key(uint8_t *p, uint64_t atime, const uint8_t d[32])
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(atime >> (56 - 8 * i)); /* big-endian: sorts by time */
    memcpy(p + 8, d, 32);
}

int idx_atime_decode(const MDB_val *k, uint64_t *atime, const uint8_t **digest)
{
    if (k->mv_size != 40)
        return MDB_CORRUPTED;
    const uint8_t *p = k->mv_data;
    uint64_t a = 0;
    for (int i = 0; i < 8; i++)
        a = a << 8 | p[i];
    *atime = a;
    *digest = p + 8;
    return 0;
}

static int atime_put(MDB_txn *t, idx *ix, const uint8_t d[32], uint64_t atime)
{
    uint8_t kb[40];
    atime_key(kb, atime, d);
    MDB_val k = {40, kb}, v = {0, ""};
    return mdb_put(t, ix->atime, &k, &v, 0);
}

static int atime_del(MDB_txn *t, idx *ix, const uint8_t d[32], uint64_t atime)
{
    uint8_t kb[40];
    atime_key(kb, atime, d);
    MDB_val k = {40, kb};
    int rc = mdb_del(t, ix->atime, &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int idx_del_blob(MDB_txn *t, idx *ix, const uint8_t d[32], const blob_rec *b)
{
    int rc = atime_del(t, ix, d, b->atime);
    if (rc != 0)
        return rc;
    MDB_val k = {32, (void *)d};
    if (b->format == BLOB_INLINE && (rc = mdb_del(t, ix->inl, &k, NULL)) != 0 && rc != MDB_NOTFOUND)
        return rc;
    return mdb_del(t, ix->blobs, &k, NULL);
}

int idx_put_inline(MDB_txn *t, idx *ix, const uint8_t d[32], const void *data, size_t len)
{
    MDB_val k = {32, (void *)d}, v = {len, (void *)data};
    return mdb_put(t, ix->inl, &k, &v, 0);
}

int idx_get_inline(MDB_txn *t, idx *ix, const uint8_t d[32], const void **data, size_t *len)
{
    MDB_val k = {32, (void *)d}, v;
    int rc = mdb_get(t, ix->inl, &k, &v);
    if (rc == 0) {
        *data = v.mv_data;
        *len = v.mv_size;
    }
    return rc;
}

uint64_t idx_count_inline(MDB_txn *t, idx *ix)
{
    MDB_stat st;
    return mdb_stat(t, ix->inl, &st) == 0 ? st.ms_entries : 0;
}

/* Sets b->atime and keeps the atime database in step (b is stored too). */
int idx_move_atime(MDB_txn *t, idx *ix, const uint8_t d[32], blob_rec *b, uint64_t atime)
{
    int rc = atime_del(t, ix, d, b->atime);
    if (rc != 0)
        return rc;
    b->atime = atime;
    if ((rc = atime_put(t, ix, d, atime)) != 0)
        return rc;
    return idx_put_blob(t, ix, d, b);
}

int idx_get_key(MDB_txn *t, idx *ix, const void *kp, size_t klen, key_rec *r)
{
    MDB_val k = {klen, (void *)kp}, v;
    int rc = mdb_get(t, ix->keys, &k, &v);
    if (rc != 0)
        return rc;
    const uint8_t *p = v.mv_data;
    if (v.mv_size < KEY_REC_HEAD || p[0] != 1)
        return MDB_CORRUPTED;
    memcpy(r->digest, p + 1, 32);
    r->size = util_get_le64(p + 33);
    r->mtime_ms = util_get_le64(p + 41);
    r->meta = p + KEY_REC_HEAD;
    r->meta_len = v.mv_size - KEY_REC_HEAD;
    return 0;
}

int idx_put_key(MDB_txn *t, idx *ix, const void *kp, size_t klen, const key_rec *r)
{
    MDB_val k = {klen, (void *)kp}, v;
    v.mv_size = KEY_REC_HEAD + r->meta_len;
    int rc = mdb_put(t, ix->keys, &k, &v, MDB_RESERVE);
    if (rc != 0)
        return rc;
    uint8_t *p = v.mv_data;
    p[0] = 1;
    memcpy(p + 1, r->digest, 32);
    util_put_le64(p + 33, r->size);
    util_put_le64(p + 41, r->mtime_ms);
    if (r->meta_len)
        memcpy(p + KEY_REC_HEAD, r->meta, r->meta_len);
    return 0;
}

int idx_del_key(MDB_txn *t, idx *ix, const void *kp, size_t klen)
{
    MDB_val k = {klen, (void *)kp};
    return mdb_del(t, ix->keys, &k, NULL);
}

int idx_add_ref(MDB_txn *t, idx *ix, const uint8_t d[32], const void *kp, size_t klen)
{
    MDB_val k = {32, (void *)d}, v = {klen, (void *)kp};
    int rc = mdb_put(t, ix->refs, &k, &v, MDB_NODUPDATA);
    return rc == MDB_KEYEXIST ? 0 : rc;
}

int idx_del_ref(MDB_txn *t, idx *ix, const uint8_t d[32], const void *kp, size_t klen)
{
    MDB_val k = {32, (void *)d}, v = {klen, (void *)kp};
    int rc = mdb_del(t, ix->refs, &k, &v);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* ---- usage by namespace ---- */

#define USAGE_REC 17 /* version 1, keys, bytes */

int idx_usage_decode(const MDB_val *v, uint64_t *keys, uint64_t *bytes)
{
    const uint8_t *p = v->mv_data;
    if (v->mv_size < USAGE_REC || p[0] != 1)
        return MDB_CORRUPTED;
    *keys = util_get_le64(p + 1);
    *bytes = util_get_le64(p + 9);
    return 0;
}

static int usage_put(MDB_txn *t, idx *ix, const char *ns, size_t nslen, uint64_t keys,
                     uint64_t bytes)
{
    MDB_val k = {nslen, (void *)ns};
    if (keys == 0) {
        int rc = mdb_del(t, ix->usage, &k, NULL);
        return rc == MDB_NOTFOUND ? 0 : rc;
    }
    uint8_t p[USAGE_REC] = {1};
    util_put_le64(p + 1, keys);
    util_put_le64(p + 9, bytes);
    MDB_val v = {sizeof p, p};
    return mdb_put(t, ix->usage, &k, &v, 0);
}

int idx_usage_add(MDB_txn *t, idx *ix, const char *ns, size_t nslen, int64_t dkeys, int64_t dbytes)
{
    MDB_val k = {nslen, (void *)ns}, v;
    uint64_t keys = 0, bytes = 0;
    int rc = mdb_get(t, ix->usage, &k, &v);
    if (rc == 0)
        rc = idx_usage_decode(&v, &keys, &bytes);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return rc;
    return usage_put(t, ix, ns, nslen, keys + (uint64_t)dkeys, bytes + (uint64_t)dbytes);
}

int idx_usage_rebuild(MDB_txn *t, idx *ix)
{
    int rc = mdb_drop(t, ix->usage, 0);
    MDB_cursor *c;
    if (rc != 0 || (rc = mdb_cursor_open(t, ix->keys, &c)) != 0)
        return rc;
    /* keys are "<namespace>\0<key>" in order: each namespace is one run */
    char ns[512];
    size_t nslen = 0;
    uint64_t keys = 0, bytes = 0;
    MDB_val k, v;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        const char *name = k.mv_data;
        size_t n = strnlen(name, k.mv_size);
        if (n >= sizeof ns || v.mv_size < KEY_REC_HEAD || ((const uint8_t *)v.mv_data)[0] != 1)
            continue;
        if (keys && (n != nslen || memcmp(ns, name, n) != 0)) {
            if ((rc = usage_put(t, ix, ns, nslen, keys, bytes)) != 0)
                break;
            keys = bytes = 0;
        }
        memcpy(ns, name, n);
        nslen = n;
        keys++;
        bytes += util_get_le64((const uint8_t *)v.mv_data + 33);
    }
    mdb_cursor_close(c);
    if (rc != MDB_NOTFOUND)
        return rc;
    return keys ? usage_put(t, ix, ns, nslen, keys, bytes) : 0;
}

int idx_get_stats(MDB_txn *t, idx *ix, idx_stats *s)
{
    MDB_val k = {5, "stats"}, v;
    memset(s, 0, sizeof *s);
    int rc = mdb_get(t, ix->meta, &k, &v);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    if (v.mv_size < 40)
        return MDB_CORRUPTED;
    const uint8_t *p = v.mv_data;
    s->blobs = util_get_le64(p);
    s->keys = util_get_le64(p + 8);
    s->logical = util_get_le64(p + 16);
    s->physical = util_get_le64(p + 24);
    s->referenced = util_get_le64(p + 32);
    s->tier_pending = v.mv_size >= 48 ? util_get_le64(p + 40) : 0;
    return 0;
}

int idx_put_stats(MDB_txn *t, idx *ix, const idx_stats *s)
{
    uint8_t p[48];
    util_put_le64(p + 40, s->tier_pending);
    util_put_le64(p, s->blobs);
    util_put_le64(p + 8, s->keys);
    util_put_le64(p + 16, s->logical);
    util_put_le64(p + 24, s->physical);
    util_put_le64(p + 32, s->referenced);
    MDB_val k = {5, "stats"}, v = {sizeof p, p};
    return mdb_put(t, ix->meta, &k, &v, 0);
}

/* ---- the cold tier's queue ---- */

#define TQ_REC_SIZE 32

int idx_tq_decode(const MDB_val *v, tq_rec *r)
{
    const uint8_t *p = v->mv_data;
    if (v->mv_size < TQ_REC_SIZE || p[0] != 1)
        return MDB_CORRUPTED;
    r->attempts = util_get_le32(p + 4);
    r->next_ms = util_get_le64(p + 8);
    r->seq = util_get_le64(p + 16);
    r->bytes = util_get_le64(p + 24);
    r->name = p + TQ_REC_SIZE;
    r->name_len = v->mv_size - TQ_REC_SIZE;
    return 0;
}

int idx_tq_get(MDB_txn *t, idx *ix, const void *k, size_t klen, tq_rec *r)
{
    MDB_val key = {klen, (void *)k}, v;
    int rc = mdb_get(t, ix->tierq, &key, &v);
    return rc != 0 ? rc : idx_tq_decode(&v, r);
}

/* Writes r into p (TQ_REC_SIZE + r->name_len bytes). */
static void tq_encode(uint8_t *p, const tq_rec *r)
{
    memset(p, 0, TQ_REC_SIZE);
    p[0] = 1;
    util_put_le32(p + 4, r->attempts);
    util_put_le64(p + 8, r->next_ms);
    util_put_le64(p + 16, r->seq);
    util_put_le64(p + 24, r->bytes);
    if (r->name_len)
        memmove(p + TQ_REC_SIZE, r->name, r->name_len);
}

int idx_tq_put(MDB_txn *t, idx *ix, const void *k, size_t klen, const tq_rec *r)
{
    MDB_val key = {klen, (void *)k}, v = {TQ_REC_SIZE + r->name_len, NULL};
    int rc = mdb_put(t, ix->tierq, &key, &v, MDB_RESERVE);
    if (rc == 0)
        tq_encode(v.mv_data, r);
    return rc;
}

size_t idx_tq_due_now(MDB_txn *t, idx *ix, uint64_t now, size_t max, int *err)
{
    MDB_cursor *c;
    size_t n = 0;
    if ((*err = mdb_cursor_open(t, ix->tierq, &c)) != 0)
        return 0;
    MDB_val k, v;
    int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
    while (rc == 0 && n < max) {
        uint8_t rec[TQ_REC_SIZE + 1024];
        tq_rec r;
        if (v.mv_size <= sizeof rec && idx_tq_decode(&v, &r) == 0 && r.next_ms > now) {
            r.next_ms = now;
            tq_encode(rec, &r); /* a copy: v is in a page the put may move */
            MDB_val nv = {v.mv_size, rec};
            if ((rc = mdb_cursor_put(c, &k, &nv, MDB_CURRENT)) != 0)
                break;
            n++;
        }
        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(c);
    *err = rc == MDB_NOTFOUND ? 0 : rc;
    return n;
}

int idx_tq_del(MDB_txn *t, idx *ix, const void *k, size_t klen)
{
    MDB_val key = {klen, (void *)k};
    int rc = mdb_del(t, ix->tierq, &key, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}
