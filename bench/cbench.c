/*
 * cbench.c - the helpers bench/run.sh needs and the shell does badly.
 *
 *   cbench freeport
 *       prints a TCP port on 127.0.0.1 that was free a moment ago.
 *   cbench gen KIND SIZE SEED
 *       writes a deterministic body to stdout: KIND is text (log-like lines,
 *       compresses about 3-4x), random (incompressible) or mixed (48 KiB of
 *       text, 16 KiB of random, repeated: "pattern + random").
 *   cbench sha KIND SIZE SEED
 *       prints the SHA-256 (hex) of the body gen would write, without writing it.
 *   cbench shafile PATH|-
 *       prints the SHA-256 (hex) of a file or of stdin, and its size.
 *   cbench smallset HOST:PORT ROOT N SIZE KIND SEED LIST
 *       makes N distinct bodies of SIZE bytes; writes each as ROOT/cas/<hex>
 *       (nginx serves ROOT), PUTs each to cairnd at HOST:PORT/cas/<hex> over
 *       four keep-alive connections, and appends "/cas/<hex>" to LIST.
 *   cbench get HOST:PORT PATH [HEADER]
 *       GETs PATH once, reads the answer into a 1 MiB buffer and drops it;
 *       prints "status body_bytes seconds" (seconds from connect to last byte).
 *   cbench populate DATA N
 *       fills a cairnd data directory with N entries in the "cas" namespace
 *       (tiny raw bodies "cairn bench entry %07u\n", real blob files), writing
 *       the LMDB index directly through storage/index.h in large transactions.
 *   cbench startup CAIRND DATA LOG RUNS [cold]
 *       starts CAIRND --listen 127.0.0.1:0 --data DATA RUNS times and prints,
 *       for each start, the milliseconds from fork+exec to the "listening"
 *       line on stdout, to the first 200 from GET /readyz, and for SIGTERM to
 *       exit.  With "cold", drops the page cache before each start
 *       (/proc/sys/vm/drop_caches, or else posix_fadvise on the index file)
 *       and says which it used.
 *
 * Nothing here is clever: blocking sockets, one request at a time per
 * connection, a minimal HTTP/1.1 response parser that understands
 * Content-Length (which is all cairnd and nginx send to these requests).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "../common/util.h"
#include "../storage/codec.h"
#include "../storage/index.h"

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "cbench: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    exit(1);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void hex(const uint8_t *in, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[in[i] >> 4];
        out[2 * i + 1] = d[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static void sha256(const void *p, size_t n, uint8_t out[32])
{
    unsigned int len;
    EVP_Digest(p, n, out, &len, EVP_sha256(), NULL);
}

/* ---- deterministic bodies --------------------------------------------------- */

