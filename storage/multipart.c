/*
 * multipart.c - see multipart.h.
 *
 * The info file: "CMPU1\n", then u64 created ms, u32 ns length, ns, u32 key
 * length, key, u32 meta length, meta (all little-endian).  Upload ids are 32
 * random hex characters, checked on every call, so a path built from one can
 * point nowhere else.
 */
#include "multipart.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "../common/checksum.h"
#include "../common/util.h"

#define INFO_MAGIC "CMPU1\n"
#define COPY_BUF (1u << 20)

static int valid_id(const char *id)
{
    if (strlen(id) != MPU_ID_LEN)
        return 0;
    for (const char *p = id; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return 0;
    return 1;
}

static void upload_dir(store *s, const char *id, char *out, size_t cap)
{
    snprintf(out, cap, "%s/multipart/%s", store_dir(s), id);
}

static void le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t unle(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* Writes path atomically: a temporary file, fsync, rename. */
static int write_file(const char *path, const void *data, size_t len)
{
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return store_status_of_errno(errno);
    int rc = util_write_all(fd, data, len);
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    close(fd);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc != 0) {
        unlink(tmp);
        return store_status_of_errno(-rc);
    }
    return STORE_OK;
}

int mpu_create(store *s, const char *ns, const void *key, size_t klen, const void *meta,
               size_t meta_len, char id[MPU_ID_LEN + 1])
{
    uint8_t rnd[MPU_ID_LEN / 2];
    if (RAND_bytes(rnd, sizeof rnd) != 1)
        return STORE_IO;
    util_hex(rnd, sizeof rnd, id);
    char dir[PATH_MAX - 64], path[PATH_MAX];
    upload_dir(s, id, dir, sizeof dir);
    if (mkdir(dir, 0755) != 0)
        return store_status_of_errno(errno);
    size_t nl = strlen(ns), len = 6 + 8 + 4 + nl + 4 + klen + 4 + meta_len;
    uint8_t *b = malloc(len), *p = b;
    if (b == NULL) {
        rmdir(dir);
        return STORE_IO;
    }
    memcpy(p, INFO_MAGIC, 6);
    le(p + 6, util_now_ms(), 8);
    p += 14;
    le(p, nl, 4);
    memcpy(p + 4, ns, nl);
    p += 4 + nl;
    le(p, klen, 4);
    memcpy(p + 4, key, klen);
    p += 4 + klen;
    le(p, meta_len, 4);
    if (meta_len)
        memcpy(p + 4, meta, meta_len);
    snprintf(path, sizeof path, "%s/info", dir);
    int rc = write_file(path, b, len);
    free(b);
    /* the upload's folder and its info on disk before it is answered */
    char root[PATH_MAX];
    snprintf(root, sizeof root, "%s/multipart", store_dir(s));
    if (rc == STORE_OK && (util_fsync_dir(dir) != 0 || util_fsync_dir(root) != 0)) {
        unlink(path);
        rc = STORE_IO;
    }
    if (rc != STORE_OK)
        rmdir(dir);
    return rc;
}

void mpu_info_clear(mpu_info *info)
{
    free(info->ns);
    free(info->key);
    free(info->meta);
    memset(info, 0, sizeof *info);
}

/* Takes a length-prefixed field at *p, if it fits before end. */
static int take(const uint8_t **p, const uint8_t *end, char **out, size_t *len)
{
    if (end - *p < 4)
        return -1;
    size_t n = (size_t)unle(*p, 4);
    if ((size_t)(end - *p - 4) < n)
        return -1;
    *out = malloc(n + 1);
    if (*out == NULL)
        return -1;
    memcpy(*out, *p + 4, n);
    (*out)[n] = '\0';
    *len = n;
    *p += 4 + n;
    return 0;
}

int mpu_get(store *s, const char *id, mpu_info *info)
{
    memset(info, 0, sizeof *info);
    if (!valid_id(id))
        return STORE_NOTFOUND;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/multipart/%s/info", store_dir(s), id);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? STORE_NOTFOUND : STORE_IO;
    struct stat sb;
    uint8_t *b = NULL;
    int rc = STORE_IO;
    if (fstat(fd, &sb) == 0 && sb.st_size >= 14 && sb.st_size < (64 << 20) &&
        (b = malloc((size_t)sb.st_size)) != NULL &&
        util_pread_all(fd, b, (size_t)sb.st_size, 0) == sb.st_size &&
        memcmp(b, INFO_MAGIC, 6) == 0) {
        const uint8_t *p = b + 14, *end = b + sb.st_size;
        size_t nl;
        char *meta = NULL;
        info->created_ms = unle(b + 6, 8);
        if (take(&p, end, &info->ns, &nl) == 0 && take(&p, end, &info->key, &info->klen) == 0 &&
            take(&p, end, &meta, &info->meta_len) == 0) {
            info->meta = meta;
            memcpy(info->id, id, MPU_ID_LEN + 1);
            rc = STORE_OK;
        }
    }
    free(b);
    close(fd);
    if (rc != STORE_OK)
        mpu_info_clear(info);
    return rc;
}

/* Part files of one number are replaced one writer at a time: two at once
 * would each drop the other's file (part_copies), and keep neither.  A lock
 * per upload (of a few, by the upload's id), so that uploads do not wait
 * for each other. */
#define COMMIT_LOCKS 64
static pthread_mutex_t commit_mu[COMMIT_LOCKS];
static pthread_once_t commit_once = PTHREAD_ONCE_INIT;

static void commit_locks_init(void)
{
    for (int i = 0; i < COMMIT_LOCKS; i++)
        pthread_mutex_init(&commit_mu[i], NULL);
}

static pthread_mutex_t *commit_lock(const char *dir)
{
    pthread_once(&commit_once, commit_locks_init);
    return &commit_mu[util_fnv1a(dir, strlen(dir)) % COMMIT_LOCKS];
}

#define GONE_CHECK_EVERY (64u << 20) /* bytes of a part between looks at its upload */

/* An upload is completed or aborted by one request: the one that renames
 * its info to CLOSING (the others find no upload).  A completion that fails
 * gives it back (release). */
#define CLOSING "info.closing"

struct mpu_writer {
    store *s;
    int fd;
    char tmp[PATH_MAX];
    char dir[PATH_MAX - 64];
    int number;
    EVP_MD_CTX *md5;
    EVP_MD_CTX *sha;
    uint64_t size;
    int status;
    int finished;
    uint8_t digest[16];
};

/* Has the upload w writes a part of gone (aborted, completed or expired:
 * remove_upload takes its info first)? */
static int upload_gone(const mpu_writer *w)
{
    char info[PATH_MAX + 8];
    snprintf(info, sizeof info, "%s/info", w->dir);
    return access(info, F_OK) != 0 && errno == ENOENT;
}

int mpu_part_begin(store *s, const char *id, int number, mpu_writer **out)
{
    if (!valid_id(id) || number < 1 || number > MPU_MAX_PARTS)
        return STORE_NOTFOUND;
    mpu_writer *w = calloc(1, sizeof *w);
    if (w == NULL)
        return STORE_IO;
    w->s = s;
    upload_dir(s, id, w->dir, sizeof w->dir);
    uint8_t rnd[8];
    char hex[17];
    RAND_bytes(rnd, sizeof rnd);
    util_hex(rnd, sizeof rnd, hex);
    snprintf(w->tmp, sizeof w->tmp, "%s/tmp.%05d.%s", w->dir, number, hex);
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        int e = errno;
        free(w);
        return e == ENOENT ? STORE_NOTFOUND : store_status_of_errno(e);
    }
    w->number = number;
    w->md5 = EVP_MD_CTX_new();
    w->sha = EVP_MD_CTX_new();
    if (w->md5 == NULL || !EVP_DigestInit_ex(w->md5, cksum_md_md5(), NULL) || w->sha == NULL ||
        !EVP_DigestInit_ex(w->sha, cksum_md_sha256(), NULL)) {
        mpu_part_abort(w);
        return STORE_IO;
    }
    *out = w;
    return STORE_OK;
}

