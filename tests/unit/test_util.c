/*
 * test_util.c - common/util: %XX decoding (items, key record names), the
 * byte order of keys, growing arrays, and FNV-1a.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "../../common/util.h"

static ssize_t decode(const char *in, uint8_t *out, size_t cap)
{
    return util_pct_decode(in, strlen(in), out, cap);
}

static void test_pct_decode(void **state)
{
    (void)state;
    uint8_t out[64];
    assert_int_equal(decode("a%20b%2Fc", out, sizeof out), 5);
    assert_memory_equal(out, "a b/c", 5);
    assert_int_equal(decode("%c3%A9%00x", out, sizeof out), 4); /* either case, NUL kept */
    assert_memory_equal(out, "\xc3\xa9\0x", 4);
    assert_int_equal(decode("", out, sizeof out), 0);
    /* bad escapes: short at the end, not hex */
    assert_int_equal(decode("abc%4", out, sizeof out), -1);
    assert_int_equal(decode("abc%", out, sizeof out), -1);
    assert_int_equal(decode("%g0", out, sizeof out), -1);
    assert_int_equal(decode("%0g", out, sizeof out), -1);
    /* room: exactly enough, one byte short */
    assert_int_equal(decode("ab%41", out, 3), 3);
    assert_int_equal(decode("ab%41", out, 2), -1);
    /* in place */
    char buf[] = "x%2Ey";
    assert_int_equal(util_pct_decode(buf, strlen(buf), (uint8_t *)buf, strlen(buf)), 3);
    assert_memory_equal(buf, "x.y", 3);
}

static void test_bytes_cmp(void **state)
{
    (void)state;
    assert_int_equal(util_bytes_cmp("ab", 2, "ab", 2), 0);
    assert_true(util_bytes_cmp("a", 1, "ab", 2) < 0); /* a prefix first */
    assert_true(util_bytes_cmp("ab", 2, "a", 1) > 0);
    assert_true(util_bytes_cmp("a\0b", 3, "a\0c", 3) < 0);  /* NUL is a byte like others */
    assert_true(util_bytes_cmp("\xc3\xa9", 2, "z", 1) > 0); /* unsigned: UTF-8 after ASCII */
    assert_int_equal(util_bytes_cmp("", 0, "", 0), 0);
}

static void test_grow(void **state)
{
    (void)state;
    uint64_t *v = NULL;
    size_t cap = 0, n = 0;
    for (uint64_t i = 0; i < 1000; i++) {
        assert_int_equal(util_grow(&v, &cap, n, sizeof *v, 4), 0);
        assert_true(n < cap);
        v[n++] = i * 7;
    }
    assert_int_equal(cap, 1024); /* 4, 8, ... */
    for (size_t i = 0; i < n; i++)
        assert_int_equal(v[i], i * 7);                          /* kept through each move */
    assert_int_equal(util_grow(&v, &cap, 10, sizeof *v, 4), 0); /* room: nothing moves */
    assert_int_equal(cap, 1024);
    free(v);
}

static void test_memdup(void **state)
{
    (void)state;
    char *d = util_memdup("a\0bc", 4);
    assert_non_null(d);
    assert_memory_equal(d, "a\0bc", 4); /* a NUL inside is kept */
    assert_int_equal(d[4], '\0');       /* and one follows */
    free(d);
    d = util_memdup("", 0);
    assert_non_null(d);
    assert_int_equal(d[0], '\0');
    free(d);
}

static void test_fnv1a(void **state)
{
    (void)state;
    /* the published FNV-1a 64-bit vectors */
    assert_true(util_fnv1a("", 0) == 0xcbf29ce484222325ull);
    assert_true(util_fnv1a("a", 1) == 0xaf63dc4c8601ec8cull);
    assert_true(util_fnv1a("foobar", 6) == 0x85944171f73967e8ull);
}

static void test_time_in(void **state)
{
    (void)state;
    /* a deadline is a valid timespec, after now by what was asked, carried
     * into seconds past a second's end */
    for (uint64_t ns = 0; ns < 3000000000ULL; ns += 999999999ULL) {
        struct timespec after, at = util_time_in(CLOCK_MONOTONIC, ns);
        clock_gettime(CLOCK_MONOTONIC, &after);
        assert_true(at.tv_nsec >= 0 && at.tv_nsec < 1000000000L);
        uint64_t at_ns = (uint64_t)at.tv_sec * 1000000000ULL + (uint64_t)at.tv_nsec,
                 after_ns = (uint64_t)after.tv_sec * 1000000000ULL + (uint64_t)after.tv_nsec;
        assert_true(at_ns <= after_ns + ns);
        assert_true(at_ns + 1000000000ULL > after_ns + ns); /* (within a second of now) */
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pct_decode), cmocka_unit_test(test_bytes_cmp),
        cmocka_unit_test(test_grow),       cmocka_unit_test(test_memdup),
        cmocka_unit_test(test_fnv1a),      cmocka_unit_test(test_time_in),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
