/*
 * config.c - see config.h.
 */
#include "config.h"

#include "../storage/store.h"
#include "../storage/tier.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/log.h"
#include "../common/util.h"
#include "../storage/store.h"
#include "../storage/tier.h"

enum opt_type { T_STR, T_SIZE, T_UINT, T_BOOL, T_DURATION, T_PERCENT };

typedef struct option_def {
    const char *name;
    enum opt_type type;
    size_t offset;
    size_t cap; /* strings */
    const char *def;
    const char *help;
} option_def;

#define OFF(f) offsetof(server_config, f)
#define CAP(f) sizeof(((server_config *)0)->f)

static const option_def options[] = {
    {"listen", T_STR, OFF(listen), CAP(listen), "127.0.0.1:8080",
     "address to serve on, HOST:PORT ([::1]:PORT for IPv6; port 0 picks a free one)"},
    {"data", T_STR, OFF(data), CAP(data), "./cairn-data", "data directory (blobs, index)"},
    {"config", T_STR, OFF(config_file), CAP(config_file), "",
     "config file of 'name = value' lines using these option names"},
    {"max-size", T_SIZE, OFF(max_size), 0, "10G",
     "size limit of stored blobs (K, M, G, T suffixes); least recently used go first"},
    {"max-body", T_SIZE, OFF(max_body), 0, "5G", "largest body accepted in one request (413)"},
    {"high-watermark", T_PERCENT, OFF(high_watermark), 0, "90",
     "start evicting above this percentage of max-size"},
    {"low-watermark", T_PERCENT, OFF(low_watermark), 0, "80",
     "evict down to this percentage of max-size"},
    {"threads", T_UINT, OFF(threads), 0, "0",
     "HTTP worker threads (0 = eight per core, at least 16: a thread waits while a write is "
     "made durable)"},
    {"zstd-level", T_UINT, OFF(zstd_level), 0, "1",
     "zstd level for compressible bodies (0 stores every body raw)"},
    {"inline-max-size", T_SIZE, OFF(inline_max_size), 0, "16K",
     "bodies up to this size are kept in the index instead of a file each (at most 64K; "
     "0 = a file for every body): a small write is then one share of a group commit"},
    {"index-map-size", T_SIZE, OFF(index_map_size), 0, "256G",
     "LMDB map size: address space reserved for the index, not disk"},
    {"fsync", T_BOOL, OFF(fsync), 0, "true",
     "fsync blob files and their folders before answering a write; the index is always "
     "synced. false survives a crash of cairnd but not a power loss"},
    {"connection-timeout", T_DURATION, OFF(connection_timeout), 0, "120s",
     "close connections idle this long (s, m, h suffixes)"},
    {"connection-limit", T_UINT, OFF(connection_limit), 0, "1024",
     "maximum number of concurrent connections"},
    {"max-header-size", T_SIZE, OFF(max_header_size), 0, "16K",
     "largest request head (request line and headers) accepted; also each connection's "
     "buffer, cleared for every request, so bigger costs time"},
    {"shutdown-timeout", T_DURATION, OFF(shutdown_timeout), 0, "30s",
     "on SIGTERM, how long in-flight requests may take to finish"},
    {"log-level", T_STR, OFF(log_level), CAP(log_level), "info", "debug, info, warn or error"},
    {"access-log", T_STR, OFF(access_log), CAP(access_log), "off",
     "a JSON line per request: off, sampled (one in --access-log-sample) or all"},
    {"access-log-sample", T_UINT, OFF(access_log_sample), 0, "100",
     "with --access-log sampled, log one request in this many"},
    {"audit-log", T_BOOL, OFF(audit_log), 0, "true",
     "a JSON line (event audit) for refused authentication, deletes and bucket changes"},
    {"metrics", T_BOOL, OFF(metrics), 0, "true", "count requests for /metrics"},
    {"metrics-namespaces", T_UINT, OFF(metrics_namespaces), 0, "50",
     "namespaces (buckets, ac/<instance>) that get their own label in /metrics, the first "
     "seen; the rest are counted as _other (at most 1024)"},
    {"access-key", T_STR, OFF(access_key), CAP(access_key), "",
     "S3 access key with every right (with --secret-key)"},
    {"secret-key", T_STR, OFF(secret_key), CAP(secret_key), "", "secret of --access-key"},
    {"credentials", T_STR, OFF(credentials), CAP(credentials), "",
     "file of S3 keys: lines 'ACCESS_KEY SECRET ROLE BUCKETS' (ROLE read, write or admin; "
     "BUCKETS comma-separated or *)"},
    {"region", T_STR, OFF(region), CAP(region), "us-east-1", "S3 region cairnd answers as"},
    {"s3-domain", T_STR, OFF(s3_domain), CAP(s3_domain), "",
     "domain for virtual-host style S3 (bucket.DOMAIN); path style always works"},
    {"anonymous-read", T_STR, OFF(anonymous_read), CAP(anonymous_read), "",
     "comma-separated buckets anyone may read without a signature"},
    {"tier", T_STR, OFF(tier), CAP(tier), "",
     "cold tier shared by a fleet: s3://BUCKET[/PREFIX], gs://BUCKET[/PREFIX] (GCS, HMAC "
     "keys) or http(s)://HOST[:PORT][/BUCKET[/PREFIX]] (another cairnd); credentials from "
     "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or --tier-credentials"},
    {"tier-endpoint", T_STR, OFF(tier_endpoint), CAP(tier_endpoint), "",
     "for s3://: the S3 server, http(s)://HOST[:PORT] (default AWS_ENDPOINT_URL_S3, else "
     "AWS_ENDPOINT_URL, else AWS for --tier-region)"},
    {"tier-region", T_STR, OFF(tier_region), CAP(tier_region), "",
     "the tier's region (default AWS_REGION, else AWS_DEFAULT_REGION, else us-east-1; auto for "
     "gs://)"},
    {"tier-path-style", T_STR, OFF(tier_path_style), CAP(tier_path_style), "auto",
     "true: http://HOST/BUCKET/KEY; false: http://BUCKET.HOST/KEY; auto: path style unless "
     "the endpoint is AWS"},
    {"tier-credentials", T_STR, OFF(tier_credentials), CAP(tier_credentials), "",
     "AWS shared credentials file for the tier (profile AWS_PROFILE, else default); "
     "AWS_SHARED_CREDENTIALS_FILE is read too; read again when it changes, and on SIGHUP"},
    {"tier-timeout", T_DURATION, OFF(tier_timeout), 0, "10s",
     "a read from the tier that takes longer is a miss (blobs get 1s more per MiB, resumes "
     "included; a wait for a free thread to ask the tier counts too)"},
    {"tier-workers", T_UINT, OFF(tier_workers), 0, "4", "uploads to the tier at once"},
    {"tier-part-size", T_SIZE, OFF(tier_part_size), 0, "64M",
     "blobs larger than this go to the tier in parts of this size (5M to 5G; S3 takes at most "
     "5 GiB in one PUT)"},
    {"tier-queue-max", T_SIZE, OFF(tier_queue_max), 0, "10G",
     "bytes of blobs waiting for the tier before writes are refused (507 / SlowDown)"},
    {"tier-drain-timeout", T_DURATION, OFF(tier_drain_timeout), 0, "0s",
     "on SIGTERM, wait this long for the tier's queue to empty (rolling restarts)"},
    {"tier-refresh-after", T_DURATION, OFF(tier_refresh_after), 0, "7d",
     "a blob read (or written) here whose tier copy is older is refreshed there (a copy onto "
     "itself), with its keys, so lifecycle rules expire only unused entries; a bucket's record "
     "goes up again as often while keys are written into it (0 = never; the records daily)"},
    {"tier-revalidate", T_DURATION, OFF(tier_revalidate), 0, "60s",
     "a key held here and read is checked against the tier at most this often, in the "
     "background; changed or deleted by another node since, the local copy is dropped and the "
     "next read takes the tier's (0 = never; copies and conditional writes check their keys "
     "anyway; content-addressed /cas/ keys never change)"},
    {"tier-insecure", T_BOOL, OFF(tier_insecure), 0, "false",
     "do not verify the tier's TLS certificate (tests only)"},
};