int mpu_part_write(mpu_writer *w, const void *buf, size_t len)
{
    if (w->status != STORE_OK)
        return w->status;
    if (store_long_cut(w->s))
        return w->status = STORE_SHUTDOWN; /* (a stop whose time is up) */
    int rc = util_write_all(w->fd, buf, len);
    if (rc != 0)
        return w->status = store_status_of_errno(-rc);
    EVP_DigestUpdate(w->md5, buf, len);
    EVP_DigestUpdate(w->sha, buf, len);
    /* a long part (a copy of gigabytes) stops once its upload is gone */
    if (w->size / GONE_CHECK_EVERY != (w->size + len) / GONE_CHECK_EVERY && upload_gone(w))
        w->status = STORE_NOTFOUND;
    w->size += len;
    return w->status;
}

void mpu_part_abort(mpu_writer *w)
{
    if (w == NULL)
        return;
    if (w->fd >= 0)
        close(w->fd);
    if (w->tmp[0])
        unlink(w->tmp);
    /* the upload went while this part was written: its removal could not
     * take the folder then, this part's file being in it */
    if (upload_gone(w))
        rmdir(w->dir);
    EVP_MD_CTX_free(w->md5);
    EVP_MD_CTX_free(w->sha);
    free(w);
}

/* Is name a part's file ("NNNNN.md5hex"), not the info or a part being written? */
static int part_file(const char *name)
{
    return name[0] >= '0' && name[0] <= '9';
}