typedef struct rng {
    uint64_t s[4];
} rng;

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void rng_seed(rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(rng *r) /* xoshiro256** */
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

static void fill_random(rng *r, uint8_t *p, size_t n)
{
    while (n >= 8) {
        uint64_t v = rng_next(r);
        memcpy(p, &v, 8);
        p += 8;
        n -= 8;
    }
    if (n) {
        uint64_t v = rng_next(r);
        memcpy(p, &v, n);
    }
}

static const char *words[] = {
    "cache", "build",  "target", "compile", "link",    "object",  "runner", "artifact",
    "layer", "digest", "src",    "lib",     "include", "test",    "main",   "util",
    "hash",  "store",  "index",  "blob",    "module",  "package", "crate",  "gradle",
    "node",  "vendor", "debug",  "release", "x86_64",  "aarch64", "linux",  "archive"};
static const char *levels[] = {"INFO", "INFO", "INFO", "DEBUG", "WARN"};
static const char *exts[] = {"c", "h", "o", "rs", "go", "java", "ts", "a"};

/* Log-like text: every byte printable, realistic redundancy. */
static void fill_text(rng *r, uint8_t *p, size_t n)
{
    char line[256];
    size_t done = 0;
    while (done < n) {
        uint64_t a = rng_next(r), b = rng_next(r);
        int len =
            snprintf(line, sizeof line,
                     "2024-%02u-%02uT%02u:%02u:%02u.%03uZ %s %s-%u %s/%s/%s_%u.%s %s in "
                     "%u.%u ms (%s)\n",
                     (unsigned)(a % 12 + 1), (unsigned)(a >> 8) % 28 + 1, (unsigned)(a >> 16) % 24,
                     (unsigned)(a >> 24) % 60, (unsigned)(a >> 32) % 60, (unsigned)(a >> 40) % 1000,
                     levels[(b >> 0) % 5], words[(b >> 4) % 32], (unsigned)(b >> 10) % 64,
                     words[(b >> 16) % 32], words[(b >> 21) % 32], words[(b >> 26) % 32],
                     (unsigned)(b >> 31) % 500, exts[(b >> 40) % 8], words[(b >> 43) % 32],
                     (unsigned)(b >> 48) % 200, (unsigned)(b >> 56) % 10,
                     (b >> 60) & 1 ? "cache hit" : "cache miss");
        size_t take = (size_t)len < n - done ? (size_t)len : n - done;
        memcpy(p + done, line, take);
        done += take;
    }
}

#define GEN_CHUNK (64u << 10)
#define MIXED_TEXT (48u << 10)
#define POOL_SIZE (1u << 20)

typedef struct gen {
    int kind; /* 0 text, 1 random, 2 mixed */
    rng r;
    uint8_t *pool; /* mixed: 1 MiB of text to copy from */
} gen;

static void gen_init(gen *g, const char *kind, uint64_t seed)
{
    if (strcmp(kind, "text") == 0)
        g->kind = 0;
    else if (strcmp(kind, "random") == 0)
        g->kind = 1;
    else if (strcmp(kind, "mixed") == 0)
        g->kind = 2;
    else
        die("unknown body kind '%s' (text, random, mixed)", kind);
    rng_seed(&g->r, seed);
    g->pool = NULL;
    if (g->kind == 2) {
        g->pool = malloc(POOL_SIZE);
        fill_text(&g->r, g->pool, POOL_SIZE);
    }
}

/* Fills the next GEN_CHUNK (or fewer) bytes. */
static void gen_chunk(gen *g, uint8_t *p, size_t n)
{
    if (g->kind == 0) {
        fill_text(&g->r, p, n);
    } else if (g->kind == 1) {
        fill_random(&g->r, p, n);
    } else {
        size_t t = n < MIXED_TEXT ? n : MIXED_TEXT;
        size_t off = rng_next(&g->r) % (POOL_SIZE - MIXED_TEXT);
        memcpy(p, g->pool + off, t);
        fill_random(&g->r, p + t, n - t);
    }
}

static uint64_t parse_u64(const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end)
        die("not a number: '%s'", s);
    return v;
}

static int cmd_gen(int argc, char **argv, int digest_only)
{
    if (argc != 5)
        die("%s", "usage: gen|sha KIND SIZE SEED");
    gen g;
    gen_init(&g, argv[2], parse_u64(argv[4]));
    uint64_t size = parse_u64(argv[3]);
    uint8_t *buf = malloc(GEN_CHUNK);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    signal(SIGPIPE, SIG_IGN);
    for (uint64_t done = 0; done < size;) {
        size_t n = size - done < GEN_CHUNK ? (size_t)(size - done) : GEN_CHUNK;
        gen_chunk(&g, buf, n);
        if (digest_only)
            EVP_DigestUpdate(ctx, buf, n);
        else if (util_write_all(1, buf, n) != 0)
            return 1;
        done += n;
    }
    if (digest_only) {
        uint8_t d[32];
        char h[65];
        unsigned int len;
        EVP_DigestFinal_ex(ctx, d, &len);
        hex(d, 32, h);
        printf("%s\n", h);
    }
    EVP_MD_CTX_free(ctx);
    return 0;
}

static int cmd_shafile(int argc, char **argv)
{
    if (argc != 3)
        die("%s", "usage: shafile PATH|-");
    int fd = strcmp(argv[2], "-") == 0 ? 0 : open(argv[2], O_RDONLY);
    if (fd < 0)
        die("cannot open %s", argv[2]);
    size_t cap = 1u << 20;
    uint8_t *buf = malloc(cap), d[32];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    uint64_t total = 0;
    for (;;) {
        ssize_t n = read(fd, buf, cap);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die("cannot read %s", argv[2]);
        if (n == 0)
            break;
        EVP_DigestUpdate(ctx, buf, (size_t)n);
        total += (uint64_t)n;
    }
    unsigned int len;
    char h[65];
    EVP_DigestFinal_ex(ctx, d, &len);
    hex(d, 32, h);
    printf("%s %" PRIu64 "\n", h, total);
    EVP_MD_CTX_free(ctx);
    free(buf);
    return 0;
}

