/*
 * awschunked.h - push decoder of "Content-Encoding: aws-chunked" bodies.
 *
 * S3 clients that stream an upload send its body framed in chunks, in one of
 * three forms chosen by x-amz-content-sha256:
 *
 *   STREAMING-AWS4-HMAC-SHA256-PAYLOAD           (AWSCHUNKED_SIGNED)
 *       <hex size>;chunk-signature=<sig>\r\n<data>\r\n ...
 *       0;chunk-signature=<sig>\r\n\r\n
 *   STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER   (AWSCHUNKED_SIGNED_TRAILER)
 *       the same chunks, then after the zero chunk
 *       x-amz-checksum-crc32:<base64>\r\nx-amz-trailer-signature:<sig>\r\n\r\n
 *   STREAMING-UNSIGNED-PAYLOAD-TRAILER           (AWSCHUNKED_UNSIGNED_TRAILER)
 *       <hex size>\r\n<data>\r\n ... 0\r\nx-amz-checksum-crc32:<base64>\r\n\r\n
 *
 * The caller pushes the body as it arrives, in pieces of any size split
 * anywhere, and gets the decoded payload through a sink callback, mostly as
 * pointers into its own pieces (no copy):
 *
 *     awschunked d;
 *     rc = awschunked_init(&d, awschunked_mode_of(content_sha256),
 *                          signed ? &signer : NULL, x_amz_trailer);
 *     for each piece:
 *         rc = awschunked_feed(&d, piece, len, write_payload, ctx);
 *     rc = awschunked_finish(&d);          // truncated? anything after the end?
 *     awschunked_trailer_checksum(&d, &name, &value);   // then compare
 *     awschunked_free(&d);
 *
 * Signed forms: the decoder feeds each chunk's data to the signer (a
 * sigv4_chunk seeded with the request's signature, see common/sigv4.h; the
 * caller owns it and frees it) and checks the chunk-signature when the
 * chunk's data is complete, so the sink has already seen that data when a
 * mismatch is found: the caller must treat everything it wrote as tentative
 * until awschunked_finish() returns AWSCHUNKED_OK. The trailer signature is
 * checked when its line arrives.
 *
 * Memory does not grow with the body: only an incomplete line is buffered
 * (at most AWSCHUNKED_MAX_LINE bytes) and, for the trailer signature, the
 * canonical trailer (at most AWSCHUNKED_MAX_TRAILER bytes).
 *
 * Errors are sticky: after one, every call returns it again. Each reason has
 * its own AWSCHUNKED_ERR_* code; awschunked_s3_error() maps it to the S3
 * error code and HTTP status, awschunked_strerror() gives a message.
 */
#ifndef CAIRN_AWSCHUNKED_H
#define CAIRN_AWSCHUNKED_H

#include <stddef.h>
#include <stdint.h>

#include "../common/sigv4.h"

#define AWSCHUNKED_MAX_LINE 4096                 /* chunk header or trailer line, CRLF included */
#define AWSCHUNKED_MAX_TRAILER 16384             /* whole trailer section */
#define AWSCHUNKED_MAX_CHUNK (64u * 1024 * 1024) /* largest chunk accepted */
#define AWSCHUNKED_MAX_DECLARED 8                /* names in x-amz-trailer */
#define AWSCHUNKED_NAME_MAX 64                   /* trailer name, NUL included */
#define AWSCHUNKED_VALUE_MAX 128                 /* checksum trailer value, NUL included */

typedef enum awschunked_mode {
    AWSCHUNKED_INVALID = 0,
    AWSCHUNKED_SIGNED,          /* STREAMING-AWS4-HMAC-SHA256-PAYLOAD */
    AWSCHUNKED_SIGNED_TRAILER,  /* STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER */
    AWSCHUNKED_UNSIGNED_TRAILER /* STREAMING-UNSIGNED-PAYLOAD-TRAILER */
} awschunked_mode;

