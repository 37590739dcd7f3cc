/* The gradient all-reduce alone: the time yf_dist_sum_grads takes for a
 * gradient list of a given size (one tensor per MiB-sized piece, as a LoRA
 * list of many small tensors or a full model of a few large ones would be).
 * Tells whether overlapping it with the backward could pay: compare with the
 * step time of bench/mpi_bench.sh.
 * usage: mpirun -np 2 build/bench/allreduce_bench MIB [TENSORS [REPEATS]]
 * prints: MIB TENSORS best_ms mean_ms GB/s (rank 0) */
#include <stdio.h>
#include <stdlib.h>

#include "train/dist.h"
#include "base/util.h"

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: mpirun -np N %s MIB [TENSORS [REPEATS]]\n", argv[0]);
        return 2;
    }
    double mib = atof(argv[1]);
    int nt = argc > 2 ? atoi(argv[2]) : 1, reps = argc > 3 ? atoi(argv[3]) : 5;
    if (!(mib > 0) || nt < 1 || reps < 1) return 2;
    yf_dist d;
    if (yf_dist_init(&d)) {
        fprintf(stderr, "%s\n", yf_last_error());
        return 1;
    }
    int64_t total = (int64_t)(mib * 1024 * 1024 / 4), per = total / nt > 0 ? total / nt : 1;
    yf_param_list pl = {yf_calloc((size_t)nt, sizeof(yf_param)), nt};
    for (int i = 0; i < nt; i++) {
        pl.p[i].numel = per;
        pl.p[i].g = yf_aligned_alloc((size_t)per * sizeof(float));
        for (int64_t k = 0; k < per; k++) pl.p[i].g[k] = 1e-3f * (float)(k % 7);
    }
    double best = 1e30, sum = 0;
    yf_dist_barrier(&d, "start");
    for (int r = 0; r <= reps; r++) {
        yf_dist_barrier(&d, "sync");
        double t0 = yf_time();
        if (yf_dist_sum_grads(&d, &pl)) {
            fprintf(stderr, "%s\n", yf_last_error());
            yf_dist_abort(&d, 1);
            return 1;
        }
        double dt = yf_time() - t0;
        if (r == 0) continue; /* first touch of the buffers */
        best = dt < best ? dt : best;
        sum += dt;
    }
    if (d.rank == 0)
        printf("%.1f MiB in %d tensors over %d ranks: best %.2f ms, mean %.2f ms, %.2f GB/s\n", (double)(per * nt) * 4 / 1048576.0,
               nt, d.size, best * 1e3, sum / reps * 1e3, (double)(per * nt) * 4 / best / 1e9);
    for (int i = 0; i < nt; i++) free(pl.p[i].g);
    free(pl.p);
    yf_dist_finalize(&d);
    return 0;
}
