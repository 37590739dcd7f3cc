#include "train/dist.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef YF_HAVE_MPI
#include <mpi.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#endif

bool yf_dist_built_with_mpi(void) {
#ifdef YF_HAVE_MPI
    return true;
#else
    return false;
#endif
}

static int env_int(const char *name, long long *v) {
    const char *s = getenv(name);
    if (!s || !*s) return -1;
    char *end;
    long long x = strtoll(s, &end, 10);
    if (*end) return -1;
    *v = x;
    return 0;
}

static void single(yf_dist *d) {
    memset(d, 0, sizeof *d);
    d->size = d->local_size = 1;
}

bool yf_dist_writes(const yf_dist *d, bool save_on_each_node) {
    if (!d) return true;
    return d->rank == 0 || (save_on_each_node && d->local_rank == 0);
}

void yf_dist_fault_point(const yf_dist *d, int64_t step) {
    long long s;
    if (!d || d->size < 2 || d->rank != d->size - 1) return;
    if (env_int("YF_TEST_DIE_AT_STEP", &s) == 0 && s == step) {
        fprintf(stderr, "yuanft train: rank %d: exiting at step %lld (YF_TEST_DIE_AT_STEP fault injection)\n", d->rank,
                (long long)step);
        fflush(stderr);
        _exit(3);
    }
    if (env_int("YF_TEST_HANG_AT_STEP", &s) == 0 && s == step) {
        fprintf(stderr, "yuanft train: rank %d: hanging at step %lld (YF_TEST_HANG_AT_STEP fault injection)\n", d->rank,
                (long long)step);
        fflush(stderr);
        for (;;) pause();
    }
}

#ifndef YF_HAVE_MPI

/* ---- built without MPI: one process ------------------------------------------ */

/* The number of ranks an MPI launcher says this job has (1 when none did). */
static long long launcher_size(void) {
    long long n;
    if (env_int("OMPI_COMM_WORLD_SIZE", &n) == 0 || env_int("PMI_SIZE", &n) == 0 || env_int("MV2_COMM_WORLD_SIZE", &n) == 0)
        return n;
    return 1;
}

int yf_dist_init(yf_dist *d) {
    single(d);
    long long n = launcher_size();
    if (n > 1)
        return yf_errorf("started as one of %lld MPI ranks, but this yuanft was built without MPI "
                         "(install libopenmpi-dev and rebuild with make MPI=auto)", n);
    return 0;
}
void yf_dist_finalize(yf_dist *d) { (void)d; }
void yf_dist_abort(yf_dist *d, int code) { (void)d, (void)code; }
int yf_dist_sum_f32(yf_dist *d, float *x, int64_t n, const char *what) { return 0; }
int yf_dist_sum_f64(yf_dist *d, double *x, int64_t n, const char *what) { return 0; }
int yf_dist_sum_i64(yf_dist *d, int64_t *x, int64_t n, const char *what) { return 0; }
int yf_dist_sum_grads(yf_dist *d, const yf_param_list *pl) { return 0; }
int yf_dist_barrier(yf_dist *d, const char *what) { return 0; }
void yf_dist_set_step(yf_dist *d, int64_t step) { (void)d, (void)step; }

#else

/* ---- the watchdog --------------------------------------------------------------
 * MPI's blocking collectives wait forever for a peer that hangs (a peer that
 * exits is noticed by mpirun, which ends the job). The main thread marks when
 * it enters a collective; a thread checks once a second and ends this process
 * when the wait passes the timeout, which makes the launcher end the others. */

static _Atomic int64_t g_wait_since_ms; /* 0: not in a collective */
static _Atomic int64_t g_step;
static const char *_Atomic g_what;
static double g_timeout_s;
static int g_rank;

static bool launched_by_mpi(void) {
    const char *force = getenv("YUANFT_MPI");
    if (force && !strcmp(force, "1")) return true;
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK") || getenv("MV2_COMM_WORLD_SIZE");
}

static int64_t now_ms(void) { return (int64_t)(yf_time() * 1000.0) + 1; }

static void *watchdog(void *arg) {
    (void)arg;
    for (;;) {
        struct timespec ts = {0, 250 * 1000 * 1000};
        nanosleep(&ts, NULL);
        int64_t since = atomic_load(&g_wait_since_ms);
        if (since && (double)(now_ms() - since) > g_timeout_s * 1000.0) {
            fprintf(stderr,
                    "yuanft train: rank %d: '%s' at step %lld has waited %.0f s for the other ranks: one of them died or "
                    "hangs; ending the job (YUANFT_DIST_TIMEOUT=%g s sets this limit)\n",
                    g_rank, atomic_load(&g_what), (long long)atomic_load(&g_step), (double)(now_ms() - since) / 1000.0,
                    g_timeout_s);
            fflush(stderr);
            _exit(1);
        }
    }
    return NULL;
}

static void enter(yf_dist *d, const char *what) {
    atomic_store(&g_what, what);
    atomic_store(&g_wait_since_ms, now_ms());
    d->n_collectives++;
}

static int leave(yf_dist *d, const char *what, double t0, int64_t bytes, int err) {
    atomic_store(&g_wait_since_ms, 0);
    d->comm_s += yf_time() - t0;
    d->comm_bytes += bytes;
    if (err != MPI_SUCCESS) {
        char msg[MPI_MAX_ERROR_STRING];
        int len = 0;
        MPI_Error_string(err, msg, &len);
        return yf_errorf("rank %d: MPI all-reduce '%s' failed: %s (a rank died or the network failed)", d->rank, what, msg);
    }
    return 0;
}

