/*
 * awschunked.c - push decoder of aws-chunked request bodies.
 *
 * Design
 * ------
 * The body is HTTP/1.1 chunked coding with S3's extensions (chunk-signature)
 * and trailers, so the decoder is the classic chunked state machine, driven
 * by whatever pieces the network gives:
 *
 *   HEADER   a chunk header line "<hex>[;ext...]\r\n"; a zero size ends the
 *            chunks and moves to TRAILER, anything else to DATA
 *   DATA     <size> payload bytes, handed to the sink straight from the
 *            caller's buffer (and to the signer in the signed forms); when
 *            complete, the chunk signature is checked
 *   DATA_CR, DATA_LF   the CRLF after the data
 *   TRAILER  trailer lines "name:value\r\n", ended by an empty line
 *   DONE     the body is complete: any further byte is an error
 *
 * Lines (chunk headers and trailers) are the only thing ever buffered, and
 * only when a piece ends in the middle of one; a line that arrives whole is
 * parsed in place. The buffer is bounded (AWSCHUNKED_MAX_LINE), as are the
 * trailer section (AWSCHUNKED_MAX_TRAILER) and the chunk size
 * (AWSCHUNKED_MAX_CHUNK), so that hostile input cannot make us buffer or
 * wait for arbitrary amounts.
 *
 * Tolerance, for what real clients send: hex sizes in either case, leading
 * zeros, blanks before ';', chunk extensions other than chunk-signature
 * (ignored), blanks around trailer names and values, any case in trailer
 * names, and a trailer section that simply ends after its last line instead
 * of with an empty line. Strict elsewhere: every line ends in CRLF, data is
 * followed by CRLF, nothing follows the end.
 *
 * The trailer signature covers the trailer lines in canonical form,
 * "lowercase-name:trimmed-value\n" each, without the signature line. They
 * are collected in d->canon while parsing.
 */
#include "awschunked.h"

#include "../common/util.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { ST_HEADER, ST_DATA, ST_DATA_CR, ST_DATA_LF, ST_TRAILER, ST_DONE };

#define TRAILER_SIGNATURE "x-amz-trailer-signature"
#define CHECKSUM_PREFIX "x-amz-checksum-"

/* ---- Small helpers ------------------------------------------------------------------------ */

static int awschunked_lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

static int awschunked_blank(int c)
{
    return c == ' ' || c == '\t';
}

/* Trims blanks on both sides of p[0..*n). */
static const char *awschunked_trim(const char *p, size_t *n)
{
    while (*n > 0 && awschunked_blank((unsigned char)p[0])) {
        p++;
        (*n)--;
    }
    while (*n > 0 && awschunked_blank((unsigned char)p[*n - 1]))
        (*n)--;
    return p;
}

/* Case-insensitive: does p[0..n) equal the NUL-terminated s? */
static int awschunked_is(const char *p, size_t n, const char *s)
{
    return strlen(s) == n && strncasecmp(p, s, n) == 0;
}

/* A header field name: visible ASCII without separators. */
static int awschunked_valid_name(const char *p, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c <= ' ' || c >= 0x7f || strchr("\"(),/:;<=>?@[\\]{}", c) != NULL)
            return 0;
    }
    return 1;
}

/* A header field value: no control characters but tab. */
static int awschunked_valid_value(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if ((c < ' ' && c != '\t') || c == 0x7f)
            return 0;
    }
    return 1;
}

/* Makes room for need bytes in a growable buffer. */
static int awschunked_reserve(char **buf, size_t *cap, size_t need)
{
    size_t ncap = *cap ? *cap : 128;
    char *p;

    if (need <= *cap)
        return AWSCHUNKED_OK;
    while (ncap < need)
        ncap *= 2;
    p = realloc(*buf, ncap);
    if (p == NULL)
        return AWSCHUNKED_ERR_NOMEM;
    *buf = p;
    *cap = ncap;
    return AWSCHUNKED_OK;
}

static int awschunked_fail(awschunked *d, int rc)
{
    if (rc != AWSCHUNKED_OK && d->err == AWSCHUNKED_OK)
        d->err = rc;
    return rc;
}

