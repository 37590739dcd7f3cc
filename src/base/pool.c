/* pool: see pool.h. One job at a time (a mutex held by the caller); the job
 * is one atomic word gen:32 | n:16 | next:16, so a chunk is claimed with a
 * compare-and-swap that also checks the job is still the same. The job's
 * function and context are read only after a successful claim: the job
 * cannot finish (and the next one cannot be published) before that chunk is
 * done, so they are stable. */
#include "base/pool.h"

#include <ctype.h>
#include <limits.h>
#include <linux/futex.h>
#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
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

int yf_par_threads_for_load(int want, double ncpu, double busy) {
    if (want <= 1) return want < 1 ? 1 : want;
    if (!(busy > 0)) return want; /* idle, or noise below zero after subtracting our own time */
    double free_cpus = ncpu - busy;
    int n = free_cpus >= 1 ? (int)(free_cpus + 0.5) : 1;
    return n < want ? n : want;
}

/* Busy and total jiffies summed over the CPUs in mask (the per-CPU lines of
 * /proc/stat: user nice system idle iowait irq softirq steal; idle and iowait
 * are free, the rest busy, steal too: a vCPU the host gives to others is not
 * ours). Returns the CPUs counted, 0 when the file cannot be read. */
static int cpu_jiffies(const cpu_set_t *mask, double *busy, double *total) {
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return 0;
    char line[256];
    int n = 0;
    *busy = *total = 0;
    while (fgets(line, sizeof line, f)) {
        int cpu;
        unsigned long long v[8] = {0};
        if (strncmp(line, "cpu", 3) != 0 || !isdigit((unsigned char)line[3])) continue;
        if (sscanf(line, "cpu%d %llu %llu %llu %llu %llu %llu %llu %llu", &cpu, &v[0], &v[1], &v[2], &v[3], &v[4],
                   &v[5], &v[6], &v[7]) < 5)
            continue;
        if (cpu < 0 || cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, mask)) continue;
        double t = 0;
        for (int k = 0; k < 8; k++) t += (double)v[k];
        *total += t;
        *busy += t - (double)v[3] - (double)v[4];
        n++;
    }
    fclose(f);
    return n;
}

static double seconds(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int yf_par_measure_load(double window_s, double *ncpu, double *busy) {
    cpu_set_t mask;
    if (sched_getaffinity(0, sizeof mask, &mask) != 0) return -1;
    double b0, t0, b1, t1;
    double w0 = seconds(CLOCK_MONOTONIC), c0 = seconds(CLOCK_PROCESS_CPUTIME_ID);
    int n = cpu_jiffies(&mask, &b0, &t0);
    struct timespec ws = {(time_t)window_s, (long)((window_s - (double)(time_t)window_s) * 1e9)};
    nanosleep(&ws, NULL);
    if (n == 0 || cpu_jiffies(&mask, &b1, &t1) != n || !(t1 > t0)) return -1;
    double wall = seconds(CLOCK_MONOTONIC) - w0, own = seconds(CLOCK_PROCESS_CPUTIME_ID) - c0;
    *ncpu = n;
    /* the share of the window the CPUs were busy, in CPUs, less our own */
    *busy = (b1 - b0) / (t1 - t0) * n - (wall > 0 ? own / wall : 0);
    return 0;
}

int yf_par_adapt_to_load(void) {
    int nt = omp_get_max_threads();
    const char *env = getenv("OMP_NUM_THREADS");
    double ncpu, busy;
    if (nt <= 1 || (env && *env) || yf_par_measure_load(0.1, &ncpu, &busy) != 0) return nt;
    int use = yf_par_threads_for_load(nt, ncpu, busy);
    if (use >= nt) return nt;
    fprintf(stderr, "yuanft: other processes are using %.1f of %.0f CPUs now: %d thread%s instead of %d "
                    "(set OMP_NUM_THREADS to choose)\n", busy, ncpu, use, use == 1 ? "" : "s", nt);
    omp_set_num_threads(use);
    return use;
}
