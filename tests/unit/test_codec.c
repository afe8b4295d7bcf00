/*
 * test_codec.c - the blob file format: round trips, the raw/zstd decision,
 * ranged reads across frame boundaries, and detection of every kind of damage.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <zstd.h>

#include "../../common/util.h"
#include "../../storage/codec.h"

#define MiB (1u << 20)

static uint8_t *make_body(size_t n, int compressible, unsigned seed)
{
    uint8_t *b = malloc(n ? n : 1);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        b[i] = compressible ? (uint8_t)("lorem ipsum dolor sit amet\n"[i % 27] ^ ((i / 4096) & 1))
                            : (uint8_t)(x >> 16);
    }
    return b;
}

static int tmp_fd(void)
{
    char path[] = "/tmp/cairn-codec-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    return fd;
}

/* Writes body in uneven pieces; returns the fd (positioned anywhere). */
static int write_blob(const uint8_t *body, size_t n, int level, codec_result *res)
{
    int fd = tmp_fd();
    codec_writer *w = codec_writer_new(fd, level, 1);
    assert_non_null(w);
    size_t off = 0, step = 1;
    while (off < n) {
        size_t take = n - off < step ? n - off : step;
        assert_int_equal(codec_writer_write(w, body + off, take), 0);
        off += take;
        step = step * 3 + 7; /* 1, 10, 37, ... crosses frame edges at odd offsets */
        if (step > 3 * MiB)
            step = 4093;
    }
    assert_int_equal(codec_writer_finish(w, res), 0);
    codec_writer_free(w);
    return fd;
}

static void check_digests(const uint8_t *body, size_t n, const codec_result *res)
{
    uint8_t d[32], m[16];
    unsigned int len;
    EVP_Digest(body, n, d, &len, EVP_sha256(), NULL);
    EVP_Digest(body, n, m, &len, EVP_md5(), NULL);
    assert_memory_equal(res->sha256, d, 32);
    assert_memory_equal(res->md5, m, 16);
    assert_int_equal(res->size, n);
}

static void roundtrip(size_t n, int compressible, int expect_codec)
{
    uint8_t *body = make_body(n, compressible, (unsigned)n);
    codec_result res;
    int fd = write_blob(body, n, 1, &res);
    check_digests(body, n, &res);
    assert_int_equal(res.codec, expect_codec);
    assert_int_equal((uint64_t)lseek(fd, 0, SEEK_END), res.stored);
    if (expect_codec == CODEC_ZSTD)
        assert_true(res.stored < n);

    codec_reader *r;
    assert_int_equal(codec_reader_open(&r, fd, res.codec, res.size, res.stored), 0);
    uint8_t *back = malloc(n + 1);
    assert_int_equal(codec_reader_read(r, 0, back, n + 1), (ssize_t)n);
    assert_memory_equal(back, body, n);
    codec_reader_free(r);
    assert_int_equal(codec_verify(fd, res.codec, res.size, res.stored, res.sha256), 0);
    free(back);
    free(body);
    close(fd);
}

static void test_sizes_compressible(void **state)
{
    (void)state;
    roundtrip(0, 1, CODEC_RAW); /* empty: raw, zero bytes */
    roundtrip(1, 1, CODEC_RAW); /* too small for zstd to pay */
    roundtrip(4096, 1, CODEC_ZSTD);
    roundtrip(MiB - 1, 1, CODEC_ZSTD);
    roundtrip(MiB, 1, CODEC_ZSTD);
    roundtrip(MiB + 1, 1, CODEC_ZSTD);
    roundtrip(3 * MiB + 12345, 1, CODEC_ZSTD);
}

static void test_sizes_random(void **state)
{
    (void)state;
    roundtrip(1, 0, CODEC_RAW);
    roundtrip(MiB - 1, 0, CODEC_RAW);
    roundtrip(MiB + 1, 0, CODEC_RAW);
    roundtrip(2 * MiB + 17, 0, CODEC_RAW);
}

static void test_level_zero_is_raw(void **state)
{
    (void)state;
    uint8_t *body = make_body(2 * MiB, 1, 3);
    codec_result res;
    int fd = write_blob(body, 2 * MiB, 0, &res);
    assert_int_equal(res.codec, CODEC_RAW);
    assert_int_equal(res.stored, 2 * MiB);
    close(fd);
    free(body);
}

