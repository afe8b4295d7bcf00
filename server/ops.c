/*
 * ops.c - endpoints for operators and orchestrators:
 *   /healthz  the process answers (liveness);
 *   /readyz   the store is open and the server is not shutting down;
 *   /status   JSON: sizes, entries, limits, version, uptime;
 *   /metrics  the same and more, in Prometheus's text format (metrics.c).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "../common/log.h"
#include "../common/util.h"
#include "server.h"

static enum MHD_Result status_json(request *r)
{
    store_stats st;
    if (store_get_stats(r->srv->st, &st) != STORE_OK)
        return http_json(r, MHD_HTTP_INTERNAL_SERVER_ERROR,
                         "{\"error\":\"cannot read the index\"}\n");
    const server_config *c = r->srv->cfg;
    /* the tier's last failure, in its own words: null if none since start */
    char last[sizeof st.tier_last_error * 6 + 64] = "null";
    if (st.tier_last_error[0]) {
        uint64_t now = util_now_ms(), at = st.tier_last_error_ms;
        size_t n = (size_t)snprintf(last, sizeof last, "{\"message\":\"");
        n += log_json_escape(last + n, sizeof last - n - 48, st.tier_last_error);
        snprintf(last + n, sizeof last - n, "\",\"seconds_ago\":%" PRIu64 "}",
                 now > at ? (now - at) / 1000 : 0);
    }
    char buf[4096];
    snprintf(
        buf, sizeof buf,
        "{\"version\":\"%s\",\"uptime_seconds\":%" PRIu64 ",\"ready\":%s,"
        "\"entries\":{\"keys\":%" PRIu64 ",\"blobs\":%" PRIu64 ",\"inline_blobs\":%" PRIu64 "},"
        "\"bytes\":{\"stored\":%" PRIu64 ",\"logical\":%" PRIu64 ",\"referenced\":%" PRIu64
        ",\"saved_by_dedup\":%" PRIu64 ",\"saved_by_compression\":%" PRIu64
        ",\"multipart_parts\":%" PRIu64 "},"
        "\"limits\":{\"max_size\":%" PRIu64 ",\"high_watermark_bytes\":%" PRIu64
        ",\"low_watermark_bytes\":%" PRIu64 ",\"max_body\":%" PRIu64 "},"
        "\"eviction\":{\"blobs\":%" PRIu64 ",\"bytes\":%" PRIu64 "},"
        "\"corrupt_blobs_quarantined\":%" PRIu64 ",\"orphans_removed\":%" PRIu64 ","
        "\"tier\":{\"enabled\":%s,\"queue\":%" PRIu64 ",\"pending_bytes\":%" PRIu64
        ",\"uploads\":%" PRIu64 ",\"upload_bytes\":%" PRIu64 ",\"upload_failures\":%" PRIu64
        ",\"already_there\":%" PRIu64 ",\"refreshes\":%" PRIu64 ",\"hits\":%" PRIu64
        ",\"misses\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"fetched_bytes\":%" PRIu64
        ",\"corrupt\":%" PRIu64 ",\"replaced\":%" PRIu64 ",\"packs\":%" PRIu64
        ",\"packed_records\":%" PRIu64 ",\"pack_reads\":%" PRIu64 ",\"packs_owed\":%" PRIu64
        ",\"revalidations\":%" PRIu64 ",\"revalidated_stale\":%" PRIu64
        ",\"revalidated_lost\":%" PRIu64 ",\"last_error\":%s}}\n",
        CAIRN_VERSION, (util_now_ms() - r->srv->start_ms) / 1000,
        atomic_load(&r->srv->ready) && !store_broken(r->srv->st) ? "true" : "false", st.keys,
        st.blobs, st.inline_blobs, st.physical, st.logical, st.referenced,
        st.referenced - st.logical, st.logical > st.physical ? st.logical - st.physical : 0,
        st.multipart_bytes, st.max_size, st.high_bytes, st.low_bytes, c->max_body, st.evicted_blobs,
        st.evicted_bytes, st.corrupt_blobs, st.orphans_removed, c->tier[0] ? "true" : "false",
        st.tier_queue, st.tier_pending_bytes, st.tier_uploads, st.tier_upload_bytes,
        st.tier_upload_failures, st.tier_skipped, st.tier_refreshes, st.tier_hits, st.tier_misses,
        st.tier_errors, st.tier_fetched_bytes, st.tier_corrupt, st.tier_replaced, st.tier_packs,
        st.tier_pack_records, st.tier_pack_hits, st.tier_packs_owed, st.tier_revalidations,
        st.tier_revalidated_stale, st.tier_revalidated_lost, last);
    return http_json(r, MHD_HTTP_OK, buf);
}

enum MHD_Result ops_handle(request *r, const char *data, size_t *size)
{
    (void)data;
    if (*size != 0) {
        *size = 0;
        return MHD_YES;
    }
    if (r->calls == 1)
        return MHD_YES;
    if (!http_is(r, "GET") && !http_is(r, "HEAD")) {
        static const char msg[] = "only GET and HEAD\n";
        struct MHD_Response *resp =
            MHD_create_response_from_buffer(sizeof msg - 1, (void *)msg, MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(resp, "Allow", "GET, HEAD");
        return http_queue(r, MHD_HTTP_METHOD_NOT_ALLOWED, resp);
    }
    if (r->path[1] == 'm' && !r->srv->cfg->metrics)
        return http_text(r, MHD_HTTP_NOT_FOUND, "metrics are off (--metrics false)");
    if (r->path[1] == 'm') {
        buf b = {0};
        metrics_render(r->srv, &b);
        size_t len;
        char *data = buf_ok(&b) ? buf_take(&b, &len) : NULL;
        buf_free(&b);
        if (data == NULL)
            return http_text(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
        struct MHD_Response *resp =
            MHD_create_response_from_buffer_with_free_callback(len, data, free);
        if (resp == NULL) {
            free(data);
            return MHD_NO;
        }
        MHD_add_response_header(resp, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
        return http_queue(r, MHD_HTTP_OK, resp);
    }
    if (r->path[1] == 'h')
        return http_text(r, MHD_HTTP_OK, "ok");
    if (r->path[1] == 'r') {
        if (store_broken(r->srv->st))
            return http_text(r, MHD_HTTP_SERVICE_UNAVAILABLE,
                             "not ready: the disk failed a sync of the index (see the log)");
        if (atomic_load(&r->srv->ready))
            return http_text(r, MHD_HTTP_OK, "ready");
        return http_text(r, MHD_HTTP_SERVICE_UNAVAILABLE, "not ready");
    }
    return status_json(r);
}
