/*
 * test_awschunked.c - unit tests of server/awschunked.c.
 *
 * Groups:
 *   vectors     the two chunked-upload examples of the S3 documentation
 *               (signatures in ../shared/testdata/aws-chunked-example.md and,
 *               for the trailer variant, recomputed with Python's hmac), fed
 *               whole, a byte at a time and in random pieces up to 256 KiB
 *   forms       each of the three forms built here with the signing side of
 *               common/sigv4.c, with client quirks (extensions, hex case,
 *               trailer section without its empty line)
 *   truncation  every prefix of a body of each form fails finish()
 *   tampering   every single-bit change of a signed body is refused
 *   trailers    declared / undeclared / missing / duplicate trailers
 *   hostile     huge sizes, overlong lines and trailers, garbage, missing
 *               CRLF, data after the end; memory stays bounded
 *   api         init checks, sink errors, sticky errors, error mapping
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../../common/sigv4.h"
#include "../../server/awschunked.h"

#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define AMZ_DATE "20130524T000000Z"

/* The example of aws-chunked-example.md: 65536 + 1024 bytes of 'a'. */
#define EX_SEED "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
#define EX_SIG1 "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
#define EX_SIG2 "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"
#define EX_SIG0 "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"

/* Its trailer variant in the S3 documentation ("transfer payload in multiple
 * chunks with trailing headers"): same data, a CRC32C trailer. */
#define TR_SEED "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"
#define TR_SIG1 "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2"
#define TR_SIG2 "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7"
#define TR_SIG0 "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992"
#define TR_TSIG "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435"

#define EX_DECODED 66560

/* ---- Buffers ------------------------------------------------------------------------------ */

typedef struct body {
    char *p;
    size_t len, cap;
} body;