/* The file is a valid zstd stream: the zstd library decodes it whole. */
static void test_file_is_zstd_stream(void **state)
{
    (void)state;
    size_t n = 2 * MiB + 999;
    uint8_t *body = make_body(n, 1, 5);
    codec_result res;
    int fd = write_blob(body, n, 3, &res);
    uint8_t *file = malloc(res.stored), *out = malloc(n + 10);
    assert_int_equal(util_pread_all(fd, file, res.stored, 0), (ssize_t)res.stored);
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    ZSTD_inBuffer in = {file, res.stored, 0};
    ZSTD_outBuffer ob = {out, n + 10, 0};
    while (in.pos < in.size) {
        size_t rc = ZSTD_decompressStream(dctx, &ob, &in);
        assert_false(ZSTD_isError(rc));
    }
    assert_int_equal(ob.pos, n);
    assert_memory_equal(out, body, n);
    ZSTD_freeDCtx(dctx);
    free(file);
    free(out);
    free(body);
    close(fd);
}

static void test_ranges(void **state)
{
    (void)state;
    size_t n = 3 * MiB + 100;
    uint8_t *body = make_body(n, 1, 9);
    codec_result res;
    int fd = write_blob(body, n, 1, &res);
    assert_int_equal(res.codec, CODEC_ZSTD);
    codec_reader *r;
    assert_int_equal(codec_reader_open(&r, fd, res.codec, res.size, res.stored), 0);
    uint64_t offs[] = {0, 1, MiB - 1, MiB, MiB + 1, 2 * MiB - 5, 3 * MiB, n - 1};
    size_t lens[] = {1, 10, 2, MiB, 2 * MiB + 3, 100};
    uint8_t *buf = malloc(3 * MiB);
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
        for (size_t j = 0; j < sizeof lens / sizeof lens[0]; j++) {
            size_t want = lens[j];
            if (offs[i] + want > n)
                want = n - offs[i];
            ssize_t got = codec_reader_read(r, offs[i], buf, lens[j]);
            assert_int_equal(got, (ssize_t)want);
            assert_memory_equal(buf, body + offs[i], want);
        }
    }
    assert_int_equal(codec_reader_read(r, n, buf, 10), 0);
    codec_reader_free(r);
    free(buf);
    free(body);
    close(fd);
}

/* Read-ahead gives the same bytes, sequentially and when the reader jumps. */
static void test_readahead(void **state)
{
    (void)state;
    size_t n = 7 * MiB + 4321;
    uint8_t *body = make_body(n, 1, 21);
    codec_result res;
    int fd = write_blob(body, n, 1, &res);
    codec_reader *r;
    assert_int_equal(codec_reader_open(&r, fd, res.codec, res.size, res.stored), 0);
    assert_int_equal(codec_reader_readahead(r), 0);
    uint8_t *buf = malloc(256 * 1024);
    for (uint64_t off = 0; off < n; off += 256 * 1024) {
        ssize_t got = codec_reader_read(r, off, buf, 256 * 1024);
        size_t want = n - off < 256 * 1024 ? n - off : 256 * 1024;
        assert_int_equal(got, (ssize_t)want);
        assert_memory_equal(buf, body + off, want);
    }
    uint64_t jumps[] = {5 * MiB + 7, 100, 3 * MiB, 6 * MiB + 1, 0, n - 10};
    for (size_t i = 0; i < sizeof jumps / sizeof jumps[0]; i++) {
        size_t want = n - jumps[i] < 4000 ? n - jumps[i] : 4000;
        assert_int_equal(codec_reader_read(r, jumps[i], buf, 4000), (ssize_t)want);
        assert_memory_equal(buf, body + jumps[i], want);
    }
    codec_reader_free(r);
    free(buf);
    free(body);
    close(fd);
}

static void flip_byte(int fd, uint64_t off)
{
    uint8_t c;
    assert_int_equal(pread(fd, &c, 1, (off_t)off), 1);
    c ^= 0x5a;
    assert_int_equal(pwrite(fd, &c, 1, (off_t)off), 1);
}

/* Damage in a frame is caught by its checksum, and only reads of that frame fail. */
static void test_corrupt_frame(void **state)
{
    (void)state;
    size_t n = 3 * MiB;
    uint8_t *body = make_body(n, 1, 11);
    codec_result res;
    int fd = write_blob(body, n, 1, &res);
    codec_reader *r;
    assert_int_equal(codec_reader_open(&r, fd, res.codec, res.size, res.stored), 0);
    uint8_t *buf = malloc(MiB);
    /* find the second frame's start through a clean reader, then damage its middle */
    flip_byte(fd, res.stored / 2);
    int bad = 0;
    for (uint64_t off = 0; off < n; off += MiB)
        if (codec_reader_read(r, off, buf, MiB) == CODEC_ERR_CORRUPT)
            bad++;
    assert_int_equal(bad, 1);
    assert_int_equal(codec_verify(fd, res.codec, res.size, res.stored, res.sha256),
                     CODEC_ERR_CORRUPT);
    codec_reader_free(r);
    free(buf);
    free(body);
    close(fd);
}