/* ---- Set up ---------------------------------------------------------------------------------- */

int awschunked_mode_of(const char *content_sha256)
{
    if (content_sha256 == NULL)
        return AWSCHUNKED_INVALID;
    if (strcmp(content_sha256, SIGV4_STREAMING_PAYLOAD) == 0)
        return AWSCHUNKED_SIGNED;
    if (strcmp(content_sha256, SIGV4_STREAMING_PAYLOAD_TRAILER) == 0)
        return AWSCHUNKED_SIGNED_TRAILER;
    if (strcmp(content_sha256, SIGV4_STREAMING_UNSIGNED_TRAILER) == 0)
        return AWSCHUNKED_UNSIGNED_TRAILER;
    return AWSCHUNKED_INVALID;
}

/* Adds one name of x-amz-trailer to d->declared, lowercased. */
static int awschunked_declare_one(awschunked *d, const char *p, size_t n)
{
    p = awschunked_trim(p, &n);
    if (n == 0)
        return AWSCHUNKED_OK;
    if (d->ndeclared == AWSCHUNKED_MAX_DECLARED || n >= AWSCHUNKED_NAME_MAX ||
        !awschunked_valid_name(p, n))
        return AWSCHUNKED_ERR_MALFORMED_TRAILER;
    for (size_t i = 0; i < n; i++)
        d->declared[d->ndeclared][i] = (char)awschunked_lower((unsigned char)p[i]);
    d->declared[d->ndeclared][n] = '\0';
    d->ndeclared++;
    return AWSCHUNKED_OK;
}

/* Parses the comma-separated x-amz-trailer value. */
static int awschunked_declare(awschunked *d, const char *list)
{
    while (list != NULL && *list != '\0') {
        const char *comma = strchr(list, ',');
        size_t n = comma ? (size_t)(comma - list) : strlen(list);
        int rc = awschunked_declare_one(d, list, n);

        if (rc != AWSCHUNKED_OK)
            return rc;
        list = comma ? comma + 1 : NULL;
    }
    if (d->ndeclared > 0 && d->mode == AWSCHUNKED_SIGNED)
        return AWSCHUNKED_ERR_UNEXPECTED_TRAILER;
    return AWSCHUNKED_OK;
}

int awschunked_init(awschunked *d, int mode, sigv4_chunk *signer, const char *expected_trailer)
{
    int rc = AWSCHUNKED_OK;

    memset(d, 0, sizeof(*d));
    d->mode = mode;
    d->state = ST_HEADER;
    d->signer = signer;
    if (mode != AWSCHUNKED_SIGNED && mode != AWSCHUNKED_SIGNED_TRAILER &&
        mode != AWSCHUNKED_UNSIGNED_TRAILER)
        rc = AWSCHUNKED_ERR_INVALID_ARG;
    else if ((mode == AWSCHUNKED_UNSIGNED_TRAILER) != (signer == NULL))
        rc = AWSCHUNKED_ERR_INVALID_ARG;
    else
        rc = awschunked_declare(d, expected_trailer);
    return awschunked_fail(d, rc);
}

int awschunked_init_unverified(awschunked *d, int mode, const char *expected_trailer)
{
    if (mode == AWSCHUNKED_UNSIGNED_TRAILER)
        return awschunked_init(d, mode, NULL, expected_trailer);
    /* set up as the unsigned form (no signer), then take the signed framing */
    int rc = awschunked_init(d, AWSCHUNKED_UNSIGNED_TRAILER, NULL, expected_trailer);
    if (rc == AWSCHUNKED_OK && mode != AWSCHUNKED_SIGNED && mode != AWSCHUNKED_SIGNED_TRAILER)
        rc = awschunked_fail(d, AWSCHUNKED_ERR_INVALID_ARG);
    if (rc == AWSCHUNKED_OK && mode == AWSCHUNKED_SIGNED && d->ndeclared > 0)
        rc = awschunked_fail(d, AWSCHUNKED_ERR_UNEXPECTED_TRAILER);
    if (rc == AWSCHUNKED_OK)
        d->mode = mode;
    return rc;
}

