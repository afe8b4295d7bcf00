/*
 * test_store.c - the store through its public interface: index, dedup and
 * reference counts, overwrite and delete, persistence across reopen, LRU
 * eviction with watermarks, quarantine of damaged blobs, orphan and
 * temporary-file cleanup, and the one-process lock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/evp.h>

#include <lmdb.h>

#include "../../common/util.h"
#include "../../storage/codec.h"
#include "../../storage/store.h"

#define KiB 1024u
#define MiB (1u << 20)

typedef struct fixture {
    char dir[64];
    store_config cfg;
    store *s;
} fixture;

/* Most tests look at blob files, so they keep every body in a file; the
 * inline tests use the default, which keeps small bodies in the index. */
static int setup_with(void **state, uint64_t inline_max)
{
    fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/cairn-store-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    store_config_defaults(&f->cfg);
    f->cfg.dir = f->dir;
    f->cfg.fsync = 0; /* the tests check logic, not the disk */
    f->cfg.max_size = 0;
    f->cfg.inline_max = inline_max;
    char err[256];
    if (store_open(&f->s, &f->cfg, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_with(state, 0);
}

static int setup_inline(void **state)
{
    store_config d;
    store_config_defaults(&d);
    return setup_with(state, d.inline_max);
}

static int teardown(void **state)
{
    fixture *f = *state;
    store_close(f->s);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

static void reopen(fixture *f)
{
    store_close(f->s);
    char err[256];
    assert_int_equal(store_open(&f->s, &f->cfg, err, sizeof err), 0);
}

static uint8_t *body_of(size_t n, unsigned seed, int compressible)
{
    uint8_t *b = malloc(n ? n : 1);
    uint32_t x = seed * 2654435761u + 7;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        /* compressible: text with one random byte in eight, about 2:1 under zstd */
        b[i] =
            compressible && (i % 8) ? (uint8_t)('a' + (i % 23) + (seed % 3)) : (uint8_t)(x >> 16);
    }
    return b;
}

static void digest_of(const uint8_t *b, size_t n, uint8_t d[32])
{
    unsigned int len;
    EVP_Digest(b, n, d, &len, EVP_sha256(), NULL);
}

static int put(store *s, const char *ns, const char *key, const uint8_t *b, size_t n,
               const uint8_t *expect, store_put_result *res)
{
    store_upload *u;
    int rc = store_upload_begin(s, (int64_t)n, 0, &u);
    if (rc != STORE_OK)
        return rc;
    if (n)
        store_upload_write(u, b, n);
    store_put_result tmp;
    return store_upload_commit(u, ns, key, strlen(key), expect, "meta", 4, NULL, res ? res : &tmp);
}

static void expect_body(store *s, const char *ns, const char *key, const uint8_t *b, size_t n)
{
    store_entry e;
    assert_int_equal(store_lookup(s, ns, key, strlen(key), &e), STORE_OK);
    assert_int_equal(e.size, n);
    assert_int_equal(e.meta_len, 4);
    assert_memory_equal(e.meta, "meta", 4);
    store_blob *blob;
    assert_int_equal(store_blob_open(s, &e, &blob), STORE_OK);
    uint8_t *back = malloc(n + 1);
    assert_int_equal(store_blob_read(blob, 0, back, n + 1), (ssize_t)n);
    assert_memory_equal(back, b, n);
    free(back);
    store_blob_close(blob);
    store_entry_clear(&e);
}

static int count_files(const char *dir, const char *sub)
{
    char path[256];
    int n = 0;
    for (int i = 0; i < 256; i++) {
        if (sub)
            snprintf(path, sizeof path, "%s/%s", dir, sub);
        else
            snprintf(path, sizeof path, "%s/blobs/%02x", dir, i);
        DIR *d = opendir(path);
        if (d == NULL)
            continue;
        struct dirent *de;
        while ((de = readdir(d)) != NULL)
            n += de->d_name[0] != '.';
        closedir(d);
        if (sub)
            break;
    }
    return n;
}

static void test_put_get_dedup(void **state)
{
    fixture *f = *state;
    size_t n = 3 * MiB + 5;
    uint8_t *b = body_of(n, 1, 1), d[32];
    digest_of(b, n, d);
    store_put_result r1, r2;
    assert_int_equal(put(f->s, "ac", "k1", b, n, NULL, &r1), STORE_OK);
    assert_memory_equal(r1.digest, d, 32);
    assert_int_equal(r1.deduplicated, 0);
    assert_int_equal(r1.codec, CODEC_ZSTD);
    assert_int_equal(put(f->s, "bucket", "k2", b, n, NULL, &r2), STORE_OK);
    assert_int_equal(r2.deduplicated, 1);
    expect_body(f->s, "ac", "k1", b, n);
    expect_body(f->s, "bucket", "k2", b, n);

    store_stats st;
    assert_int_equal(store_get_stats(f->s, &st), STORE_OK);
    assert_int_equal(st.blobs, 1);
    assert_int_equal(st.keys, 2);
    assert_int_equal(st.logical, n);
    assert_int_equal(st.referenced, 2 * n);
    assert_int_equal(st.physical, r1.stored);
    assert_int_equal(count_files(f->dir, NULL), 1);
    assert_int_equal(count_files(f->dir, "tmp"), 0);
    free(b);
}

static void test_overwrite_and_delete(void **state)
{
    fixture *f = *state;
    uint8_t *a = body_of(5000, 2, 0), *b = body_of(7000, 3, 0);
    assert_int_equal(put(f->s, "ac", "k", a, 5000, NULL, NULL), STORE_OK);
    assert_int_equal(put(f->s, "ac", "other", a, 5000, NULL, NULL), STORE_OK);
    assert_int_equal(put(f->s, "ac", "k", b, 7000, NULL, NULL), STORE_OK);
    expect_body(f->s, "ac", "k", b, 7000);
    expect_body(f->s, "ac", "other", a, 5000);
    assert_int_equal(count_files(f->dir, NULL), 2);

    /* the last key of a blob goes: the blob goes */
    assert_int_equal(store_delete(f->s, "ac", "other", 5), STORE_OK);
    assert_int_equal(count_files(f->dir, NULL), 1);
    assert_int_equal(store_delete(f->s, "ac", "other", 5), STORE_NOTFOUND);
    store_entry e;
    assert_int_equal(store_lookup(f->s, "ac", "other", 5, &e), STORE_NOTFOUND);

    /* rewriting a key with the same bytes keeps one reference */
    assert_int_equal(put(f->s, "ac", "k", b, 7000, NULL, NULL), STORE_OK);
    assert_int_equal(store_delete(f->s, "ac", "k", 1), STORE_OK);
    assert_int_equal(count_files(f->dir, NULL), 0);
    store_stats st;
    store_get_stats(f->s, &st);
    assert_int_equal(st.blobs, 0);
    assert_int_equal(st.keys, 0);
    assert_int_equal(st.physical, 0);
    assert_int_equal(st.referenced, 0);
    free(a);
    free(b);
}

static int put_if(store *s, const char *key, const uint8_t *b, size_t n, const store_cond *c)
{
    store_upload *u;
    int rc = store_upload_begin(s, (int64_t)n, 0, &u);
    if (rc != STORE_OK)
        return rc;
    store_upload_write(u, b, n);
    store_put_result res;
    return store_upload_commit(u, "ac", key, strlen(key), NULL, "meta", 4, c, &res);
}

/* A write's condition is held to in its commit: the key as it was seen
 * (absent, or that body and metadata), else STORE_PRECONDITION and nothing
 * changed; the same written again meanwhile is the same. */
static void test_conditional_writes(void **state)
{
    fixture *f = *state;
    uint8_t *a = body_of(5000, 5, 0), *b = body_of(6000, 6, 0);
    store_cond absent, seen;
    store_cond_set(&absent, store_cond_clock(f->s), NULL);
    assert_int_equal(put_if(f->s, "k", a, 5000, &absent), STORE_OK);
    assert_int_equal(put_if(f->s, "k", b, 6000, &absent), STORE_PRECONDITION);
    expect_body(f->s, "ac", "k", a, 5000);
    store_entry e;
    assert_int_equal(store_lookup(f->s, "ac", "k", 1, &e), STORE_OK);
    store_cond_set(&seen, 0, &e);
    assert_true(store_cond_is(&seen, &e));
    store_entry_clear(&e);
    assert_int_equal(put(f->s, "ac", "k", a, 5000, NULL, NULL), STORE_OK); /* (the same again) */
    assert_int_equal(put_if(f->s, "k", b, 6000, &seen), STORE_OK);
    assert_int_equal(put_if(f->s, "k", a, 5000, &seen), STORE_PRECONDITION); /* (b now) */
    expect_body(f->s, "ac", "k", b, 6000);
    assert_int_equal(store_delete_blind(f->s, "ac", "k", 1, &seen), STORE_PRECONDITION);
    expect_body(f->s, "ac", "k", b, 6000);
    assert_int_equal(store_lookup(f->s, "ac", "k", 1, &e), STORE_OK);
    store_cond_set(&seen, 0, &e);
    store_entry_clear(&e);
    assert_int_equal(store_delete_blind(f->s, "ac", "k", 1, &seen), STORE_OK);
    assert_int_equal(store_lookup(f->s, "ac", "k", 1, &e), STORE_NOTFOUND);
    free(a);
    free(b);
}

static void test_digest_mismatch_stores_nothing(void **state)
{
    fixture *f = *state;
    uint8_t *b = body_of(100000, 4, 1), wrong[32] = {1, 2, 3};
    assert_int_equal(put(f->s, "cas", "x", b, 100000, wrong, NULL), STORE_DIGEST_MISMATCH);
    store_entry e;
    assert_int_equal(store_lookup(f->s, "cas", "x", 1, &e), STORE_NOTFOUND);
    assert_int_equal(count_files(f->dir, NULL), 0);
    assert_int_equal(count_files(f->dir, "tmp"), 0);
    uint8_t right[32];
    digest_of(b, 100000, right);
    assert_int_equal(put(f->s, "cas", "x", b, 100000, right, NULL), STORE_OK);
    free(b);
}

static void test_bad_keys(void **state)
{
    fixture *f = *state;
    char longkey[600];
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';
    uint8_t b[1] = {1};
    assert_int_equal(put(f->s, "ac", longkey, b, 1, NULL, NULL), STORE_BAD_KEY);
    assert_int_equal(put(f->s, "ac", "", b, 1, NULL, NULL), STORE_BAD_KEY);
    assert_int_equal(count_files(f->dir, NULL), 0);
    assert_int_equal(count_files(f->dir, "tmp"), 0);
}

static void test_persistence_and_cleanup(void **state)
{
    fixture *f = *state;
    uint8_t *b = body_of(2 * MiB, 5, 1);
    assert_int_equal(put(f->s, "ac", "keep", b, 2 * MiB, NULL, NULL), STORE_OK);
    /* leftovers of a crashed process: a temporary file and an orphan blob */
    char path[256];
    snprintf(path, sizeof path, "%s/tmp/999.1", f->dir);
    int fd = open(path, O_CREAT | O_WRONLY, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "junk", 4), 4);
    close(fd);
    snprintf(path, sizeof path, "%s/blobs/ab", f->dir);
    mkdir(path, 0755); /* blob folders are made on first use */
    snprintf(path, sizeof path, "%s/blobs/ab/ab%062d", f->dir, 0);
    fd = open(path, O_CREAT | O_WRONLY, 0644);
    assert_true(fd >= 0);
    close(fd);
    reopen(f);
    assert_int_equal(count_files(f->dir, "tmp"), 0);
    expect_body(f->s, "ac", "keep", b, 2 * MiB);
    /* the sweep runs in the background: wait for it */
    for (int i = 0; i < 200 && access(path, F_OK) == 0; i++)
        usleep(10000);
    assert_int_not_equal(access(path, F_OK), 0);
    assert_int_equal(count_files(f->dir, NULL), 1);
    store_stats st;
    store_get_stats(f->s, &st);
    assert_int_equal(st.orphans_removed, 1);
    free(b);
}

static void test_lock(void **state)
{
    fixture *f = *state;
    store *other;
    char err[256];
    assert_int_not_equal(store_open(&other, &f->cfg, err, sizeof err), 0);
    assert_non_null(strstr(err, "in use"));
}

static void test_eviction_lru(void **state)
{
    fixture *f = *state;
    f->cfg.max_size = 10 * 100 * KiB; /* ten bodies of 100 KiB */
    f->cfg.high_pct = 90;
    f->cfg.low_pct = 50;
    f->cfg.touch_interval_ms = 50;
    reopen(f);
    uint8_t *bodies[30];
    char key[16];
    for (int i = 0; i < 30; i++) {
        bodies[i] = body_of(100 * KiB, 100 + (unsigned)i, 0); /* random: stored raw */
        snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(put(f->s, "ac", key, bodies[i], 100 * KiB, NULL, NULL), STORE_OK);
        store_stats st;
        store_get_stats(f->s, &st);
        assert_true(st.physical <= f->cfg.max_size);
        if (i % 3 == 0) {
            /* keep k0 hot: read it, and let the touch reach the index */
            usleep(2000); /* access times have millisecond resolution */
            expect_body(f->s, "ac", "k0", bodies[0], 100 * KiB);
            assert_int_equal(store_flush(f->s), STORE_OK);
            usleep(2000);
        }
    }
    store_stats st;
    store_get_stats(f->s, &st);
    assert_true(st.evicted_blobs >= 20);
    assert_int_equal(count_files(f->dir, NULL), (int)st.blobs);
    store_entry e;
    expect_body(f->s, "ac", "k0", bodies[0], 100 * KiB); /* hot: kept */
    assert_int_equal(store_lookup(f->s, "ac", "k1", 2, &e), STORE_NOTFOUND);
    assert_int_equal(store_lookup(f->s, "ac", "k15", 3, &e), STORE_NOTFOUND);
    expect_body(f->s, "ac", "k29", bodies[29], 100 * KiB); /* newest: kept */

    /* a body larger than the whole store is refused and nothing changes */
    assert_int_equal(put(f->s, "ac", "huge", bodies[0], 100 * KiB, NULL, NULL), STORE_OK);
    store_upload *u;
    assert_int_equal(store_upload_begin(f->s, (int64_t)f->cfg.max_size + 1, 0, &u),
                     STORE_TOO_LARGE);

    assert_int_equal(store_evict_to(f->s, 0), STORE_OK);
    store_get_stats(f->s, &st);
    assert_int_equal(st.blobs, 0);
    assert_int_equal(st.keys, 0);
    assert_int_equal(count_files(f->dir, NULL), 0);
    for (int i = 0; i < 30; i++)
        free(bodies[i]);
}

static void test_quarantine(void **state)
{
    fixture *f = *state;
    size_t n = 3 * MiB;
    uint8_t *b = body_of(n, 7, 1), d[32];
    digest_of(b, n, d);
    store_put_result r;
    assert_int_equal(put(f->s, "ac", "a", b, n, NULL, &r), STORE_OK);
    assert_int_equal(put(f->s, "ac", "b", b, n, NULL, NULL), STORE_OK);
    assert_int_equal(r.codec, CODEC_ZSTD);
    char hex[65], path[256];
    util_hex(d, 32, hex);
    snprintf(path, sizeof path, "%s/blobs/%.2s/%s", f->dir, hex, hex);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t c;
    assert_int_equal(pread(fd, &c, 1, (off_t)r.stored / 2), 1);
    c ^= 0xff;
    assert_int_equal(pwrite(fd, &c, 1, (off_t)r.stored / 2), 1);
    close(fd);

    store_entry e;
    assert_int_equal(store_lookup(f->s, "ac", "a", 1, &e), STORE_OK);
    store_blob *blob;
    assert_int_equal(store_blob_open(f->s, &e, &blob), STORE_OK);
    uint8_t *buf = malloc(n);
    ssize_t got = store_blob_read(blob, 0, buf, n);
    assert_int_equal(got, -STORE_CORRUPT);
    store_blob_close(blob);
    store_entry_clear(&e);
    /* both keys are gone, the file is in quarantine, the counters say so */
    assert_int_equal(store_lookup(f->s, "ac", "a", 1, &e), STORE_NOTFOUND);
    assert_int_equal(store_lookup(f->s, "ac", "b", 1, &e), STORE_NOTFOUND);
    assert_int_equal(count_files(f->dir, NULL), 0);
    assert_int_equal(count_files(f->dir, "quarantine"), 1);
    store_stats st;
    store_get_stats(f->s, &st);
    assert_int_equal(st.corrupt_blobs, 1);
    assert_int_equal(st.blobs, 0);
    assert_int_equal(st.keys, 0);
    /* a good copy can be stored again */
    assert_int_equal(put(f->s, "ac", "a", b, n, NULL, NULL), STORE_OK);
    expect_body(f->s, "ac", "a", b, n);
    free(buf);
    free(b);
}

static void test_truncated_blob_is_miss(void **state)
{
    fixture *f = *state;
    uint8_t *b = body_of(300 * KiB, 8, 0);
    store_put_result r;
    assert_int_equal(put(f->s, "ac", "t", b, 300 * KiB, NULL, &r), STORE_OK);
    char hex[65], path[256];
    util_hex(r.digest, 32, hex);
    snprintf(path, sizeof path, "%s/blobs/%.2s/%s", f->dir, hex, hex);
    assert_int_equal(truncate(path, 1000), 0);
    store_entry e;
    store_blob *blob;
    assert_int_equal(store_lookup(f->s, "ac", "t", 1, &e), STORE_OK);
    assert_int_equal(store_blob_open(f->s, &e, &blob), STORE_CORRUPT);
    store_entry_clear(&e);
    assert_int_equal(store_lookup(f->s, "ac", "t", 1, &e), STORE_NOTFOUND);
    free(b);
}

static int ns_count(void *ctx, const char *ns, uint64_t created)
{
    (void)ns;
    assert_true(created > 0);
    (*(int *)ctx)++;
    return 0;
}

static void test_namespaces(void **state)
{
    fixture *f = *state;
    assert_int_equal(store_ns_create(f->s, "bucket-a", "m", 1), STORE_OK);
    assert_int_equal(store_ns_create(f->s, "bucket-a", NULL, 0), STORE_EXISTS);
    assert_int_equal(store_ns_create(f->s, "bucket-b", NULL, 0), STORE_OK);
    void *meta;
    size_t ml;
    uint64_t created;
    assert_int_equal(store_ns_get(f->s, "bucket-a", &created, &meta, &ml), STORE_OK);
    assert_int_equal(ml, 1);
    assert_memory_equal(meta, "m", 1);
    free(meta);
    assert_int_equal(store_ns_get(f->s, "nope", NULL, NULL, NULL), STORE_NOTFOUND);
    int n = 0;
    assert_int_equal(store_ns_list(f->s, ns_count, &n), STORE_OK);
    assert_int_equal(n, 2);

    uint8_t b[3] = {1, 2, 3};
    assert_int_equal(put(f->s, "bucket-a", "x", b, 3, NULL, NULL), STORE_OK);
    /* a namespace whose name extends another's does not count as its content */
    assert_int_equal(put(f->s, "bucket-b2", "y", b, 3, NULL, NULL), STORE_OK);
    assert_int_equal(store_ns_delete(f->s, "bucket-a"), STORE_NOT_EMPTY);
    assert_int_equal(store_ns_delete(f->s, "bucket-b"), STORE_OK);
    assert_int_equal(store_delete(f->s, "bucket-a", "x", 1), STORE_OK);
    assert_int_equal(store_ns_delete(f->s, "bucket-a"), STORE_OK);
    assert_int_equal(store_ns_delete(f->s, "bucket-a"), STORE_NOTFOUND);
}

typedef struct list_ctx {
    char seen[64][16];
    int n;
    int seek_after_b; /* exercise STORE_LIST_SEEK */
    int stop_at;
} list_ctx;

static int collect(void *ctx, const store_list_item *it, char *seek, size_t *seek_len)
{
    list_ctx *l = ctx;
    snprintf(l->seen[l->n++], 16, "%.*s", (int)it->klen, it->key);
    if (l->stop_at && l->n == l->stop_at)
        return STORE_LIST_STOP;
    if (l->seek_after_b && it->klen >= 2 && memcmp(it->key, "b/", 2) == 0) {
        memcpy(seek, "b0", 2); /* '/' + 1: skip the rest of "b/" */
        *seek_len = 2;
        return STORE_LIST_SEEK;
    }
    return STORE_LIST_NEXT;
}

static void test_list(void **state)
{
    fixture *f = *state;
    const char *keys[] = {"a", "b/1", "b/2", "b/3", "c", "c/x"};
    uint8_t b[1] = {9};
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(put(f->s, "ns", keys[i], b, 1, NULL, NULL), STORE_OK);
    assert_int_equal(put(f->s, "ns2", "a", b, 1, NULL, NULL), STORE_OK);
    assert_int_equal(put(f->s, "n", "zz", b, 1, NULL, NULL), STORE_OK);

    list_ctx l = {0};
    assert_int_equal(store_list(f->s, "ns", "", 0, 0, collect, &l), STORE_OK);
    assert_int_equal(l.n, 6);
    for (int i = 0; i < 6; i++)
        assert_string_equal(l.seen[i], keys[i]);

    memset(&l, 0, sizeof l);
    assert_int_equal(store_list(f->s, "ns", "b/2", 3, 1, collect, &l), STORE_OK);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.seen[0], "b/3");

    memset(&l, 0, sizeof l);
    assert_int_equal(store_list(f->s, "ns", "b/2", 3, 0, collect, &l), STORE_OK);
    assert_string_equal(l.seen[0], "b/2");

    memset(&l, 0, sizeof l);
    l.seek_after_b = 1;
    assert_int_equal(store_list(f->s, "ns", "", 0, 0, collect, &l), STORE_OK);
    assert_int_equal(l.n, 4);
    assert_string_equal(l.seen[1], "b/1");
    assert_string_equal(l.seen[2], "c");

    memset(&l, 0, sizeof l);
    l.stop_at = 2;
    assert_int_equal(store_list(f->s, "ns", "", 0, 0, collect, &l), STORE_OK);
    assert_int_equal(l.n, 2);

    memset(&l, 0, sizeof l);
    assert_int_equal(store_list(f->s, "empty", "", 0, 0, collect, &l), STORE_OK);
    assert_int_equal(l.n, 0);
}

