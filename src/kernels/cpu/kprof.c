/* kprof: YF_KPROF=1 times every product made outside pool jobs and prints,
 * at exit, the time and GFLOP/s per product shape and kind ('f' x·W^T, 'b'
 * dy·W, 'w' dW): where a step's product time goes. */
#include "kernels/cpu/matmul_impl.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/pool.h"

typedef struct kprof_row {
    int64_t M, N, K;
    char op;
    int64_t calls;
    double s;
} kprof_row;
static kprof_row g_kprof[256];
static int g_nkprof = -1; /* -1: not yet read YF_KPROF; -2: off */
static pthread_mutex_t g_kprof_mu = PTHREAD_MUTEX_INITIALIZER;

static void kprof_print(void) {
    double tot = 0;
    for (int i = 0; i < g_nkprof; i++) tot += g_kprof[i].s;
    fprintf(stderr, "YF_KPROF: %d product shapes, %.3f s in all\n   op        M        N        K  calls    total ms  GFLOP/s\n",
            g_nkprof, tot);
    for (int i = 0; i < g_nkprof; i++) {
        const kprof_row *r = &g_kprof[i];
        fprintf(stderr, "   %c %8lld %8lld %8lld %6lld %11.1f %8.0f\n", r->op, (long long)r->M, (long long)r->N,
                (long long)r->K, (long long)r->calls, r->s * 1e3, 2.0 * r->M * r->N * r->K * r->calls / r->s / 1e9);
    }
}

double yf_kprof_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

bool yf_kprof_on(void) {
    if (g_nkprof == -1) {
        const char *e = getenv("YF_KPROF");
        g_nkprof = e && *e && strcmp(e, "0") != 0 ? 0 : -2;
        if (g_nkprof == 0) atexit(kprof_print);
    }
    return g_nkprof >= 0 && !yf_par_in_job();
}

void yf_kprof_add(char op, const yf_gemm *g, double s) {
    pthread_mutex_lock(&g_kprof_mu);
    int i = 0;
    while (i < g_nkprof && !(g_kprof[i].op == op && g_kprof[i].M == g->M && g_kprof[i].N == g->N && g_kprof[i].K == g->K)) i++;
    if (i < 256) {
        if (i == g_nkprof) g_kprof[g_nkprof++] = (kprof_row){g->M, g->N, g->K, op, 0, 0};
        g_kprof[i].calls++;
        g_kprof[i].s += s;
    }
    pthread_mutex_unlock(&g_kprof_mu);
}

