/* bench-membw: the machine's memory bandwidth, the bound on decoding speed
 * (every decoded token reads all the weights once). Prints read and copy
 * bandwidth in GB/s over buffers far larger than the caches.
 * usage: build/bench-membw [MiB per buffer (default 1024)] */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 1024;
    if (mib < 64) mib = 64;
    size_t n = mib << 20, nf = n / sizeof(float);
    float *a = yf_aligned_alloc(n), *b = yf_aligned_alloc(n);
    for (size_t i = 0; i < nf; i++) a[i] = (float)(i & 1023);
    double best_read = 0, best_copy = 0, sink = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = yf_time();
        float s = 0;
        /* simd: the sum may be reassociated, so the loop is bound by memory, not by the add latency */
#pragma omp parallel for simd reduction(+ : s) schedule(static)
        for (size_t i = 0; i < nf; i++) s += a[i];
        double t = yf_time() - t0;
        sink += s;
        if (n / t > best_read) best_read = n / t;
        t0 = yf_time();
#pragma omp parallel for schedule(static)
        for (size_t c = 0; c < 64; c++) memcpy((char *)b + c * (n / 64), (char *)a + c * (n / 64), n / 64);
        t = yf_time() - t0;
        if (n / t > best_copy) best_copy = n / t;
    }
    printf("{\"read_gb_s\": %.2f, \"copy_gb_s\": %.2f, \"threads\": %d, \"mib\": %zu, \"sink\": %.0f}\n",
           best_read / 1e9, best_copy / 1e9, omp_get_max_threads(), mib, sink > 0 ? 1.0 : 0.0);
    free(a);
    free(b);
    return 0;
}