/* ---- a minimal HTTP/1.1 client ---------------------------------------------- */

static struct sockaddr_in target;

static void parse_hostport(const char *s)
{
    char host[64];
    const char *colon = strrchr(s, ':');
    if (colon == NULL || (size_t)(colon - s) >= sizeof host)
        die("want HOST:PORT, not '%s'", s);
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    memset(&target, 0, sizeof target);
    target.sin_family = AF_INET;
    target.sin_port = htons((uint16_t)parse_u64(colon + 1));
    if (inet_pton(AF_INET, host, &target.sin_addr) != 1)
        die("bad IPv4 address '%s'", host);
}

static int http_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&target, sizeof target) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Sends one request and reads the answer.  Returns the status, or -1 if the
 * connection failed (the caller reconnects).  *keep says whether the server
 * keeps the connection open. */
static int http_do(int fd, const char *method, const char *path, const void *body, size_t len,
                   int *keep)
{
    char head[512];
    int hn = snprintf(head, sizeof head,
                      "%s %s HTTP/1.1\r\nHost: bench\r\nContent-Length: %zu\r\n"
                      "Content-Type: application/octet-stream\r\n\r\n",
                      method, path, len);
    if (util_write_all(fd, head, (size_t)hn) != 0 || (len && util_write_all(fd, body, len) != 0))
        return -1;
    char buf[8192];
    size_t got = 0;
    char *end = NULL;
    while (end == NULL) {
        if (got == sizeof buf - 1)
            return -1;
        ssize_t n = read(fd, buf + got, sizeof buf - 1 - got);
        if (n <= 0)
            return -1;
        got += (size_t)n;
        buf[got] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    int status = 0;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
        return -1;
    size_t clen = 0;
    *keep = 1;
    for (char *p = strstr(buf, "\r\n") + 2; p < end; p = strstr(p, "\r\n") + 2) {
        if (strncasecmp(p, "Content-Length:", 15) == 0)
            clen = (size_t)strtoull(p + 15, NULL, 10);
        else if (strncasecmp(p, "Connection:", 11) == 0 && strstr(p, "close") &&
                 strstr(p, "close") < strstr(p, "\r\n"))
            *keep = 0;
    }
    size_t have = got - (size_t)(end + 4 - buf);
    while (have < clen) {
        ssize_t n = read(fd, buf, sizeof buf < clen - have ? sizeof buf : clen - have);
        if (n <= 0)
            return -1;
        have += (size_t)n;
    }
    return status;
}

static int cmd_get(int argc, char **argv)
{
    if (argc != 4 && argc != 5)
        die("%s", "usage: get HOST:PORT PATH [HEADER]");
    parse_hostport(argv[2]);
    double t0 = now_ms();
    int fd = http_connect();
    if (fd < 0)
        die("cannot connect to %s", argv[2]);
    char head[1024];
    int hn = snprintf(head, sizeof head, "GET %s HTTP/1.1\r\nHost: bench\r\n%s%s\r\n", argv[3],
                      argc == 5 ? argv[4] : "", argc == 5 ? "\r\n" : "");
    if (util_write_all(fd, head, (size_t)hn) != 0)
        die("%s", "cannot send the request");
    size_t cap = 1u << 20, got = 0;
    char *buf = malloc(cap + 1), *end = NULL;
    while (end == NULL) {
        ssize_t n = read(fd, buf + got, 65536 - got);
        if (n <= 0)
            die("%s", "connection closed in the answer's head");
        got += (size_t)n;
        buf[got] = '\0';
        end = strstr(buf, "\r\n\r\n");
        if (end == NULL && got >= 65536)
            die("%s", "answer head too long");
    }
    int status = 0;
    sscanf(buf, "HTTP/1.%*d %d", &status);
    uint64_t clen = UINT64_MAX;
    for (char *p = strstr(buf, "\r\n") + 2; p < end; p = strstr(p, "\r\n") + 2)
        if (strncasecmp(p, "Content-Length:", 15) == 0)
            clen = strtoull(p + 15, NULL, 10);
    uint64_t have = got - (size_t)(end + 4 - buf);
    while (have < clen) {
        ssize_t n = read(fd, buf, cap);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        have += (uint64_t)n;
    }
    double secs = (now_ms() - t0) / 1e3;
    close(fd);
    printf("%d %" PRIu64 " %.6f\n", status, have, secs);
    free(buf);
    return clen != UINT64_MAX && have != clen;
}

/* ---- smallset ---------------------------------------------------------------- */

typedef struct smallset {
    const char *root;
    uint64_t n, size;
    char (*paths)[80];
    uint8_t *bodies;
    int failed;
} smallset;

typedef struct worker {
    smallset *ss;
    int id, nworkers;
} worker;

static void *smallset_worker(void *arg)
{
    worker *w = arg;
    smallset *ss = w->ss;
    int fd = -1;
    for (uint64_t i = (uint64_t)w->id; i < ss->n; i += (uint64_t)w->nworkers) {
        int status = -1, keep = 0;
        for (int attempt = 0; attempt < 3 && status < 0; attempt++) {
            if (fd < 0 && (fd = http_connect()) < 0)
                break;
            status = http_do(fd, "PUT", ss->paths[i], ss->bodies + i * ss->size, ss->size, &keep);
            if (status < 0 || !keep) {
                close(fd);
                fd = -1;
            }
        }
        if (status != 200) {
            fprintf(stderr, "cbench: PUT %s answered %d\n", ss->paths[i], status);
            __atomic_store_n(&ss->failed, 1, __ATOMIC_RELAXED);
        }
    }
    if (fd >= 0)
        close(fd);
    return NULL;
}

static int cmd_smallset(int argc, char **argv)
{
    if (argc != 9)
        die("%s", "usage: smallset HOST:PORT ROOT N SIZE KIND SEED LIST");
    parse_hostport(argv[2]);
    smallset ss = {.root = argv[3], .n = parse_u64(argv[4]), .size = parse_u64(argv[5])};
    gen g;
    gen_init(&g, argv[6], parse_u64(argv[7]));
    FILE *list = fopen(argv[8], "a");
    if (list == NULL)
        die("cannot open %s", argv[8]);
    ss.paths = calloc(ss.n, sizeof *ss.paths);
    ss.bodies = malloc(ss.n * ss.size);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/cas", ss.root);
    mkdir(dir, 0755);
    for (uint64_t i = 0; i < ss.n; i++) {
        uint8_t *b = ss.bodies + i * ss.size, d[32];
        char h[65], file[4200];
        for (uint64_t off = 0; off < ss.size; off += GEN_CHUNK)
            gen_chunk(&g, b + off, ss.size - off < GEN_CHUNK ? ss.size - off : GEN_CHUNK);
        sha256(b, ss.size, d);
        hex(d, 32, h);
        snprintf(ss.paths[i], sizeof ss.paths[i], "/cas/%s", h);
        snprintf(file, sizeof file, "%s/%s", dir, h);
        int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || util_write_all(fd, b, ss.size) != 0 || close(fd) != 0)
            die("cannot write %s", file);
        fprintf(list, "%s\n", ss.paths[i]);
    }
    fclose(list);
    enum { NW = 4 };
    pthread_t th[NW];
    worker w[NW];
    for (int i = 0; i < NW; i++) {
        w[i] = (worker){&ss, i, NW};
        pthread_create(&th[i], NULL, smallset_worker, &w[i]);
    }
    for (int i = 0; i < NW; i++)
        pthread_join(th[i], NULL);
    return ss.failed;
}