void yf_dist_set_step(yf_dist *d, int64_t step) {
    (void)d;
    atomic_store(&g_step, step);
}

int yf_dist_init(yf_dist *d) {
    single(d);
    if (!launched_by_mpi()) return 0;
    int provided = 0, err = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    if (err != MPI_SUCCESS) return yf_errorf("MPI_Init failed (error %d): is this an mpirun/srun launch?", err);
    d->mpi = true;
    /* errors come back to us: we name the collective and end the job ourselves */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->size);
    MPI_Comm node;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
        MPI_Comm_rank(node, &d->local_rank);
        MPI_Comm_size(node, &d->local_size);
        MPI_Comm_free(&node);
    } else {
        d->local_rank = d->rank, d->local_size = d->size;
    }
    long long t;
    d->timeout_s = env_int("YUANFT_DIST_TIMEOUT", &t) == 0 ? (double)t : 1800.0;
    d->profile = env_int("YUANFT_DIST_PROFILE", &t) == 0 && t != 0;
    if (d->size > 1 && d->timeout_s > 0) {
        g_timeout_s = d->timeout_s;
        g_rank = d->rank;
        atomic_store(&g_what, "start");
        pthread_t th;
        if (pthread_create(&th, NULL, watchdog, NULL) == 0) pthread_detach(th);
        else fprintf(stderr, "yuanft train: rank %d: warning: no watchdog thread; a hung rank will hang the job\n", d->rank);
    }
    return 0;
}

void yf_dist_finalize(yf_dist *d) {
    if (d->mpi) MPI_Finalize();
    d->mpi = false;
}

void yf_dist_abort(yf_dist *d, int code) {
    if (!d->mpi || d->size < 2) return;
    fprintf(stderr, "yuanft train: rank %d of %d failed; ending every rank of the job\n", d->rank, d->size);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code ? code : 1);
}

/* MPI counts are int: large buffers go in chunks. */
#define CHUNK ((int64_t)1 << 28)

static int sum_any(yf_dist *d, void *x, int64_t n, MPI_Datatype dt, size_t esz, const char *what) {
    if (!d || d->size < 2 || n <= 0) return 0;
    double t0 = yf_time();
    enter(d, what);
    int err = MPI_SUCCESS;
    for (int64_t i = 0; i < n && err == MPI_SUCCESS; i += CHUNK) {
        int64_t k = n - i < CHUNK ? n - i : CHUNK;
        err = MPI_Allreduce(MPI_IN_PLACE, (char *)x + (size_t)i * esz, (int)k, dt, MPI_SUM, MPI_COMM_WORLD);
    }
    return leave(d, what, t0, n * (int64_t)esz, err);
}

int yf_dist_sum_f32(yf_dist *d, float *x, int64_t n, const char *what) { return sum_any(d, x, n, MPI_FLOAT, 4, what); }
int yf_dist_sum_f64(yf_dist *d, double *x, int64_t n, const char *what) { return sum_any(d, x, n, MPI_DOUBLE, 8, what); }
int yf_dist_sum_i64(yf_dist *d, int64_t *x, int64_t n, const char *what) { return sum_any(d, x, n, MPI_INT64_T, 8, what); }

int yf_dist_barrier(yf_dist *d, const char *what) {
    if (!d || d->size < 2) return 0;
    double t0 = yf_time();
    enter(d, what);
    return leave(d, what, t0, 0, MPI_Barrier(MPI_COMM_WORLD));
}

/* LoRA has many small tensors (two per projection and layer): one call each
 * would pay the latency hundreds of times, so they travel packed. */
#define BUCKET ((int64_t)1 << 22) /* floats: 16 MiB */

int yf_dist_sum_grads(yf_dist *d, const yf_param_list *pl) {
    if (!d || d->size < 2) return 0;
    double t0 = yf_time();
    if (d->profile) {
        if (yf_dist_barrier(d, "barrier before the gradients (YUANFT_DIST_PROFILE)")) return -1;
        double t1 = yf_time();
        d->sync_s += t1 - t0;
        t0 = t1;
    }
    int64_t bytes0 = d->comm_bytes;
    float *buf = NULL;
    int64_t fill = 0;
    int first = 0, rc = 0;
    for (int i = 0; i <= pl->n && rc == 0; i++) {
        bool big = i < pl->n && pl->p[i].numel >= BUCKET / 4;
        /* flush the bucket before a large tensor, when full, and at the end */
        if (fill > 0 && (i == pl->n || big || fill + pl->p[i].numel > BUCKET)) {
            rc = yf_dist_sum_f32(d, buf, fill, "all-reduce gradients");
            int64_t off = 0;
            for (int j = first; j < i; j++) {
                if (pl->p[j].numel >= BUCKET / 4) continue;
                memcpy(pl->p[j].g, buf + off, (size_t)pl->p[j].numel * sizeof(float));
                off += pl->p[j].numel;
            }
            fill = 0;
        }
        if (i == pl->n || rc) break;
        if (fill == 0) first = i;
        if (big) {
            rc = yf_dist_sum_f32(d, pl->p[i].g, pl->p[i].numel, "all-reduce gradients");
            continue;
        }
        if (!buf) buf = yf_malloc((size_t)BUCKET * sizeof(float));
        memcpy(buf + fill, pl->p[i].g, (size_t)pl->p[i].numel * sizeof(float));
        fill += pl->p[i].numel;
    }
    free(buf);
    d->grad_s += yf_time() - t0;
    d->grad_bytes += d->comm_bytes - bytes0;
    return rc;
}

#endif