void awschunked_free(awschunked *d)
{
    free(d->line);
    free(d->canon);
    d->line = d->canon = NULL;
    d->line_len = d->line_cap = d->canon_len = d->canon_cap = 0;
}

/* ---- Chunk headers --------------------------------------------------------------------------- */

/* One chunk extension "name[=value]"; only chunk-signature matters. */
static int awschunked_extension(awschunked *d, const char *p, size_t n, int *have_sig)
{
    const char *eq = memchr(p, '=', n);
    size_t nlen = eq ? (size_t)(eq - p) : n;
    size_t vlen = eq ? n - nlen - 1 : 0;
    const char *name = awschunked_trim(p, &nlen);
    const char *value = eq ? awschunked_trim(eq + 1, &vlen) : "";

    if (d->signer == NULL || !awschunked_is(name, nlen, "chunk-signature"))
        return AWSCHUNKED_OK;
    if (*have_sig || vlen != SIGV4_SIG_SIZE - 1)
        return AWSCHUNKED_ERR_BAD_SIGNATURE;
    for (size_t i = 0; i < vlen; i++)
        if (util_hexval((unsigned char)value[i]) < 0)
            return AWSCHUNKED_ERR_BAD_SIGNATURE;
    memcpy(d->sig, value, vlen);
    d->sig[vlen] = '\0';
    *have_sig = 1;
    return AWSCHUNKED_OK;
}

/* The extensions of a chunk header: empty, or ";ext;ext...". */
static int awschunked_extensions(awschunked *d, const char *p, size_t n)
{
    int have_sig = 0;
    size_t i = 0;

    while (i < n) {
        size_t start = ++i; /* past the ';' */
        int rc;

        while (i < n && p[i] != ';')
            i++;
        rc = awschunked_extension(d, p + start, i - start, &have_sig);
        if (rc != AWSCHUNKED_OK)
            return rc;
    }
    if (d->signer != NULL && !have_sig)
        return AWSCHUNKED_ERR_MISSING_SIGNATURE;
    return AWSCHUNKED_OK;
}

/* Ends the current chunk in the signed forms: compare its signature. */
static int awschunked_check_chunk(awschunked *d)
{
    int rc;

    if (d->signer == NULL)
        return AWSCHUNKED_OK;
    rc = sigv4_chunk_verify(d->signer, d->sig, strlen(d->sig));
    if (rc == SIGV4_ERR_SIGNATURE_MISMATCH)
        return AWSCHUNKED_ERR_SIGNATURE_MISMATCH;
    return rc == SIGV4_OK ? AWSCHUNKED_OK : AWSCHUNKED_ERR_NOMEM;
}

/* A complete chunk header line, without its CRLF. */
static int awschunked_header(awschunked *d, const char *p, size_t n)
{
    uint64_t size = 0;
    size_t i = 0;
    int rc;

    while (i < n && util_hexval((unsigned char)p[i]) >= 0) {
        size = size * 16 + (uint64_t)util_hexval((unsigned char)p[i]);
        if (size > AWSCHUNKED_MAX_CHUNK)
            return AWSCHUNKED_ERR_CHUNK_TOO_LARGE;
        i++;
    }
    if (i == 0)
        return AWSCHUNKED_ERR_BAD_CHUNK_SIZE;
    while (i < n && awschunked_blank((unsigned char)p[i]))
        i++;
    if (i < n && p[i] != ';')
        return AWSCHUNKED_ERR_BAD_CHUNK_SIZE;
    rc = awschunked_extensions(d, p + i, n - i);
    if (rc != AWSCHUNKED_OK)
        return rc;
    d->chunks++;
    d->remaining = size;
    if (size > 0) {
        d->state = ST_DATA;
        return AWSCHUNKED_OK;
    }
    d->state = ST_TRAILER;
    return awschunked_check_chunk(d);
}

/* ---- Trailers -------------------------------------------------------------------------------- */

