/*
 * util.h - small helpers shared by the store, the server and the client.
 *
 * Hex encoding of digests, size parsing ("512M", "20G"), wall-clock and
 * monotonic time, and a write loop that handles short writes.  Nothing here
 * allocates on a hot path.
 */
#ifndef CAIRN_UTIL_H
#define CAIRN_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#define CAIRN_VERSION "0.1.0"

/* The value of one hex digit (either case), or -1. */
int util_hexval(int c);
/* Writes 2*len lowercase hex characters and a NUL to out. */
void util_hex(const uint8_t *in, size_t len, char *out);
/* Parses exactly 2*len hex characters (either case); 0 on success, -1 otherwise. */
int util_unhex(const char *in, size_t inlen, uint8_t *out, size_t len);
/* Decodes the %XX escapes of in[0..n) into out (at most cap bytes; out may
 * be in itself): the decoded length, or -1 for a bad escape or no room. */
ssize_t util_pct_decode(const char *in, size_t n, uint8_t *out, size_t cap);
/* True if s[0..len) is exactly 64 lowercase or uppercase hex characters. */
int util_is_hex64(const char *s, size_t len);

/* "123", "512K", "20G", "1.5T" (binary multiples); 0 on success. */
int util_parse_size(const char *s, uint64_t *out);
/* "30", "30s", "5m", "2h" -> seconds; 0 on success. */
int util_parse_duration(const char *s, uint64_t *out);
/* "1", "true", "yes", "on" / "0", "false", "no", "off"; 0 on success. */
int util_parse_bool(const char *s, int *out);

uint64_t util_now_ms(void);  /* wall clock, milliseconds since the epoch */
uint64_t util_mono_ns(void); /* monotonic clock, nanoseconds */
/* The time ns nanoseconds from now on clock (CLOCK_REALTIME, CLOCK_MONOTONIC),
 * for pthread_cond_timedwait on a condition variable of that clock. */
struct timespec util_time_in(int clock, uint64_t ns);
/* FNV-1a (64 bits) of n bytes: a cheap hash for tables and lock stripes,
 * not for anything an attacker picks to collide. */
uint64_t util_fnv1a(const void *p, size_t n);

/* write() until done or error; returns 0 or -errno. */
int util_write_all(int fd, const void *buf, size_t len);
/* fsync of a directory: its entries (a file created, renamed, linked) on disk. 0 or -errno. */
int util_fsync_dir(const char *path);
/* pread() until len bytes or EOF; returns bytes read or -errno. */
ssize_t util_pread_all(int fd, void *buf, size_t len, uint64_t off);

/* Byte order of a[0..al) and b[0..bl) (a prefix comes first), as S3 sorts
 * keys: <0, 0, >0. */
int util_bytes_cmp(const void *a, size_t al, const void *b, size_t bl);

/* A malloc'ed copy of p[0..n) with a NUL after it (p may hold NULs, as a
 * key may), or NULL when memory runs short. */
char *util_memdup(const void *p, size_t n);

/* Room for one more element in the array *pv (a pointer to the array's
 * pointer) of *cap elements of size bytes, n of them used: the array grows
 * (to first elements, then twice as many) when n == *cap.  0, or -1 when
 * memory runs short (the array unchanged). */
int util_grow(void *pv, size_t *cap, size_t n, size_t size, size_t first);

/* Little-endian integers in byte buffers (on-disk records, file formats). */
void util_put_le32(uint8_t *p, uint32_t v);
void util_put_le64(uint8_t *p, uint64_t v);
uint32_t util_get_le32(const uint8_t *p);
uint64_t util_get_le64(const uint8_t *p);

#endif