/* ---- populate ------------------------------------------------------------------ */

#define POP_BODY_FMT "cairn bench entry %07u\n"
#define POP_TXN 100000

typedef struct pop_entry {
    uint8_t digest[32];
    uint32_t i;
} pop_entry;

static int cmp_entry(const void *a, const void *b)
{
    return memcmp(a, b, 32);
}

typedef struct pop_files {
    const char *dir;
    pop_entry *e;
    uint64_t n;
    int id, nthreads, failed;
} pop_files;

static void *pop_files_main(void *arg)
{
    pop_files *pf = arg;
    char path[4400], body[64], h[65];
    for (uint64_t k = 0; k < pf->n; k++) {
        if (pf->e[k].digest[0] % pf->nthreads != pf->id)
            continue; /* one writer per directory: no contention on its lock */
        int len = snprintf(body, sizeof body, POP_BODY_FMT, pf->e[k].i);
        hex(pf->e[k].digest, 32, h);
        snprintf(path, sizeof path, "%s/blobs/%.2s/%s", pf->dir, h, h);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || util_write_all(fd, body, (size_t)len) != 0 || close(fd) != 0) {
            fprintf(stderr, "cbench: cannot write %s: %s\n", path, strerror(errno));
            pf->failed = 1;
            return NULL;
        }
    }
    return NULL;
}

