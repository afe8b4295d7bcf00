/* sigv4_cli.c -- a small command-line front end to common/sigv4.c, so that an
 * independent signer (botocore, see sigv4_botocore_check.py) can be compared
 * with ours request by request.
 *
 *   sigv4_cli sign    AKID SECRET REGION SERVICE AMZDATE [TOKEN]
 *       SigV4 header signing; prints the Authorization value.
 *   sigv4_cli presign AKID SECRET REGION SERVICE AMZDATE EXPIRES [TOKEN]
 *       SigV4 presigning; prints the query string.
 *   sigv4_cli v2sign  AKID SECRET
 *       SigV2 header signing (path style); prints the Authorization value.
 *   sigv4_cli verify  SECRET REGION SERVICE NOW
 *       Verifies a signed request (any kind; NOW is YYYYMMDDTHHMMSSZ);
 *       prints "OK", or the S3 error code and the message. Exit 1 if refused.
 *
 * The request comes on stdin: a line "METHOD TARGET" (TARGET is the raw
 * path and query, as on the wire), then one "Name:value" line per header,
 * the value taken verbatim. A TOKEN of "-" means none. */

#include "../../common/sigv4.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FIELDS 128

typedef struct cli_request {
    char *text;
    sigv4_header headers[MAX_FIELDS];
    sigv4_param params[MAX_FIELDS];
    sigv4_request req;
} cli_request;

static char *read_stdin(void)
{
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    size_t n;

    while (buf != NULL && (n = fread(buf + len, 1, cap - len - 1, stdin)) > 0) {
        len += n;
        if (len + 1 == cap) {
            char *more = realloc(buf, cap * 2);

            if (more == NULL) {
                free(buf);
                return NULL;
            }
            buf = more;
            cap *= 2;
        }
    }
    if (buf != NULL)
        buf[len] = '\0';
    return buf;
}

static int parse_request(cli_request *c)
{
    char *line, *next, *sp, *q;

    memset(c, 0, sizeof(*c));
    c->text = read_stdin();
    if (c->text == NULL)
        return -1;
    line = c->text;
    next = strchr(line, '\n');
    if (next != NULL)
        *next++ = '\0';
    sp = strchr(line, ' ');
    if (sp == NULL)
        return -1;
    *sp = '\0';
    c->req.method = line;
    c->req.path = sp + 1;
    q = strchr(sp + 1, '?');
    if (q != NULL) {
        *q = '\0';
        if (sigv4_query_split(q + 1, c->params, MAX_FIELDS, &c->req.nparams) != SIGV4_OK)
            return -1;
    }
    c->req.params = c->params;
    c->req.headers = c->headers;
    while ((line = next) != NULL && *line != '\0') {
        char *colon;

        next = strchr(line, '\n');
        if (next != NULL)
            *next++ = '\0';
        colon = strchr(line, ':');
        if (colon == NULL || c->req.nheaders == MAX_FIELDS)
            return -1;
        *colon = '\0';
        c->headers[c->req.nheaders].name = line;
        c->headers[c->req.nheaders].value = colon + 1;
        c->req.nheaders++;
    }
    return 0;
}

static time_t amz_time(const char *s)
{
    time_t t = 0;

    if (sigv4_parse_amz_date(s, &t) != SIGV4_OK) {
        fprintf(stderr, "bad date: %s\n", s);
        exit(2);
    }
    return t;
}

static int usage(void)
{
    fprintf(stderr, "usage: sigv4_cli sign AKID SECRET REGION SERVICE AMZDATE [TOKEN]\n"
                    "       sigv4_cli presign AKID SECRET REGION SERVICE AMZDATE EXPIRES [TOKEN]\n"
                    "       sigv4_cli v2sign AKID SECRET\n"
                    "       sigv4_cli verify SECRET REGION SERVICE NOW\n"
                    "       (request on stdin)\n");
    return 2;
}

static const char *opt_token(int argc, char **argv, int i)
{
    if (argc <= i || strcmp(argv[i], "-") == 0)
        return NULL;
    return argv[i];
}

static int cmd_sign(cli_request *c, int argc, char **argv)
{
    sigv4_credentials cred = {argv[2], argv[3], opt_token(argc, argv, 7), argv[4], argv[5]};
    char amz_date[SIGV4_AMZ_DATE_SIZE];
    char *authz = NULL;
    int rc = sigv4_sign_header(&c->req, &cred, amz_time(argv[6]), amz_date, &authz, NULL);

    if (rc != SIGV4_OK) {
        fprintf(stderr, "sign: %s\n", sigv4_strerror(rc));
        return 1;
    }
    printf("%s\n", authz);
    free(authz);
    return 0;
}

static int cmd_presign(cli_request *c, int argc, char **argv)
{
    sigv4_credentials cred = {argv[2], argv[3], opt_token(argc, argv, 8), argv[4], argv[5]};
    char *query = NULL;
    int rc =
        sigv4_presign(&c->req, &cred, amz_time(argv[6]), strtol(argv[7], NULL, 10), &query, NULL);

    if (rc != SIGV4_OK) {
        fprintf(stderr, "presign: %s\n", sigv4_strerror(rc));
        return 1;
    }
    printf("%s\n", query);
    free(query);
    return 0;
}

static int cmd_v2sign(cli_request *c, char **argv)
{
    char *authz = NULL;
    int rc = sigv4_v2_sign_header(&c->req, argv[2], argv[3], NULL, &authz);

    if (rc != SIGV4_OK) {
        fprintf(stderr, "v2sign: %s\n", sigv4_strerror(rc));
        return 1;
    }
    printf("%s\n", authz);
    free(authz);
    return 0;
}

static int cmd_verify(cli_request *c, char **argv)
{
    sigv4_verify_opts opts = {amz_time(argv[5]), argv[3], argv[4], 0, NULL};
    sigv4_trace trace = {0};
    sigv4_auth auth;
    int rc = sigv4_parse_auth(&c->req, &auth);

    if (rc == SIGV4_OK)
        rc = sigv4_verify(&c->req, &auth, argv[2], &opts, &trace);
    if (rc == SIGV4_OK) {
        printf("OK\n");
    } else {
        printf("%s: %s\n", sigv4_s3_error(rc, auth.kind, NULL), sigv4_strerror(rc));
        if (trace.canonical_request)
            fprintf(stderr, "canonical request:\n%s\n", trace.canonical_request);
        if (trace.string_to_sign)
            fprintf(stderr, "string to sign:\n%s\n", trace.string_to_sign);
    }
    sigv4_trace_free(&trace);
    return rc == SIGV4_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    cli_request c;
    int rc;

    if (argc < 2)
        return usage();
    if (!((strcmp(argv[1], "sign") == 0 && argc >= 7 && argc <= 8) ||
          (strcmp(argv[1], "presign") == 0 && argc >= 8 && argc <= 9) ||
          (strcmp(argv[1], "v2sign") == 0 && argc == 4) ||
          (strcmp(argv[1], "verify") == 0 && argc == 6)))
        return usage();
    if (parse_request(&c) < 0) {
        fprintf(stderr, "cannot parse the request on stdin\n");
        free(c.text);
        return 2;
    }
    if (strcmp(argv[1], "sign") == 0)
        rc = cmd_sign(&c, argc, argv);
    else if (strcmp(argv[1], "presign") == 0)
        rc = cmd_presign(&c, argc, argv);
    else if (strcmp(argv[1], "v2sign") == 0)
        rc = cmd_v2sign(&c, argv);
    else
        rc = cmd_verify(&c, argv);
    free(c.text);
    return rc;
}