/* Unlinks name in d; returns the bytes it held if it was a part's file and
 * this call removed it (each part's bytes leave the count once). */
static uint64_t unlink_counted(DIR *d, const char *name)
{
    struct stat sb;
    int counted = part_file(name) && fstatat(dirfd(d), name, &sb, 0) == 0;
    if (unlinkat(dirfd(d), name, 0) != 0 || !counted)
        return 0;
    return (uint64_t)sb.st_size;
}

/* The bytes of the files of part number in dir other than keep (NULL:
 * all); with drop, those files are removed, and their bytes leave the
 * count. */
static uint64_t part_copies(store *s, const char *dir, int number, const char *keep, int drop)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0;
    char prefix[16];
    snprintf(prefix, sizeof prefix, "%05d.", number);
    struct dirent *de;
    struct stat sb;
    uint64_t bytes = 0;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, prefix, 6) != 0 || (keep && strcmp(de->d_name, keep) == 0))
            continue;
        if (drop)
            bytes += unlink_counted(d, de->d_name);
        else if (fstatat(dirfd(d), de->d_name, &sb, 0) == 0)
            bytes += (uint64_t)sb.st_size;
    }
    closedir(d);
    if (drop)
        store_multipart_bytes(s, -(int64_t)bytes);
    return bytes;
}

uint64_t mpu_part_replaces(mpu_writer *w)
{
    return part_copies(w->s, w->dir, w->number, NULL, 0);
}

int mpu_part_finish(mpu_writer *w, uint8_t md5[16], uint8_t sha256[32], uint64_t *size)
{
    unsigned int n;
    if (w->status == STORE_OK && fdatasync(w->fd) != 0)
        w->status = store_status_of_errno(errno);
    if (w->status == STORE_OK &&
        (!EVP_DigestFinal_ex(w->md5, w->digest, &n) || !EVP_DigestFinal_ex(w->sha, sha256, &n)))
        w->status = STORE_IO;
    if (w->status == STORE_OK) {
        w->finished = 1;
        memcpy(md5, w->digest, 16);
        *size = w->size;
    }
    return w->status;
}

int mpu_part_commit(mpu_writer *w)
{
    int rc = w->finished ? w->status : STORE_IO;
    if (rc != STORE_OK) {
        mpu_part_abort(w);
        return rc;
    }
    char hex[33], name[64], path[PATH_MAX];
    util_hex(w->digest, 16, hex);
    snprintf(name, sizeof name, "%05d.%s", w->number, hex);
    snprintf(path, sizeof path, "%s/%s", w->dir, name);
    pthread_mutex_t *mu = commit_lock(w->dir);
    pthread_mutex_lock(mu);
    /* a link, not a rename: the same part sent again (a retry) finds its
     * file there, the same bytes, and adds none to the count */
    int linked = link(w->tmp, path) == 0, e = errno;
    if (!linked && (e == EPERM || e == EOPNOTSUPP || e == EMLINK)) {
        /* a file system without hard links: a rename, which replaces */
        struct stat old;
        int had = stat(path, &old) == 0;
        linked = rename(w->tmp, path) == 0;
        e = errno;
        if (linked && had)
            store_multipart_bytes(w->s, -(int64_t)old.st_size);
    }
    if (!linked && e != EEXIST) {
        rc = e == ENOENT ? STORE_NOTFOUND : STORE_IO; /* upload gone meanwhile */
    } else {
        if (linked)
            store_multipart_bytes(w->s, (int64_t)w->size);
        unlink(w->tmp);
        w->tmp[0] = '\0';
        if (upload_gone(w)) {
            /* removed (or being completed) while this part came: its own
             * file goes, which a removal may not have seen; the others are
             * the removal's, or the completion's */
            if (linked && unlink(path) == 0)
                store_multipart_bytes(w->s, -(int64_t)w->size);
            rc = STORE_NOTFOUND;
        } else {
            part_copies(w->s, w->dir, w->number, name, 1); /* the copies it replaces */
        }
    }
    pthread_mutex_unlock(mu);
    if (rc == STORE_OK &&
        util_fsync_dir(w->dir) != 0) /* (its name on disk before it is answered) */
        rc = STORE_IO;
    mpu_part_abort(w);
    return rc;
}

