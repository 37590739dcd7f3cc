/* trainer: the training loop with transformers' Trainer semantics
 * (shared/docs/finetune-semantics.md, Trainer): epochs and seeded shuffling,
 * gradient accumulation with token-count averaging over the window, clipping,
 * AdamW + schedule, logging, checkpoints that resume to the identical result.
 *
 * The loop knows nothing about the model: the caller hands it the trainable
 * tensors and a few callbacks (forward+backward on rows of the data set, save
 * the weights). cmd_train wires them to the Yuan model and its adapter. */
#ifndef YF_TRAINER_H
#define YF_TRAINER_H

#include <stdio.h>

#include "train/optim.h"

typedef enum yf_save_strategy { YF_SAVE_NO = 0, YF_SAVE_EPOCH, YF_SAVE_STEPS } yf_save_strategy;
int yf_save_strategy_parse(const char *s, yf_save_strategy *out); /* "no", "epoch", "steps" */

typedef struct yf_train_args {
    int64_t batch_size;       /* per_device_train_batch_size (8) */
    int64_t grad_accum;       /* gradient_accumulation_steps (1) */
    double num_epochs;        /* num_train_epochs (3); fractional epochs allowed as in HF */
    int64_t max_steps;        /* > 0 overrides num_epochs (-1) */
    double lr;                /* learning_rate (5e-5) */
    yf_adamw_cfg adam;        /* betas, eps, weight_decay */
    bool decay_all;           /* weight decay on every tensor (LoRA) or per yf_param_decays (full) */
    yf_sched_kind sched;      /* lr_scheduler_type (linear) */
    int64_t warmup_steps;     /* (0) */
    double warmup_ratio;      /* (0) */
    double max_grad_norm;     /* (1.0); <= 0 disables clipping */
    int64_t logging_steps;    /* (500); 0 = never */
    yf_save_strategy save_strategy; /* (epoch in our CLI, as the recipe) */
    int64_t save_steps;       /* (500) */
    uint64_t seed;            /* (42) shuffling and dropout */
    bool shuffle;             /* (true) */
    const int64_t *lengths;   /* [n_examples] or NULL: with shuffle, group_by_length
                               * (megabatches of 50 global batches sorted by length) */
    const char *output_dir;   /* checkpoints, final weights, trainer_state.json, loss_curve.svg */
    const char *resume_dir;   /* a checkpoint directory to continue from, or NULL */
    FILE *out;                /* log lines and summary (stdout when NULL) */
    int progress;             /* -1 auto (bar when stderr is a terminal), 0 off, 1 plain lines */
    /* Data parallelism (dist.h): NULL or one rank = a single process. With N
     * ranks, global micro-batch k is rows [k*N*batch, (k+1)*N*batch) of the
     * epoch's order and rank r computes the r-th run of `batch` rows; token
     * counts and gradients are summed over the ranks, so the update is the one
     * a single process with batch N*batch (same accumulation) makes. Rank 0
     * logs; rank 0 writes (every node's first rank with save_on_each_node). */
    struct yf_dist *dist;
    bool save_on_each_node;
} yf_train_args;

/* HF defaults (the CLI overrides some with the recipe's values). */
yf_train_args yf_train_args_defaults(void);

typedef struct yf_train_hooks {
    void *ctx;
    int64_t n_examples;
    /* Number of scored tokens (labels != -100 after the shift) in rows[0..n). */
    int64_t (*count_tokens)(void *ctx, const int64_t *rows, int64_t n);
    /* Forward + backward over rows[0..n) as one micro-batch: gradients +=
     * loss_scale * d(sum of token losses). Returns the loss sum, the scored
     * token count and the number of input positions fed (for tokens/s). */
    int (*forward_backward)(void *ctx, const int64_t *rows, int64_t n, float loss_scale, yf_rng *dropout_rng,
                            double *loss_sum, int64_t *ntok, int64_t *n_input);
    /* Writes the trainable weights (adapter directory or model directory) into dir. */
    int (*save)(void *ctx, const char *dir);
    /* Optional (NULL: none): input positions this rank's micro-batches have
     * not computed so far: out[0] a shared prefix's repeats, out[1] padding
     * skipped (summed over the ranks into the final JSON line's
     * shared_prefix_tokens_saved and padding_tokens_skipped). */
    void (*tokens_saved)(void *ctx, int64_t out[2]);
} yf_train_hooks;

typedef struct yf_train_result {
    int64_t global_step;
    double epoch;
    double train_loss;        /* mean step loss over the run (resumed runs included) */
    double runtime_s;
    double samples_per_s, steps_per_s, tokens_per_s;
    double last_loss, last_grad_norm;
} yf_train_result;

/* Runs training to the end (or the step limit), writing checkpoints, the final
 * weights (hooks->save(output_dir)), trainer_state.json and loss_curve.svg.
 * If a->resume_dir is set, restores optimizer moments, schedule, RNG and data
 * position from it (the caller has already loaded the weights from it). */
int yf_train(const yf_train_args *a, const yf_train_hooks *h, const yf_param_list *params, yf_train_result *res);

/* OUTPUT_DIR/checkpoint-N with the largest N that holds trainer_state.json;
 * error when there is none. *out malloc'd. */
int yf_latest_checkpoint(const char *output_dir, char **out);

/* Steps per epoch as the Trainer counts them: ceil(ceil(N / batch) / accum). */
int64_t yf_steps_per_epoch(int64_t n_examples, int64_t batch, int64_t accum);

/* Formats x as Python's repr(float) does (shortest round trip, "2.0", "4.9e-05"). */
const char *yf_py_float(double x, char *buf, size_t cap);

#endif