/* ---- small bodies kept in the index ---- */

static void stats(fixture *f, store_stats *st)
{
    assert_int_equal(store_get_stats(f->s, st), STORE_OK);
}

/* Writes a body in pieces with no declared size, as a chunked upload does. */
static int put_chunked(store *s, const char *key, const uint8_t *b, size_t n, size_t piece,
                       store_put_result *res)
{
    store_upload *u;
    int rc = store_upload_begin(s, -1, 1, &u);
    if (rc != STORE_OK)
        return rc;
    for (size_t off = 0; off < n; off += piece)
        store_upload_write(u, b + off, n - off < piece ? n - off : piece);
    return store_upload_commit(u, "ac", key, strlen(key), NULL, "meta", 4, NULL, res);
}

static void test_inline_sizes(void **state)
{
    fixture *f = *state;
    size_t max = f->cfg.inline_max;
    size_t sizes[] = {0, 1, 100, 4096, max - 1, max};
    char key[32];
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        for (int comp = 0; comp < 2; comp++) {
            size_t n = sizes[i];
            uint8_t *b = body_of(n, (unsigned)(10 + i), comp), d[32];
            digest_of(b, n, d);
            store_put_result r;
            snprintf(key, sizeof key, "s%zu-%d", n, comp);
            assert_int_equal(put(f->s, "ac", key, b, n, d, &r), STORE_OK);
            assert_memory_equal(r.digest, d, 32);
            if (comp && n >= 100)
                assert_int_equal(r.codec, CODEC_ZSTD);
            if (!comp)
                assert_int_equal(r.codec, CODEC_RAW);
            expect_body(f->s, "ac", key, b, n);
            /* a range inside the body */
            if (n > 10) {
                store_entry e;
                store_blob *blob;
                uint8_t part[5];
                assert_int_equal(store_lookup(f->s, "ac", key, strlen(key), &e), STORE_OK);
                assert_int_equal(store_blob_open(f->s, &e, &blob), STORE_OK);
                assert_int_equal(store_blob_fd(blob), -1);
                assert_int_equal(store_blob_read(blob, n - 7, part, 5), 5);
                assert_memory_equal(part, b + n - 7, 5);
                assert_int_equal(store_blob_read(blob, n, part, 5), 0);
                store_blob_close(blob);
                store_entry_clear(&e);
            }
            free(b);
        }
    }
    store_stats st;
    stats(f, &st);
    assert_int_equal(st.inline_blobs, st.blobs);
    assert_int_equal(count_files(f->dir, NULL), 0);
    assert_int_equal(count_files(f->dir, "tmp"), 0);
}

