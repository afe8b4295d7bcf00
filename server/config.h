/*
 * config.h - cairnd's settings: one table, three sources.
 *
 * Every setting is a command-line flag (--max-size 20G), an environment
 * variable (CAIRN_MAX_SIZE=20G) and a line of the optional config file
 * (max-size = 20G).  Precedence: flag, then environment, then file, then the
 * default.  The same table prints --help, so the documentation cannot drift
 * from what is parsed.
 */
#ifndef CAIRN_CONFIG_H
#define CAIRN_CONFIG_H

#include <stddef.h>
#include <stdint.h>

typedef struct server_config {
    char listen[256];
    char data[1024];
    char config_file[1024];
    uint64_t max_size;
    uint64_t max_body;
    uint64_t high_watermark;
    uint64_t low_watermark;
    uint64_t threads;
    uint64_t zstd_level;
    uint64_t inline_max_size;
    uint64_t index_map_size;
    int fsync;
    uint64_t connection_timeout;
    uint64_t connection_limit;
    uint64_t max_header_size;
    uint64_t shutdown_timeout;
    char log_level[16];
    char access_log[16];
    uint64_t access_log_sample;
    int audit_log;
    int metrics;
    uint64_t metrics_namespaces;
    char access_key[129];
    char secret_key[129];
    char credentials[1024];
    char region[64];
    char s3_domain[256];
    char anonymous_read[1024];
    char tier[1024];
    char tier_endpoint[256];
    char tier_region[64];
    char tier_path_style[8];
    char tier_credentials[1024];
    uint64_t tier_timeout;
    uint64_t tier_workers;
    uint64_t tier_queue_max;
    uint64_t tier_part_size;
    uint64_t tier_drain_timeout;
    uint64_t tier_refresh_after;
    uint64_t tier_revalidate;
    int tier_insecure;
} server_config;

/* 0: run; 1: --help or --version printed, exit 0; -1: error printed, exit 2. */
int config_load(server_config *cfg, int argc, char **argv);

#endif
