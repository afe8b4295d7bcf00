/*
 * durability_shim.c - an LD_PRELOAD library for the integration tests: is
 * everything a write changed on disk before the client hears it succeeded?
 *
 * It follows the regular files opened under $CAIRN_SHIM_DIR: a write to one
 * (write, pwrite, writev, pwritev) leaves its file dirty, unless the file was
 * opened O_SYNC or O_DSYNC; fsync or fdatasync of any descriptor of the file
 * cleans it.  When the process sends the head of a 2xx HTTP answer on a
 * socket while some file is dirty, the file's path goes to $CAIRN_SHIM_LOG,
 * one line each time: a power loss at that moment could take back what the
 * answer acknowledges.  Directories too: a name made in one (rename, link,
 * mkdir) leaves it dirty until an fsync of it; a file or folder removed by
 * the time of the answer is forgotten.  (A file created in place,
 * a temporary one, a name removed, or a name made under $CAIRN_SHIM_SCRATCH
 * does not: losing those loses nothing acknowledged.)  Each file or directory followed is named in
 * $CAIRN_SHIM_SEEN, if set.  Only the syscalls are watched; the process runs
 * as usual.  The calls watched are those cairnd and liblmdb make (`nm -D`):
 * open, openat, write, pwrite, writev, pwritev, fsync, fdatasync, rename,
 * renameat, link, linkat, mkdir, and send, sendto, sendmsg for the answers.
 *
 * A disk that fails: while the file $CAIRN_SHIM_FAIL_SYNC names exists, an
 * fsync or fdatasync of a file followed fails with EIO, and leaves it dirty.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_FD 4096

typedef struct {
    int used, sync;
    dev_t dev;
    ino_t ino;
    char path[256];
} tracked;

static tracked fds[MAX_FD];
/* the dirty files, by inode (two descriptors of one file share it) */
static struct {
    dev_t dev;
    ino_t ino;
    char path[256];
} dirty[1024];
static int ndirty;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

#define REAL(name) ((__typeof__(&name))dlsym(RTLD_NEXT, #name))

/* path made absolute into abs; 0 if it is under $CAIRN_SHIM_DIR */
static int watched(const char *path, char abs[256])
{
    const char *dir = getenv("CAIRN_SHIM_DIR");
    if (dir == NULL)
        return -1;
    if (path[0] != '/') {
        char cwd[200];
        if (getcwd(cwd, sizeof cwd) == NULL)
            return -1;
        snprintf(abs, 256, "%s/%s", cwd, path);
    } else {
        snprintf(abs, 256, "%s", path);
    }
    size_t n = strlen(dir);
    if (n && dir[n - 1] == '/' && strlen(abs) == n - 1)
        n--; /* the folder itself */
    return strncmp(abs, dir, n) == 0 ? 0 : -1;
}

static void mark_dirty(dev_t dev, ino_t ino, const char *path)
{
    int i = 0;
    while (i < ndirty && !(dirty[i].dev == dev && dirty[i].ino == ino))
        i++;
    if (i < ndirty)
        return;
    if (ndirty == (int)(sizeof dirty / sizeof *dirty)) {
        i = ndirty - 1; /* (full: the test fails rather than miss one) */
        path = "(durability_shim: too many dirty files to follow)";
    } else {
        ndirty++;
    }
    dirty[i].dev = dev;
    dirty[i].ino = ino;
    snprintf(dirty[i].path, sizeof dirty[i].path, "%s", path);
}

/* A name was made at path (rc: the call's result): its directory is dirty. */
static void name_made(const char *path, int rc)
{
    char abs[256];
    struct stat st;
    const char *scratch = getenv("CAIRN_SHIM_SCRATCH"); /* names that matter to no one */
    if (rc != 0 || watched(path, abs) != 0 ||
        (scratch && strncmp(abs, scratch, strlen(scratch)) == 0))
        return;
    char *slash = strrchr(abs, '/');
    if (slash == NULL || slash == abs)
        return;
    *slash = '\0';
    if (stat(abs, &st) != 0)
        return;
    pthread_mutex_lock(&mu);
    mark_dirty(st.st_dev, st.st_ino, abs);
    pthread_mutex_unlock(&mu);
}

static void follow(int fd, const char *path, int flags)
{
    struct stat st;
    char abs[256];
    if (fd < 0 || fd >= MAX_FD || fstat(fd, &st) != 0 ||
        !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) || watched(path, abs) != 0)
        return;
    const char *seen = getenv("CAIRN_SHIM_SEEN"); /* (the test's proof that this runs) */
    FILE *f = seen ? fopen(seen, "a") : NULL;
    if (f) {
        fprintf(f, "%s\n", abs);
        fclose(f);
    }
    pthread_mutex_lock(&mu);
    fds[fd].used = 1;
    fds[fd].sync = (flags & (O_SYNC | O_DSYNC)) != 0;
    fds[fd].dev = st.st_dev;
    fds[fd].ino = st.st_ino;
    snprintf(fds[fd].path, sizeof fds[fd].path, "%s", abs);
    pthread_mutex_unlock(&mu);
}

static void wrote(int fd, ssize_t n)
{
    if (n <= 0 || fd < 0 || fd >= MAX_FD)
        return;
    pthread_mutex_lock(&mu);
    if (fds[fd].used && !fds[fd].sync)
        mark_dirty(fds[fd].dev, fds[fd].ino, fds[fd].path);
    pthread_mutex_unlock(&mu);
}

static void synced(int fd, int rc)
{
    if (rc != 0 || fd < 0 || fd >= MAX_FD)
        return;
    pthread_mutex_lock(&mu);
    if (fds[fd].used)
        for (int i = 0; i < ndirty; i++)
            if (dirty[i].dev == fds[fd].dev && dirty[i].ino == fds[fd].ino) {
                dirty[i] = dirty[--ndirty];
                break;
            }
    pthread_mutex_unlock(&mu);
}

