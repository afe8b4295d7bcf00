/*
 * main.c - cairnd: parse the configuration, open the store, serve, and on
 * SIGTERM or SIGINT let in-flight requests finish (later ones get 503), close
 * the store (which commits everything queued) and exit.
 *
 * Signals are blocked in every thread and taken synchronously here with
 * sigtimedwait, so no handler ever runs inside the server's code.  Between
 * them, and on SIGHUP, the tier's credentials file is read again if it
 * changed.
 */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../common/log.h"
#include "../common/util.h"
#include "../storage/tier.h"
#include "admin.h"
#include "creds.h"
#include "server.h"

#define KEYS_CHECK_S 10 /* how often the tier's credentials file is looked at */

typedef struct tier_keys {
    char access[256], secret[256], token[2048];
} tier_keys;

static void trim(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    size_t i = strspn(s, " \t");
    memmove(s, s + i, strlen(s + i) + 1);
}

/* Where the tier's keys came from.  A file is read again when it changes
 * (or on SIGHUP), so that keys rotated by whatever writes it take effect. */
typedef struct keys_source {
    char path[1024]; /* the shared credentials file; "" for the environment, or none */
    int exists;      /* and its state when it was read */
    struct stat seen;
} keys_source;

/* The profile of the shared credentials file the tier's keys come from. */
static const char *aws_profile(void)
{
    return getenv("AWS_PROFILE") ? getenv("AWS_PROFILE") : "default";
}

/* The tier's credentials, as AWS tools find them: the environment, else the
 * profile AWS_PROFILE (or "default") of a shared credentials file. */
static int tier_credentials(const server_config *c, tier_keys *k, keys_source *src, char *err,
                            size_t errlen)
{
    memset(k, 0, sizeof *k);
    memset(src, 0, sizeof *src);
    const char *a = getenv("AWS_ACCESS_KEY_ID"), *sk = getenv("AWS_SECRET_ACCESS_KEY");
    if (a && *a && sk) {
        snprintf(k->access, sizeof k->access, "%s", a);
        snprintf(k->secret, sizeof k->secret, "%s", sk);
        const char *tok = getenv("AWS_SESSION_TOKEN");
        snprintf(k->token, sizeof k->token, "%s", tok ? tok : "");
        return 0;
    }
    char *path = src->path;
    const char *f =
        c->tier_credentials[0] ? c->tier_credentials : getenv("AWS_SHARED_CREDENTIALS_FILE");
    if (f && *f)
        snprintf(path, sizeof src->path, "%s", f);
    else if (getenv("HOME"))
        snprintf(path, sizeof src->path, "%s/.aws/credentials", getenv("HOME"));
    else
        return 0;
    src->exists = stat(path, &src->seen) == 0; /* before the read: a later write is seen */
    FILE *fp = fopen(path, "r");
    if (fp == NULL) {
        if (c->tier_credentials[0]) {
            snprintf(err, errlen, "tier-credentials %.300s: %s", path, strerror(errno));
            return -1;
        }
        return 0; /* no credentials: unsigned requests (a cairnd parent without keys) */
    }
    const char *profile = aws_profile();
    char line[2300], section[256] = "";
    while (fgets(line, sizeof line, fp)) {
        trim(line);
        if (line[0] == '[') {
            snprintf(section, sizeof section, "%.*s", (int)strcspn(line + 1, "]"), line + 1);
            continue;
        }
        char *eq = strchr(line, '=');
        if (eq == NULL || line[0] == '#' || line[0] == ';' || strcmp(section, profile) != 0)
            continue;
        *eq = '\0';
        char *name = line, *value = eq + 1;
        trim(name);
        trim(value);
        if (strcmp(name, "aws_access_key_id") == 0)
            snprintf(k->access, sizeof k->access, "%s", value);
        else if (strcmp(name, "aws_secret_access_key") == 0)
            snprintf(k->secret, sizeof k->secret, "%s", value);
        else if (strcmp(name, "aws_session_token") == 0)
            snprintf(k->token, sizeof k->token, "%s", value);
    }
    fclose(fp);
    return 0;
}

