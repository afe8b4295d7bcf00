/*
 * codec.c - blob file writer and reader; the format is described in codec.h.
 */
#include "codec.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <zstd.h>

#include "../common/checksum.h"
#include "../common/util.h"

#define SKIPPABLE_MAGIC 0x184D2A5Eu
#define SEEKABLE_MAGIC 0x8F92EAB1u
#define SEEK_FOOTER 9
#define MODE_UNDECIDED 0
#define MODE_RAW 1
#define MODE_ZSTD 2

struct codec_writer {
    int fd;
    int level;
    int mode;
    EVP_MD_CTX *sha;
    EVP_MD_CTX *md5;
    ZSTD_CCtx *cctx;
    uint8_t *in; /* one frame of body bytes, until the format is raw */
    size_t in_len;
    uint8_t *out;
    size_t out_cap;
    uint32_t *table; /* compressed, decompressed size per frame */
    size_t nframes;
    size_t table_cap;
    uint64_t size;
    uint64_t stored;
    /* Compression runs on a worker thread once a body is known to compress,
     * so that hashing and receiving (this thread) overlap with it.  One frame
     * is in flight at a time: `job` belongs to the worker while job_pending. */
    pthread_t worker;
    int worker_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint8_t *job;
    size_t job_len;
    uint8_t *spare; /* the free input buffer, when no job holds it */
    int job_pending;
    int worker_err;
    int quit;
};

static void stop_worker(codec_writer *w);

codec_writer *codec_writer_new(int fd, int level, int want_md5)
{
    codec_writer *w = calloc(1, sizeof *w);
    if (w == NULL)
        return NULL;
    w->fd = fd;
    w->level = level;
    w->mode = level == 0 ? MODE_RAW : MODE_UNDECIDED;
    w->sha = EVP_MD_CTX_new();
    if (w->sha == NULL || !EVP_DigestInit_ex(w->sha, cksum_md_sha256(), NULL))
        goto fail;
    if (want_md5) {
        w->md5 = EVP_MD_CTX_new();
        if (w->md5 == NULL || !EVP_DigestInit_ex(w->md5, cksum_md_md5(), NULL))
            goto fail;
    }
    if (w->mode == MODE_UNDECIDED) {
        w->in = malloc(CODEC_FRAME_SIZE);
        if (w->in == NULL)
            goto fail;
    }
    return w;
fail:
    codec_writer_free(w);
    return NULL;
}

void codec_writer_free(codec_writer *w)
{
    if (w == NULL)
        return;
    stop_worker(w);
    free(w->job);
    free(w->spare);
    EVP_MD_CTX_free(w->sha);
    EVP_MD_CTX_free(w->md5);
    ZSTD_freeCCtx(w->cctx);
    free(w->in);
    free(w->out);
    free(w->table);
    free(w);
}

uint64_t codec_writer_size(const codec_writer *w)
{
    return w->size;
}

static int write_out(codec_writer *w, const void *buf, size_t len)
{
    int rc = util_write_all(w->fd, buf, len);
    if (rc == 0)
        w->stored += len;
    return rc;
}

static int table_add(codec_writer *w, uint32_t csize, uint32_t dsize)
{
    if (w->nframes == w->table_cap) {
        size_t cap = w->table_cap ? w->table_cap * 2 : 64;
        uint32_t *t = realloc(w->table, cap * 2 * sizeof *t);
        if (t == NULL)
            return -ENOMEM;
        w->table = t;
        w->table_cap = cap;
    }
    w->table[2 * w->nframes] = csize;
    w->table[2 * w->nframes + 1] = dsize;
    w->nframes++;
    return 0;
}

static int compress_frame(codec_writer *w, const uint8_t *src, size_t len, size_t *csize)
{
    if (w->cctx == NULL) {
        w->cctx = ZSTD_createCCtx();
        w->out_cap = ZSTD_compressBound(CODEC_FRAME_SIZE);
        w->out = malloc(w->out_cap);
        if (w->cctx == NULL || w->out == NULL)
            return -ENOMEM;
        ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, w->level);
        ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 1);
        ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_contentSizeFlag, 1);
    }
    size_t n = ZSTD_compress2(w->cctx, w->out, w->out_cap, src, len);
    if (ZSTD_isError(n))
        return -EIO;
    *csize = n;
    return 0;
}

