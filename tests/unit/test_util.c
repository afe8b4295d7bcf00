/*
 * test_util.c - common/util: %XX decoding (items, key record names).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pct_decode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
