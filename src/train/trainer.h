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

/* When to save or to evaluate (HF's IntervalStrategy). */
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
    /* Evaluation during training (needs hooks->n_eval > 0), HF's semantics:
     * after the step's log line, evaluate; then save; then delete old
     * checkpoints. With N ranks, eval batch k (rows [k*B, (k+1)*B) of the eval
     * set, B = eval_batch_size) is computed by rank k % N and the results are
     * combined exactly, so every rank and every N see the same numbers. */
    yf_save_strategy eval_strategy; /* (no) */
    int64_t eval_steps;       /* with eval_strategy steps; <= 0: logging_steps (as HF) */
    double eval_delay;        /* no evaluation before this epoch (epoch strategy) or step (steps) (0) */
    int64_t eval_batch_size;  /* per_device_eval_batch_size (8) */
    /* "eval_loss" (lower is better) or another metric the hooks compute,
     * e.g. "eval_f1" (higher is better); "loss" means "eval_loss". NULL: none,
     * unless load_best_model_at_end (then eval_loss). Tracks best_metric and
     * best_model_checkpoint (OUTPUT_DIR/checkpoint-STEP of the best evaluation). */
    const char *metric_for_best_model;
    bool load_best_model_at_end; /* end with the best checkpoint's weights (hooks->load) */
    int64_t save_total_limit; /* keep at most this many checkpoints, never the best (0 = all) */
    int64_t early_stopping_patience; /* stop after this many evaluations without improvement (0 = never) */
    double early_stopping_threshold; /* improvement that counts (0.0) */
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

    /* ---- evaluation (optional: n_eval = 0 and NULL hooks without eval data) ---- */
    int64_t n_eval;           /* eval examples, rows [0, n_eval) */
    /* The mean token loss of eval rows[0..n) as one batch, without gradients
     * (HF's per-batch loss); *ntok its scored tokens. eval_loss is the mean of
     * the batch losses weighted by rows, as HF's evaluation loop computes it
     * (batches that score no token are left out). */
    int (*eval_loss)(void *ctx, const int64_t *rows, int64_t n, double *loss, int64_t *ntok);
    /* More metrics from additive counts (NULL: none): eval_counts adds the
     * n_counts (<= YF_EVAL_MAX_COUNTS) counts of eval rows[0..n) into counts
     * (e.g. true and false positives); it sees only rows below n_count_rows
     * (<= 0: all). eval_metrics turns the counts summed over every batch and
     * rank into up to YF_EVAL_MAX_METRICS named values ("f1" becomes "eval_f1"),
     * returning how many. */
    int n_counts;
    int64_t n_count_rows;
    int (*eval_counts)(void *ctx, const int64_t *rows, int64_t n, double *counts);
    int (*eval_metrics)(void *ctx, const double *counts, const char **names, double *values);
    /* Loads weights that save() wrote into dir back into the trainable
     * tensors (load_best_model_at_end). */
    int (*load)(void *ctx, const char *dir);
} yf_train_hooks;

#define YF_EVAL_MAX_COUNTS 32
#define YF_EVAL_MAX_METRICS 8

typedef struct yf_train_result {
    int64_t global_step;
    double epoch;
    double train_loss;        /* mean step loss over the run (resumed runs included) */
    double runtime_s;
    double samples_per_s, steps_per_s, tokens_per_s;
    double last_loss, last_grad_norm;
    /* with metric_for_best_model: the best value and where (NULL: no evaluation) */
    double best_metric;
    char best_model_checkpoint[1024];
    bool stopped_early;
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