static void test_inline_spills_to_file(void **state)
{
    fixture *f = *state;
    size_t max = f->cfg.inline_max;
    /* no declared size: held in memory until it grows past the limit */
    uint8_t *b = body_of(max + 1, 20, 1), *c = body_of(max, 21, 0);
    store_put_result r;
    assert_int_equal(put_chunked(f->s, "big", b, max + 1, 1000, &r), STORE_OK);
    assert_int_equal(put_chunked(f->s, "small", c, max, 1000, &r), STORE_OK);
    expect_body(f->s, "ac", "big", b, max + 1);
    expect_body(f->s, "ac", "small", c, max);
    /* a declared size over the limit goes straight to a file */
    assert_int_equal(put(f->s, "ac", "declared", b, max + 1, NULL, NULL), STORE_OK);
    store_stats st;
    stats(f, &st);
    assert_int_equal(st.blobs, 2);
    assert_int_equal(st.inline_blobs, 1);
    assert_int_equal(count_files(f->dir, NULL), 1);
    free(b);
    free(c);
}

static void test_inline_dedup_delete_persist(void **state)
{
    fixture *f = *state;
    uint8_t *a = body_of(3000, 30, 1), *b = body_of(5000, 31, 0);
    store_put_result r1, r2;
    assert_int_equal(put(f->s, "ac", "a1", a, 3000, NULL, &r1), STORE_OK);
    assert_int_equal(put(f->s, "bucket", "a2", a, 3000, NULL, &r2), STORE_OK);
    assert_int_equal(r2.deduplicated, 1);
    assert_int_equal(put(f->s, "ac", "b", b, 5000, NULL, NULL), STORE_OK);
    store_stats st;
    stats(f, &st);
    assert_int_equal(st.blobs, 2);
    assert_int_equal(st.inline_blobs, 2);
    assert_int_equal(st.physical, r1.stored + 5000);
    reopen(f);
    expect_body(f->s, "ac", "a1", a, 3000);
    expect_body(f->s, "bucket", "a2", a, 3000);
    /* overwriting the last key of a blob drops the blob and its bytes */
    assert_int_equal(put(f->s, "ac", "b", a, 3000, NULL, NULL), STORE_OK);
    stats(f, &st);
    assert_int_equal(st.blobs, 1);
    assert_int_equal(st.inline_blobs, 1);
    assert_int_equal(store_delete(f->s, "ac", "a1", 2), STORE_OK);
    assert_int_equal(store_delete(f->s, "bucket", "a2", 2), STORE_OK);
    assert_int_equal(store_delete(f->s, "ac", "b", 1), STORE_OK);
    stats(f, &st);
    assert_int_equal(st.blobs, 0);
    assert_int_equal(st.inline_blobs, 0);
    assert_int_equal(st.physical, 0);
    assert_int_equal(st.keys, 0);
    free(a);
    free(b);
}