static void test_corrupt_seek_table(void **state)
{
    (void)state;
    size_t n = 2 * MiB;
    uint8_t *body = make_body(n, 1, 13);
    codec_result res;
    int fd = write_blob(body, n, 1, &res);
    codec_reader *r;
    /* wrong expected size */
    assert_int_equal(codec_reader_open(&r, fd, res.codec, res.size + 1, res.stored),
                     CODEC_ERR_CORRUPT);
    /* damaged magic, then damaged frame count */
    flip_byte(fd, res.stored - 1);
    assert_int_equal(codec_reader_open(&r, fd, res.codec, res.size, res.stored), CODEC_ERR_CORRUPT);
    flip_byte(fd, res.stored - 1);
    flip_byte(fd, res.stored - 9);
    assert_int_equal(codec_reader_open(&r, fd, res.codec, res.size, res.stored), CODEC_ERR_CORRUPT);
    flip_byte(fd, res.stored - 9);
    /* a truncated file */
    assert_int_equal(ftruncate(fd, (off_t)res.stored - 3), 0);
    assert_int_equal(codec_reader_open(&r, fd, res.codec, res.size, res.stored - 3),
                     CODEC_ERR_CORRUPT);
    free(body);
    close(fd);
}

/* A body of one frame is read without its seek table: damage to the frame is
 * still caught by the read, damage to the table by a scrub. */
static void test_single_frame(void **state)
{
    (void)state;
    size_t n = 600 * 1024;
    uint8_t *body = make_body(n, 1, 23), *buf = malloc(n);
    codec_result res;
    int fd = write_blob(body, n, 1, &res);
    assert_int_equal(res.codec, CODEC_ZSTD);
    codec_reader *r;
    assert_int_equal(codec_reader_open(&r, fd, res.codec, res.size, res.stored), 0);
    assert_int_equal(codec_reader_read(r, 0, buf, n), (ssize_t)n);
    assert_memory_equal(buf, body, n);
    assert_int_equal(codec_reader_read(r, 1000, buf, 10), 10);
    assert_memory_equal(buf, body + 1000, 10);
    codec_reader_free(r);

    flip_byte(fd, res.stored - 3); /* the seek table's magic */
    assert_int_equal(codec_reader_open(&r, fd, res.codec, res.size, res.stored), 0);
    assert_int_equal(codec_reader_read(r, 0, buf, n), (ssize_t)n); /* reads need no table */
    codec_reader_free(r);
    assert_int_equal(codec_verify(fd, res.codec, res.size, res.stored, res.sha256),
                     CODEC_ERR_CORRUPT);
    flip_byte(fd, res.stored - 3);

    flip_byte(fd, res.stored / 2); /* inside the frame */
    assert_int_equal(codec_reader_open(&r, fd, res.codec, res.size, res.stored), 0);
    assert_int_equal(codec_reader_read(r, 0, buf, n), CODEC_ERR_CORRUPT);
    codec_reader_free(r);
    free(buf);
    free(body);
    close(fd);
}

/* A raw blob whose bytes changed fails a scrub (verify), even though reads
 * cannot notice it. */
static void test_verify_raw(void **state)
{
    (void)state;
    size_t n = MiB + 3;
    uint8_t *body = make_body(n, 0, 17);
    codec_result res;
    int fd = write_blob(body, n, 1, &res);
    assert_int_equal(res.codec, CODEC_RAW);
    assert_int_equal(codec_verify(fd, res.codec, res.size, res.stored, res.sha256), 0);
    flip_byte(fd, 12345);
    assert_int_equal(codec_verify(fd, res.codec, res.size, res.stored, res.sha256),
                     CODEC_ERR_CORRUPT);
    free(body);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes_compressible),
        cmocka_unit_test(test_sizes_random),
        cmocka_unit_test(test_level_zero_is_raw),
        cmocka_unit_test(test_file_is_zstd_stream),
        cmocka_unit_test(test_ranges),
        cmocka_unit_test(test_readahead),
        cmocka_unit_test(test_corrupt_frame),
        cmocka_unit_test(test_single_frame),
        cmocka_unit_test(test_corrupt_seek_table),
        cmocka_unit_test(test_verify_raw),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
