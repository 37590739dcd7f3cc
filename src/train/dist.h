/* dist: data-parallel training over MPI (Open MPI; launched by mpirun or
 * Slurm's srun). Who this process is in the job, sums of buffers over every
 * rank (all-reduce), and taking the whole job down when one rank fails.
 *
 * Built without MPI (make MPI=0, or no mpicc found) every function is the
 * single-process case: rank 0 of 1, sums are no-ops. A process that an MPI
 * launcher started as one of several ranks is then refused with a clear error
 * instead of silently training N independent copies into one directory.
 *
 * A process that no MPI launcher started never initialises MPI, so a plain
 * `yuanft train` behaves exactly as in a build without MPI.
 *
 * A collective that waits longer than the timeout (YUANFT_DIST_TIMEOUT seconds,
 * default 1800, 0 = none) means a peer died or hangs: a watchdog prints which
 * collective at which step and ends the process, so the launcher ends the job. */
#ifndef YF_DIST_H
#define YF_DIST_H

#include "base/tensor.h"

typedef struct yf_dist {
    int rank, size;             /* this process in the job: 0 of 1 without MPI */
    int local_rank, local_size; /* among the ranks of this node (shared memory) */
    bool mpi;                   /* MPI was initialised here (finalize it) */
    double timeout_s;           /* collective watchdog; 0 = none */
    /* what the collectives cost this process (waiting for slower ranks included) */
    double comm_s;
    int64_t comm_bytes, n_collectives;
    /* the gradient all-reduce alone; with YUANFT_DIST_PROFILE=1 a barrier before
     * it takes the wait for slower ranks (sync_s), so grad_s is the transfer */
    bool profile;
    double grad_s, sync_s;
    int64_t grad_bytes;
} yf_dist;

/* True when this build has MPI. */
bool yf_dist_built_with_mpi(void);

/* Joins the job when an MPI launcher started this process (mpirun: OMPI_*,
 * PMIx/PMI: PMIX_RANK, PMI_RANK; YUANFT_MPI=1 forces it), else fills in the
 * single-process case. MPI errors return to the caller (no silent abort). */
int yf_dist_init(yf_dist *d);
/* Leaves the job (MPI_Finalize) when it joined one. */
void yf_dist_finalize(yf_dist *d);
/* After an error on this rank: ends every rank of the job with exit status
 * `code` (MPI_Abort), so that no peer waits forever. Returns only without MPI. */
void yf_dist_abort(yf_dist *d, int code);

/* In-place sums over every rank (all-reduce), n elements. `what` names the
 * collective in errors and in the watchdog's message. No-ops with one rank. */
int yf_dist_sum_f32(yf_dist *d, float *x, int64_t n, const char *what);
int yf_dist_sum_f64(yf_dist *d, double *x, int64_t n, const char *what);
int yf_dist_sum_i64(yf_dist *d, int64_t *x, int64_t n, const char *what);
/* Sums every gradient of the list over the ranks: small tensors packed into
 * buckets (one call per bucket), large ones reduced in place. */
int yf_dist_sum_grads(yf_dist *d, const yf_param_list *pl);
int yf_dist_barrier(yf_dist *d, const char *what);

/* The step the collectives are working for, named by the watchdog. */
void yf_dist_set_step(yf_dist *d, int64_t step);

/* Whether this rank writes checkpoints and the final weights: rank 0, or with
 * save_on_each_node the first rank of every node (each node has its own disk). */
bool yf_dist_writes(const yf_dist *d, bool save_on_each_node);

/* Fault injection for the tests: YF_TEST_DIE_AT_STEP=S makes the last rank
 * exit abruptly when optimizer step S begins (1-based); YF_TEST_HANG_AT_STEP=S
 * makes it stop responding there. Called by the trainer at each step. */
void yf_dist_fault_point(const yf_dist *d, int64_t step);

#endif
