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
/* The thread rule, a pure function of what was measured: `want` threads
 * asked for, `ncpu` CPUs this process may run on, and `busy` CPUs' worth of
 * time that other processes used over a short window just now. Uses the
 * cores left free (ncpu - busy, rounded to nearest), at least 1 and at most
 * want: a thread without a core of its own stalls the others at every job's
 * end (measured here, 2 cores, load 4-6: 2 threads trained 1.5-1.8x slower
 * than 1). */
int yf_par_threads_for_load(int want, double ncpu, double busy);
/* What other processes use now: measures the CPUs in this process's
 * affinity mask over window_s seconds (/proc/stat before and after, idle and
 * iowait free, everything else busy, less this process's own CPU time).
 * Returns 0 with *ncpu and *busy set, -1 when /proc/stat is unreadable. */
int yf_par_measure_load(double window_s, double *ncpu, double *busy);
/* The rule every command that runs the model applies once, before its first
 * product: when OMP_NUM_THREADS is not set and more than one thread would be
 * used, measure 100 ms (yf_par_measure_load) and lower the thread count to
 * yf_par_threads_for_load's. What runs now decides, not a load average, which
 * would still count this tool's own previous run (make demo's stages). Like
 * libgomp's OMP_DYNAMIC. Returns the thread count chosen; writes a one-line
 * note to stderr only when it lowers it. */
int yf_par_adapt_to_load(void);

#endif