static int same_file_state(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Reads the tier's keys again if their file changed since (or, forced, in
 * any case); 1 if they changed.  Keys that cannot be read leave the current
 * ones in use; a file that changed while it was read is read again at the
 * next look (it was being written). */
static int reload_tier_keys(const server_config *c, tier *tr, keys_source *src, int forced)
{
    if (tr == NULL || src->path[0] == '\0')
        return 0;
    struct stat sb;
    int exists = stat(src->path, &sb) == 0;
    if (!forced && exists == src->exists && (!exists || same_file_state(&sb, &src->seen)))
        return 0;
    tier_keys k;
    keys_source now;
    int changed = 0;
    char err[512], why[1400] = "";
    int rc = tier_credentials(c, &k, &now, err, sizeof err);
    if (rc == 0 && now.exists && (stat(now.path, &sb) != 0 || !same_file_state(&sb, &now.seen))) {
        memset(&k, 0, sizeof k);
        return 0; /* src stays as it was: the next look reads it again */
    }
    const char *profile = aws_profile();
    if (rc != 0)
        snprintf(why, sizeof why, "%s", err);
    else if (!now.exists)
        snprintf(why, sizeof why, "%s: no such file", now.path);
    else if (k.access[0] == '\0' || k.secret[0] == '\0')
        snprintf(why, sizeof why, "%s: profile %s lacks aws_access_key_id or aws_secret_access_key",
                 now.path, profile);
    else if ((changed = tier_set_keys(tr, k.access, k.secret, k.token)) < 0)
        snprintf(why, sizeof why, "out of memory");
    if (why[0])
        log_msg(LOG_WARN, "tier_keys_unread", "%s; the current keys stay in use", why);
    else
        log_msg(LOG_INFO, "tier_keys_read", "%s: the tier's keys read again (access key %s%s)",
                now.path, k.access, changed ? "" : "; unchanged");
    memset(&k, 0, sizeof k);
    if (now.path[0])
        *src = now; /* (a file that cannot be used is not read again until it changes) */
    return why[0] == '\0' && changed;
}

/* The first of two environment variables set and not empty, else dflt. */
static const char *aws_env(const char *name, const char *name2, const char *dflt)
{
    const char *v = getenv(name);
    if (v == NULL || !*v)
        v = getenv(name2);
    return v && *v ? v : dflt;
}

static int open_tier(const server_config *c, tier **t, keys_source *src, char *err, size_t errlen)
{
    tier_keys k;
    if (tier_credentials(c, &k, src, err, errlen) != 0)
        return -1;
    tier_config tc = {0};
    tc.url = c->tier;
    tc.endpoint = c->tier_endpoint;
    tc.region = c->tier_region;
    if (strncmp(c->tier, "s3://", 5) == 0) {
        /* as the AWS CLI and SDKs take them */
        if (!tc.endpoint[0])
            tc.endpoint = aws_env("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "");
        if (!tc.region[0])
            tc.region = aws_env("AWS_REGION", "AWS_DEFAULT_REGION", "");
    }
    tc.path_style = strcmp(c->tier_path_style, "true") == 0    ? 1
                    : strcmp(c->tier_path_style, "false") == 0 ? 0
                                                               : -1;
    tc.access_key = k.access;
    tc.secret_key = k.secret;
    tc.session_token = k.token;
    tc.timeout_ms = (long)c->tier_timeout * 1000;
    tc.insecure = c->tier_insecure;
    tc.part_size = c->tier_part_size;
    int rc = tier_open(t, &tc, err, errlen);
    memset(&k, 0, sizeof k);
    int brc = rc == 0 && tier_makes_bucket(*t) ? tier_ensure_bucket(*t, NULL) : TIER_OK;
    if (brc != TIER_OK)
        log_msg(LOG_WARN, "tier_bucket",
                "could not make sure the tier's bucket exists (%s); uploads will retry",
                tier_why(brc));
    return rc;
}

/* Open files: each connection, each body being read or written, the tier's
 * connections.  The soft limit is often 1024, under --connection-limit's
 * default alone: raised to the hard limit, and a warning if that is short. */
static void raise_open_files(const server_config *c)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
        (void)getrlimit(RLIMIT_NOFILE, &rl);
    }
    rlim_t want = (rlim_t)c->connection_limit * 2 + 256;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want)
        log_msg(LOG_WARN, "open_files",
                "at most %llu open files (ulimit -n); %llu connections and their bodies may "
                "want %llu: raise the limit (LimitNOFILE= under systemd)",
                (unsigned long long)rl.rlim_cur, (unsigned long long)c->connection_limit,
                (unsigned long long)want);
}

