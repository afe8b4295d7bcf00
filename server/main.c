/*
 * main.c - cairnd: parse the configuration, open the store, serve, and on
 * SIGTERM or SIGINT stop accepting, let in-flight requests finish, close the
 * store (which commits everything queued) and exit.
 *
 * Signals are blocked in every thread and taken synchronously here with
 * sigwait, so no handler ever runs inside the server's code.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../common/log.h"
#include "../common/util.h"
#include "creds.h"
#include "server.h"

static void log_config(const server_config *c)
{
    log_msg(LOG_INFO, "config",
            "listen=%s data=%s max-size=%llu max-body=%llu watermarks=%llu/%llu threads=%llu "
            "zstd-level=%llu fsync=%d config=%s",
            c->listen, c->data, (unsigned long long)c->max_size, (unsigned long long)c->max_body,
            (unsigned long long)c->high_watermark, (unsigned long long)c->low_watermark,
            (unsigned long long)c->threads, (unsigned long long)c->zstd_level, c->fsync,
            c->config_file[0] ? c->config_file : "none");
}

int main(int argc, char **argv)
{
    server_config cfg;
    int rc = config_load(&cfg, argc, argv);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    int level;
    log_parse_level(cfg.log_level, &level);
    log_set_level(level);

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGPIPE);
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

    store_config sc;
    store_config_defaults(&sc);
    sc.dir = cfg.data;
    sc.max_size = cfg.max_size;
    sc.high_pct = (unsigned)cfg.high_watermark;
    sc.low_pct = (unsigned)cfg.low_watermark;
    sc.zstd_level = (int)cfg.zstd_level;
    sc.inline_max = cfg.inline_max_size;
    sc.map_size = cfg.index_map_size;
    sc.fsync = cfg.fsync;

    uint64_t t0 = util_mono_ns();
    store *st;
    if (store_open(&st, &sc, err, sizeof err) != 0) {
        log_msg(LOG_ERROR, "store_open_failed", "%s", err);
        fprintf(stderr, "cairnd: %s\n", err);
        return 1;
    }
    server srv = {0};
    if (server_start(&srv, &cfg, st, err, sizeof err) != 0) {
        log_msg(LOG_ERROR, "listen_failed", "%s", err);
        fprintf(stderr, "cairnd: %s\n", err);
        store_close(st);
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
    do
        sigwait(&sigs, &sig);
    while (sig == SIGPIPE);
    log_msg(LOG_INFO, "stopping", "signal %d: finishing in-flight requests", sig);
    server_stop(&srv);
    store_close(st);
    creds_free();
    log_msg(LOG_INFO, "stopped", "bye");
    return 0;
}
