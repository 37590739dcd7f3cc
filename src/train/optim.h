/* optim: AdamW (torch.optim.AdamW's arithmetic), the Trainer's learning-rate
 * schedules, and global-norm gradient clipping (torch.nn.utils.clip_grad_norm_).
 * Works on a yf_param_list: fp32 weights and gradients, whatever the model. */
#ifndef YF_OPTIM_H
#define YF_OPTIM_H

#include "base/tensor.h"

/* ---- learning-rate schedules (transformers.get_scheduler) ----------------- */
typedef enum yf_sched_kind {
    YF_SCHED_LINEAR = 0,          /* warmup, then linear decay to 0 at step `total` */
    YF_SCHED_COSINE,              /* warmup, then half a cosine to 0 */
    YF_SCHED_CONSTANT,            /* lr0 at every step, warmup ignored */
    YF_SCHED_CONSTANT_WITH_WARMUP /* warmup, then lr0 */
} yf_sched_kind;

typedef struct yf_sched {
    yf_sched_kind kind;
    double lr0;     /* peak learning rate */
    int64_t warmup; /* warmup steps */
    int64_t total;  /* total optimizer steps */
} yf_sched;

/* "linear", "cosine", "constant", "constant_with_warmup"; unknown names are an
 * error listing the accepted ones. */
int yf_sched_parse(const char *name, yf_sched_kind *out);
const char *yf_sched_name(yf_sched_kind k);
/* The Trainer's rule: warmup_steps when > 0, else ceil(warmup_ratio * total). */
int64_t yf_warmup_steps(int64_t warmup_steps, double warmup_ratio, int64_t total);
/* Learning rate used by optimizer step `step` (0-based): lr0 * lambda(step). */
double yf_sched_lr(const yf_sched *s, int64_t step);

/* ---- gradient norm and clipping ------------------------------------------ */
/* Global L2 norm over every gradient of the list (accumulated in double). */
double yf_grad_norm(const yf_param_list *pl);
/* Scales every gradient by min(1, max_norm / (norm + 1e-6)) where norm is the
 * global norm; returns the norm before clipping. max_norm <= 0: no clipping. */
double yf_clip_grad_norm(const yf_param_list *pl, double max_norm);
void yf_zero_grads(const yf_param_list *pl);

/* ---- AdamW ----------------------------------------------------------------- */
typedef struct yf_adamw_cfg {
    double beta1, beta2, eps, weight_decay;
} yf_adamw_cfg;
/* torch / Trainer defaults: (0.9, 0.999), 1e-8, weight decay 0. */
yf_adamw_cfg yf_adamw_defaults(void);

typedef struct yf_adamw {
    yf_adamw_cfg cfg;
    int n;
    yf_param *params; /* [n], a copy of the list's entries (weights not owned) */
    float **m, **v;   /* [n][numel] first and second moments (exp_avg, exp_avg_sq) */
    bool *decay;      /* [n] weight decay applies to this tensor */
    int64_t step;     /* steps taken (torch's state["step"]) */
} yf_adamw;

/* The Trainer's no-decay rule for full fine-tuning: names containing "bias" or
 * "norm" (LayerNorm/RMSNorm weights) get no weight decay. */
bool yf_param_decays(const char *name);
/* Allocates zero moments for every parameter; decay[i] = decay_all ||
 * yf_param_decays(name). (LoRA: decay_all = true, the Trainer decays A, B and m.) */
void yf_adamw_init(yf_adamw *o, const yf_param_list *pl, const yf_adamw_cfg *cfg, bool decay_all);
/* One step with learning rate lr, as torch's single-tensor AdamW:
 *   w -= lr*wd*w; m = m + (1-b1)(g-m); v = b2 v + (1-b2) g^2;
 *   w -= (lr / (1-b1^t)) * m / (sqrt(v)/sqrt(1-b2^t) + eps). */
void yf_adamw_step(yf_adamw *o, double lr);
void yf_adamw_free(yf_adamw *o);

/* Moments as tensors named "exp_avg.<param>" and "exp_avg_sq.<param>" (views
 * into the optimizer, valid until yf_adamw_free), for saving. *ts malloc'd,
 * names malloc'd: free with yf_adamw_free_tensors. */
int yf_adamw_tensors(const yf_adamw *o, yf_tensor **ts);
void yf_adamw_free_tensors(yf_tensor *ts, int n);
/* Restores moments from a table holding those names; every parameter must be
 * present with the right element count (errors name the tensor and `what`). */
int yf_adamw_restore(yf_adamw *o, const yf_table *tab, const char *what);

#endif