static void log_config(const server_config *c)
{
    log_msg(LOG_INFO, "config",
            "listen=%s data=%s max-size=%llu max-body=%llu watermarks=%llu/%llu threads=%llu "
            "zstd-level=%llu fsync=%d config=%s",
            c->listen, c->data, (unsigned long long)c->max_size, (unsigned long long)c->max_body,
            (unsigned long long)c->high_watermark, (unsigned long long)c->low_watermark,
            (unsigned long long)c->threads, (unsigned long long)c->zstd_level, c->fsync,
            c->config_file[0] ? c->config_file : "none");
    if (c->tier[0]) /* (the tier's URL and endpoint: the "tier" line; never its keys) */
        log_msg(LOG_INFO, "config",
                "tier-timeout=%llus tier-workers=%llu tier-part-size=%llu tier-queue-max=%llu "
                "tier-drain-timeout=%llus tier-refresh-after=%llus tier-revalidate=%llus "
                "tier-insecure=%d",
                (unsigned long long)c->tier_timeout, (unsigned long long)c->tier_workers,
                (unsigned long long)c->tier_part_size, (unsigned long long)c->tier_queue_max,
                (unsigned long long)c->tier_drain_timeout,
                (unsigned long long)c->tier_refresh_after, (unsigned long long)c->tier_revalidate,
                c->tier_insecure);
}

/* glibc's malloc, as a long-running server with many threads wants it.
 * By default it keeps up to 8 arenas per core, and raises its mmap threshold
 * each time a large mapped block is freed (LMDB's commits, the packs of key
 * records: up to 8 MiB), and its trim threshold to twice that: from then on
 * each arena keeps up to 16 MiB it has freed.  A soak test (two nodes over a
 * tier, a steady mix of requests, 41 minutes) ended at 85-106 MB of
 * anonymous memory still growing, for 9-15 MB in use (bench/RESULTS.md).
 * Fixed thresholds and one arena per core keep what is freed to a few MiB
 * an arena.  Settings given in the environment (MALLOC_ARENA_MAX and the
 * like, GLIBC_TUNABLES) win. */
static void tune_malloc(void)
{
    if (getenv("GLIBC_TUNABLES") || getenv("MALLOC_ARENA_MAX") ||
        getenv("MALLOC_MMAP_THRESHOLD_") || getenv("MALLOC_TRIM_THRESHOLD_"))
        return;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    mallopt(M_ARENA_MAX, cpus < 2 ? 2 : (int)cpus);
    mallopt(M_MMAP_THRESHOLD, 4 << 20); /* larger blocks go back to the system when freed */
    mallopt(M_TRIM_THRESHOLD, 8 << 20); /* an arena keeps at most this much free at its top */
}