static int cmd_populate(int argc, char **argv)
{
    if (argc != 4)
        die("%s", "usage: populate DATA N");
    const char *dir = argv[2];
    uint64_t n = parse_u64(argv[3]);
    char path[4400], err[512];
    const char *subs[] = {"", "/blobs", "/tmp", "/quarantine"};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s%s", dir, subs[i]);
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            die("cannot create %s", path);
    }
    for (int i = 0; i < 256; i++) {
        snprintf(path, sizeof path, "%s/blobs/%02x", dir, i);
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            die("cannot create %s", path);
    }
    double t0 = now_ms();
    pop_entry *e = malloc(n * sizeof *e);
    for (uint64_t i = 0; i < n; i++) {
        char body[64];
        int len = snprintf(body, sizeof body, POP_BODY_FMT, (unsigned)i);
        sha256(body, (size_t)len, e[i].digest);
        e[i].i = (uint32_t)i;
    }
    /* sorted digests make every database an append at its end: fast inserts */
    qsort(e, n, sizeof *e, cmp_entry);

    enum { NT = 4 };
    pthread_t th[NT];
    pop_files pf[NT];
    for (int i = 0; i < NT; i++) {
        pf[i] = (pop_files){dir, e, n, i, NT, 0};
        pthread_create(&th[i], NULL, pop_files_main, &pf[i]);
    }

    idx ix;
    if (idx_open(&ix, dir, 64ULL << 30, 1, err, sizeof err) != 0)
        die("%s", err);
    mdb_env_set_flags(ix.env, MDB_NOSYNC, 1); /* one sync at the end is enough here */
    uint64_t now_s = (uint64_t)time(NULL);
    idx_stats st;
    MDB_txn *t;
    int rc = mdb_txn_begin(ix.env, NULL, 0, &t);
    if (rc == 0)
        rc = idx_get_stats(t, &ix, &st);
    for (uint64_t k = 0; rc == 0 && k < n; k++) {
        char body[64], nskey[4 + 64 + 1];
        int len = snprintf(body, sizeof body, POP_BODY_FMT, e[k].i);
        memcpy(nskey, "cas", 4); /* "cas\0" */
        hex(e[k].digest, 32, nskey + 4);
        blob_rec b = {.format = 1,
                      .codec = CODEC_RAW,
                      .refs = 1,
                      .size = (uint64_t)len,
                      .stored = (uint64_t)len,
                      .atime = 0};
        key_rec kr = {.size = (uint64_t)len, .mtime_ms = now_s * 1000};
        memcpy(kr.digest, e[k].digest, 32);
        if ((rc = idx_move_atime(t, &ix, e[k].digest, &b, now_s)) != 0 ||
            (rc = idx_put_key(t, &ix, nskey, 4 + 64, &kr)) != 0 ||
            (rc = idx_add_ref(t, &ix, e[k].digest, nskey, 4 + 64)) != 0)
            break;
        st.blobs++;
        st.keys++;
        st.logical += (uint64_t)len;
        st.physical += (uint64_t)len;
        st.referenced += (uint64_t)len;
        if ((k + 1) % POP_TXN == 0 || k + 1 == n) {
            if ((rc = idx_put_stats(t, &ix, &st)) != 0)
                break;
            if ((rc = mdb_txn_commit(t)) != 0) {
                t = NULL;
                break;
            }
            t = NULL;
            if (k + 1 < n && (rc = mdb_txn_begin(ix.env, NULL, 0, &t)) != 0)
                break;
        }
    }
    if (rc != 0) {
        if (t)
            mdb_txn_abort(t);
        die("index: %s", mdb_strerror(rc));
    }
    double t_index = now_ms() - t0;
    int failed = 0;
    for (int i = 0; i < NT; i++) {
        pthread_join(th[i], NULL);
        failed |= pf[i].failed;
    }
    mdb_env_sync(ix.env, 1);
    idx_close(&ix);
    sync();
    fprintf(stderr, "populate: %" PRIu64 " entries, index %.1f s, with blob files %.1f s\n", n,
            t_index / 1e3, (now_ms() - t0) / 1e3);
    free(e);
    return failed;
}

