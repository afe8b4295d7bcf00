/*
 * creds.c - see creds.h.  Keys are few: a linear search is the right index.
 */
#include "creds.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct grant {
    char *access;
    char *secret;
    int rights;
    char *buckets; /* ",a,b," or "*" */
} grant;

static grant *grants;
static size_t ngrants;
static char *anonymous; /* ",a,b," */

static int add_grant(const char *access, const char *secret, int rights, const char *buckets)
{
    grant *g = realloc(grants, (ngrants + 1) * sizeof *g);
    if (g == NULL)
        return -1;
    grants = g;
    g = &grants[ngrants];
    size_t bl = strlen(buckets);
    g->access = strdup(access);
    g->secret = strdup(secret);
    g->rights = rights;
    g->buckets = malloc(bl + 3);
    if (!g->access || !g->secret || !g->buckets)
        return -1;
    if (strcmp(buckets, "*") == 0)
        snprintf(g->buckets, bl + 3, "*");
    else
        snprintf(g->buckets, bl + 3, ",%s,", buckets);
    ngrants++;
    return 0;
}

static int parse_role(const char *s)
{
    if (strcmp(s, "read") == 0)
        return CREDS_READ;
    if (strcmp(s, "write") == 0)
        return CREDS_READ | CREDS_WRITE;
    if (strcmp(s, "admin") == 0)
        return CREDS_READ | CREDS_WRITE | CREDS_ADMIN;
    return 0;
}

static int load_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "cannot read credentials file %s: %s", path, strerror(errno));
        return -1;
    }
    char line[2048];
    int lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *p = line;
        while (isspace((unsigned char)*p))
            p++;
        if (*p == '#' || *p == '\0')
            continue;
        char access[256], secret[256], role[16], buckets[1024];
        int n = sscanf(p, "%255s %255s %15s %1023s", access, secret, role, buckets);
        int rights = n == 4 ? parse_role(role) : 0;
        if (rights == 0) {
            snprintf(err, errlen,
                     "%s:%d: want 'ACCESS_KEY SECRET read|write|admin BUCKETS' (secret not shown)",
                     path, lineno);
            fclose(f);
            return -1;
        }
        if (add_grant(access, secret, rights, buckets) != 0) {
            fclose(f);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    fclose(f);
    return 0;
}

int creds_load(const server_config *cfg, char *err, size_t errlen)
{
    creds_free();
    if ((cfg->access_key[0] != '\0') != (cfg->secret_key[0] != '\0')) {
        snprintf(err, errlen, "--access-key and --secret-key go together");
        return -1;
    }
    if (cfg->access_key[0] && add_grant(cfg->access_key, cfg->secret_key, 7, "*") != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (cfg->credentials[0] && load_file(cfg->credentials, err, errlen) != 0)
        return -1;
    size_t al = strlen(cfg->anonymous_read);
    anonymous = malloc(al + 3);
    if (anonymous == NULL)
        return -1;
    snprintf(anonymous, al + 3, ",%s,", cfg->anonymous_read);
    return 0;
}

void creds_free(void)
{
    for (size_t i = 0; i < ngrants; i++) {
        free(grants[i].access);
        free(grants[i].secret);
        free(grants[i].buckets);
    }
    free(grants);
    grants = NULL;
    ngrants = 0;
    free(anonymous);
    anonymous = NULL;
}

size_t creds_count(void)
{
    return ngrants;
}

const char *creds_secret(const char *access_key)
{
    for (size_t i = 0; i < ngrants; i++)
        if (strcmp(grants[i].access, access_key) == 0)
            return grants[i].secret;
    return NULL;
}

static int listed(const char *list, const char *bucket)
{
    if (strcmp(list, "*") == 0)
        return 1;
    if (bucket == NULL)
        return 0;
    size_t bl = strlen(bucket);
    for (const char *p = strstr(list, bucket); p; p = strstr(p + 1, bucket))
        if (p > list && p[-1] == ',' && p[bl] == ',')
            return 1;
    return 0;
}

int creds_allowed(const char *access_key, const char *bucket, int need)
{
    if (ngrants == 0)
        return 1;
    if (access_key == NULL)
        return need == CREDS_READ && bucket && anonymous && listed(anonymous, bucket);
    int rights = 0;
    for (size_t i = 0; i < ngrants; i++) {
        if (strcmp(grants[i].access, access_key) != 0)
            continue;
        /* service-level requests (ListBuckets) need the right on any bucket */
        if (bucket == NULL || listed(grants[i].buckets, bucket))
            rights |= grants[i].rights;
    }
    return (rights & need) == need;
}