static void body_add(body *b, const void *data, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void body_str(body *b, const char *s)
{
    body_add(b, s, strlen(s));
}

static void body_fill(body *b, char c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        body_add(b, &c, 1);
}

/* ---- Signing side ------------------------------------------------------------------------- */

static void signer_init(sigv4_chunk *c, const char *seed)
{
    unsigned char key[SIGV4_KEY_SIZE];
    char scope[SIGV4_SCOPE_SIZE];

    assert_int_equal(sigv4_derive_key(SECRET, "20130524", "us-east-1", "s3", key), SIGV4_OK);
    assert_int_equal(sigv4_scope("20130524", "us-east-1", "s3", scope), SIGV4_OK);
    assert_int_equal(sigv4_chunk_init(c, key, AMZ_DATE, scope, seed), SIGV4_OK);
}

/* A body of the example documents, with their published signatures. */
static body example_body(int trailer)
{
    body b = {0};

    body_str(&b, trailer ? "10000;chunk-signature=" TR_SIG1 "\r\n"
                         : "10000;chunk-signature=" EX_SIG1 "\r\n");
    body_fill(&b, 'a', 65536);
    body_str(&b, trailer ? "\r\n400;chunk-signature=" TR_SIG2 "\r\n"
                         : "\r\n400;chunk-signature=" EX_SIG2 "\r\n");
    body_fill(&b, 'a', 1024);
    body_str(&b, trailer ? "\r\n0;chunk-signature=" TR_SIG0 "\r\n"
                         : "\r\n0;chunk-signature=" EX_SIG0 "\r\n\r\n");
    if (trailer)
        body_str(&b, "x-amz-checksum-crc32c:sOO8/Q==\r\n"
                     "x-amz-trailer-signature:" TR_TSIG "\r\n\r\n");
    return b;
}

typedef struct form {
    int mode;
    const char *trailer_name;  /* NULL: no trailer */
    const char *trailer_value; /* as sent */
    const char *canonical;     /* what the trailer signature covers; NULL: name:value */
    int hex_upper;             /* "1A" instead of "1a" */
    const char *extension;     /* extra chunk extension, e.g. ";foo=bar" */
    int no_final_crlf;         /* end the trailer section after its last line */
} form;

/* Encodes data in pieces of `chunk` bytes in the given form, signed from
 * seed for the signed modes. */
static body make_body(const form *f, const char *data, size_t len, size_t chunk, const char *seed)
{
    int is_signed = f->mode != AWSCHUNKED_UNSIGNED_TRAILER;
    char line[256], sig[SIGV4_SIG_SIZE];
    body b = {0};
    sigv4_chunk c;
    size_t off = 0;

    if (is_signed)
        signer_init(&c, seed);
    for (;;) {
        size_t n = len - off < chunk ? len - off : chunk;
        if (is_signed) {
            assert_int_equal(sigv4_chunk_update(&c, data + off, n), SIGV4_OK);
            assert_int_equal(sigv4_chunk_finish(&c, sig), SIGV4_OK);
        }
        snprintf(line, sizeof(line), f->hex_upper ? "%zX" : "%zx", n);
        body_str(&b, line);
        if (f->extension != NULL)
            body_str(&b, f->extension);
        if (is_signed) {
            body_str(&b, ";chunk-signature=");
            body_str(&b, sig);
        }
        body_str(&b, "\r\n");
        if (n == 0)
            break;
        body_add(&b, data + off, n);
        body_str(&b, "\r\n");
        off += n;
    }
    if (f->trailer_name != NULL) {
        body_str(&b, f->trailer_name);
        body_str(&b, ":");
        body_str(&b, f->trailer_value);
        body_str(&b, "\r\n");
    }
    if (f->mode == AWSCHUNKED_SIGNED_TRAILER) {
        body canon = {0};
        if (f->canonical != NULL) {
            body_str(&canon, f->canonical);
        } else if (f->trailer_name != NULL) {
            body_str(&canon, f->trailer_name);
            body_str(&canon, ":");
            body_str(&canon, f->trailer_value);
            body_str(&canon, "\n");
        }
        assert_int_equal(sigv4_chunk_trailer(&c, canon.p ? canon.p : "", canon.len, sig), SIGV4_OK);
        body_str(&b, "x-amz-trailer-signature:");
        body_str(&b, sig);
        body_str(&b, "\r\n");
        free(canon.p);
    }
    if (!f->no_final_crlf)
        body_str(&b, "\r\n");
    if (is_signed)
        sigv4_chunk_free(&c);
    return b;
}

/* ---- Decoding side ------------------------------------------------------------------------ */

typedef struct sink_state {
    body out;
    const char *lo, *hi; /* the piece being fed: sink data must point into it */
    int copied;          /* sink data pointed elsewhere */
    long fail_at;        /* make the sink fail once this many bytes arrived; -1 never */
} sink_state;

static int collect(void *ctx, const char *data, size_t len)
{
    sink_state *s = ctx;

    assert_true(len > 0);
    if (data < s->lo || data + len > s->hi)
        s->copied = 1;
    body_add(&s->out, data, len);
    return s->fail_at >= 0 && (long)s->out.len >= s->fail_at;
}

enum { SPLIT_WHOLE, SPLIT_BYTES, SPLIT_RANDOM };

static uint32_t rng_state = 2024;

static uint32_t rng(void)
{
    rng_state = rng_state * 1103515245u + 12345u;
    return rng_state >> 8;
}

/* Size of the next piece: 1 byte up to 256 KiB, small pieces often. */
static size_t random_piece(void)
{
    static const size_t max[] = {1, 3, 17, 100, 4096, 70000, 262144};
    return 1 + rng() % max[rng() % (sizeof(max) / sizeof(max[0]))];
}

typedef struct result {
    int feed_rc;   /* first error of feed, or OK */
    int finish_rc; /* finish() */
    sink_state sink;
    awschunked d; /* after finish, before free (buffers released) */
} result;

/* Decodes b with a fresh decoder, split as asked. The result's output must
 * be freed by the caller (result_free). */
static result decode(const char *p, size_t len, int mode, const char *seed, const char *declared,
                     int split)
{
    sigv4_chunk c;
    result r;
    size_t off = 0;

    memset(&r, 0, sizeof(r));
    r.sink.fail_at = -1;
    if (mode != AWSCHUNKED_UNSIGNED_TRAILER)
        signer_init(&c, seed);
    assert_int_equal(
        awschunked_init(&r.d, mode, mode != AWSCHUNKED_UNSIGNED_TRAILER ? &c : NULL, declared),
        AWSCHUNKED_OK);
    while (off < len && r.feed_rc == AWSCHUNKED_OK) {
        size_t n = split == SPLIT_WHOLE ? len - off : split == SPLIT_BYTES ? 1 : random_piece();
        if (n > len - off)
            n = len - off;
        r.sink.lo = p + off;
        r.sink.hi = p + off + n;
        r.feed_rc = awschunked_feed(&r.d, p + off, n, collect, &r.sink);
        off += n;
    }
    r.finish_rc = awschunked_finish(&r.d);
    assert_true(r.d.line_cap <= AWSCHUNKED_MAX_LINE);
    assert_true(r.d.canon_cap <= AWSCHUNKED_MAX_TRAILER);
    awschunked_free(&r.d);
    if (mode != AWSCHUNKED_UNSIGNED_TRAILER)
        sigv4_chunk_free(&c);
    return r;
}

static void result_free(result *r)
{
    free(r->sink.out.p);
}

static void expect_ok(const body *b, int mode, const char *seed, const char *declared,
                      const char *data, size_t len)
{
    for (int split = SPLIT_WHOLE; split <= SPLIT_RANDOM; split++) {
        int rounds = split == SPLIT_RANDOM ? 8 : 1;
        for (int i = 0; i < rounds; i++) {
            result r = decode(b->p, b->len, mode, seed, declared, split);
            assert_int_equal(r.feed_rc, AWSCHUNKED_OK);
            assert_int_equal(r.finish_rc, AWSCHUNKED_OK);
            assert_int_equal(r.sink.out.len, len);
            assert_int_equal(awschunked_decoded(&r.d), len);
            if (len > 0)
                assert_memory_equal(r.sink.out.p, data, len);
            assert_false(r.sink.copied);
            result_free(&r);
        }
    }
}

/* Feed everything, return the first error (feed or finish). */
static int decode_rc(const char *p, size_t len, int mode, const char *seed, const char *declared)
{
    result r = decode(p, len, mode, seed, declared, SPLIT_WHOLE);
    int rc = r.feed_rc != AWSCHUNKED_OK ? r.feed_rc : r.finish_rc;

    if (r.feed_rc != AWSCHUNKED_OK)
        assert_int_equal(r.finish_rc, r.feed_rc); /* sticky */
    result_free(&r);
    return rc;
}

static int unsigned_rc(const char *s, const char *declared)
{
    return decode_rc(s, strlen(s), AWSCHUNKED_UNSIGNED_TRAILER, NULL, declared);
}

static char *payload(size_t n)
{
    char *p = malloc(n + 1);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (char)(rng() & 0xff);
    return p;
}

/* ---- Vectors ------------------------------------------------------------------------------ */

static void test_example_signed(void **state)
{
    body b = example_body(0);
    char *data = malloc(EX_DECODED);

    (void)state;
    memset(data, 'a', EX_DECODED);
    assert_int_equal(b.len, 66824); /* the example's Content-Length */
    expect_ok(&b, AWSCHUNKED_SIGNED, EX_SEED, NULL, data, EX_DECODED);

    /* A wrong seed: the first chunk is refused. */
    assert_int_equal(decode_rc(b.p, b.len, AWSCHUNKED_SIGNED, TR_SEED, NULL),
                     AWSCHUNKED_ERR_SIGNATURE_MISMATCH);
    free(data);
    free(b.p);
}

static void test_example_trailer(void **state)
{
    body b = example_body(1);
    char *data = malloc(EX_DECODED);
    const char *name, *value;
    result r;

    (void)state;
    memset(data, 'a', EX_DECODED);
    expect_ok(&b, AWSCHUNKED_SIGNED_TRAILER, TR_SEED, "x-amz-checksum-crc32c", data, EX_DECODED);
    expect_ok(&b, AWSCHUNKED_SIGNED_TRAILER, TR_SEED, NULL, data, EX_DECODED);

    r = decode(b.p, b.len, AWSCHUNKED_SIGNED_TRAILER, TR_SEED, "x-amz-checksum-crc32c",
               SPLIT_WHOLE);
    assert_int_equal(r.finish_rc, AWSCHUNKED_OK);
    assert_int_equal(awschunked_trailer_checksum(&r.d, &name, &value), 1);
    assert_string_equal(name, "x-amz-checksum-crc32c");
    assert_string_equal(value, "sOO8/Q==");
    assert_int_equal(r.d.chunks, 3);
    result_free(&r);

    /* Read as the non-trailer form, the trailer is refused. */
    assert_int_equal(decode_rc(b.p, b.len, AWSCHUNKED_SIGNED, TR_SEED, NULL),
                     AWSCHUNKED_ERR_UNEXPECTED_TRAILER);
    free(data);
    free(b.p);
}

/* Flipped bytes in the example: in data, in a chunk signature, in the final
 * chunk's signature, in the trailer value, in the trailer signature. */
static void test_example_tampered(void **state)
{
    body b = example_body(1);
    size_t sig1 = strlen("10000;chunk-signature=");
    size_t data = strlen("10000;chunk-signature=" TR_SIG1 "\r\n");
    char *p;
    struct {
        const char *where;
        size_t off;
        char to;
        int want;
    } cases[] = {
        {"data", data + 1000, 'b', AWSCHUNKED_ERR_SIGNATURE_MISMATCH},
        {"last data byte", data + 65535, 'b', AWSCHUNKED_ERR_SIGNATURE_MISMATCH},
        {"chunk signature", sig1 + 5, '0', AWSCHUNKED_ERR_SIGNATURE_MISMATCH},
        {"chunk signature not hex", sig1 + 5, 'g', AWSCHUNKED_ERR_BAD_SIGNATURE},
        {"final signature", 0, '0', AWSCHUNKED_ERR_SIGNATURE_MISMATCH},
        {"trailer value", 0, 'X', AWSCHUNKED_ERR_TRAILER_SIG_MISMATCH},
        {"trailer signature", 0, '0', AWSCHUNKED_ERR_TRAILER_SIG_MISMATCH},
    };

    (void)state;
    cases[4].off = (size_t)(strstr(b.p, TR_SIG0) - b.p) + 10;
    cases[5].off = (size_t)(strstr(b.p, "sOO8") - b.p) + 1;
    cases[6].off = (size_t)(strstr(b.p, TR_TSIG) - b.p) + 63;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        p = malloc(b.len);
        memcpy(p, b.p, b.len);
        assert_true(p[cases[i].off] != cases[i].to);
        p[cases[i].off] = cases[i].to;
        print_message("[   INFO   ] tampered %s\n", cases[i].where);
        assert_int_equal(decode_rc(p, b.len, AWSCHUNKED_SIGNED_TRAILER, TR_SEED, NULL),
                         cases[i].want);
        free(p);
    }
    free(b.p);
}