static void test_inline_eviction(void **state)
{
    fixture *f = *state;
    f->cfg.max_size = 100 * 8 * KiB; /* a hundred random 8 KiB bodies */
    f->cfg.high_pct = 90;
    f->cfg.low_pct = 50;
    reopen(f);
    char key[16];
    for (int i = 0; i < 300; i++) {
        uint8_t *b = body_of(8 * KiB, 1000 + (unsigned)i, 0);
        snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(put(f->s, "ac", key, b, 8 * KiB, NULL, NULL), STORE_OK);
        free(b);
    }
    store_stats st;
    stats(f, &st);
    assert_true(st.physical <= f->cfg.max_size);
    assert_true(st.evicted_blobs >= 200);
    assert_int_equal(st.inline_blobs, st.blobs);
    store_entry e;
    assert_int_equal(store_lookup(f->s, "ac", "k0", 2, &e), STORE_NOTFOUND);
    uint8_t *last = body_of(8 * KiB, 1299, 0);
    expect_body(f->s, "ac", "k299", last, 8 * KiB);
    free(last);
    assert_int_equal(store_evict_to(f->s, 0), STORE_OK);
    stats(f, &st);
    assert_int_equal(st.blobs, 0);
    assert_int_equal(st.inline_blobs, 0);
}