/* Checks a trailer name against x-amz-trailer and marks it seen. */
static int awschunked_check_declared(awschunked *d, const char *name, size_t n)
{
    if (d->ndeclared == 0)
        return AWSCHUNKED_OK;
    for (int i = 0; i < d->ndeclared; i++) {
        if (!awschunked_is(name, n, d->declared[i]))
            continue;
        if (d->seen & (1u << i))
            return AWSCHUNKED_ERR_DUPLICATE_TRAILER;
        d->seen |= 1u << i;
        return AWSCHUNKED_OK;
    }
    return AWSCHUNKED_ERR_UNEXPECTED_TRAILER;
}

/* Keeps the x-amz-checksum-* trailer for awschunked_trailer_checksum(). */
static int awschunked_keep_checksum(awschunked *d, const char *name, size_t nlen, const char *value,
                                    size_t vlen)
{
    size_t plen = strlen(CHECKSUM_PREFIX);

    if (nlen <= plen || strncasecmp(name, CHECKSUM_PREFIX, plen) != 0)
        return AWSCHUNKED_OK;
    if (d->cksum_name[0] != '\0')
        return AWSCHUNKED_ERR_DUPLICATE_TRAILER;
    if (nlen >= AWSCHUNKED_NAME_MAX || vlen >= AWSCHUNKED_VALUE_MAX)
        return AWSCHUNKED_ERR_MALFORMED_TRAILER;
    for (size_t i = 0; i < nlen; i++)
        d->cksum_name[i] = (char)awschunked_lower((unsigned char)name[i]);
    d->cksum_name[nlen] = '\0';
    memcpy(d->cksum_value, value, vlen);
    d->cksum_value[vlen] = '\0';
    return AWSCHUNKED_OK;
}

/* Appends "lowercase-name:value\n" to the canonical trailer. */
static int awschunked_canon_add(awschunked *d, const char *name, size_t nlen, const char *value,
                                size_t vlen)
{
    size_t need = d->canon_len + nlen + vlen + 2;
    int rc = awschunked_reserve(&d->canon, &d->canon_cap, need);

    if (rc != AWSCHUNKED_OK)
        return rc;
    for (size_t i = 0; i < nlen; i++)
        d->canon[d->canon_len++] = (char)awschunked_lower((unsigned char)name[i]);
    d->canon[d->canon_len++] = ':';
    memcpy(d->canon + d->canon_len, value, vlen);
    d->canon_len += vlen;
    d->canon[d->canon_len++] = '\n';
    return AWSCHUNKED_OK;
}

static int awschunked_trailer_signature(awschunked *d, const char *value, size_t vlen)
{
    int rc;

    if (d->mode != AWSCHUNKED_SIGNED_TRAILER)
        return AWSCHUNKED_ERR_UNEXPECTED_TRAILER;
    if (d->signer == NULL) { /* awschunked_init_unverified: nothing to check it against */
        d->trailer_signed = 1;
        return AWSCHUNKED_OK;
    }
    rc = sigv4_chunk_verify_trailer(d->signer, d->canon ? d->canon : "", d->canon_len, value, vlen);
    if (rc == SIGV4_ERR_SIGNATURE_MISMATCH)
        return AWSCHUNKED_ERR_TRAILER_SIG_MISMATCH;
    if (rc != SIGV4_OK)
        return AWSCHUNKED_ERR_NOMEM;
    d->trailer_signed = 1;
    return AWSCHUNKED_OK;
}

/* The end of the trailer section: everything required must be there. */
static int awschunked_trailer_end(awschunked *d)
{
    if (d->mode == AWSCHUNKED_SIGNED_TRAILER && !d->trailer_signed)
        return AWSCHUNKED_ERR_MISSING_TRAILER_SIG;
    for (int i = 0; i < d->ndeclared; i++)
        if (!(d->seen & (1u << i)))
            return AWSCHUNKED_ERR_MISSING_TRAILER;
    d->state = ST_DONE;
    return AWSCHUNKED_OK;
}