/* ---- Forms --------------------------------------------------------------------------------- */

static void test_forms(void **state)
{
    const size_t sizes[] = {0, 1, 100, 8192, 70001};
    const form forms[] = {
        {AWSCHUNKED_SIGNED, NULL, NULL, NULL, 0, NULL, 0},
        {AWSCHUNKED_SIGNED, NULL, NULL, NULL, 1, ";foo=bar;baz", 0},
        {AWSCHUNKED_SIGNED_TRAILER, "x-amz-checksum-crc32", "NhCmhg==", NULL, 0, NULL, 0},
        {AWSCHUNKED_SIGNED_TRAILER, "x-amz-checksum-crc32", "NhCmhg==", NULL, 1, NULL, 1},
        {AWSCHUNKED_UNSIGNED_TRAILER, "x-amz-checksum-crc64nvme", "rosUhgp5mIg=", NULL, 0, NULL, 0},
        {AWSCHUNKED_UNSIGNED_TRAILER, "x-amz-checksum-sha256",
         "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", NULL, 1, ";ext=1", 1},
        /* any case and blanks: the signature covers the canonical form */
        {AWSCHUNKED_SIGNED_TRAILER, "X-Amz-Checksum-CRC32C ",
         " wdBDMA== ", "x-amz-checksum-crc32c:wdBDMA==\n", 0, NULL, 0},
    };

    (void)state;
    for (size_t f = 0; f < sizeof(forms) / sizeof(forms[0]); f++) {
        for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
            char *data = payload(sizes[s]);
            size_t chunk = sizes[s] > 8192 ? 8192 : sizes[s] > 0 ? sizes[s] : 1;
            body b = make_body(&forms[f], data, sizes[s], chunk, EX_SEED);
            const char *declared = forms[f].trailer_name;
            const char *name, *value;
            result r;

            expect_ok(&b, forms[f].mode, EX_SEED, declared, data, sizes[s]);
            expect_ok(&b, forms[f].mode, EX_SEED, NULL, data, sizes[s]);
            r = decode(b.p, b.len, forms[f].mode, EX_SEED, declared, SPLIT_BYTES);
            assert_int_equal(r.finish_rc, AWSCHUNKED_OK);
            if (forms[f].trailer_name != NULL) {
                assert_int_equal(awschunked_trailer_checksum(&r.d, &name, &value), 1);
                assert_non_null(strstr(forms[f].trailer_value, value));
                assert_int_equal(value[0] == ' ' || value[strlen(value) - 1] == ' ', 0);
                assert_int_equal(strncmp(name, "x-amz-checksum-", 15), 0);
                /* the name as sent, lowercased and trimmed */
                assert_int_equal(strncasecmp(name, forms[f].trailer_name, strlen(name)), 0);
                for (const char *q = name; *q; q++)
                    assert_false(*q >= 'A' && *q <= 'Z');
            } else {
                assert_int_equal(awschunked_trailer_checksum(&r.d, &name, &value), 0);
                assert_null(name);
            }
            result_free(&r);
            free(b.p);
            free(data);
        }
    }
}

/* Trailer names and values come back lowercased and trimmed. */
static void test_trailer_checksum(void **state)
{
    const char *name, *value;
    result r;
    const char *s = "5\r\nhello\r\n0\r\nX-Amz-Checksum-CRC32 :  NhCmhg==\t\r\n\r\n";

    (void)state;
    r = decode(s, strlen(s), AWSCHUNKED_UNSIGNED_TRAILER, NULL, "x-amz-checksum-crc32",
               SPLIT_BYTES);
    assert_int_equal(r.finish_rc, AWSCHUNKED_OK);
    assert_int_equal(awschunked_trailer_checksum(&r.d, &name, &value), 1);
    assert_string_equal(name, "x-amz-checksum-crc32");
    assert_string_equal(value, "NhCmhg==");
    assert_int_equal(r.sink.out.len, 5);
    assert_memory_equal(r.sink.out.p, "hello", 5);
    result_free(&r);

    /* other trailers are accepted when nothing is declared, not kept */
    s = "0\r\nx-amz-meta-foo:bar\r\n\r\n";
    r = decode(s, strlen(s), AWSCHUNKED_UNSIGNED_TRAILER, NULL, NULL, SPLIT_WHOLE);
    assert_int_equal(r.finish_rc, AWSCHUNKED_OK);
    assert_int_equal(awschunked_trailer_checksum(&r.d, &name, &value), 0);
    result_free(&r);
}