static int compress_and_write(codec_writer *w, const uint8_t *src, size_t len)
{
    size_t csize;
    int rc = compress_frame(w, src, len, &csize);
    if (rc == 0)
        rc = write_out(w, w->out, csize);
    if (rc == 0)
        rc = table_add(w, (uint32_t)csize, (uint32_t)len);
    return rc;
}

static void *worker_main(void *arg)
{
    codec_writer *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->job_pending && !w->quit)
            pthread_cond_wait(&w->cv, &w->mu);
        if (!w->job_pending)
            break;
        pthread_mutex_unlock(&w->mu);
        int rc = compress_and_write(w, w->job, w->job_len);
        pthread_mutex_lock(&w->mu);
        if (rc != 0 && w->worker_err == 0)
            w->worker_err = rc;
        w->spare = w->job;
        w->job = NULL;
        w->job_pending = 0;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Waits until the worker holds no frame; returns its first error. */
static int wait_idle(codec_writer *w)
{
    if (!w->worker_started)
        return 0;
    pthread_mutex_lock(&w->mu);
    while (w->job_pending)
        pthread_cond_wait(&w->cv, &w->mu);
    int rc = w->worker_err;
    pthread_mutex_unlock(&w->mu);
    return rc;
}

static void stop_worker(codec_writer *w)
{
    if (!w->worker_started)
        return;
    pthread_mutex_lock(&w->mu);
    w->quit = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->worker, NULL);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    w->worker_started = 0;
}