/* Flips a byte of an inline blob's stored bytes, through LMDB, with the
 * store closed. */
static void damage_inline(fixture *f, const uint8_t d[32])
{
    store_close(f->s);
    f->s = NULL;
    char path[128];
    snprintf(path, sizeof path, "%s/index.mdb", f->dir);
    MDB_env *env;
    MDB_txn *t;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 16);
    mdb_env_set_mapsize(env, f->cfg.map_size);
    assert_int_equal(mdb_env_open(env, path, MDB_NOSUBDIR, 0644), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &t), 0);
    assert_int_equal(mdb_dbi_open(t, "inline", 0, &dbi), 0);
    MDB_val k = {32, (void *)d}, v;
    assert_int_equal(mdb_get(t, dbi, &k, &v), 0);
    uint8_t *copy = malloc(v.mv_size);
    memcpy(copy, v.mv_data, v.mv_size);
    copy[v.mv_size / 2] ^= 0xff;
    MDB_val nv = {v.mv_size, copy};
    assert_int_equal(mdb_put(t, dbi, &k, &nv, 0), 0);
    assert_int_equal(mdb_txn_commit(t), 0);
    mdb_env_close(env);
    free(copy);
    char err[256];
    assert_int_equal(store_open(&f->s, &f->cfg, err, sizeof err), 0);
}

