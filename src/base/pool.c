/* pool: see pool.h. One job at a time (a mutex held by the caller); the job
 * is one atomic word gen:32 | n:16 | next:16, so a chunk is claimed with a
 * compare-and-swap that also checks the job is still the same. The job's
 * function and context are read only after a successful claim: the job
 * cannot finish (and the next one cannot be published) before that chunk is
 * done, so they are stable. */
#include "base/pool.h"

#include <limits.h>
#include <linux/futex.h>
#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/util.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

enum { MAX_WORKERS = 63, SPIN_ITERS = 2000 /* ~50 us of pause */ };

static struct {
    _Atomic uint64_t word;
    _Atomic int64_t done;
    _Atomic uint32_t seq;      /* futex word: bumped per job */
    _Atomic int sleepers;
    yf_par_fn fn;
    void *ctx;
    uint32_t gen;
    int nworkers;
    pthread_mutex_t mu;
} P = {.mu = PTHREAD_MUTEX_INITIALIZER};

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static _Thread_local bool t_in_job;

static void run_chunks(void) {
    for (;;) {
        uint64_t w = atomic_load(&P.word);
        uint64_t n = (w >> 16) & 0xffff, i = w & 0xffff;
        if (i >= n) return;
        if (!atomic_compare_exchange_weak(&P.word, &w, w + 1)) continue;
        P.fn(P.ctx, (int64_t)i);
        atomic_fetch_add(&P.done, 1);
    }
}

static void *worker(void *arg) {
    (void)arg;
    t_in_job = true; /* products called from a job run inline */
    uint32_t seen = atomic_load(&P.seq);
    for (;;) {
        uint32_t s;
        int spins = 0;
        while ((s = atomic_load(&P.seq)) == seen) {
            if (++spins < SPIN_ITERS) {
                CPU_RELAX();
                continue;
            }
            atomic_fetch_add(&P.sleepers, 1);
            if (atomic_load(&P.seq) == seen) syscall(SYS_futex, &P.seq, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
            atomic_fetch_sub(&P.sleepers, 1);
            spins = 0;
        }
        seen = s;
        run_chunks();
    }
    return NULL;
}

static void start_workers(void) {
    int nt = omp_get_max_threads();
    if (nt > MAX_WORKERS + 1) nt = MAX_WORKERS + 1;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    for (int i = 0; i + 1 < nt; i++) {
        pthread_t th;
        if (pthread_create(&th, &at, worker, NULL) != 0) break; /* fewer workers: still correct */
        P.nworkers++;
    }
    pthread_attr_destroy(&at);
}

bool yf_par_in_job(void) { return t_in_job || omp_in_parallel(); }

int yf_par_threads(void) {
    if (t_in_job || omp_in_parallel() || omp_get_max_threads() <= 1) return 1;
    pthread_once(&g_once, start_workers);
    return P.nworkers + 1;
}

void yf_par_for(int64_t n, yf_par_fn fn, void *ctx) {
    YF_CHECK(n < 65536);
    if (n <= 0) return;
    if (n == 1 || yf_par_threads() <= 1 || pthread_mutex_trylock(&P.mu) != 0) {
        for (int64_t i = 0; i < n; i++) fn(ctx, i);
        return;
    }
    P.fn = fn;
    P.ctx = ctx;
    atomic_store(&P.done, 0);
    P.gen++;
    atomic_store(&P.word, ((uint64_t)P.gen << 32) | ((uint64_t)n << 16));
    atomic_fetch_add(&P.seq, 1);
    if (atomic_load(&P.sleepers) > 0) syscall(SYS_futex, &P.seq, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
    t_in_job = true;
    run_chunks();
    t_in_job = false;
    for (int spins = 0; atomic_load(&P.done) < n; spins++) {
        if (spins < SPIN_ITERS)
            CPU_RELAX();
        else
            sched_yield(); /* a worker holding a chunk was descheduled */
    }
    pthread_mutex_unlock(&P.mu);
}

int yf_par_adapt_to_load(void) {
    int nt = omp_get_max_threads();
    const char *env = getenv("OMP_NUM_THREADS");
    double load[1];
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (nt <= 1 || (env && *env) || ncpu < 1 || getloadavg(load, 1) != 1) return nt;
    if (load[0] + 0.5 < (double)ncpu) return nt;
    fprintf(stderr, "yuanft: load average %.1f on %ld CPUs: the cores are busy, using 1 thread "
                    "(set OMP_NUM_THREADS to choose)\n", load[0], ncpu);
    omp_set_num_threads(1);
    return 1;
}