int main(int argc, char **argv)
{
    tune_malloc();
    server_config cfg;
    int rc = config_load(&cfg, argc, argv);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    int level;
    log_parse_level(cfg.log_level, &level);
    log_set_level(level);
    raise_open_files(&cfg);

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGPIPE);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    char err[512];
    if (creds_load(&cfg, err, sizeof err) != 0) {
        fprintf(stderr, "cairnd: %s\n", err);
        return 2;
    }
    if (creds_count() == 0)
        log_msg(LOG_WARN, "auth_off",
                "no S3 access key configured (--access-key/--secret-key or --credentials): "
                "S3 requests are not authenticated");

    metrics_set_namespace_limit((unsigned)cfg.metrics_namespaces);
    store_config sc;
    store_config_defaults(&sc);
    sc.dir = cfg.data;
    sc.max_size = cfg.max_size;
    sc.high_pct = (unsigned)cfg.high_watermark;
    sc.low_pct = (unsigned)cfg.low_watermark;
    sc.zstd_level = (int)cfg.zstd_level;
    sc.inline_max = cfg.inline_max_size;
    tier *tr = NULL;
    keys_source keys_src = {0};
    if (cfg.tier[0]) {
        if (open_tier(&cfg, &tr, &keys_src, err, sizeof err) != 0) {
            fprintf(stderr, "cairnd: %s\n", err);
            return 2;
        }
        sc.tier = tr;
        sc.tier_workers = (unsigned)cfg.tier_workers;
        sc.tier_queue_max = cfg.tier_queue_max;
        sc.tier_drain_ms = cfg.tier_drain_timeout * 1000;
        sc.tier_refresh_ms = cfg.tier_refresh_after * 1000;
        sc.tier_revalidate_ms = cfg.tier_revalidate * 1000;
    }
    sc.map_size = cfg.index_map_size;
    sc.fsync = cfg.fsync;

    uint64_t t0 = util_mono_ns();
    store *st;
    if (store_open(&st, &sc, err, sizeof err) != 0) {
        log_msg(LOG_ERROR, "store_open_failed", "%s", err);
        fprintf(stderr, "cairnd: %s\n", err);
        tier_close(tr);
        return 1;
    }
    server srv = {0};
    if (server_start(&srv, &cfg, st, err, sizeof err) != 0) {
        log_msg(LOG_ERROR, "listen_failed", "%s", err);
        fprintf(stderr, "cairnd: %s\n", err);
        store_close(st);
        tier_close(tr);
        return 1;
    }
    log_config(&cfg);
    char host[256];
    snprintf(host, sizeof host, "%s", cfg.listen);
    char *colon = strrchr(host, ':');
    if (colon)
        *colon = '\0';
    log_msg(LOG_INFO, "ready", "serving http://%s:%u/ from %s (ready in %.1f ms)", host,
            (unsigned)srv.port, cfg.data, (double)(util_mono_ns() - t0) / 1e6);
    printf("cairnd %s listening on http://%s:%u/ with data in %s\n", CAIRN_VERSION, host,
           (unsigned)srv.port, cfg.data);
    fflush(stdout);

    int sig;
    for (;;) {
        const struct timespec every = {KEYS_CHECK_S, 0};
        sig = sigtimedwait(&sigs, NULL, &every);
        if (sig == SIGTERM || sig == SIGINT)
            break;
        if (sig == SIGHUP)
            log_msg(LOG_INFO, "sighup", "%s",
                    tr == NULL                 ? "no tier: nothing to read again"
                    : keys_src.path[0] == '\0' ? "the tier's keys come from the environment: "
                                                 "nothing to read again"
                                               : "reading the tier's keys again");
        if (reload_tier_keys(&cfg, tr, &keys_src, sig == SIGHUP))
            store_tier_retry_now(st); /* what failed for the old keys goes now */
    }
    log_msg(LOG_INFO, "stopping", "signal %d: finishing in-flight requests", sig);
    server_quiesce(&srv);
    if (tr)
        tier_abort_reads(tr); /* warmups' fetches end now; uploads may still drain */
    admin_stop();             /* warmup jobs use the store */
    store_tier_drain(st);     /* (probes are still answered meanwhile) */
    server_stop(&srv);
    store_close(st);
    tier_close(tr);
    creds_free();
    log_msg(LOG_INFO, "stopped", "bye"); /* after the buffered lines */
    return 0;
}