static void test_inline_corrupt_is_miss(void **state)
{
    fixture *f = *state;
    uint8_t *b = body_of(6000, 40, 1), d[32];
    digest_of(b, 6000, d);
    store_put_result r;
    assert_int_equal(put(f->s, "ac", "c1", b, 6000, NULL, &r), STORE_OK);
    assert_int_equal(put(f->s, "ac", "c2", b, 6000, NULL, NULL), STORE_OK);
    assert_int_equal(r.codec, CODEC_ZSTD);
    damage_inline(f, d);
    store_entry e;
    store_blob *blob;
    uint8_t buf[6000];
    assert_int_equal(store_lookup(f->s, "ac", "c1", 2, &e), STORE_OK);
    assert_int_equal(store_blob_open(f->s, &e, &blob), STORE_OK);
    assert_int_equal(store_blob_read(blob, 0, buf, sizeof buf), -STORE_CORRUPT);
    store_blob_close(blob);
    store_entry_clear(&e);
    /* both keys of the damaged blob are gone; a good copy can come back */
    assert_int_equal(store_lookup(f->s, "ac", "c1", 2, &e), STORE_NOTFOUND);
    assert_int_equal(store_lookup(f->s, "ac", "c2", 2, &e), STORE_NOTFOUND);
    store_stats st;
    stats(f, &st);
    assert_int_equal(st.corrupt_blobs, 1);
    assert_int_equal(st.blobs, 0);
    assert_int_equal(st.inline_blobs, 0);
    assert_int_equal(put(f->s, "ac", "c1", b, 6000, NULL, NULL), STORE_OK);
    expect_body(f->s, "ac", "c1", b, 6000);
    free(b);
}