/* A complete trailer line, without its CRLF; empty ends the section. */
static int awschunked_trailer_line(awschunked *d, const char *p, size_t n)
{
    const char *colon = memchr(p, ':', n);
    const char *name, *value;
    size_t nlen, vlen;
    int rc;

    if (n == 0) {
        /* minio-go puts a blank line between the checksum and the trailer
         * signature (a format AWS accepts): only a signature may follow it */
        if (d->mode == AWSCHUNKED_SIGNED_TRAILER && !d->trailer_signed && d->trailer_lines > 0 &&
            !d->blank_before_sig) {
            d->blank_before_sig = 1;
            return AWSCHUNKED_OK;
        }
        return awschunked_trailer_end(d);
    }
    if (d->blank_before_sig && !(n > strlen(TRAILER_SIGNATURE) &&
                                 awschunked_is(p, strlen(TRAILER_SIGNATURE), TRAILER_SIGNATURE)))
        return AWSCHUNKED_ERR_MALFORMED_TRAILER;
    if (d->mode == AWSCHUNKED_SIGNED)
        return AWSCHUNKED_ERR_UNEXPECTED_TRAILER;
    if (d->trailer_signed || colon == NULL)
        return AWSCHUNKED_ERR_MALFORMED_TRAILER;
    nlen = (size_t)(colon - p);
    vlen = n - nlen - 1;
    name = awschunked_trim(p, &nlen);
    value = awschunked_trim(colon + 1, &vlen);
    if (!awschunked_valid_name(name, nlen) || !awschunked_valid_value(value, vlen))
        return AWSCHUNKED_ERR_MALFORMED_TRAILER;
    d->trailer_lines++;
    if (awschunked_is(name, nlen, TRAILER_SIGNATURE))
        return awschunked_trailer_signature(d, value, vlen);
    rc = awschunked_check_declared(d, name, nlen);
    if (rc == AWSCHUNKED_OK)
        rc = awschunked_keep_checksum(d, name, nlen, value, vlen);
    if (rc == AWSCHUNKED_OK)
        rc = awschunked_canon_add(d, name, nlen, value, vlen);
    return rc;
}

/* ---- Lines ------------------------------------------------------------------------------------
 */

/* A complete line, CRLF included: strip it and parse.  Trailer lines may
 * end in a bare LF (minio-go ends its checksum trailer so). */
static int awschunked_line(awschunked *d, const char *p, size_t n)
{
    if (d->state == ST_TRAILER) {
        if (n >= 2 && p[n - 2] == '\r')
            return awschunked_trailer_line(d, p, n - 2);
        if (n >= 2 && (p[n - 2] == ' ' || p[n - 2] == '\t'))
            return AWSCHUNKED_ERR_BAD_LINE_END; /* a bare LF, but no blank before it */
        return awschunked_trailer_line(d, p, n - 1);
    }
    if (n < 2 || p[n - 2] != '\r')
        return AWSCHUNKED_ERR_BAD_LINE_END;
    return awschunked_header(d, p, n - 2);
}

/* Takes bytes of a line from in (*used of them): a line that is complete
 * within in is parsed in place, a partial one is buffered. */
static int awschunked_take_line(awschunked *d, const char *in, size_t len, size_t *used)
{
    int trailer = d->state == ST_TRAILER;
    size_t room = AWSCHUNKED_MAX_LINE - d->line_len;
    size_t scan = len < room ? len : room;
    const char *nl = memchr(in, '\n', scan);
    int rc;

    *used = nl ? (size_t)(nl - in) + 1 : scan;
    if (nl == NULL && scan == room)
        return trailer ? AWSCHUNKED_ERR_TRAILER_TOO_LONG : AWSCHUNKED_ERR_LINE_TOO_LONG;
    if (trailer) {
        d->trailer_bytes += *used;
        if (d->trailer_bytes > AWSCHUNKED_MAX_TRAILER)
            return AWSCHUNKED_ERR_TRAILER_TOO_LONG;
    }
    if (nl != NULL && d->line_len == 0)
        return awschunked_line(d, in, *used);
    rc = awschunked_reserve(&d->line, &d->line_cap, d->line_len + *used);
    if (rc != AWSCHUNKED_OK)
        return rc;
    memcpy(d->line + d->line_len, in, *used);
    d->line_len += *used;
    if (nl == NULL)
        return AWSCHUNKED_OK;
    rc = awschunked_line(d, d->line, d->line_len);
    d->line_len = 0;
    return rc;
}

