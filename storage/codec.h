/*
 * codec.h - the on-disk format of one blob file, and nothing else.
 *
 * A blob is written once, as a stream, and read many times, by range.
 *
 * Two formats exist and the index records which one a file uses:
 *
 *  CODEC_RAW   the body's bytes as they are.  Chosen for bodies that do not
 *              compress (zip and gzip archives, images): they are served with
 *              sendfile, ranges included.
 *
 *  CODEC_ZSTD  independent zstd frames, each holding CODEC_FRAME_SIZE bytes of
 *              the body (the last one fewer), each with zstd's content
 *              checksum, followed by a seek table in a skippable frame laid out
 *              as in zstd's "seekable format" (contrib/seekable_format): one
 *              (compressed size, decompressed size) pair of little-endian u32
 *              per frame, then the frame count (u32), a descriptor byte (no
 *              per-entry checksums: the frames carry their own) and the magic
 *              0x8F92EAB1.  The whole file is therefore a valid zstd stream
 *              that can be sent as is to a client accepting zstd, and a range
 *              read decompresses only the frames it overlaps.
 *
 * The writer hashes (SHA-256, optionally MD5) and compresses on the same pass,
 * holding at most one frame of input and one of output.  It decides the
 * format from the first frame (or the whole body, if smaller): when zstd
 * saves less than an eighth, the body is stored raw.
 */
#ifndef CAIRN_CODEC_H
#define CAIRN_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CODEC_RAW 0
#define CODEC_ZSTD 1
#define CODEC_FRAME_SIZE (1u << 20)

#define CODEC_ERR_CORRUPT (-1000) /* bad frame, checksum or seek table */

typedef struct codec_result {
    uint8_t sha256[32];
    uint8_t md5[16]; /* only when asked for */
    uint64_t size;   /* body bytes */
    uint64_t stored; /* file bytes */
    int codec;
} codec_result;

typedef struct codec_writer codec_writer;

/* level: zstd level; 0 disables compression (every body raw). */
codec_writer *codec_writer_new(int fd, int level, int want_md5);
/* 0 or -errno (-ENOSPC on a full disk). */
int codec_writer_write(codec_writer *w, const void *buf, size_t len);
int codec_writer_finish(codec_writer *w, codec_result *res);
void codec_writer_free(codec_writer *w);
/* Body bytes taken so far. */
uint64_t codec_writer_size(const codec_writer *w);

typedef struct codec_reader codec_reader;

/* Opens a reader over fd (not taken over).  For zstd files of several frames,
 * loads and checks the seek table against the expected body size
 * (CODEC_ERR_CORRUPT if wrong); a one-frame body is read without it. */
int codec_reader_open(codec_reader **r, int fd, int codec, uint64_t size, uint64_t stored);
/* Reads body bytes [off, off+len); returns bytes read, or a negative error
 * (-errno or CODEC_ERR_CORRUPT).  Frame checksums are verified. */
ssize_t codec_reader_read(codec_reader *r, uint64_t off, void *buf, size_t len);
void codec_reader_free(codec_reader *r);
/* For long sequential reads of zstd blobs: a worker thread decodes the next
 * frame while the caller consumes the current one.  Optional; 0 on success. */
int codec_reader_readahead(codec_reader *r);

/* Small bodies kept in the index rather than in a file of their own ("inline"
 * blobs) use the same two codecs without a seek table: CODEC_RAW is the body,
 * CODEC_ZSTD one zstd frame with its content checksum.  codec_encode_small
 * hashes the body and picks the codec with the same rule as the writer; out
 * must hold codec_small_bound(len) bytes.  0 or -errno. */
size_t codec_small_bound(size_t len);
int codec_encode_small(int level, int want_md5, const void *in, size_t len, uint8_t *out,
                       codec_result *res);
/* Decodes a small body of exactly size bytes into out: 0, or CODEC_ERR_CORRUPT. */
int codec_decode_small(int codec, const void *in, size_t in_len, void *out, size_t size);

/* Reads the whole file, checks every frame and the SHA-256 of the body.
 * 0 if it matches, CODEC_ERR_CORRUPT if not, -errno on I/O errors. */
int codec_verify(int fd, int codec, uint64_t size, uint64_t stored, const uint8_t sha256[32]);

/* A zstd file that arrived as a stream, its frames checked as they came:
 * is its seek table the one those frames call for?  ends[i] holds where
 * frame i was seen to end (stored offset, body offset); a skippable frame
 * after the data frames (the table itself) ends at the body's end again.
 * Without this, a table that lies about where frames begin would pass the
 * stream's checks and fail every later range read of the file.  0, or
 * CODEC_ERR_CORRUPT (or -errno). */
int codec_check_seek_table(int fd, uint64_t size, uint64_t stored, const uint64_t (*ends)[2],
                           size_t n);

#endif