#define NOPTIONS (sizeof options / sizeof options[0])

static void env_name(const char *name, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "CAIRN_");
    for (; *name && n + 1 < cap; name++)
        out[n++] = *name == '-' ? '_' : (char)toupper((unsigned char)*name);
    out[n] = '\0';
}

static int set_option(server_config *cfg, const option_def *o, const char *value,
                      const char *source)
{
    char *field = (char *)cfg + o->offset;
    uint64_t v = 0;
    int rc = 0, b = 0;
    switch (o->type) {
    case T_STR:
        if (strlen(value) >= o->cap)
            rc = -1;
        else
            memcpy(field, value, strlen(value) + 1);
        break;
    case T_SIZE:
        rc = util_parse_size(value, &v);
        break;
    case T_DURATION:
        rc = util_parse_duration(value, &v);
        break;
    case T_UINT:
    case T_PERCENT: {
        char *end;
        errno = 0;
        unsigned long long u = strtoull(value, &end, 10);
        rc = (errno || end == value || *end || value[0] == '-' || (o->type == T_PERCENT && u > 100))
                 ? -1
                 : 0;
        v = u;
        break;
    }
    case T_BOOL:
        rc = util_parse_bool(value, &b);
        break;
    }
    if (rc != 0) {
        fprintf(stderr, "cairnd: invalid value '%s' for %s (from %s)\n", value, o->name, source);
        return -1;
    }
    if (o->type == T_BOOL)
        *(int *)field = b;
    else if (o->type != T_STR)
        *(uint64_t *)field = v;
    return 0;
}

