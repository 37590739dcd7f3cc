/* trainer_internal: the training run's state, shared by the loop
 * (trainer.c) and its checkpoints (trainer_state.c). Not a public header. */
#ifndef YF_TRAINER_INTERNAL_H
#define YF_TRAINER_INTERNAL_H

#include <cjson/cJSON.h>

#include "train/dist.h"
#include "train/trainer.h"

typedef struct yf_trun {
    const yf_train_args *a;
    const yf_train_hooks *h;
    const yf_param_list *pl;
    FILE *out;
    yf_dist *dist;           /* NULL: one process */
    int rank, world;
    int64_t gbs;             /* rows in a global micro-batch: batch_size * world */
    bool logger, writer;     /* this rank prints / writes files */
    yf_adamw opt;
    yf_sched sched;
    int64_t n, micro_per_epoch, steps_per_epoch, total_steps, n_epochs;
    /* position: what has been consumed */
    int64_t global_step, epoch_index, micro_in_epoch;
    double epoch;
    yf_rng dropout_rng;
    double total_loss;       /* sum of step losses since step 0 */
    double loss_since_log;   /* sum of step losses since the last log line */
    int64_t last_logged_step;
    cJSON *log_history;      /* array of HF log dicts */
    double *step_loss;       /* [global_step] loss of every step (for the curve) */
    int64_t cap_step_loss;
    /* this session */
    int64_t steps_run, samples_run, tokens_run;
    double *step_tps;        /* [steps_run] input tokens / wall second of each step */
    double warm_s, warm_tokens; /* wall seconds and input tokens of the steps after this session's first */
    double t0;
    double last_loss, last_grad_norm;
    bool tty;
    int progress;
    int64_t last_progress_step;
    double last_progress_t;
    /* evaluation and the best model (TrainerState's best_metric and
     * best_model_checkpoint, EarlyStoppingCallback's counter) */
    int64_t eval_steps;      /* the interval in effect with eval_strategy steps */
    char metric[64];         /* metric_for_best_model with its "eval_" prefix; "" = none */
    bool greater_is_better;  /* false for a loss, true otherwise (HF's default) */
    bool has_best;
    double best_metric;
    char *best_ckpt;         /* OUTPUT_DIR/checkpoint-STEP of the best evaluation (malloc'd) */
    int64_t best_step;
    int64_t patience_counter;
    bool stop_early;         /* early stopping ended the run */
} yf_trun;

/* Records the loss of step r->global_step (the curve's and the state's). */
void yf_trun_push_step_loss(yf_trun *r, double loss);
/* transformers' TrainerState as JSON, plus what an exact resume needs. */
cJSON *yf_trun_state_json(const yf_trun *r);
/* Writes o (pretty-printed, atomically) to dir/name. */
int yf_trun_write_json(const char *dir, const char *name, cJSON *o);
/* Writes OUTPUT_DIR/checkpoint-<global_step>: the weights (hooks->save), the
 * optimizer, scheduler, RNG and trainer state; a temporary directory
 * renamed into place, so a crash leaves the previous checkpoint whole. */
int yf_trun_save_checkpoint(yf_trun *r);
/* Removes OUTPUT_DIR/.checkpoint-*.tmp.* (and .adapter.tmp.*) directories whose writer is gone
 * (a run killed while saving); verbose: a line on stderr for each. */
void yf_trun_remove_stale(const char *output_dir, bool verbose);
/* Restores optimizer moments, schedule, RNG, data position, the log
 * history and the best-model state from a checkpoint directory written by
 * yf_trun_save_checkpoint. */
int yf_trun_resume(yf_trun *r, const char *dir);
/* save_total_limit as HF's Trainer applies it after each save: the oldest
 * OUTPUT_DIR/checkpoint-N beyond the limit are deleted, never the best one
 * (with a limit of 1 and a best that is not the newest, both are kept). */
void yf_trun_rotate_checkpoints(yf_trun *r);

#endif