static int cmp_part(const void *a, const void *b)
{
    const mpu_part *x = a, *y = b;
    return (x->number > y->number) - (x->number < y->number);
}

int mpu_parts(store *s, const char *id, mpu_part **parts, size_t *n)
{
    *parts = NULL;
    *n = 0;
    if (!valid_id(id))
        return STORE_NOTFOUND;
    char dir[PATH_MAX];
    upload_dir(s, id, dir, sizeof dir);
    DIR *d = opendir(dir);
    if (d == NULL)
        return errno == ENOENT ? STORE_NOTFOUND : STORE_IO;
    size_t cap = 0;
    struct dirent *de;
    int rc = STORE_OK;
    while ((de = readdir(d)) != NULL) {
        /* "NNNNN.<32 hex>" */
        if (strlen(de->d_name) != 38 || de->d_name[5] != '.')
            continue;
        mpu_part p = {0};
        p.number = atoi(de->d_name);
        struct stat sb;
        if (p.number < 1 || util_unhex(de->d_name + 6, 32, p.md5, 16) != 0 ||
            fstatat(dirfd(d), de->d_name, &sb, 0) != 0)
            continue;
        p.size = (uint64_t)sb.st_size;
        p.mtime_ms = (uint64_t)sb.st_mtim.tv_sec * 1000 + (uint64_t)sb.st_mtim.tv_nsec / 1000000;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            mpu_part *np = realloc(*parts, cap * sizeof *np);
            if (np == NULL) {
                rc = STORE_IO;
                break;
            }
            *parts = np;
        }
        (*parts)[(*n)++] = p;
    }
    closedir(d);
    if (rc == STORE_OK && *n > 1) {
        qsort(*parts, *n, sizeof **parts, cmp_part);
        /* two files of one number (a replace in progress): keep the newer */
        size_t j = 0;
        for (size_t i = 0; i < *n; i++) {
            if (j > 0 && (*parts)[j - 1].number == (*parts)[i].number) {
                if ((*parts)[i].mtime_ms >= (*parts)[j - 1].mtime_ms)
                    (*parts)[j - 1] = (*parts)[i];
                continue;
            }
            (*parts)[j++] = (*parts)[i];
        }
        *n = j;
    }
    return rc;
}

/* Removes an upload's files; the bytes of each part file this call
 * unlinks leave the count. */
static void remove_upload(store *s, const char *id)
{
    char dir[PATH_MAX];
    upload_dir(s, id, dir, sizeof dir);
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    /* the info first (or the claim's): a part written meanwhile then sees
     * the upload gone, and removes its own file (mpu_part_commit,
     * mpu_part_abort); a stop midway leaves no upload to come back */
    unlinkat(dirfd(d), "info", 0);
    unlinkat(dirfd(d), CLOSING, 0);
    struct dirent *de;
    uint64_t freed = 0;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.')
            freed += unlink_counted(d, de->d_name);
    closedir(d);
    rmdir(dir);
    store_multipart_bytes(s, -(int64_t)freed);
}

uint64_t mpu_bytes_on_disk(store *s)
{
    char root[PATH_MAX - 128];
    snprintf(root, sizeof root, "%s/multipart", store_dir(s));
    DIR *top = opendir(root);
    if (top == NULL)
        return 0;
    uint64_t total = 0;
    struct dirent *up;
    while ((up = readdir(top)) != NULL) {
        if (!valid_id(up->d_name))
            continue;
        char dir[PATH_MAX - 64];
        upload_dir(s, up->d_name, dir, sizeof dir);
        DIR *d = opendir(dir);
        struct dirent *de;
        struct stat sb;
        while (d && (de = readdir(d)) != NULL)
            if (part_file(de->d_name) && fstatat(dirfd(d), de->d_name, &sb, 0) == 0)
                total += (uint64_t)sb.st_size;
        if (d)
            closedir(d);
    }
    closedir(top);
    return total;
}