static const option_def *find_option(const char *name, size_t len)
{
    for (size_t i = 0; i < NOPTIONS; i++)
        if (strlen(options[i].name) == len && strncmp(options[i].name, name, len) == 0)
            return &options[i];
    return NULL;
}

static void print_help(void)
{
    printf("Usage: cairnd [OPTION]...\n"
           "cairn's cache server: Bazel/ccache-style HTTP cache API over a content-addressed,\n"
           "compressed, deduplicating store.\n\n"
           "Each option can also be set through the environment (CAIRN_<NAME>, dashes as\n"
           "underscores) or a config file line 'name = value'. Flags win over the\n"
           "environment, which wins over the file.\n\n");
    for (size_t i = 0; i < NOPTIONS; i++) {
        char env[64];
        env_name(options[i].name, env, sizeof env);
        printf("  --%-20s %s\n  %-22s [env %s, default %s]\n", options[i].name, options[i].help, "",
               env, options[i].def[0] ? options[i].def : "none");
    }
    printf("  --%-20s %s\n  --%-20s %s\n", "help", "show this help", "version", "show the version");
}

static int load_file(server_config *cfg, const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "cairnd: cannot read config file %s: %s\n", path, strerror(errno));
        return -1;
    }
    char line[2048];
    int lineno = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        char *p = line;
        while (isspace((unsigned char)*p))
            p++;
        if (*p == '#' || *p == '\0')
            continue;
        char *eq = strchr(p, '=');
        char *name_end = eq ? eq : p + strcspn(p, " \t");
        char *value = eq ? eq + 1 : name_end;
        while (name_end > p && isspace((unsigned char)name_end[-1]))
            name_end--;
        while (isspace((unsigned char)*value))
            value++;
        size_t vl = strlen(value);
        while (vl > 0 && isspace((unsigned char)value[vl - 1]))
            value[--vl] = '\0';
        const option_def *o = find_option(p, (size_t)(name_end - p));
        char where[1100];
        snprintf(where, sizeof where, "%.1000s:%d", path, lineno);
        if (o == NULL || strcmp(o->name, "config") == 0) {
            fprintf(stderr, "cairnd: %s: unknown option '%.*s'\n", where, (int)(name_end - p), p);
            rc = -1;
        } else {
            rc = set_option(cfg, o, value, where);
        }
    }
    fclose(f);
    return rc;
}

/* Finds "--name value" or "--name=value" at argv[*i]; advances *i. */
static int parse_flag(int argc, char **argv, int *i, const option_def **o, const char **value)
{
    const char *a = argv[*i];
    if (strncmp(a, "--", 2) != 0)
        return -1;
    a += 2;
    const char *eq = strchr(a, '=');
    size_t len = eq ? (size_t)(eq - a) : strlen(a);
    *o = find_option(a, len);
    if (*o == NULL)
        return -1;
    if (eq) {
        *value = eq + 1;
    } else if ((*o)->type == T_BOOL && (*i + 1 >= argc || strncmp(argv[*i + 1], "--", 2) == 0)) {
        *value = "true";
    } else {
        if (*i + 1 >= argc)
            return -2;
        *value = argv[++*i];
    }
    return 0;
}

