/*
 * admin.h - the admin API under /admin/, for the cairn CLI and operators.
 *
 * Requests are signed like S3 requests (SigV4, by a key with the admin
 * role); the S3 front end authenticates them and hands them here.  With no
 * key configured at all, only loopback clients may use it.  Answers are
 * JSON, errors {"error":"..."}.
 *
 *   POST   /admin/warmup[?parallel=N]  body: items, one per line -> 202 {"job":ID,...}
 *   POST   /admin/verify[?parallel=N]  scrub every blob (frames and SHA-256) while
 *                                      serving; damaged ones are quarantined -> 202
 *   GET    /admin/jobs/ID              a job's progress
 *   DELETE /admin/jobs/ID              stop it (what is done stays done)
 *   GET    /admin/hot?window=S&limit=N the hot set: items read or written in
 *                                      the last S seconds, most recent first
 *   POST   /admin/evict?to=SIZE        evict least recently used blobs down to SIZE
 *   POST   /admin/drain?timeout=S      wait until the cold tier's queue is empty
 *   POST   /admin/gc[?multipart-older-than=S]  remove orphan blob files and
 *                                      abandoned multipart uploads
 *   GET    /admin/backup               a consistent, compacted copy of the index
 *   GET    /admin/blob/DIGEST          a blob file's stored bytes (for backups)
 *
 * An item names an entry the way a user does, percent-encoded (%XX) where
 * it has bytes below 0x21, '%' or 0x7f:
 *   BUCKET/KEY          an S3 object
 *   cas/DIGEST, DIGEST  a blob of the native CAS (64 hex digits)
 *   ac/KEY, ac/INSTANCE/KEY  a native action-cache entry
 * Warmup makes each item local: already here, or read through the cold tier
 * and committed to the local store, with no bytes sent to the client.  A
 * job run again after an interruption finds what it warmed already local.
 */
#ifndef CAIRN_ADMIN_H
#define CAIRN_ADMIN_H

#include "buf.h"
#include "server.h"

/* The admin request r for path (after "/admin/"), with its body. */
enum MHD_Result admin_handle(request *r, const char *path, const buf *body);
/* May this client use the admin API when authentication is off? */
int admin_local_client(request *r);
/* Stops running jobs and waits for them: before the store closes. */
void admin_stop(void);

#endif