/* ---- Data -------------------------------------------------------------------------------------
 */

static int awschunked_data(awschunked *d, const char *in, size_t len, awschunked_sink sink,
                           void *ctx, size_t *used)
{
    size_t n = len < d->remaining ? len : (size_t)d->remaining;

    *used = n;
    if (d->signer != NULL && sigv4_chunk_update(d->signer, in, n) != SIGV4_OK)
        return AWSCHUNKED_ERR_NOMEM;
    if (sink != NULL && sink(ctx, in, n) != 0)
        return AWSCHUNKED_ERR_SINK;
    d->decoded += n;
    d->remaining -= n;
    if (d->remaining > 0)
        return AWSCHUNKED_OK;
    d->state = ST_DATA_CR;
    return awschunked_check_chunk(d);
}

/* The CRLF after a chunk's data, one byte at a time. */
static int awschunked_data_end(awschunked *d, char c)
{
    if (d->state == ST_DATA_CR && c == '\r') {
        d->state = ST_DATA_LF;
        return AWSCHUNKED_OK;
    }
    if (d->state == ST_DATA_LF && c == '\n') {
        d->state = ST_HEADER;
        return AWSCHUNKED_OK;
    }
    return AWSCHUNKED_ERR_BAD_DATA_END;
}

/* ---- Feeding ----------------------------------------------------------------------------------
 */

static int awschunked_step(awschunked *d, const char *in, size_t len, awschunked_sink sink,
                           void *ctx, size_t *used)
{
    switch (d->state) {
    case ST_HEADER:
    case ST_TRAILER:
        return awschunked_take_line(d, in, len, used);
    case ST_DATA:
        return awschunked_data(d, in, len, sink, ctx, used);
    case ST_DATA_CR:
    case ST_DATA_LF:
        *used = 1;
        return awschunked_data_end(d, in[0]);
    default:
        *used = 0;
        return AWSCHUNKED_ERR_TRAILING_DATA;
    }
}

int awschunked_feed(awschunked *d, const char *in, size_t len, awschunked_sink sink, void *ctx)
{
    if (d->err != AWSCHUNKED_OK)
        return d->err;
    while (len > 0) {
        size_t used = 0;
        int rc = awschunked_step(d, in, len, sink, ctx, &used);

        if (rc != AWSCHUNKED_OK)
            return awschunked_fail(d, rc);
        in += used;
        len -= used;
    }
    return AWSCHUNKED_OK;
}

/* May the body end here, without the empty line that ends the trailers? */
static int awschunked_may_end(const awschunked *d)
{
    if (d->state != ST_TRAILER || d->line_len != 0)
        return 0;
    if (d->mode == AWSCHUNKED_SIGNED_TRAILER)
        return d->trailer_signed;
    return d->mode == AWSCHUNKED_UNSIGNED_TRAILER && d->trailer_lines > 0;
}

int awschunked_finish(awschunked *d)
{
    if (d->err != AWSCHUNKED_OK)
        return d->err;
    if (d->state == ST_DONE)
        return AWSCHUNKED_OK;
    if (awschunked_may_end(d))
        return awschunked_fail(d, awschunked_trailer_end(d));
    return awschunked_fail(d, AWSCHUNKED_ERR_TRUNCATED);
}

/* ---- Results ----------------------------------------------------------------------------------
 */

uint64_t awschunked_decoded(const awschunked *d)
{
    return d->decoded;
}

int awschunked_trailer_checksum(const awschunked *d, const char **name, const char **value)
{
    int have = d->cksum_name[0] != '\0';

    *name = have ? d->cksum_name : NULL;
    *value = have ? d->cksum_value : NULL;
    return have;
}

/* ---- Errors -----------------------------------------------------------------------------------
 */