int config_load(server_config *cfg, int argc, char **argv)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < NOPTIONS; i++)
        if (set_option(cfg, &options[i], options[i].def, "default") != 0)
            return -1;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            print_help();
            return 1;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("cairnd %s\n", CAIRN_VERSION);
            return 1;
        }
    }

    /* The config file comes first, wherever --config was given. */
    const char *file = getenv("CAIRN_CONFIG");
    for (int i = 1; i < argc; i++) {
        const option_def *o;
        const char *v;
        int j = i;
        if (parse_flag(argc, argv, &j, &o, &v) == 0 && strcmp(o->name, "config") == 0)
            file = v;
        i = j;
    }
    if (file && *file) {
        if (load_file(cfg, file) != 0)
            return -1;
        snprintf(cfg->config_file, sizeof cfg->config_file, "%s", file);
    }

    for (size_t i = 0; i < NOPTIONS; i++) {
        char env[64];
        env_name(options[i].name, env, sizeof env);
        const char *v = getenv(env);
        if (v && strcmp(options[i].name, "config") != 0 && set_option(cfg, &options[i], v, env))
            return -1;
    }

    for (int i = 1; i < argc; i++) {
        const option_def *o;
        const char *v;
        int rc = parse_flag(argc, argv, &i, &o, &v);
        if (rc == -2) {
            fprintf(stderr, "cairnd: %s needs a value (see --help)\n", argv[i]);
            return -1;
        }
        if (rc != 0) {
            fprintf(stderr, "cairnd: unknown argument '%s' (see --help)\n", argv[i]);
            return -1;
        }
        if (set_option(cfg, o, v, "command line") != 0)
            return -1;
    }

    int level;
    if (log_parse_level(cfg->log_level, &level) != 0) {
        fprintf(stderr, "cairnd: invalid log-level '%s'\n", cfg->log_level);
        return -1;
    }
    if (cfg->low_watermark > cfg->high_watermark || cfg->high_watermark == 0) {
        fprintf(stderr, "cairnd: need 0 <= low-watermark <= high-watermark <= 100, 0 < high\n");
        return -1;
    }
    if (strcmp(cfg->tier_path_style, "auto") != 0 && strcmp(cfg->tier_path_style, "true") != 0 &&
        strcmp(cfg->tier_path_style, "false") != 0) {
        fprintf(stderr, "cairnd: tier-path-style must be auto, true or false\n");
        return -1;
    }
    if (strcmp(cfg->access_log, "off") != 0 && strcmp(cfg->access_log, "sampled") != 0 &&
        strcmp(cfg->access_log, "all") != 0) {
        fprintf(stderr, "cairnd: access-log must be off, sampled or all\n");
        return -1;
    }
    if (cfg->access_log_sample == 0)
        cfg->access_log_sample = 1;
    if (cfg->tier_workers == 0 || cfg->tier_workers > 64) {
        fprintf(stderr, "cairnd: tier-workers must be between 1 and 64\n");
        return -1;
    }
    if (cfg->tier_part_size < TIER_PART_MIN || cfg->tier_part_size > TIER_PART_MAX) {
        fprintf(stderr, "cairnd: tier-part-size must be between 5M and 5G\n");
        return -1;
    }
    if (cfg->inline_max_size > STORE_INLINE_LIMIT) {
        fprintf(stderr, "cairnd: inline-max-size must be at most 64K\n");
        return -1;
    }
    if (cfg->zstd_level > 19) {
        fprintf(stderr, "cairnd: zstd-level must be between 0 and 19\n");
        return -1;
    }
    if (cfg->threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->threads = n > 2 ? (uint64_t)n * 8 : 16;
    }
    if (cfg->max_header_size < 4096) {
        fprintf(stderr, "cairnd: max-header-size must be at least 4K\n");
        return -1;
    }
    return 0;
}