/* Hands the full input buffer to the worker and takes the free one. */
static int hand_off(codec_writer *w)
{
    if (!w->worker_started) {
        if ((w->spare = malloc(CODEC_FRAME_SIZE)) == NULL)
            return -ENOMEM;
        pthread_mutex_init(&w->mu, NULL);
        pthread_cond_init(&w->cv, NULL);
        if (pthread_create(&w->worker, NULL, worker_main, w) != 0) {
            pthread_mutex_destroy(&w->mu);
            pthread_cond_destroy(&w->cv);
            return compress_and_write(w, w->in, w->in_len); /* no thread: do it here */
        }
        w->worker_started = 1;
    }
    pthread_mutex_lock(&w->mu);
    while (w->job_pending)
        pthread_cond_wait(&w->cv, &w->mu);
    int rc = w->worker_err;
    if (rc == 0) {
        w->job = w->in;
        w->job_len = w->in_len;
        w->in = w->spare;
        w->spare = NULL;
        w->job_pending = 1;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

/* Turns the buffered frame into output; decides the format on the first one. */
static int flush_frame(codec_writer *w, int last)
{
    int rc;
    if (w->mode == MODE_UNDECIDED) {
        size_t csize;
        if ((rc = compress_frame(w, w->in, w->in_len, &csize)) != 0)
            return rc;
        if (csize > w->in_len - w->in_len / 8) {
            w->mode = MODE_RAW;
        } else {
            w->mode = MODE_ZSTD;
            rc = write_out(w, w->out, csize);
            if (rc == 0)
                rc = table_add(w, (uint32_t)csize, (uint32_t)w->in_len);
            w->in_len = 0;
            return rc;
        }
        rc = write_out(w, w->in, w->in_len);
    } else if (!last) {
        rc = hand_off(w);
    } else {
        rc = wait_idle(w);
        if (rc == 0)
            rc = compress_and_write(w, w->in, w->in_len);
    }
    w->in_len = 0;
    return rc;
}

int codec_writer_write(codec_writer *w, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    if (!EVP_DigestUpdate(w->sha, buf, len))
        return -EIO;
    if (w->md5 && !EVP_DigestUpdate(w->md5, buf, len))
        return -EIO;
    w->size += len;
    while (len > 0) {
        if (w->mode == MODE_RAW)
            return write_out(w, p, len);
        size_t take = CODEC_FRAME_SIZE - w->in_len;
        if (take > len)
            take = len;
        memcpy(w->in + w->in_len, p, take);
        w->in_len += take;
        p += take;
        len -= take;
        if (w->in_len == CODEC_FRAME_SIZE) {
            int rc = flush_frame(w, 0);
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

static int write_seek_table(codec_writer *w)
{
    size_t body = w->nframes * 8 + SEEK_FOOTER;
    uint8_t *t = malloc(8 + body);
    if (t == NULL)
        return -ENOMEM;
    util_put_le32(t, SKIPPABLE_MAGIC);
    util_put_le32(t + 4, (uint32_t)body);
    for (size_t i = 0; i < w->nframes; i++) {
        util_put_le32(t + 8 + 8 * i, w->table[2 * i]);
        util_put_le32(t + 12 + 8 * i, w->table[2 * i + 1]);
    }
    uint8_t *f = t + 8 + w->nframes * 8;
    util_put_le32(f, (uint32_t)w->nframes);
    f[4] = 0; /* descriptor: no per-entry checksums */
    util_put_le32(f + 5, SEEKABLE_MAGIC);
    int rc = write_out(w, t, 8 + body);
    free(t);
    return rc;
}

int codec_writer_finish(codec_writer *w, codec_result *res)
{
    int rc = 0;
    if (w->mode == MODE_UNDECIDED && w->in_len == 0)
        w->mode = MODE_RAW; /* empty body */
    if (w->in_len > 0)
        rc = flush_frame(w, 1);
    else
        rc = wait_idle(w);
    stop_worker(w);
    if (rc == 0 && w->mode == MODE_ZSTD)
        rc = write_seek_table(w);
    if (rc != 0)
        return rc;
    unsigned int n;
    if (!EVP_DigestFinal_ex(w->sha, res->sha256, &n))
        return -EIO;
    if (w->md5 && !EVP_DigestFinal_ex(w->md5, res->md5, &n))
        return -EIO;
    res->size = w->size;
    res->stored = w->stored;
    res->codec = w->mode == MODE_ZSTD ? CODEC_ZSTD : CODEC_RAW;
    return 0;
}

/* What decoding one frame needs; a reader has one, its read-ahead worker another. */
typedef struct frame_decoder {
    ZSTD_DCtx *dctx;
    uint8_t *cbuf;
    size_t cbuf_cap;
} frame_decoder;

struct codec_reader {
    int fd;
    int codec;
    uint64_t size;
    uint32_t nframes;
    uint64_t *coff; /* nframes + 1 compressed offsets */
    frame_decoder dec;
    uint8_t *dbuf; /* the last frame decompressed, for reads that are not frame aligned */
    int64_t dbuf_frame;
    size_t dbuf_len;
    /* Read-ahead (codec_reader_readahead): a worker decodes the next frame
     * into abuf while the caller copies the current one out of dbuf. */
    int ra_on;
    pthread_t ra_thread;
    pthread_mutex_t ra_mu;
    pthread_cond_t ra_cv;
    frame_decoder ra_dec;
    uint8_t *abuf;
    int64_t ra_job;   /* frame the worker is asked to decode, -1 for none */
    int64_t ra_ready; /* frame decoded in abuf, -1 for none */
    int ra_busy;
    int ra_quit;
};

static int load_seek_table(codec_reader *r, uint64_t stored)
{
    uint8_t foot[SEEK_FOOTER];
    if (stored < 8 + SEEK_FOOTER)
        return CODEC_ERR_CORRUPT;
    ssize_t n = util_pread_all(r->fd, foot, SEEK_FOOTER, stored - SEEK_FOOTER);
    if (n < 0)
        return (int)n;
    if (n != SEEK_FOOTER || util_get_le32(foot + 5) != SEEKABLE_MAGIC || (foot[4] & 0x80))
        return CODEC_ERR_CORRUPT;
    uint32_t nf = util_get_le32(foot);
    uint64_t tsize = 8 + (uint64_t)nf * 8 + SEEK_FOOTER;
    if (tsize > stored || (uint64_t)nf * CODEC_FRAME_SIZE < r->size ||
        (nf > 0 && (uint64_t)(nf - 1) * CODEC_FRAME_SIZE >= r->size))
        return CODEC_ERR_CORRUPT;
    uint8_t *t = malloc(tsize);
    r->coff = malloc(((size_t)nf + 1) * sizeof *r->coff);
    if (t == NULL || r->coff == NULL) {
        free(t);
        return -ENOMEM;
    }
    n = util_pread_all(r->fd, t, tsize, stored - tsize);
    int rc = 0;
    if (n < 0)
        rc = (int)n;
    else if ((uint64_t)n != tsize || util_get_le32(t) != SKIPPABLE_MAGIC ||
             util_get_le32(t + 4) != tsize - 8)
        rc = CODEC_ERR_CORRUPT;
    uint64_t off = 0, dsum = 0;
    for (uint32_t i = 0; rc == 0 && i < nf; i++) {
        uint32_t c = util_get_le32(t + 8 + 8 * i), d = util_get_le32(t + 12 + 8 * i);
        if (d == 0 || d > CODEC_FRAME_SIZE || (i + 1 < nf && d != CODEC_FRAME_SIZE))
            rc = CODEC_ERR_CORRUPT;
        r->coff[i] = off;
        off += c;
        dsum += d;
    }
    r->coff[nf] = off;
    if (rc == 0 && (dsum != r->size || off + tsize != stored))
        rc = CODEC_ERR_CORRUPT;
    free(t);
    r->nframes = nf;
    return rc;
}

/* A body of one frame is read without its seek table: one pread of the whole
 * file, and zstd decodes the frame and skips the table (a skippable frame).
 * The frame's checksum still guards every byte served. */
static int single_frame(codec_reader *r, uint64_t stored)
{
    r->nframes = 1;
    r->coff = malloc(2 * sizeof *r->coff);
    if (r->coff == NULL)
        return -ENOMEM;
    r->coff[0] = 0;
    r->coff[1] = stored;
    return 0;
}

static int reader_open(codec_reader **out, int fd, int codec, uint64_t size, uint64_t stored,
                       int whole_table)
{
    codec_reader *r = calloc(1, sizeof *r);
    if (r == NULL)
        return -ENOMEM;
    r->fd = fd;
    r->codec = codec;
    r->size = size;
    r->dbuf_frame = -1;
    int rc = 0;
    /* r->dec.dctx stays NULL: the calling thread's context is used */
    if (codec == CODEC_ZSTD && size > 0 && size <= CODEC_FRAME_SIZE && !whole_table)
        rc = single_frame(r, stored);
    else if (codec == CODEC_ZSTD)
        rc = load_seek_table(r, stored);
    else if (codec != CODEC_RAW || stored != size) {
        rc = CODEC_ERR_CORRUPT;
    }
    if (rc != 0) {
        codec_reader_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

int codec_reader_open(codec_reader **out, int fd, int codec, uint64_t size, uint64_t stored)
{
    return reader_open(out, fd, codec, size, stored, 0);
}

static void stop_readahead(codec_reader *r);

void codec_reader_free(codec_reader *r)
{
    if (r == NULL)
        return;
    stop_readahead(r);
    free(r->coff);
    free(r->dec.cbuf);
    free(r->dbuf);
    free(r);
}

/* One decompression context per thread, made on first use and freed when
 * the thread ends: creating one per read cost more than decoding a small
 * blob. */
static pthread_key_t dctx_key;
static pthread_once_t dctx_once = PTHREAD_ONCE_INIT;

static void dctx_free(void *p)
{
    ZSTD_freeDCtx(p);
}

static void dctx_key_init(void)
{
    pthread_key_create(&dctx_key, dctx_free);
}

static ZSTD_DCtx *thread_dctx(void)
{
    pthread_once(&dctx_once, dctx_key_init);
    ZSTD_DCtx *d = pthread_getspecific(dctx_key);
    if (d == NULL && (d = ZSTD_createDCtx()) != NULL)
        pthread_setspecific(dctx_key, d);
    return d;
}

/* Decompresses frame i into dst (which holds at least the frame's size). */
static int decode_frame(codec_reader *r, frame_decoder *d, uint32_t i, uint8_t *dst, size_t dsize)
{
    size_t csize = (size_t)(r->coff[i + 1] - r->coff[i]);
    if (csize > d->cbuf_cap) {
        uint8_t *b = realloc(d->cbuf, csize);
        if (b == NULL)
            return -ENOMEM;
        d->cbuf = b;
        d->cbuf_cap = csize;
    }
    ssize_t n = util_pread_all(r->fd, d->cbuf, csize, r->coff[i]);
    if (n < 0)
        return (int)n;
    if ((size_t)n != csize)
        return CODEC_ERR_CORRUPT;
    ZSTD_DCtx *dctx = d->dctx ? d->dctx : thread_dctx();
    if (dctx == NULL)
        return -ENOMEM;
    size_t got = ZSTD_decompressDCtx(dctx, dst, dsize, d->cbuf, csize);
    if (ZSTD_isError(got) || got != dsize)
        return CODEC_ERR_CORRUPT;
    return 0;
}

static size_t frame_len(const codec_reader *r, uint32_t i)
{
    uint64_t start = (uint64_t)i * CODEC_FRAME_SIZE;
    uint64_t left = r->size - start;
    return left < CODEC_FRAME_SIZE ? (size_t)left : CODEC_FRAME_SIZE;
}

/* ---- read-ahead ------------------------------------------------------------ */

static void *readahead_main(void *arg)
{
    codec_reader *r = arg;
    pthread_mutex_lock(&r->ra_mu);
    for (;;) {
        while (r->ra_job < 0 && !r->ra_quit)
            pthread_cond_wait(&r->ra_cv, &r->ra_mu);
        if (r->ra_quit)
            break;
        uint32_t fi = (uint32_t)r->ra_job;
        r->ra_job = -1;
        pthread_mutex_unlock(&r->ra_mu);
        /* a failure leaves ra_ready unset: the reader decodes the frame itself and
         * meets the error there */
        int rc = decode_frame(r, &r->ra_dec, fi, r->abuf, frame_len(r, fi));
        pthread_mutex_lock(&r->ra_mu);
        r->ra_ready = rc == 0 ? (int64_t)fi : -1;
        r->ra_busy = 0;
        pthread_cond_broadcast(&r->ra_cv);
    }
    pthread_mutex_unlock(&r->ra_mu);
    return NULL;
}

int codec_reader_readahead(codec_reader *r)
{
    if (r->codec != CODEC_ZSTD || r->nframes < 3 || r->ra_on)
        return 0;
    r->abuf = malloc(CODEC_FRAME_SIZE);
    r->ra_dec.dctx = ZSTD_createDCtx();
    if (r->dbuf == NULL)
        r->dbuf = malloc(CODEC_FRAME_SIZE);
    if (r->abuf == NULL || r->ra_dec.dctx == NULL || r->dbuf == NULL)
        goto fail;
    r->ra_job = r->ra_ready = -1;
    pthread_mutex_init(&r->ra_mu, NULL);
    pthread_cond_init(&r->ra_cv, NULL);
    if (pthread_create(&r->ra_thread, NULL, readahead_main, r) != 0) {
        pthread_mutex_destroy(&r->ra_mu);
        pthread_cond_destroy(&r->ra_cv);
        goto fail;
    }
    r->ra_on = 1;
    return 0;
fail:
    free(r->abuf);
    r->abuf = NULL;
    ZSTD_freeDCtx(r->ra_dec.dctx);
    r->ra_dec.dctx = NULL;
    return -ENOMEM; /* reads still work, without read-ahead */
}

static void stop_readahead(codec_reader *r)
{
    if (!r->ra_on)
        return;
    pthread_mutex_lock(&r->ra_mu);
    r->ra_quit = 1;
    pthread_cond_broadcast(&r->ra_cv);
    pthread_mutex_unlock(&r->ra_mu);
    pthread_join(r->ra_thread, NULL);
    pthread_mutex_destroy(&r->ra_mu);
    pthread_cond_destroy(&r->ra_cv);
    free(r->abuf);
    ZSTD_freeDCtx(r->ra_dec.dctx);
    free(r->ra_dec.cbuf);
    r->ra_on = 0;
}

/* Makes frame fi the one in dbuf, taking it from the worker when it is
 * there, and sets the worker on the frame after it. */
static int load_frame_readahead(codec_reader *r, uint32_t fi)
{
    pthread_mutex_lock(&r->ra_mu);
    while (r->ra_busy)
        pthread_cond_wait(&r->ra_cv, &r->ra_mu);
    int have = r->ra_ready == (int64_t)fi;
    if (have) {
        uint8_t *t = r->dbuf;
        r->dbuf = r->abuf;
        r->abuf = t;
    }
    r->ra_ready = -1;
    r->dbuf_frame = -1;
    if (fi + 1 < r->nframes) {
        r->ra_job = fi + 1;
        r->ra_busy = 1;
        pthread_cond_broadcast(&r->ra_cv);
    }
    pthread_mutex_unlock(&r->ra_mu);
    size_t flen = frame_len(r, fi);
    if (!have) {
        int rc = decode_frame(r, &r->dec, fi, r->dbuf, flen);
        if (rc != 0)
            return rc;
    }
    r->dbuf_frame = fi;
    r->dbuf_len = flen;
    return 0;
}

ssize_t codec_reader_read(codec_reader *r, uint64_t off, void *buf, size_t len)
{
    if (off >= r->size)
        return 0;
    if (len > r->size - off)
        len = (size_t)(r->size - off);
    if (r->codec == CODEC_RAW)
        return util_pread_all(r->fd, buf, len, off);

    uint8_t *p = buf;
    size_t done = 0;
    while (done < len) {
        uint64_t pos = off + done;
        uint32_t fi = (uint32_t)(pos / CODEC_FRAME_SIZE);
        size_t in_frame = (size_t)(pos % CODEC_FRAME_SIZE);
        size_t flen = frame_len(r, fi);
        size_t want = len - done;
        int rc;
        if (in_frame == 0 && want >= flen && r->dbuf_frame != fi && !r->ra_on) {
            /* a whole frame: decode straight into the caller's buffer */
            rc = decode_frame(r, &r->dec, fi, p + done, flen);
            if (rc != 0)
                return rc;
            done += flen;
            continue;
        }
        if (r->dbuf_frame != fi && r->ra_on) {
            if ((rc = load_frame_readahead(r, fi)) != 0)
                return rc;
        } else if (r->dbuf_frame != fi) {
            if (r->dbuf == NULL && (r->dbuf = malloc(CODEC_FRAME_SIZE)) == NULL)
                return -ENOMEM;
            r->dbuf_frame = -1;
            rc = decode_frame(r, &r->dec, fi, r->dbuf, flen);
            if (rc != 0)
                return rc;
            r->dbuf_frame = fi;
            r->dbuf_len = flen;
        }
        size_t take = r->dbuf_len - in_frame;
        if (take > want)
            take = want;
        memcpy(p + done, r->dbuf + in_frame, take);
        done += take;
    }
    return (ssize_t)done;
}

int codec_verify(int fd, int codec, uint64_t size, uint64_t stored, const uint8_t sha256[32])
{
    codec_reader *r;
    int rc = reader_open(&r, fd, codec, size, stored, 1); /* a scrub checks the table too */
    if (rc != 0)
        return rc;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    uint8_t *buf = malloc(CODEC_FRAME_SIZE);
    if (ctx == NULL || buf == NULL || !EVP_DigestInit_ex(ctx, cksum_md_sha256(), NULL)) {
        rc = -ENOMEM;
        goto out;
    }
    for (uint64_t off = 0; off < size;) {
        ssize_t n = codec_reader_read(r, off, buf, CODEC_FRAME_SIZE);
        if (n <= 0) {
            rc = n < 0 ? (int)n : CODEC_ERR_CORRUPT;
            goto out;
        }
        EVP_DigestUpdate(ctx, buf, (size_t)n);
        off += (uint64_t)n;
    }
    if (codec == CODEC_RAW) {
        uint8_t extra;
        if (util_pread_all(fd, &extra, 1, size) != 0) {
            rc = CODEC_ERR_CORRUPT; /* file longer than the body */
            goto out;
        }
    }
    uint8_t got[32];
    unsigned int n;
    EVP_DigestFinal_ex(ctx, got, &n);
    rc = memcmp(got, sha256, 32) == 0 ? 0 : CODEC_ERR_CORRUPT;
out:
    free(buf);
    EVP_MD_CTX_free(ctx);
    codec_reader_free(r);
    return rc;
}

int codec_check_seek_table(int fd, uint64_t size, uint64_t stored, const uint64_t (*ends)[2],
                           size_t n)
{
    codec_reader *r;
    int rc = reader_open(&r, fd, CODEC_ZSTD, size, stored, 1);
    if (rc != 0)
        return rc;
    if (n < r->nframes)
        rc = CODEC_ERR_CORRUPT;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        uint64_t body = (uint64_t)(i + 1) * CODEC_FRAME_SIZE;
        if (body > size)
            body = size;
        if (i < r->nframes && (ends[i][0] != r->coff[i + 1] || ends[i][1] != body))
            rc = CODEC_ERR_CORRUPT;
        else if (i >= r->nframes && ends[i][1] != size)
            rc = CODEC_ERR_CORRUPT;
    }
    codec_reader_free(r);
    return rc;
}

/* ---- small bodies, kept in the index ---------------------------------------- */

static pthread_key_t cctx_key;
static pthread_once_t cctx_once = PTHREAD_ONCE_INIT;

static void cctx_free(void *p)
{
    ZSTD_freeCCtx(p);
}

static void cctx_key_init(void)
{
    pthread_key_create(&cctx_key, cctx_free);
}

/* One compression context per thread, as for decoding: small bodies come
 * many at a time, and a context costs more to make than to use on 4 KiB. */
static ZSTD_CCtx *thread_cctx(void)
{
    pthread_once(&cctx_once, cctx_key_init);
    ZSTD_CCtx *c = pthread_getspecific(cctx_key);
    if (c == NULL && (c = ZSTD_createCCtx()) != NULL)
        pthread_setspecific(cctx_key, c);
    return c;
}

size_t codec_small_bound(size_t len)
{
    return ZSTD_compressBound(len);
}

int codec_encode_small(int level, int want_md5, const void *in, size_t len, uint8_t *out,
                       codec_result *res)
{
    unsigned int n;
    if (!EVP_Digest(in, len, res->sha256, &n, cksum_md_sha256(), NULL))
        return -EIO;
    if (want_md5 && !EVP_Digest(in, len, res->md5, &n, cksum_md_md5(), NULL))
        return -EIO;
    res->size = len;
    size_t csize = 0;
    if (level > 0 && len > 0) {
        ZSTD_CCtx *c = thread_cctx();
        if (c == NULL)
            return -ENOMEM;
        ZSTD_CCtx_reset(c, ZSTD_reset_session_and_parameters);
        ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level);
        ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
        ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 1);
        csize = ZSTD_compress2(c, out, ZSTD_compressBound(len), in, len);
        if (ZSTD_isError(csize))
            return -EIO;
    }
    if (csize > 0 && csize <= len - len / 8) {
        res->codec = CODEC_ZSTD;
        res->stored = csize;
    } else {
        /* the writer's rule: zstd must save at least an eighth */
        if (len)
            memcpy(out, in, len);
        res->codec = CODEC_RAW;
        res->stored = len;
    }
    return 0;
}

int codec_decode_small(int codec, const void *in, size_t in_len, void *out, size_t size)
{
    if (codec == CODEC_RAW) {
        if (in_len != size)
            return CODEC_ERR_CORRUPT;
        if (size)
            memcpy(out, in, size);
        return 0;
    }
    ZSTD_DCtx *d = thread_dctx();
    if (d == NULL)
        return -ENOMEM;
    size_t got = ZSTD_decompressDCtx(d, out, size, in, in_len);
    return ZSTD_isError(got) || got != size ? CODEC_ERR_CORRUPT : 0;
}