static int copy_part(store *s, const char *id, const mpu_part *p, store_upload *u, uint8_t *buf)
{
    char path[PATH_MAX], hex[33];
    util_hex(p->md5, 16, hex);
    snprintf(path, sizeof path, "%s/multipart/%s/%05d.%s", store_dir(s), id, p->number, hex);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) /* (gone: replaced since it was listed, or the upload went) */
        return errno == ENOENT ? STORE_DIGEST_MISMATCH : STORE_IO;
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    int rc = STORE_OK;
    for (;;) {
        ssize_t n = read(fd, buf, COPY_BUF);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? STORE_IO : STORE_OK;
            break;
        }
        if (store_long_cut(s)) {
            rc = STORE_SHUTDOWN; /* (a stop whose time is up: the upload goes on after it) */
            break;
        }
        if ((rc = store_upload_write(u, buf, (size_t)n)) != STORE_OK)
            break;
    }
    close(fd);
    return rc;
}

/* Renames the upload's info file from to to: STORE_OK, or STORE_NOTFOUND
 * if it is not there (another request renamed or removed it first). */
static int rename_info(store *s, const char *id, const char *from, const char *to)
{
    char dir[PATH_MAX], a[PATH_MAX + 16], b[PATH_MAX + 16];
    upload_dir(s, id, dir, sizeof dir);
    snprintf(a, sizeof a, "%s/%s", dir, from);
    snprintf(b, sizeof b, "%s/%s", dir, to);
    return rename(a, b) == 0 ? STORE_OK : errno == ENOENT ? STORE_NOTFOUND : STORE_IO;
}

static int claim(store *s, const char *id)
{
    return rename_info(s, id, "info", CLOSING);
}

static void release(store *s, const char *id)
{
    rename_info(s, id, CLOSING, "info");
}

int mpu_complete(store *s, const char *id, const int *numbers, const char (*md5s)[33], size_t n,
                 const void *meta, size_t meta_len, const store_cond *cond, store_put_result *res)
{
    mpu_info info;
    int rc = mpu_get(s, id, &info);
    if (rc != STORE_OK)
        return rc;
    if ((rc = claim(s, id)) != STORE_OK) {
        mpu_info_clear(&info); /* (aborted, or completed, meanwhile) */
        return rc;
    }
    mpu_part *parts;
    size_t np;
    if ((rc = mpu_parts(s, id, &parts, &np)) != STORE_OK) {
        release(s, id);
        mpu_info_clear(&info);
        return rc;
    }
    uint64_t total = 0, all = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < np; j++)
            if (parts[j].number == numbers[i])
                total += parts[j].size;
    for (size_t j = 0; j < np; j++)
        all += parts[j].size;
    store_upload *u;
    uint8_t *buf = malloc(COPY_BUF);
    rc = buf ? store_upload_begin(s, (int64_t)total, 0, &u) : STORE_IO;
    for (size_t i = 0; rc == STORE_OK && i < n; i++) {
        mpu_part key = {.number = numbers[i]};
        mpu_part *p = bsearch(&key, parts, np, sizeof *parts, cmp_part);
        char hex[33] = "";
        if (p)
            util_hex(p->md5, 16, hex);
        /* the bytes the client listed, or none: a part sent again since
         * the caller checked the list is not taken in its place */
        rc = p && strcmp(hex, md5s[i]) == 0 ? copy_part(s, id, p, u, buf) : STORE_DIGEST_MISMATCH;
        if (rc != STORE_OK)
            store_upload_abort(u);
    }
    if (rc == STORE_OK) {
        /* the parts become the object: their room is its own; the count
         * loses them as their files go */
        store_upload_of_parts(u, all);
        rc = store_upload_commit(u, info.ns, info.key, info.klen, NULL, meta, meta_len, cond, res);
        /* (NO_NAMESPACE: its bucket went meanwhile, and so does it) */
        if (rc == STORE_OK || rc == STORE_NO_NAMESPACE)
            remove_upload(s, id);
    }
    if (rc != STORE_OK && rc != STORE_NO_NAMESPACE)
        release(s, id); /* (the upload goes on: the client may send parts again) */
    free(buf);
    free(parts);
    mpu_info_clear(&info);
    return rc;
}

int mpu_abort(store *s, const char *id)
{
    mpu_info info;
    int rc = mpu_get(s, id, &info);
    if (rc != STORE_OK)
        return rc;
    mpu_info_clear(&info);
    if ((rc = claim(s, id)) != STORE_OK)
        return rc; /* (completed or aborted meanwhile) */
    remove_upload(s, id);
    return STORE_OK;
}

