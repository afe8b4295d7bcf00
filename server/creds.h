/*
 * creds.h - S3 access keys and what each may do.
 *
 * Keys come from --access-key/--secret-key (one key with every right) and
 * from the --credentials file, whose lines read
 *     ACCESS_KEY SECRET ROLE BUCKETS
 * ROLE is read (GET, HEAD, list), write (read + PUT, DELETE, multipart) or
 * admin (write + create and delete buckets); BUCKETS is "*" or a
 * comma-separated list.  A key may have several lines.  Buckets listed in
 * --anonymous-read can be read without a signature.  With no key at all,
 * authentication is off and every request is allowed: fine on loopback,
 * which is where cairnd listens by default.
 */
#ifndef CAIRN_CREDS_H
#define CAIRN_CREDS_H

#include <stddef.h>

#include "config.h"

enum { CREDS_READ = 1, CREDS_WRITE = 2, CREDS_ADMIN = 4 };

int creds_load(const server_config *cfg, char *err, size_t errlen);
void creds_free(void);
/* Number of keys known; 0 means authentication is off. */
size_t creds_count(void);
/* The secret of an access key, or NULL. */
const char *creds_secret(const char *access_key);
/* May access_key (NULL: anonymous) do `need` on bucket (NULL: the service)? */
int creds_allowed(const char *access_key, const char *bucket, int need);

#endif
