/* bufcache: see bufcache.h. Blocks carry their capacity in a 64-byte header
 * so that yf_buf_put needs only the pointer. */
#include "base/bufcache.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "base/util.h"

enum { HDR = 64 };

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static void *g_slot[YF_BUF_SLOTS]; /* block bases (header included) */
static size_t g_cached, g_in_use, g_peak;

static size_t cap_of(void *base) { return *(size_t *)base; }

void *yf_buf_get(size_t n) {
    size_t want = (n + 63) & ~(size_t)63;
    pthread_mutex_lock(&g_mu);
    int best = -1;
    for (int i = 0; i < YF_BUF_SLOTS; i++) /* the smallest block that fits */
        if (g_slot[i] && cap_of(g_slot[i]) >= want && (best < 0 || cap_of(g_slot[i]) < cap_of(g_slot[best])))
            best = i;
    void *base = NULL;
    if (best >= 0) {
        base = g_slot[best];
        g_slot[best] = NULL;
        g_cached -= cap_of(base);
    }
    size_t cap = base ? cap_of(base) : want;
    g_in_use += cap;
    if (g_in_use > g_peak) g_peak = g_in_use;
    pthread_mutex_unlock(&g_mu);
    if (!base) {
        /* from 1 MiB on: whole 2 MiB pages (transparent huge pages in
         * "madvise" mode). The products write and read these [rows, 2048+]
         * float buffers a 32 x 32 tile at a time, each tile row on another
         * 4 KiB page otherwise. Huge pages make the 2-layer step ~3% faster
         * for ~11 MB more peak RSS (~60 MB on the 24-layer step) */
        if (want >= ((size_t)1 << 20)) {
            size_t huge = (size_t)2 << 20, alloc = (HDR + want + huge - 1) / huge * huge;
            base = aligned_alloc(huge, alloc);
#ifdef MADV_HUGEPAGE
            if (base) (void)madvise(base, alloc, MADV_HUGEPAGE); /* advice: without it, 4 KiB pages */
#endif
        } else {
            base = aligned_alloc(64, HDR + want);
        }
        if (!base) {
            fprintf(stderr, "yuanft: out of memory allocating %zu bytes\n", n);
            abort();
        }
        *(size_t *)base = want;
    }
    return (char *)base + HDR;
}

void yf_buf_put(void *p) {
    if (!p) return;
    void *base = (char *)p - HDR;
    size_t cap = cap_of(base);
    pthread_mutex_lock(&g_mu);
    g_in_use -= cap;
    int empty = -1;
    for (int i = 0; i < YF_BUF_SLOTS && empty < 0; i++)
        if (!g_slot[i]) empty = i;
    bool keep = empty >= 0 && g_cached + cap <= g_peak;
    if (keep) {
        g_slot[empty] = base;
        g_cached += cap;
    }
    pthread_mutex_unlock(&g_mu);
    if (!keep) free(base);
}

void yf_buf_trim(void) {
    pthread_mutex_lock(&g_mu);
    for (int i = 0; i < YF_BUF_SLOTS; i++) {
        free(g_slot[i]);
        g_slot[i] = NULL;
    }
    g_cached = 0;
    pthread_mutex_unlock(&g_mu);
}
