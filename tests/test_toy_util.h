/* A toy model for the training loop's tests: a least-squares fit over
 * "tokens", so the loop's semantics are tested without the Yuan model. */
#ifndef YT_TOY_UTIL_H
#define YT_TOY_UTIL_H

#include <stdio.h>

#include "train/trainer.h"

#define TOY_N 10

/* Example i has 1 + i % 4 tokens; token j: x = sin(i + j), target 0.7 x - 0.2
 * + noise. Loss of a token = 0.5 (w0 x + w1 - y)^2. With `dropout` the input
 * is jittered from the trainer's RNG, so an exact resume needs that RNG. */
typedef struct toy {
    float w[2], g[2];
    bool dropout;
    int64_t seen[512]; /* rows in the order forward_backward saw them */
    int nseen;
} toy;

int64_t toy_ntok(int64_t i);
double toy_x(int64_t i, int64_t j);
double toy_y(int64_t i, int64_t j);
int64_t toy_count(void *ctx, const int64_t *rows, int64_t n);
int toy_fb(void *ctx, const int64_t *rows, int64_t n, float scale, yf_rng *rng, double *loss_sum, int64_t *ntok,
           int64_t *n_input);
int toy_save(void *ctx, const char *dir);
int toy_load(toy *m, const char *dir);
/* w = (0.1, 0.3); one parameter "toy.weight" [2]; hooks without evaluation. */
void toy_init(toy *m, yf_param *p, yf_param_list *pl, yf_train_hooks *h);
/* lr 0.05, logging every step, no saving, no progress, into outdir / out. */
yf_train_args toy_args(const char *outdir, FILE *out);
/* NAME inside the test's temporary directory (one of 8 rotating buffers). */
char *sub(const char *name);
/* Reads a whole file (malloc'd), or NULL. */
char *slurp(const char *path);

#endif
