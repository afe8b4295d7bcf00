/*
 * metrics.h - counters for /metrics (Prometheus text format).
 *
 * The hot path only adds to fixed arrays of atomic counters, indexed by
 * front end, operation and status class (bounded label sets, as DESIGN.md
 * asks); everything else (the store's totals, the process) is read when
 * /metrics is scraped.
 */
#ifndef CAIRN_METRICS_H
#define CAIRN_METRICS_H

#include <stdint.h>

#include "buf.h"

enum metrics_fe { MFE_NATIVE, MFE_S3, MFE_OPS, MFE_OTHER, MFE_N };
enum metrics_op {
    MOP_GET,
    MOP_HEAD,
    MOP_PUT,
    MOP_DELETE,
    MOP_LIST,
    MOP_MULTIPART,
    MOP_COPY,
    MOP_BUCKET,
    MOP_ADMIN,
    MOP_OTHER,
    MOP_N
};
/* what a lookup found: set by the front ends on a GET or HEAD */
enum metrics_cache { MC_NONE, MC_MISS, MC_LOCAL, MC_TIER };

typedef struct request_metrics {
    const char *ns; /* the namespace (S3 bucket, native cas or ac/<instance>), or NULL */
    uint64_t start_ns;
    uint8_t fe, op, cache;
    uint64_t received, sent; /* body bytes */
} request_metrics;

void metrics_request_done(const request_metrics *m, unsigned status);
/* Namespaces that get a label of their own (the first seen); the rest are
 * counted under "_other". */
void metrics_set_namespace_limit(unsigned n);
/* The label values, for logs too. */
const char *metrics_fe_name(unsigned fe);
const char *metrics_op_name(unsigned op);

struct server;
/* The whole exposition into b. */
void metrics_render(struct server *srv, buf *b);

#endif