/* What real clients send, hand-written. */
static void test_client_quirks(void **state)
{
    (void)state;
    /* JS SDK v3 / botocore unsigned trailer */
    assert_int_equal(unsigned_rc("5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n",
                                 "x-amz-checksum-crc32"),
                     AWSCHUNKED_OK);
    /* trailer section ended by the last trailer line's CRLF alone */
    assert_int_equal(
        unsigned_rc("5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n", "x-amz-checksum-crc32"),
        AWSCHUNKED_OK);
    /* hex case, leading zeros, blanks and extensions */
    assert_int_equal(unsigned_rc("0000A\r\n0123456789\r\n1a \r\nabcdefghijklmnopqrstuvwxyz\r\n"
                                 "0;foo\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n",
                                 NULL),
                     AWSCHUNKED_OK);
    assert_int_equal(unsigned_rc("1A;name=value;other\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n"
                                 "x-amz-checksum-crc32:NhCmhg==\r\n\r\n",
                                 NULL),
                     AWSCHUNKED_OK);
    /* a chunk-signature in the unsigned form is ignored */
    assert_int_equal(unsigned_rc("1;chunk-signature=zz\r\na\r\n0\r\nx:y\r\n\r\n", NULL),
                     AWSCHUNKED_OK);
    /* no trailer at all, with the empty line */
    assert_int_equal(unsigned_rc("1\r\na\r\n0\r\n\r\n", NULL), AWSCHUNKED_OK);
}

/* ---- Truncation ------------------------------------------------------------------------------ */

/* Every prefix fails finish() with IncompleteBody; the only exception is the
 * prefix without the final empty line of a trailer section (tolerated). */
static void check_truncations(const body *b, int mode, const char *declared, int tolerant)
{
    for (size_t cut = 0; cut < b->len; cut++) {
        result r = decode(b->p, cut, mode, EX_SEED, declared, cut % 2 ? SPLIT_RANDOM : SPLIT_WHOLE);
        assert_int_equal(r.feed_rc, AWSCHUNKED_OK);
        if (tolerant && cut == b->len - 2)
            assert_int_equal(r.finish_rc, AWSCHUNKED_OK);
        else
            assert_int_equal(r.finish_rc, AWSCHUNKED_ERR_TRUNCATED);
        result_free(&r);
    }
}

static void test_truncation(void **state)
{
    const form signed_form = {AWSCHUNKED_SIGNED, NULL, NULL, NULL, 0, NULL, 0};
    const form signed_trailer = {
        AWSCHUNKED_SIGNED_TRAILER, "x-amz-checksum-crc32", "NhCmhg==", NULL, 0, NULL, 0};
    const form unsigned_trailer = {
        AWSCHUNKED_UNSIGNED_TRAILER, "x-amz-checksum-crc32", "NhCmhg==", NULL, 0, NULL, 0};
    char *data = payload(150);
    body b;

    (void)state;
    b = make_body(&signed_form, data, 150, 100, EX_SEED);
    check_truncations(&b, AWSCHUNKED_SIGNED, NULL, 0);
    free(b.p);
    b = make_body(&signed_trailer, data, 150, 100, EX_SEED);
    check_truncations(&b, AWSCHUNKED_SIGNED_TRAILER, "x-amz-checksum-crc32", 1);
    free(b.p);
    b = make_body(&unsigned_trailer, data, 150, 100, EX_SEED);
    check_truncations(&b, AWSCHUNKED_UNSIGNED_TRAILER, "x-amz-checksum-crc32", 1);
    free(b.p);
    free(data);
}

/* The example itself, cut around every boundary and at random places. */
static void test_truncation_example(void **state)
{
    body b = example_body(1);

    (void)state;
    for (size_t cut = 0; cut < b.len;
         cut += (cut < 200 || b.len - cut < 400) ? 1 : 997 + rng() % 64) {
        result r = decode(b.p, cut, AWSCHUNKED_SIGNED_TRAILER, TR_SEED, NULL, SPLIT_WHOLE);
        assert_int_equal(r.feed_rc, AWSCHUNKED_OK);
        assert_int_equal(r.finish_rc, cut == b.len - 2 ? AWSCHUNKED_OK : AWSCHUNKED_ERR_TRUNCATED);
        result_free(&r);
    }
    free(b.p);
}

/* ---- Tampering ------------------------------------------------------------------------------- */

/* Is flipping bit `bit` of p[i] a mere change of case in a part that is
 * case-insensitive: a hex size, a chunk extension name, a trailer name
 * (before the first '=' or ':' of a line)? */