static const struct {
    const char *s3_code;
    int status;
    const char *message;
} awschunked_errors[AWSCHUNKED_ERR_COUNT] = {
    [AWSCHUNKED_OK] = {"", 200, "ok"},
    [AWSCHUNKED_ERR_NOMEM] = {"InternalError", 500, "out of memory"},
    [AWSCHUNKED_ERR_INVALID_ARG] = {"InternalError", 500, "aws-chunked decoder misused"},
    [AWSCHUNKED_ERR_SINK] = {"InternalError", 500, "the decoded payload could not be stored"},
    [AWSCHUNKED_ERR_TRUNCATED] = {"IncompleteBody", 400,
                                  "the aws-chunked body ended before its final chunk"},
    [AWSCHUNKED_ERR_TRAILING_DATA] = {"InvalidRequest", 400,
                                      "unexpected data after the end of the aws-chunked body"},
    [AWSCHUNKED_ERR_BAD_CHUNK_SIZE] = {"InvalidRequest", 400,
                                       "an aws-chunked chunk size is missing or not hexadecimal"},
    [AWSCHUNKED_ERR_CHUNK_TOO_LARGE] = {"InvalidRequest", 400,
                                        "an aws-chunked chunk is larger than 64 MiB"},
    [AWSCHUNKED_ERR_LINE_TOO_LONG] = {"InvalidRequest", 400,
                                      "an aws-chunked chunk header is longer than 4 KiB"},
    [AWSCHUNKED_ERR_BAD_LINE_END] = {"InvalidRequest", 400,
                                     "an aws-chunked line does not end with CRLF"},
    [AWSCHUNKED_ERR_BAD_DATA_END] = {"InvalidRequest", 400,
                                     "aws-chunked chunk data is not followed by CRLF"},
    [AWSCHUNKED_ERR_MISSING_SIGNATURE] = {"SignatureDoesNotMatch", 403,
                                          "an aws-chunked chunk has no chunk-signature"},
    [AWSCHUNKED_ERR_BAD_SIGNATURE] = {"SignatureDoesNotMatch", 403,
                                      "an aws-chunked chunk-signature is malformed"},
    [AWSCHUNKED_ERR_SIGNATURE_MISMATCH] = {"SignatureDoesNotMatch", 403,
                                           "an aws-chunked chunk signature does not match"},
    [AWSCHUNKED_ERR_MALFORMED_TRAILER] = {"MalformedTrailerError", 400,
                                          "an aws-chunked trailer is malformed"},
    [AWSCHUNKED_ERR_TRAILER_TOO_LONG] = {"MalformedTrailerError", 400,
                                         "the aws-chunked trailers are longer than 16 KiB"},
    [AWSCHUNKED_ERR_UNEXPECTED_TRAILER] =
        {"MalformedTrailerError", 400, "a trailer was sent that x-amz-trailer does not declare"},
    [AWSCHUNKED_ERR_MISSING_TRAILER] = {"MalformedTrailerError", 400,
                                        "a trailer declared in x-amz-trailer was not sent"},
    [AWSCHUNKED_ERR_DUPLICATE_TRAILER] = {"MalformedTrailerError", 400,
                                          "a trailer or checksum was sent twice"},
    [AWSCHUNKED_ERR_MISSING_TRAILER_SIG] = {"SignatureDoesNotMatch", 403,
                                            "the signed trailers have no x-amz-trailer-signature"},
    [AWSCHUNKED_ERR_TRAILER_SIG_MISMATCH] = {"SignatureDoesNotMatch", 403,
                                             "the aws-chunked trailer signature does not match"},
};

const char *awschunked_s3_error(int err, int *http_status)
{
    int known = err > AWSCHUNKED_OK && err < AWSCHUNKED_ERR_COUNT;

    if (http_status != NULL)
        *http_status = known ? awschunked_errors[err].status : 500;
    return known ? awschunked_errors[err].s3_code : "InternalError";
}

const char *awschunked_strerror(int err)
{
    if (err < AWSCHUNKED_OK || err >= AWSCHUNKED_ERR_COUNT)
        return "unknown aws-chunked error";
    return awschunked_errors[err].message;
}