/* ---- startup -------------------------------------------------------------------- */

static const char *drop_caches(const char *data)
{
    sync();
    int fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
    if (fd >= 0 && write(fd, "3\n", 2) == 2) {
        close(fd);
        return "drop_caches";
    }
    if (fd >= 0)
        close(fd);
    char path[4200];
    snprintf(path, sizeof path, "%s/index.mdb", data);
    fd = open(path, O_RDONLY);
    if (fd >= 0) {
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
    }
    return "fadvise_index_only";
}

static int readyz_once(void)
{
    int fd = http_connect();
    if (fd < 0)
        return -1;
    int keep;
    int status = http_do(fd, "GET", "/readyz", NULL, 0, &keep);
    close(fd);
    return status;
}

static int cmd_startup(int argc, char **argv)
{
    if (argc != 6 && argc != 7)
        die("%s", "usage: startup CAIRND DATA LOG RUNS [cold]");
    const char *bin = argv[2], *data = argv[3], *logf = argv[4];
    int runs = (int)parse_u64(argv[5]);
    int cold = argc == 7 && strcmp(argv[6], "cold") == 0;
    for (int run = 0; run < runs; run++) {
        const char *mode = cold ? drop_caches(data) : "warm";
        int pfd[2];
        if (pipe(pfd) != 0)
            die("%s", "pipe");
        double t0 = now_ms();
        pid_t pid = fork();
        if (pid == 0) {
            dup2(pfd[1], 1);
            close(pfd[0]);
            close(pfd[1]);
            int lf = open(logf, O_WRONLY | O_CREAT | O_APPEND, 0644);
            if (lf >= 0)
                dup2(lf, 2);
            execl(bin, bin, "--listen", "127.0.0.1:0", "--data", data, (char *)NULL);
            _exit(127);
        }
        close(pfd[1]);
        char line[1024];
        size_t got = 0;
        while (got < sizeof line - 1 && memchr(line, '\n', got) == NULL) {
            ssize_t n = read(pfd[0], line + got, sizeof line - 1 - got);
            if (n <= 0)
                break;
            got += (size_t)n;
        }
        line[got] = '\0';
        double t_listen = now_ms() - t0;
        const char *p = strstr(line, "http://127.0.0.1:");
        if (p == NULL) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            die("cairnd did not print its address (see %s)", logf);
        }
        char hp[64];
        snprintf(hp, sizeof hp, "127.0.0.1:%u", (unsigned)strtoul(p + 17, NULL, 10));
        parse_hostport(hp);
        int status = -1;
        while (status != 200 && now_ms() - t0 < 30000) {
            status = readyz_once();
            if (status != 200)
                usleep(500);
        }
        double t_ready = now_ms() - t0;
        double t1 = now_ms();
        kill(pid, SIGTERM);
        int ws;
        waitpid(pid, &ws, 0);
        double t_stop = now_ms() - t1;
        close(pfd[0]);
        if (status != 200)
            die("%s", "cairnd never answered /readyz with 200");
        printf("%d %.2f %.2f %.2f %s\n", run + 1, t_listen, t_ready, t_stop, mode);
        fflush(stdout);
    }
    return 0;
}

static int cmd_freeport(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        die("%s", "cannot find a free port");
    printf("%u\n", (unsigned)ntohs(a.sin_port));
    close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        die("%s", "usage: cbench freeport|gen|sha|shafile|get|smallset|populate|startup ...");
    const char *c = argv[1];
    if (strcmp(c, "freeport") == 0)
        return cmd_freeport();
    if (strcmp(c, "gen") == 0)
        return cmd_gen(argc, argv, 0);
    if (strcmp(c, "sha") == 0)
        return cmd_gen(argc, argv, 1);
    if (strcmp(c, "get") == 0)
        return cmd_get(argc, argv);
    if (strcmp(c, "shafile") == 0)
        return cmd_shafile(argc, argv);
    if (strcmp(c, "smallset") == 0)
        return cmd_smallset(argc, argv);
    if (strcmp(c, "populate") == 0)
        return cmd_populate(argc, argv);
    if (strcmp(c, "startup") == 0)
        return cmd_startup(argc, argv);
    die("unknown command '%s'", c);
    return 2;
}
