#include "harness.h"
#include "base/tensor.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

TEST(util_bf16_round_trip) {
    float vals[] = {0.0f, 1.0f, -2.5f, 3.14159f, 1e-30f, 65504.0f};
    for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) {
        float r = yf_bf16_to_f32(yf_f32_to_bf16(vals[i]));
        double rel = vals[i] ? fabsf((r - vals[i]) / vals[i]) : fabsf(r);
        CHECK(rel <= 1.0 / 256, "bf16(%g) = %g", vals[i], r);
    }
    /* round to nearest even: 1 + 2^-8 is a tie between 1 and 1 + 2^-7 */
    CHECK(yf_bf16_to_f32(yf_f32_to_bf16(1.0f + 1.0f / 256)) == 1.0f);
}

TEST(util_f16_round_trip) {
    float vals[] = {0.0f, 1.0f, -2.5f, 0.000061035156f, 65504.0f, 5.9604645e-8f};
    for (size_t i = 0; i < sizeof vals / sizeof *vals; i++)
        CHECK(yf_f16_to_f32(yf_f32_to_f16(vals[i])) == vals[i], "f16(%g) = %g", vals[i],
              yf_f16_to_f32(yf_f32_to_f16(vals[i])));
}

TEST(util_atomic_write_keeps_old_file_on_failure) {
    char path[600];
    snprintf(path, sizeof path, "%s/f.txt", yt_tmpdir());
    CHECK(yf_write_file_atomic(path, "old", 3) == 0);
    yf_atomic_file af;
    CHECK(yf_atomic_open(&af, path) == 0);
    fputs("new and partial", af.f);
    yf_atomic_abort(&af);
    char *s = NULL;
    CHECK(yf_read_file(path, &s, NULL) == 0);
    CHECK(s && strcmp(s, "old") == 0, "got '%s'", s ? s : "(null)");
    free(s);
}

TEST(util_table_find_and_alloc) {
    yf_table t;
    yf_table_init(&t);
    int64_t shape[2] = {3, 5};
    yf_tensor *a = yf_table_alloc(&t, "a", YF_F32, 2, shape);
    CHECK(a->nbytes == 60);
    CHECK(yf_table_find(&t, "a") == a);
    CHECK(yf_table_find(&t, "b") == NULL);
    yf_table_free(&t);
}

/* Releasing resident pages is advice: the contents of anonymous memory and of
 * a mapped file stay what they were (MADV_PAGEOUT, never MADV_DONTNEED). */
TEST(util_release_resident_keeps_contents) {
    size_t n = (size_t)4 << 20;
    unsigned char *a = yf_aligned_alloc(n);
    for (size_t i = 0; i < n; i++) a[i] = (unsigned char)(i * 7 + 3);
    yf_release_resident(a + 100, n - 200);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += a[i] != (unsigned char)(i * 7 + 3);
    CHECK(bad == 0, "%zu bytes of anonymous memory changed", bad);
    free(a);
}