void mpu_recover(store *s)
{
    char root[PATH_MAX - 128];
    snprintf(root, sizeof root, "%s/multipart", store_dir(s));
    DIR *d = opendir(root);
    if (d == NULL)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!valid_id(de->d_name))
            continue;
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s/%.32s", root, de->d_name);
        DIR *u = opendir(dir);
        if (u == NULL)
            continue;
        /* a completion the stop cut short: the upload is there again (if
         * its object was made, an abort clears what is left) */
        renameat(dirfd(u), CLOSING, dirfd(u), "info");
        struct dirent *f;
        struct stat sb;
        int has_info = fstatat(dirfd(u), "info", &sb, 0) == 0;
        while ((f = readdir(u)) != NULL)
            if (strncmp(f->d_name, "tmp.", 4) == 0 || strcmp(f->d_name, "info.tmp") == 0)
                unlinkat(dirfd(u), f->d_name, 0); /* (writes no one finishes now) */
        closedir(u);
        if (!has_info)
            remove_upload(s, de->d_name); /* made, or removed, only in part */
    }
    closedir(d);
}

typedef struct listed {
    mpu_info info;
} listed;

static int cmp_created(const void *a, const void *b)
{
    const listed *x = a, *y = b;
    if (x->info.created_ms != y->info.created_ms)
        return (x->info.created_ms > y->info.created_ms) -
               (x->info.created_ms < y->info.created_ms);
    return strcmp(x->info.id, y->info.id);
}

int mpu_list(store *s, const char *ns, int (*cb)(void *ctx, const mpu_info *info), void *ctx)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/multipart", store_dir(s));
    DIR *d = opendir(dir);
    if (d == NULL)
        return STORE_IO;
    listed *all = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        mpu_info info;
        if (!valid_id(de->d_name) || mpu_get(s, de->d_name, &info) != STORE_OK)
            continue;
        if (ns && strcmp(info.ns, ns) != 0) {
            mpu_info_clear(&info);
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            listed *p = realloc(all, cap * sizeof *p);
            if (p == NULL) {
                mpu_info_clear(&info);
                break;
            }
            all = p;
        }
        all[n++].info = info;
    }
    closedir(d);
    if (n > 1)
        qsort(all, n, sizeof *all, cmp_created);
    int stop = 0;
    for (size_t i = 0; i < n; i++) {
        if (!stop)
            stop = cb(ctx, &all[i].info);
        mpu_info_clear(&all[i].info);
    }
    free(all);
    return STORE_OK;
}

typedef struct expire_ctx {
    store *s;
    uint64_t cutoff;
    int removed;
} expire_ctx;

static int expire_one(void *ctx, const mpu_info *info)
{
    expire_ctx *e = ctx;
    /* (claimed first: not one a completion or an abort has begun) */
    if (info->created_ms < e->cutoff && claim(e->s, info->id) == STORE_OK) {
        remove_upload(e->s, info->id);
        e->removed++;
    }
    return 0;
}

int mpu_closing(store *s, const char *id)
{
    char dir[PATH_MAX], path[PATH_MAX + 16];
    if (!valid_id(id))
        return 0;
    upload_dir(s, id, dir, sizeof dir);
    snprintf(path, sizeof path, "%s/" CLOSING, dir);
    return access(path, F_OK) == 0;
}

int mpu_drop_ns(store *s, const char *ns)
{
    expire_ctx e = {s, UINT64_MAX, 0};
    mpu_list(s, ns, expire_one, &e);
    return e.removed;
}

int mpu_expire(store *s, uint64_t max_age_ms)
{
    uint64_t now = util_now_ms();
    expire_ctx e = {s, now > max_age_ms ? now - max_age_ms : 0, 0};
    mpu_list(s, NULL, expire_one, &e);
    /* an upload directory without info (a crash during create) goes after an hour */
    char dir[PATH_MAX - 128];
    snprintf(dir, sizeof dir, "%s/multipart", store_dir(s));
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            char info[PATH_MAX];
            struct stat sb;
            if (!valid_id(de->d_name))
                continue;
            snprintf(info, sizeof info, "%s/%.32s/info", dir, de->d_name);
            char closing[PATH_MAX];
            snprintf(closing, sizeof closing, "%s/%.32s/" CLOSING, dir, de->d_name);
            if (stat(info, &sb) != 0 && errno == ENOENT && stat(closing, &sb) != 0 &&
                fstatat(dirfd(d), de->d_name, &sb, 0) == 0 &&
                (uint64_t)sb.st_mtim.tv_sec * 1000 + 3600 * 1000 < now) {
                remove_upload(s, de->d_name);
                e.removed++;
            }
        }
        closedir(d);
    }
    return e.removed;
}
