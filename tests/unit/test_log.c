/*
 * test_log.c - the JSON lines of common/log.c: fields escaped, numbers and
 * durations written without printf, long lines cut and marked, and each
 * line whole JSON.  stderr goes to a file the tests read back (and back to
 * where it was for cmocka's report).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../common/log.h"

static char path[64];
static int saved_stderr = -1; /* cmocka reports on stderr: given back at the end */

/* Points stderr at a fresh file; returns what was written to it so far. */
static char *captured(void)
{
    log_flush();
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static int setup(void **state)
{
    (void)state;
    snprintf(path, sizeof path, "/tmp/cairn-log-XXXXXX");
    int fd = mkstemp(path);
    saved_stderr = dup(STDERR_FILENO);
    if (fd < 0 || saved_stderr < 0 || dup2(fd, STDERR_FILENO) < 0)
        return -1;
    close(fd);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    unlink(path);
    return 0;
}

static void test_fields(void **state)
{
    (void)state;
    if (ftruncate(STDERR_FILENO, 0) != 0 || lseek(STDERR_FILENO, 0, SEEK_SET) != 0)
        fail();
    log_line l;
    assert_int_equal(log_line_begin(&l, LOG_INFO, "access"), 1);
    const char *p = "/a\"b\\c\n\x01?";
    log_line_str(&l, "path", p, strlen(p) - 1); /* the length given, not the NUL */
    log_line_u64(&l, "status", 200);
    log_line_u64(&l, "big", UINT64_MAX);
    log_line_u64(&l, "zero", 0);
    log_line_ms(&l, "ms", 1234567); /* 1.234567 ms */
    log_line_ms(&l, "slow", 61000999500ull);
    log_line_end(&l);
    char *out = captured();
    assert_non_null(strstr(out, "\"level\":\"info\",\"event\":\"access\",\"path\":"
                                "\"/a\\\"b\\\\c\\u000a\\u0001\",\"status\":200,"
                                "\"big\":18446744073709551615,\"zero\":0,\"ms\":1.235,"
                                "\"slow\":61001.000}\n"));
    assert_memory_equal(out, "{\"ts\":\"", 7);
    /* 2026-11-28T13:48:34.657Z */
    assert_int_equal(out[7 + 10], 'T');
    assert_int_equal(out[7 + 19], '.');
    assert_int_equal(out[7 + 23], 'Z');
}

static void test_long_line_is_cut_and_marked(void **state)
{
    (void)state;
    if (ftruncate(STDERR_FILENO, 0) != 0 || lseek(STDERR_FILENO, 0, SEEK_SET) != 0)
        fail();
    char big[6000];
    memset(big, '"', sizeof big); /* every byte escapes to two */
    log_line l;
    assert_int_equal(log_line_begin(&l, LOG_WARN, "access"), 1);
    log_line_str(&l, "path", big, sizeof big);
    log_line_u64(&l, "status", 200);
    log_line_end(&l);
    char *out = captured();
    static const char end[] = "\",\"truncated\":true}\n";
    size_t n = strlen(out), e = strlen(end);
    assert_true(n < sizeof l.buf);
    assert_string_equal(out + n - e, end);
    /* no escape split in two: an even run of backslash-quote pairs */
    const char *v = strstr(out, "\"path\":\"") + 8;
    size_t run = (size_t)(out + n - e - v);
    assert_int_equal(run % 2, 0);
    for (size_t i = 0; i < run; i += 2)
        assert_memory_equal(v + i, "\\\"", 2);
    assert_null(strstr(out, "\"status\""));
}

static void test_level_filter(void **state)
{
    (void)state;
    log_set_level(LOG_WARN);
    log_line l;
    assert_int_equal(log_line_begin(&l, LOG_INFO, "access"), 0);
    log_set_level(LOG_INFO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_long_line_is_cut_and_marked),
        cmocka_unit_test(test_level_filter),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