static int case_only(const char *p, size_t i, int bit)
{
    size_t start = i;

    if (bit != 5 || !((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z')))
        return 0;
    while (start > 0 && p[start - 1] != '\n')
        start--;
    for (size_t k = start; k < i; k++)
        if (p[k] == '=' || p[k] == ':')
            return 0;
    return 1;
}

/* Any single-bit change anywhere in a signed body is refused, but for
 * changes of case where case does not matter. */
static void test_every_bit_flip(void **state)
{
    const form forms[] = {
        {AWSCHUNKED_SIGNED, NULL, NULL, NULL, 0, NULL, 0},
        {AWSCHUNKED_SIGNED_TRAILER, "x-amz-checksum-crc32", "NhCmhg==", NULL, 0, NULL, 0},
    };
    char *data = payload(40);
    int accepted = 0, refused = 0;

    (void)state;
    for (size_t f = 0; f < 2; f++) {
        body b = make_body(&forms[f], data, 40, 25, EX_SEED);
        char *p = malloc(b.len);

        for (size_t i = 0; i < b.len; i++) {
            for (int bit = 0; bit < 8; bit++) {
                int rc1, rc2;

                memcpy(p, b.p, b.len);
                p[i] ^= (char)(1 << bit);
                rc1 = decode_rc(p, b.len, forms[f].mode, EX_SEED, NULL);
                rc2 = decode_rc(p, b.len, forms[f].mode, EX_SEED, forms[f].trailer_name);
                if (rc1 == AWSCHUNKED_OK || rc2 == AWSCHUNKED_OK) {
                    if (!case_only(b.p, i, bit))
                        fprintf(stderr, "accepted flip at %zu bit %d of %zu: %02x ctx [%.*s]\n", i,
                                bit, b.len, (unsigned char)b.p[i], 30, b.p + (i > 15 ? i - 15 : 0));
                    assert_true(case_only(b.p, i, bit));
                    accepted++;
                } else {
                    refused++;
                }
            }
        }
        free(p);
        free(b.p);
    }
    print_message("[   INFO   ] %d bit flips refused, %d case changes accepted\n", refused,
                  accepted);
    free(data);
}

/* ---- Trailers -------------------------------------------------------------------------------- */

static void test_trailer_rules(void **state)
{
    const char *crc = "0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n";

    (void)state;
    assert_int_equal(unsigned_rc(crc, "x-amz-checksum-crc32"), AWSCHUNKED_OK);
    assert_int_equal(unsigned_rc(crc, "X-AMZ-CHECKSUM-CRC32"), AWSCHUNKED_OK);
    assert_int_equal(unsigned_rc(crc, "x-amz-checksum-sha256"), AWSCHUNKED_ERR_UNEXPECTED_TRAILER);
    assert_int_equal(unsigned_rc(crc, "x-amz-checksum-crc32,x-amz-checksum-sha1"),
                     AWSCHUNKED_ERR_MISSING_TRAILER);
    assert_int_equal(unsigned_rc("0\r\n\r\n", "x-amz-checksum-crc32"),
                     AWSCHUNKED_ERR_MISSING_TRAILER);
    assert_int_equal(unsigned_rc("0\r\nx-amz-checksum-crc32:NhCmhg==\r\n"
                                 "x-amz-checksum-crc32:NhCmhg==\r\n\r\n",
                                 "x-amz-checksum-crc32"),
                     AWSCHUNKED_ERR_DUPLICATE_TRAILER);
    assert_int_equal(unsigned_rc("0\r\nx-amz-checksum-crc32:NhCmhg==\r\n"
                                 "x-amz-checksum-sha1:2jmj7l5rSw0yVb/vlWAYkK/YBwk=\r\n\r\n",
                                 NULL),
                     AWSCHUNKED_ERR_DUPLICATE_TRAILER);
    /* two declared, both sent: fine */
    assert_int_equal(unsigned_rc("0\r\nx-amz-checksum-crc32:NhCmhg==\r\nx-amz-meta-a:b\r\n\r\n",
                                 "x-amz-checksum-crc32, x-amz-meta-a"),
                     AWSCHUNKED_OK);
    /* malformed lines */
    assert_int_equal(unsigned_rc("0\r\nx-amz-checksum-crc32 NhCmhg==\r\n\r\n", NULL),
                     AWSCHUNKED_ERR_MALFORMED_TRAILER);
    assert_int_equal(unsigned_rc("0\r\n:NhCmhg==\r\n\r\n", NULL), AWSCHUNKED_ERR_MALFORMED_TRAILER);
    assert_int_equal(unsigned_rc("0\r\nx amz:1\r\n\r\n", NULL), AWSCHUNKED_ERR_MALFORMED_TRAILER);
    assert_int_equal(unsigned_rc("0\r\nx-amz-a:1\x01\r\n\r\n", NULL),
                     AWSCHUNKED_ERR_MALFORMED_TRAILER);
    /* trailer lines may end in a bare LF (minio-go's checksum trailer does) */
    assert_int_equal(unsigned_rc("0\r\nx-amz-a:1\r\n\n", NULL), AWSCHUNKED_OK);
    assert_int_equal(unsigned_rc("0\r\nx-amz-a:1\n\r\n", NULL), AWSCHUNKED_OK);
    assert_int_equal(unsigned_rc("0\r\nx-amz-a:1 \n\r\n", NULL), AWSCHUNKED_ERR_BAD_LINE_END);
    /* a trailer signature has no place in the unsigned form */
    assert_int_equal(unsigned_rc("0\r\nx-amz-trailer-signature:" EX_SEED "\r\n\r\n", NULL),
                     AWSCHUNKED_ERR_UNEXPECTED_TRAILER);
    /* the declared list is bounded */
    {
        awschunked d;
        assert_int_equal(
            awschunked_init(&d, AWSCHUNKED_UNSIGNED_TRAILER, NULL, "a,b,c,d,e,f,g,h,i"),
            AWSCHUNKED_ERR_MALFORMED_TRAILER);
        assert_int_equal(awschunked_init(&d, AWSCHUNKED_UNSIGNED_TRAILER, NULL, "a b"),
                         AWSCHUNKED_ERR_MALFORMED_TRAILER);
        assert_int_equal(awschunked_init(&d, AWSCHUNKED_UNSIGNED_TRAILER, NULL, " , "),
                         AWSCHUNKED_OK);
        awschunked_free(&d);
    }
}

/* Signed trailer form: the signature line is required, comes last, and
 * covers every trailer before it. */
static void test_signed_trailer_rules(void **state)
{
    const form no_sig_checksum = {AWSCHUNKED_SIGNED_TRAILER, NULL, NULL, NULL, 0, NULL, 0};
    const form wrong_canon = {AWSCHUNKED_SIGNED_TRAILER,
                              "x-amz-checksum-crc32",
                              "NhCmhg==",
                              "x-amz-checksum-crc32:NhCmhg==",
                              0,
                              NULL,
                              0};
    body b, tail = {0};
    char *p;

    (void)state;
    /* signature of no trailers at all */
    b = make_body(&no_sig_checksum, "abc", 3, 3, EX_SEED);
    assert_int_equal(decode_rc(b.p, b.len, AWSCHUNKED_SIGNED_TRAILER, EX_SEED, NULL),
                     AWSCHUNKED_OK);
    assert_int_equal(
        decode_rc(b.p, b.len, AWSCHUNKED_SIGNED_TRAILER, EX_SEED, "x-amz-checksum-crc32"),
        AWSCHUNKED_ERR_MISSING_TRAILER);
    free(b.p);

    /* the trailer signature must cover "name:value\n" (with the newline) */
    b = make_body(&wrong_canon, "abc", 3, 3, EX_SEED);
    assert_int_equal(decode_rc(b.p, b.len, AWSCHUNKED_SIGNED_TRAILER, EX_SEED, NULL),
                     AWSCHUNKED_ERR_TRAILER_SIG_MISMATCH);
    free(b.p);

    /* without the signature line */
    b = example_body(1);
    p = strstr(b.p, "x-amz-trailer-signature");
    body_add(&tail, b.p, (size_t)(p - b.p));
    assert_int_equal(decode_rc(tail.p, tail.len, AWSCHUNKED_SIGNED_TRAILER, TR_SEED, NULL),
                     AWSCHUNKED_ERR_TRUNCATED);
    body_str(&tail, "\r\n"); /* a blank line: only the signature may follow (minio-go) */
    assert_int_equal(decode_rc(tail.p, tail.len, AWSCHUNKED_SIGNED_TRAILER, TR_SEED, NULL),
                     AWSCHUNKED_ERR_TRUNCATED);
    body_str(&tail, "\r\n");
    assert_int_equal(decode_rc(tail.p, tail.len, AWSCHUNKED_SIGNED_TRAILER, TR_SEED, NULL),
                     AWSCHUNKED_ERR_MISSING_TRAILER_SIG);
    /* a trailer after the signature line */
    tail.len = 0;
    body_add(&tail, b.p, b.len - 2);
    body_str(&tail, "x-amz-meta-late:1\r\n\r\n");
    assert_int_equal(decode_rc(tail.p, tail.len, AWSCHUNKED_SIGNED_TRAILER, TR_SEED, NULL),
                     AWSCHUNKED_ERR_MALFORMED_TRAILER);
    free(tail.p);
    free(b.p);
}

/* ---- Hostile input ------------------------------------------------------------------------- */

static void test_hostile_sizes(void **state)
{
    (void)state;
    assert_int_equal(unsigned_rc("ffffffffffffffffffffffff\r\n", NULL),
                     AWSCHUNKED_ERR_CHUNK_TOO_LARGE);
    assert_int_equal(unsigned_rc("4000001\r\n", NULL), AWSCHUNKED_ERR_CHUNK_TOO_LARGE);
    assert_int_equal(unsigned_rc("4000000\r\n", NULL), AWSCHUNKED_ERR_TRUNCATED); /* 64 MiB ok */
    assert_int_equal(unsigned_rc("-1\r\n", NULL), AWSCHUNKED_ERR_BAD_CHUNK_SIZE);
    assert_int_equal(unsigned_rc("0x10\r\n", NULL), AWSCHUNKED_ERR_BAD_CHUNK_SIZE);
    assert_int_equal(unsigned_rc(" 5\r\nhello\r\n", NULL), AWSCHUNKED_ERR_BAD_CHUNK_SIZE);
    assert_int_equal(unsigned_rc("5 5\r\nhello\r\n", NULL), AWSCHUNKED_ERR_BAD_CHUNK_SIZE);
    assert_int_equal(unsigned_rc("\r\n", NULL), AWSCHUNKED_ERR_BAD_CHUNK_SIZE);
    assert_int_equal(unsigned_rc(";chunk-signature=x\r\n", NULL), AWSCHUNKED_ERR_BAD_CHUNK_SIZE);
    /* the size lies: more data than announced, or less */
    assert_int_equal(unsigned_rc("4\r\nhello\r\n0\r\n\r\n", NULL), AWSCHUNKED_ERR_BAD_DATA_END);
    assert_int_equal(unsigned_rc("6\r\nhello\r\n0\r\n\r\n", NULL), AWSCHUNKED_ERR_BAD_DATA_END);
}

static void test_hostile_lines(void **state)
{
    body b = {0};
    result r;

    (void)state;
    /* A header line of exactly AWSCHUNKED_MAX_LINE bytes (CRLF included) is
     * accepted, one byte more is not, whole or byte by byte. */
    body_str(&b, "1;x=");
    body_fill(&b, 'y', AWSCHUNKED_MAX_LINE - 6);
    body_str(&b, "\r\na\r\n0\r\n\r\n");
    assert_int_equal(unsigned_rc(b.p, NULL), AWSCHUNKED_OK);
    r = decode(b.p, b.len, AWSCHUNKED_UNSIGNED_TRAILER, NULL, NULL, SPLIT_BYTES);
    assert_int_equal(r.finish_rc, AWSCHUNKED_OK);
    result_free(&r);
    b.len = 0;
    body_str(&b, "1;x=");
    body_fill(&b, 'y', AWSCHUNKED_MAX_LINE - 5);
    body_str(&b, "\r\na\r\n0\r\n\r\n");
    assert_int_equal(unsigned_rc(b.p, NULL), AWSCHUNKED_ERR_LINE_TOO_LONG);
    r = decode(b.p, b.len, AWSCHUNKED_UNSIGNED_TRAILER, NULL, NULL, SPLIT_BYTES);
    assert_int_equal(r.feed_rc, AWSCHUNKED_ERR_LINE_TOO_LONG);
    result_free(&r);

    /* A line that never ends fails as soon as it is too long, not at the end. */
    b.len = 0;
    body_fill(&b, '1', 1 << 20);
    assert_int_equal(unsigned_rc(b.p, NULL), AWSCHUNKED_ERR_LINE_TOO_LONG);

    /* Trailer lines too long, trailer section too long. */
    b.len = 0;
    body_str(&b, "0\r\nx-amz-meta-a:");
    body_fill(&b, 'v', AWSCHUNKED_MAX_LINE);
    body_str(&b, "\r\n\r\n");
    assert_int_equal(unsigned_rc(b.p, NULL), AWSCHUNKED_ERR_TRAILER_TOO_LONG);
    b.len = 0;
    body_str(&b, "0\r\n");
    for (int i = 0; i < 5; i++) {
        char name[32];
        snprintf(name, sizeof(name), "x-amz-meta-%d:", i);
        body_str(&b, name);
        body_fill(&b, 'v', 3500);
        body_str(&b, "\r\n");
    }
    body_str(&b, "\r\n");
    assert_int_equal(unsigned_rc(b.p, NULL), AWSCHUNKED_ERR_TRAILER_TOO_LONG);
    r = decode(b.p, b.len, AWSCHUNKED_UNSIGNED_TRAILER, NULL, NULL, SPLIT_RANDOM);
    assert_int_equal(r.feed_rc, AWSCHUNKED_ERR_TRAILER_TOO_LONG);
    result_free(&r);
    free(b.p);
}

static void test_hostile_framing(void **state)
{
    (void)state;
    /* missing or broken CRLF */
    assert_int_equal(unsigned_rc("5\nhello\r\n0\r\n\r\n", NULL), AWSCHUNKED_ERR_BAD_LINE_END);
    assert_int_equal(unsigned_rc("5\r\nhello0\r\n\r\n", NULL), AWSCHUNKED_ERR_BAD_DATA_END);
    assert_int_equal(unsigned_rc("5\r\nhello\n0\r\n\r\n", NULL), AWSCHUNKED_ERR_BAD_DATA_END);
    assert_int_equal(unsigned_rc("5\r\nhello\r0\r\n\r\n", NULL), AWSCHUNKED_ERR_BAD_DATA_END);
    assert_int_equal(unsigned_rc("5\r\nhello\r\n0\r\n\n", NULL), AWSCHUNKED_OK); /* bare LF */
    assert_int_equal(unsigned_rc("5\r\nhello\r\n0\r\n\r", NULL), AWSCHUNKED_ERR_TRUNCATED);
    assert_int_equal(unsigned_rc("5\r\nhello\r\n0\r\n", NULL), AWSCHUNKED_ERR_TRUNCATED);
    assert_int_equal(unsigned_rc("5\r\nhello\r\n", NULL), AWSCHUNKED_ERR_TRUNCATED);
    assert_int_equal(unsigned_rc("", NULL), AWSCHUNKED_ERR_TRUNCATED);
    /* bytes after the end */
    assert_int_equal(unsigned_rc("5\r\nhello\r\n0\r\n\r\nX", NULL), AWSCHUNKED_ERR_TRAILING_DATA);
    assert_int_equal(unsigned_rc("0\r\n\r\n\r\n", NULL), AWSCHUNKED_ERR_TRAILING_DATA);
    assert_int_equal(unsigned_rc("0\r\n\r\n0\r\n\r\n", NULL), AWSCHUNKED_ERR_TRAILING_DATA);
    /* plain text and binary garbage */
    assert_int_equal(unsigned_rc("hello world\r\n", NULL), AWSCHUNKED_ERR_BAD_CHUNK_SIZE);
    assert_int_equal(unsigned_rc("<?xml version=\"1.0\"?>\r\n", NULL),
                     AWSCHUNKED_ERR_BAD_CHUNK_SIZE);
    for (int round = 0; round < 2000; round++) {
        size_t n = 1 + rng() % 600;
        char *p = payload(n);
        result r = decode(p, n, AWSCHUNKED_UNSIGNED_TRAILER, NULL, NULL, SPLIT_RANDOM);
        assert_int_not_equal(r.finish_rc, AWSCHUNKED_OK);
        result_free(&r);
        r = decode(p, n, AWSCHUNKED_SIGNED, EX_SEED, NULL, SPLIT_RANDOM);
        assert_int_not_equal(r.finish_rc, AWSCHUNKED_OK);
        result_free(&r);
        free(p);
    }
}

/* Signed forms: the chunk-signature extension is required and well-formed. */
static void test_hostile_signatures(void **state)
{
    const char *sig64 = EX_SIG1;
    char buf[512];

    (void)state;
    assert_int_equal(decode_rc("1\r\na\r\n", 6, AWSCHUNKED_SIGNED, EX_SEED, NULL),
                     AWSCHUNKED_ERR_MISSING_SIGNATURE);
    assert_int_equal(decode_rc("1;chunk-signature\r\na\r\n", 22, AWSCHUNKED_SIGNED, EX_SEED, NULL),
                     AWSCHUNKED_ERR_BAD_SIGNATURE);
    assert_int_equal(
        decode_rc("1;chunk-signature=abc\r\na\r\n", 26, AWSCHUNKED_SIGNED, EX_SEED, NULL),
        AWSCHUNKED_ERR_BAD_SIGNATURE);
    snprintf(buf, sizeof(buf), "1;chunk-signature=%s;chunk-signature=%s\r\na\r\n", sig64, sig64);
    assert_int_equal(decode_rc(buf, strlen(buf), AWSCHUNKED_SIGNED, EX_SEED, NULL),
                     AWSCHUNKED_ERR_BAD_SIGNATURE);
    snprintf(buf, sizeof(buf), "1;chunk-signature=%s0\r\na\r\n", sig64);
    assert_int_equal(decode_rc(buf, strlen(buf), AWSCHUNKED_SIGNED, EX_SEED, NULL),
                     AWSCHUNKED_ERR_BAD_SIGNATURE);
    /* well-formed but wrong: found when the chunk's data is complete */
    snprintf(buf, sizeof(buf), "1;chunk-signature=%s\r\na", sig64);
    assert_int_equal(decode_rc(buf, strlen(buf), AWSCHUNKED_SIGNED, EX_SEED, NULL),
                     AWSCHUNKED_ERR_SIGNATURE_MISMATCH);
    snprintf(buf, sizeof(buf), "0;chunk-signature=%s\r\n\r\n", sig64);
    assert_int_equal(decode_rc(buf, strlen(buf), AWSCHUNKED_SIGNED, EX_SEED, NULL),
                     AWSCHUNKED_ERR_SIGNATURE_MISMATCH);
}

/* ---- API ------------------------------------------------------------------------------------- */

static int failing_sink(void *ctx, const char *data, size_t len)
{
    (void)data;
    (void)len;
    return ++*(int *)ctx >= 2;
}

/* Without a signer (authentication off), signed bodies decode with their
 * signatures ignored, and the framing is still enforced. */
static int unverified_rc(const char *p, size_t len, int mode, const char *declared)
{
    awschunked d;
    int rc = awschunked_init_unverified(&d, mode, declared);
    if (rc == AWSCHUNKED_OK)
        rc = awschunked_feed(&d, p, len, NULL, NULL);
    if (rc == AWSCHUNKED_OK)
        rc = awschunked_finish(&d);
    if (rc == AWSCHUNKED_OK)
        assert_int_equal(awschunked_decoded(&d), EX_DECODED);
    awschunked_free(&d);
    return rc;
}

static void test_unverified(void **state)
{
    (void)state;
    for (int trailer = 0; trailer < 2; trailer++) {
        int mode = trailer ? AWSCHUNKED_SIGNED_TRAILER : AWSCHUNKED_SIGNED;
        body b = example_body(trailer);
        assert_int_equal(unverified_rc(b.p, b.len, mode, NULL), AWSCHUNKED_OK);
        char *sig = strstr(b.p, "chunk-signature=") + strlen("chunk-signature=");
        sig[3] ^= 1; /* a wrong signature is not checked */
        assert_int_equal(unverified_rc(b.p, b.len, mode, NULL), AWSCHUNKED_OK);
        assert_int_equal(unverified_rc(b.p, b.len - 7, mode, NULL), AWSCHUNKED_ERR_TRUNCATED);
        free(b.p);
    }
    awschunked d;
    assert_int_equal(awschunked_init_unverified(&d, 42, NULL), AWSCHUNKED_ERR_INVALID_ARG);
    awschunked_free(&d);
    assert_int_equal(awschunked_init_unverified(&d, AWSCHUNKED_SIGNED, "x-amz-checksum-crc32"),
                     AWSCHUNKED_ERR_UNEXPECTED_TRAILER);
    awschunked_free(&d);
}

static void test_api(void **state)
{
    sigv4_chunk c;
    awschunked d;
    int calls = 0;

    (void)state;
    assert_int_equal(awschunked_mode_of(SIGV4_STREAMING_PAYLOAD), AWSCHUNKED_SIGNED);
    assert_int_equal(awschunked_mode_of(SIGV4_STREAMING_PAYLOAD_TRAILER),
                     AWSCHUNKED_SIGNED_TRAILER);
    assert_int_equal(awschunked_mode_of(SIGV4_STREAMING_UNSIGNED_TRAILER),
                     AWSCHUNKED_UNSIGNED_TRAILER);
    assert_int_equal(awschunked_mode_of("UNSIGNED-PAYLOAD"), AWSCHUNKED_INVALID);
    assert_int_equal(awschunked_mode_of(SIGV4_EMPTY_SHA256), AWSCHUNKED_INVALID);
    assert_int_equal(awschunked_mode_of(NULL), AWSCHUNKED_INVALID);

    signer_init(&c, EX_SEED);
    assert_int_equal(awschunked_init(&d, AWSCHUNKED_INVALID, NULL, NULL),
                     AWSCHUNKED_ERR_INVALID_ARG);
    assert_int_equal(awschunked_feed(&d, "0\r\n\r\n", 5, NULL, NULL), AWSCHUNKED_ERR_INVALID_ARG);
    assert_int_equal(awschunked_finish(&d), AWSCHUNKED_ERR_INVALID_ARG);
    assert_int_equal(awschunked_init(&d, AWSCHUNKED_SIGNED, NULL, NULL),
                     AWSCHUNKED_ERR_INVALID_ARG);
    assert_int_equal(awschunked_init(&d, AWSCHUNKED_UNSIGNED_TRAILER, &c, NULL),
                     AWSCHUNKED_ERR_INVALID_ARG);
    assert_int_equal(awschunked_init(&d, AWSCHUNKED_SIGNED, &c, "x-amz-checksum-crc32"),
                     AWSCHUNKED_ERR_UNEXPECTED_TRAILER);
    assert_int_equal(awschunked_init(&d, AWSCHUNKED_SIGNED_TRAILER, &c, "x-amz-checksum-crc32"),
                     AWSCHUNKED_OK);
    awschunked_free(&d);
    sigv4_chunk_free(&c);

    /* The sink stops the decoder; the error is sticky. */
    assert_int_equal(awschunked_init(&d, AWSCHUNKED_UNSIGNED_TRAILER, NULL, NULL), AWSCHUNKED_OK);
    assert_int_equal(awschunked_feed(&d, "3\r\nabc\r\n", 8, failing_sink, &calls), AWSCHUNKED_OK);
    assert_int_equal(awschunked_decoded(&d), 3);
    assert_int_equal(awschunked_feed(&d, "3\r\ndef\r\n", 8, failing_sink, &calls),
                     AWSCHUNKED_ERR_SINK);
    assert_int_equal(awschunked_feed(&d, "0\r\n\r\n", 5, failing_sink, &calls),
                     AWSCHUNKED_ERR_SINK);
    assert_int_equal(awschunked_finish(&d), AWSCHUNKED_ERR_SINK);
    assert_int_equal(calls, 2);
    awschunked_free(&d);
    awschunked_free(&d);

    /* NULL sink: decode and count only; empty feeds are fine. */
    assert_int_equal(awschunked_init(&d, AWSCHUNKED_UNSIGNED_TRAILER, NULL, NULL), AWSCHUNKED_OK);
    assert_int_equal(awschunked_feed(&d, NULL, 0, NULL, NULL), AWSCHUNKED_OK);
    assert_int_equal(awschunked_feed(&d, "3\r\nabc\r\n0\r\n\r\n", 13, NULL, NULL), AWSCHUNKED_OK);
    assert_int_equal(awschunked_finish(&d), AWSCHUNKED_OK);
    assert_int_equal(awschunked_finish(&d), AWSCHUNKED_OK);
    assert_int_equal(awschunked_feed(&d, "x", 1, NULL, NULL), AWSCHUNKED_ERR_TRAILING_DATA);
    assert_int_equal(awschunked_finish(&d), AWSCHUNKED_ERR_TRAILING_DATA);
    assert_int_equal(awschunked_decoded(&d), 3);
    awschunked_free(&d);
}

static void test_errors(void **state)
{
    int status = 0;

    (void)state;
    assert_string_equal(awschunked_s3_error(AWSCHUNKED_ERR_TRUNCATED, &status), "IncompleteBody");
    assert_int_equal(status, 400);
    assert_string_equal(awschunked_s3_error(AWSCHUNKED_ERR_SIGNATURE_MISMATCH, &status),
                        "SignatureDoesNotMatch");
    assert_int_equal(status, 403);
    assert_string_equal(awschunked_s3_error(AWSCHUNKED_ERR_TRAILER_SIG_MISMATCH, &status),
                        "SignatureDoesNotMatch");
    assert_string_equal(awschunked_s3_error(AWSCHUNKED_ERR_MALFORMED_TRAILER, &status),
                        "MalformedTrailerError");
    assert_int_equal(status, 400);
    assert_string_equal(awschunked_s3_error(AWSCHUNKED_ERR_BAD_CHUNK_SIZE, &status),
                        "InvalidRequest");
    assert_string_equal(awschunked_s3_error(AWSCHUNKED_ERR_NOMEM, &status), "InternalError");
    assert_int_equal(status, 500);
    assert_string_equal(awschunked_s3_error(9999, &status), "InternalError");
    for (int e = AWSCHUNKED_ERR_NOMEM; e < AWSCHUNKED_ERR_COUNT; e++) {
        assert_non_null(awschunked_s3_error(e, NULL));
        assert_true(strlen(awschunked_s3_error(e, &status)) > 0);
        assert_true(status == 400 || status == 403 || status == 500);
        for (int f = AWSCHUNKED_OK; f < e; f++)
            assert_string_not_equal(awschunked_strerror(e), awschunked_strerror(f));
    }
    assert_non_null(awschunked_strerror(-1));
    assert_non_null(awschunked_strerror(AWSCHUNKED_ERR_COUNT));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_example_signed),       cmocka_unit_test(test_example_trailer),
        cmocka_unit_test(test_example_tampered),     cmocka_unit_test(test_forms),
        cmocka_unit_test(test_trailer_checksum),     cmocka_unit_test(test_client_quirks),
        cmocka_unit_test(test_truncation),           cmocka_unit_test(test_truncation_example),
        cmocka_unit_test(test_every_bit_flip),       cmocka_unit_test(test_trailer_rules),
        cmocka_unit_test(test_signed_trailer_rules), cmocka_unit_test(test_hostile_sizes),
        cmocka_unit_test(test_hostile_lines),        cmocka_unit_test(test_hostile_framing),
        cmocka_unit_test(test_hostile_signatures),   cmocka_unit_test(test_api),
        cmocka_unit_test(test_unverified),           cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