typedef struct usage_seen {
    int n;
    char ns[4][16];
    uint64_t keys[4], bytes[4];
} usage_seen;

static int usage_cb(void *ctx, const char *ns, uint64_t keys, uint64_t bytes)
{
    usage_seen *u = ctx;
    assert_true(u->n < 4);
    snprintf(u->ns[u->n], sizeof u->ns[u->n], "%s", ns);
    u->keys[u->n] = keys;
    u->bytes[u->n++] = bytes;
    return 0;
}

static usage_seen usage(fixture *f)
{
    usage_seen u = {0};
    assert_int_equal(store_ns_usage(f->s, usage_cb, &u), STORE_OK);
    return u;
}

/* Removes the usage records behind the store's back, as an index written
 * before they were kept would lack them. */
static void drop_usage_records(fixture *f)
{
    store_close(f->s);
    f->s = NULL;
    MDB_env *env;
    MDB_txn *t;
    MDB_dbi dbi;
    char path[128];
    snprintf(path, sizeof path, "%s/index.mdb", f->dir);
    assert_int_equal(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 16);
    assert_int_equal(mdb_env_open(env, path, MDB_NOSUBDIR, 0644), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &t), 0);
    assert_int_equal(mdb_dbi_open(t, "usage", 0, &dbi), 0);
    assert_int_equal(mdb_drop(t, dbi, 1), 0);
    assert_int_equal(mdb_txn_commit(t), 0);
    mdb_env_close(env);
    char err[256];
    assert_int_equal(store_open(&f->s, &f->cfg, err, sizeof err), 0);
}

static void test_namespace_usage(void **state)
{
    fixture *f = *state;
    uint8_t *a = body_of(3000, 1, 1), *b = body_of(70 * KiB, 2, 0), *c = body_of(500, 3, 0);
    /* the same body under two namespaces counts in each: usage is before dedup */
    assert_int_equal(put(f->s, "ac/x", "k1", a, 3000, NULL, NULL), STORE_OK);
    assert_int_equal(put(f->s, "ac/x", "k2", b, 70 * KiB, NULL, NULL), STORE_OK);
    assert_int_equal(put(f->s, "cas", "k1", a, 3000, NULL, NULL), STORE_OK);
    usage_seen u = usage(f);
    assert_int_equal(u.n, 2);
    assert_string_equal(u.ns[0], "ac/x");
    assert_int_equal(u.keys[0], 2);
    assert_int_equal(u.bytes[0], 3000 + 70 * KiB);
    assert_string_equal(u.ns[1], "cas");
    assert_int_equal(u.keys[1], 1);
    assert_int_equal(u.bytes[1], 3000);

    /* an overwrite changes the bytes, not the keys; a delete both; the same
     * body again changes nothing */
    assert_int_equal(put(f->s, "ac/x", "k2", c, 500, NULL, NULL), STORE_OK);
    assert_int_equal(put(f->s, "ac/x", "k1", a, 3000, NULL, NULL), STORE_OK);
    assert_int_equal(store_delete(f->s, "cas", "k1", 2), STORE_OK);
    u = usage(f);
    assert_int_equal(u.n, 1);
    assert_string_equal(u.ns[0], "ac/x");
    assert_int_equal(u.keys[0], 2);
    assert_int_equal(u.bytes[0], 3500);

    /* kept across a restart, and counted again from the keys when missing */
    assert_int_equal(put(f->s, "zz", "k", b, 70 * KiB, NULL, NULL), STORE_OK);
    reopen(f);
    usage_seen before = usage(f);
    assert_int_equal(before.n, 2);
    drop_usage_records(f);
    u = usage(f);
    assert_int_equal(u.n, before.n);
    for (int i = 0; i < u.n; i++) {
        assert_string_equal(u.ns[i], before.ns[i]);
        assert_int_equal(u.keys[i], before.keys[i]);
        assert_int_equal(u.bytes[i], before.bytes[i]);
    }

    /* eviction takes keys with their blobs */
    assert_int_equal(store_evict_to(f->s, 0), STORE_OK);
    assert_int_equal(usage(f).n, 0);
    free(a);
    free(b);
    free(c);
}

typedef struct hot_seen {
    int n;
    char keys[8][16];
} hot_seen;

static int hot_cb(void *ctx, const char *ns, const void *key, size_t klen, uint64_t size)
{
    (void)size;
    hot_seen *h = ctx;
    assert_string_equal(ns, "ac");
    assert_true(h->n < 8 && klen < 16);
    memcpy(h->keys[h->n], key, klen);
    h->keys[h->n++][klen] = '\0';
    return 0;
}