/* The head of a 2xx answer goes out: note every dirty file. */
static void answering(int fd, const void *p, size_t n)
{
    if (n < 10 || (memcmp(p, "HTTP/1.1 2", 10) != 0 && memcmp(p, "HTTP/1.0 2", 10) != 0))
        return;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode))
        return;
    const char *log = getenv("CAIRN_SHIM_LOG");
    pthread_mutex_lock(&mu);
    /* a file or folder removed since does not count: nothing names it */
    for (int i = 0; i < ndirty;) {
        struct stat now;
        if (dirty[i].path[0] == '/' && (stat(dirty[i].path, &now) != 0 ||
                                        now.st_ino != dirty[i].ino || now.st_dev != dirty[i].dev))
            dirty[i] = dirty[--ndirty];
        else
            i++;
    }
    if (ndirty && log) {
        FILE *f = fopen(log, "a");
        if (f) {
            for (int i = 0; i < ndirty; i++)
                fprintf(f, "%s\n", dirty[i].path);
            fclose(f);
        }
    }
    pthread_mutex_unlock(&mu);
}

/* open and open64, followed */
static int open_with(int (*real)(const char *, int, ...), const char *path, int flags, va_list ap)
{
    int mode = (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? va_arg(ap, int) : 0;
    int fd = real(path, flags, mode);
    follow(fd, path, flags);
    return fd;
}

int open(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    int fd = open_with(REAL(open), path, flags, ap);
    va_end(ap);
    return fd;
}

int open64(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    int fd = open_with(REAL(open64), path, flags, ap);
    va_end(ap);
    return fd;
}

int openat(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    int mode = (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? va_arg(ap, int) : 0;
    va_end(ap);
    int fd = REAL(openat)(dirfd, path, flags, mode);
    if (dirfd == AT_FDCWD || path[0] == '/')
        follow(fd, path, flags);
    return fd;
}

int close(int fd)
{
    if (fd >= 0 && fd < MAX_FD) {
        pthread_mutex_lock(&mu);
        fds[fd].used = 0;
        pthread_mutex_unlock(&mu);
    }
    return REAL(close)(fd);
}

ssize_t write(int fd, const void *p, size_t n)
{
    answering(fd, p, n);
    ssize_t r = REAL(write)(fd, p, n);
    wrote(fd, r);
    return r;
}

ssize_t pwrite(int fd, const void *p, size_t n, off_t off)
{
    ssize_t r = REAL(pwrite)(fd, p, n, off);
    wrote(fd, r);
    return r;
}

ssize_t pwrite64(int fd, const void *p, size_t n, off_t off)
{
    ssize_t r = REAL(pwrite64)(fd, p, n, off);
    wrote(fd, r);
    return r;
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    if (cnt > 0)
        answering(fd, iov[0].iov_base, iov[0].iov_len);
    ssize_t r = REAL(writev)(fd, iov, cnt);
    wrote(fd, r);
    return r;
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    ssize_t r = REAL(pwritev)(fd, iov, cnt, off);
    wrote(fd, r);
    return r;
}

/* Is the disk to fail a sync of fd (see the top)? */
static int sync_fails(int fd)
{
    const char *flag = getenv("CAIRN_SHIM_FAIL_SYNC");
    if (flag == NULL || fd < 0 || fd >= MAX_FD || access(flag, F_OK) != 0)
        return 0;
    pthread_mutex_lock(&mu);
    int followed = fds[fd].used;
    pthread_mutex_unlock(&mu);
    return followed;
}

int fsync(int fd)
{
    if (sync_fails(fd)) {
        errno = EIO;
        return -1;
    }
    int r = REAL(fsync)(fd);
    synced(fd, r);
    return r;
}

int fdatasync(int fd)
{
    if (sync_fails(fd)) {
        errno = EIO;
        return -1;
    }
    int r = REAL(fdatasync)(fd);
    synced(fd, r);
    return r;
}

ssize_t send(int fd, const void *p, size_t n, int flags)
{
    answering(fd, p, n);
    return REAL(send)(fd, p, n, flags);
}

ssize_t sendto(int fd, const void *p, size_t n, int flags, const struct sockaddr *a, socklen_t al)
{
    answering(fd, p, n);
    return REAL(sendto)(fd, p, n, flags, a, al);
}

ssize_t sendmsg(int fd, const struct msghdr *m, int flags)
{
    if (m->msg_iovlen > 0)
        answering(fd, m->msg_iov[0].iov_base, m->msg_iov[0].iov_len);
    return REAL(sendmsg)(fd, m, flags);
}

int rename(const char *from, const char *to)
{
    int r = REAL(rename)(from, to);
    name_made(to, r);
    return r;
}

int renameat(int fromfd, const char *from, int tofd, const char *to)
{
    int r = REAL(renameat)(fromfd, from, tofd, to);
    if (tofd == AT_FDCWD || to[0] == '/')
        name_made(to, r);
    return r;
}

int link(const char *from, const char *to)
{
    int r = REAL(link)(from, to);
    name_made(to, r);
    return r;
}

int linkat(int fromfd, const char *from, int tofd, const char *to, int flags)
{
    int r = REAL(linkat)(fromfd, from, tofd, to, flags);
    if (tofd == AT_FDCWD || to[0] == '/')
        name_made(to, r);
    return r;
}

int mkdir(const char *path, mode_t mode)
{
    int r = REAL(mkdir)(path, mode);
    name_made(path, r);
    return r;
}
