/* pool: the worker threads of the matrix products and the blocked attention.
 *
 * Why not OpenMP here: a parallel region ends with a barrier that waits for
 * every thread of the team, so on cores shared with other processes one
 * descheduled thread stalls the region for a scheduler time slice, and
 * libgomp's threads then spin for milliseconds after each region; measured
 * here (2 cores, load ~4), 2-thread training ran 1.5-2x SLOWER than 1 thread.
 * The pool hands out chunks dynamically (an atomic counter): the caller
 * works too, a worker that wakes up late finds the work taken and goes back to
 * sleep, and the caller waits only for chunks already being worked on.
 * Workers spin ~50 us for the next job, then sleep on a futex.
 *
 * Threads: omp_get_max_threads() (OMP_NUM_THREADS) at the first call. Calls
 * from a pool job, from inside an OpenMP parallel region, or while another
 * thread's job runs execute inline on the caller. */
#ifndef YF_POOL_H
#define YF_POOL_H

#include <stdbool.h>
#include <stdint.h>

typedef void (*yf_par_fn)(void *ctx, int64_t i);

/* fn(ctx, i) for every i in [0, n) (n < 65536), in any order and on any
 * thread; returns when all have finished. */
void yf_par_for(int64_t n, yf_par_fn fn, void *ctx);
/* Threads a yf_par_for may use now (1 = inline). */
int yf_par_threads(void);
/* True on a thread running a pool job or inside an OpenMP parallel region. */
bool yf_par_in_job(void);
/* For long runs (training): when OMP_NUM_THREADS is not set and the 1-minute
 * load average already reaches the number of CPUs (every core busy before we
 * start), use one thread: a second one cannot get a core of its own, and
 * measured here (2 cores, load 4-6) 2 threads trained 1.5-1.8x slower than 1.
 * Like libgomp's OMP_DYNAMIC. Returns the thread count chosen; writes a one-
 * line note to stderr when it lowers it. Call before the first product. */
int yf_par_adapt_to_load(void);

#endif