static void test_hot_set_and_verify(void **state)
{
    fixture *f = *state;
    f->cfg.touch_interval_ms = 10;
    reopen(f);
    uint8_t *b[3];
    char key[16];
    for (int i = 0; i < 3; i++) {
        b[i] = body_of(100 * KiB, 40 + (unsigned)i, i == 2); /* two raw, one zstd */
        snprintf(key, sizeof key, "h%d", i);
        assert_int_equal(put(f->s, "ac", key, b[i], 100 * KiB, NULL, NULL), STORE_OK);
        usleep(3000);
    }
    uint64_t mid = util_now_ms();
    usleep(3000);
    expect_body(f->s, "ac", "h0", b[0], 100 * KiB); /* read again: hot, and the newest */
    hot_seen h = {0};
    assert_int_equal(store_hot(f->s, mid, 10, hot_cb, &h), STORE_OK);
    assert_int_equal(h.n, 1);
    assert_string_equal(h.keys[0], "h0");
    h.n = 0;
    assert_int_equal(store_hot(f->s, 0, 10, hot_cb, &h), STORE_OK);
    assert_int_equal(h.n, 3);
    assert_string_equal(h.keys[0], "h0");
    assert_string_equal(h.keys[1], "h2");
    assert_string_equal(h.keys[2], "h1");
    h.n = 0;
    assert_int_equal(store_hot(f->s, 0, 2, hot_cb, &h), STORE_OK);
    assert_int_equal(h.n, 2);

    /* verify: all good; then a flipped byte in each file is found and quarantined */
    uint8_t(*d)[32];
    size_t n;
    assert_int_equal(store_digests(f->s, &d, &n), STORE_OK);
    assert_int_equal(n, 3);
    uint64_t size;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(store_verify(f->s, d[i], &size), STORE_OK);
        assert_int_equal(size, 100 * KiB);
    }
    for (int i = 0; i < 3; i++) {
        uint8_t dg[32];
        char hex[65], path[256];
        digest_of(b[i], 100 * KiB, dg);
        util_hex(dg, 32, hex);
        snprintf(path, sizeof path, "%s/blobs/%.2s/%s", f->dir, hex, hex);
        int fd = open(path, O_RDWR);
        assert_true(fd >= 0);
        uint8_t x;
        off_t at = lseek(fd, 0, SEEK_END) / 2;
        assert_int_equal(pread(fd, &x, 1, at), 1);
        x ^= 0x10;
        assert_int_equal(pwrite(fd, &x, 1, at), 1);
        close(fd);
        assert_int_equal(store_verify(f->s, dg, &size), STORE_CORRUPT);
        assert_int_equal(store_verify(f->s, dg, &size), STORE_NOTFOUND); /* dropped */
    }
    store_stats st;
    store_get_stats(f->s, &st);
    assert_int_equal(st.corrupt_blobs, 3);
    assert_int_equal(st.keys, 0);
    assert_int_equal(count_files(f->dir, "quarantine"), 3);
    free(d);
    for (int i = 0; i < 3; i++)
        free(b[i]);
}

/* Two writers of one body under their own keys, each deleting its key
 * again: the committer often takes the deletion of the body's last key and
 * the write that makes it again in one batch.  The write waits for the
 * batch after (the file the deletion drops goes first); neither fails, and
 * the file is there whenever a key is. */
typedef struct churn {
    store *s;
    const char *key;
    const uint8_t *body;
    int failures;
} churn;

static void *churn_main(void *arg)
{
    churn *c = arg;
    for (int i = 0; i < 300; i++) {
        c->failures += put(c->s, "ac", c->key, c->body, 40000, NULL, NULL) != STORE_OK;
        c->failures += store_delete(c->s, "ac", c->key, strlen(c->key)) != STORE_OK;
    }
    return NULL;
}

static void test_delete_and_write_of_one_body_at_once(void **state)
{
    fixture *f = *state;
    uint8_t *x = body_of(40000, 9, 0);
    churn a = {f->s, "a", x, 0}, b = {f->s, "b", x, 0};
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, churn_main, &a), 0);
    assert_int_equal(pthread_create(&tb, NULL, churn_main, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_int_equal(a.failures + b.failures, 0);
    assert_int_equal(count_files(f->dir, NULL), 0);
    assert_int_equal(put(f->s, "ac", "a", x, 40000, NULL, NULL), STORE_OK);
    assert_int_equal(put(f->s, "ac", "b", x, 40000, NULL, NULL), STORE_OK);
    expect_body(f->s, "ac", "a", x, 40000);
    expect_body(f->s, "ac", "b", x, 40000);
    assert_int_equal(count_files(f->dir, NULL), 1);
    store_stats st;
    store_get_stats(f->s, &st);
    assert_int_equal(st.blobs, 1);
    assert_int_equal(st.keys, 2);
    free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put_get_dedup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overwrite_and_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_digest_mismatch_stores_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conditional_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_persistence_and_cleanup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eviction_lru, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quarantine, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_blob_is_miss, setup, teardown),
        cmocka_unit_test_setup_teardown(test_namespaces, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_namespace_usage, setup_inline, teardown),
        cmocka_unit_test_setup_teardown(test_hot_set_and_verify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inline_sizes, setup_inline, teardown),
        cmocka_unit_test_setup_teardown(test_inline_spills_to_file, setup_inline, teardown),
        cmocka_unit_test_setup_teardown(test_inline_dedup_delete_persist, setup_inline, teardown),
        cmocka_unit_test_setup_teardown(test_inline_eviction, setup_inline, teardown),
        cmocka_unit_test_setup_teardown(test_inline_corrupt_is_miss, setup_inline, teardown),
        cmocka_unit_test_setup_teardown(test_delete_and_write_of_one_body_at_once, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