typedef enum awschunked_status {
    AWSCHUNKED_OK = 0,
    AWSCHUNKED_ERR_NOMEM,               /* out of memory */
    AWSCHUNKED_ERR_INVALID_ARG,         /* bad mode, signer given or missing, misuse */
    AWSCHUNKED_ERR_SINK,                /* the sink returned non-zero */
    AWSCHUNKED_ERR_TRUNCATED,           /* the body ended before the final chunk's end */
    AWSCHUNKED_ERR_TRAILING_DATA,       /* bytes after the end of the body */
    AWSCHUNKED_ERR_BAD_CHUNK_SIZE,      /* chunk size missing or not hex */
    AWSCHUNKED_ERR_CHUNK_TOO_LARGE,     /* chunk size above AWSCHUNKED_MAX_CHUNK */
    AWSCHUNKED_ERR_LINE_TOO_LONG,       /* chunk header line above AWSCHUNKED_MAX_LINE */
    AWSCHUNKED_ERR_BAD_LINE_END,        /* a line ended in a bare LF */
    AWSCHUNKED_ERR_BAD_DATA_END,        /* chunk data not followed by CRLF */
    AWSCHUNKED_ERR_MISSING_SIGNATURE,   /* signed form without chunk-signature */
    AWSCHUNKED_ERR_BAD_SIGNATURE,       /* chunk-signature not 64 hex digits, or repeated */
    AWSCHUNKED_ERR_SIGNATURE_MISMATCH,  /* a chunk signature is wrong */
    AWSCHUNKED_ERR_MALFORMED_TRAILER,   /* trailer line without ':', bad name or value */
    AWSCHUNKED_ERR_TRAILER_TOO_LONG,    /* trailer section above AWSCHUNKED_MAX_TRAILER */
    AWSCHUNKED_ERR_UNEXPECTED_TRAILER,  /* trailer not declared in x-amz-trailer, or none allowed */
    AWSCHUNKED_ERR_MISSING_TRAILER,     /* a trailer declared in x-amz-trailer is absent */
    AWSCHUNKED_ERR_DUPLICATE_TRAILER,   /* the same trailer, or two checksums, sent twice */
    AWSCHUNKED_ERR_MISSING_TRAILER_SIG, /* signed trailer form without x-amz-trailer-signature */
    AWSCHUNKED_ERR_TRAILER_SIG_MISMATCH, /* the trailer signature is wrong */
    AWSCHUNKED_ERR_COUNT
} awschunked_status;

/* Receives decoded payload bytes; returns 0 to go on, non-zero to stop
 * (awschunked_feed() then returns AWSCHUNKED_ERR_SINK). */
typedef int (*awschunked_sink)(void *ctx, const char *data, size_t len);

typedef struct awschunked {
    int mode;
    int state;
    int err;                  /* sticky error, AWSCHUNKED_OK while fine */
    sigv4_chunk *signer;      /* borrowed; NULL when unsigned */
    uint64_t remaining;       /* data bytes left in the current chunk */
    uint64_t decoded;         /* payload bytes given to the sink */
    uint64_t chunks;          /* chunk headers seen, the final one included */
    char sig[SIGV4_SIG_SIZE]; /* chunk-signature of the current chunk */
    char *line;               /* an incomplete line, carried between feeds */
    size_t line_len, line_cap;
    char *canon; /* canonical trailer: "name:value\n" lines */
    size_t canon_len, canon_cap;
    size_t trailer_bytes; /* raw bytes of the trailer section so far */
    int trailer_lines;    /* trailer lines, the signature line included */
    int trailer_signed;   /* x-amz-trailer-signature seen and right */
    int blank_before_sig; /* the blank line minio-go sends before the signature */
    char declared[AWSCHUNKED_MAX_DECLARED][AWSCHUNKED_NAME_MAX]; /* x-amz-trailer */
    int ndeclared;
    unsigned seen;                          /* bit i: declared[i] arrived */
    char cksum_name[AWSCHUNKED_NAME_MAX];   /* "x-amz-checksum-crc32", "" if none */
    char cksum_value[AWSCHUNKED_VALUE_MAX]; /* its value, trimmed */
} awschunked;

/* The mode for an x-amz-content-sha256 value; AWSCHUNKED_INVALID when the
 * value is not one of the three streaming literals. */
int awschunked_mode_of(const char *content_sha256);

/* signer: for the two signed modes, NULL for the unsigned one.
 * expected_trailer: the x-amz-trailer header ("x-amz-checksum-crc32", or a
 * comma-separated list) or NULL. When given, every trailer must be declared
 * in it and every declared trailer must arrive; when NULL, any trailers are
 * accepted. A trailer declared for AWSCHUNKED_SIGNED (no trailers) is
 * AWSCHUNKED_ERR_UNEXPECTED_TRAILER. */
int awschunked_init(awschunked *d, int mode, sigv4_chunk *signer, const char *expected_trailer);

/* The same framing rules without any signature check, for a server that
 * authenticates nobody (no access key configured): chunk and trailer
 * signatures are read and ignored. */
int awschunked_init_unverified(awschunked *d, int mode, const char *expected_trailer);

/* Decode len more bytes of the body; sink (may be NULL) gets the payload. */
int awschunked_feed(awschunked *d, const char *in, size_t len, awschunked_sink sink, void *ctx);

/* The body has ended: AWSCHUNKED_OK when it was complete, else the sticky
 * error or AWSCHUNKED_ERR_TRUNCATED. Tolerated: a trailer section that ends
 * after its last line's CRLF without the empty line, as some clients send it
 * (in the signed form only after the trailer signature line). */
int awschunked_finish(awschunked *d);

/* Payload bytes decoded so far (compare with x-amz-decoded-content-length). */
uint64_t awschunked_decoded(const awschunked *d);

/* The x-amz-checksum-* trailer, lowercased name and trimmed value, both
 * borrowed from d. Returns 1 when there was one, else 0 (and NULLs). */
int awschunked_trailer_checksum(const awschunked *d, const char **name, const char **value);

/* Releases the line and trailer buffers; the signer is the caller's. */
void awschunked_free(awschunked *d);

/* The S3 error code and HTTP status for an AWSCHUNKED_ERR_* code. */
const char *awschunked_s3_error(int err, int *http_status);
const char *awschunked_strerror(int err);

#endif
