/* yuanft train: fine-tune a Yuan model (LoRA, DoRA or full) with the HF
 * Trainer's semantics. Wires the generic loop (src/train/trainer.h) to the model,
 * the adapter and the training set (src/task/trainset.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "formats/checkpoint.h"
#include "commands.h"
#include "formats/config.h"
#include "lora/lora.h"
#include "model/model.h"
#include "formats/safetensors.h"
#include "task/train_eval.h"
#include "task/trainset.h"
#include "train/dist.h"
#include "kernels/cpu/kernels.h"
#include "base/pool.h"
#include "train/trainer.h"
#include "session.h"

/* Information lines come from rank 0 only when several MPI ranks run this. */
static bool g_log = true;

/* ---- hooks ---------------------------------------------------------------------- */

typedef struct ctx {
    yf_model *model;
    yf_lora *lora;        /* NULL in full fine-tuning */
    yf_trainset *data;
    bool grad_ckpt;
    float dropout;
    const char *model_dir;
    int64_t *bids, *blab; /* [batch * T] gather buffers */
    yf_param_list params;
    yf_share_mode share;  /* --shared-prefix */
    yf_share_stats shared;
    yf_teval ev;          /* --eval-data */
} ctx;

static int64_t hook_count(void *vc, const int64_t *rows, int64_t n) {
    const yf_trainset *d = ((ctx *)vc)->data;
    int64_t c = 0;
    for (int64_t k = 0; k < n; k++) {
        const int64_t *lb = d->labels + rows[k] * d->T;
        for (int64_t t = 1; t < d->T; t++) c += lb[t] != -100; /* labels[t] is scored against logits[t-1] */
    }
    return c;
}

static int hook_fb(void *vc, const int64_t *rows, int64_t n, float scale, yf_rng *rng, double *loss_sum, int64_t *ntok,
                   int64_t *n_input) {
    ctx *c = vc;
    const yf_trainset *d = c->data;
    int64_t Tb = 1;
    for (int64_t k = 0; k < n; k++) Tb = d->len[rows[k]] > Tb ? d->len[rows[k]] : Tb;
    for (int64_t k = 0; k < n; k++) {
        memcpy(c->bids + k * Tb, d->ids + rows[k] * d->T, (size_t)Tb * sizeof(int64_t));
        memcpy(c->blab + k * Tb, d->labels + rows[k] * d->T, (size_t)Tb * sizeof(int64_t));
    }
    yf_backward_opts o = {.loss_scale = scale, .gradient_checkpointing = c->grad_ckpt,
                          .dropout_rng = c->dropout > 0 ? rng : NULL, .shared_prefix = c->share,
                          .share_stats = &c->shared};
    *n_input = n * Tb;
    return yf_model_forward_backward(c->model, c->lora, c->bids, c->blab, n, Tb, &o, loss_sum, ntok);
}

static void hook_saved(void *vc, int64_t out[2]) {
    const ctx *c = vc;
    out[0] = c->shared.prefix_saved;
    out[1] = c->shared.padding_skipped;
}

static int hook_save(void *vc, const char *dir) {
    ctx *c = vc;
    if (c->lora) return yf_lora_save(c->lora, dir, c->model_dir);
    /* full fine-tuning: every weight in fp32, with the config */
    yf_tensor *ts = yf_calloc((size_t)c->params.n + 1, sizeof *ts);
    for (int i = 0; i < c->params.n; i++) {
        const yf_param *p = &c->params.p[i];
        ts[i].name = (char *)p->name;
        ts[i].dtype = YF_F32;
        ts[i].ndim = p->ndim;
        memcpy(ts[i].shape, p->shape, sizeof ts[i].shape);
        ts[i].data = p->w;
        ts[i].nbytes = (size_t)p->numel * sizeof(float);
    }
    int rc = yf_model_dir_write(dir, yf_model_config(c->model), ts, c->params.n, NULL, NULL, c->model_dir);
    free(ts);
    return rc;
}

/* Loads the trainable tensors back from a checkpoint that hook_save wrote:
 * the same names, fp32 (load_best_model_at_end). */
static int hook_load(void *vc, const char *dir) {
    ctx *c = vc;
    char *path = yf_path_join(dir, c->lora ? "adapter_model.safetensors" : "model.safetensors");
    yf_table tab;
    yf_table_init(&tab);
    int rc = yf_st_load(path, &tab);
    for (int i = 0; rc == 0 && i < c->params.n; i++) {
        const yf_param *p = &c->params.p[i];
        const yf_tensor *t = yf_table_find(&tab, p->name);
        if (!t || t->dtype != YF_F32 || yf_tensor_numel(t) != p->numel)
            rc = yf_errorf("%s: tensor %s is missing, or not F32 with %lld values: not a checkpoint of this run", path,
                           p->name, (long long)p->numel);
        else memcpy(p->w, t->data, (size_t)p->numel * sizeof(float));
    }
    yf_table_free(&tab);
    free(path);
    return rc;
}

static int hook_eval_loss(void *vc, const int64_t *rows, int64_t n, double *loss, int64_t *ntok) {
    return yf_teval_loss(&((ctx *)vc)->ev, rows, n, loss, ntok);
}
static int hook_eval_counts(void *vc, const int64_t *rows, int64_t n, double *counts) {
    return yf_teval_counts(&((ctx *)vc)->ev, rows, n, counts);
}
static int hook_eval_metrics(void *vc, const double *counts, const char **names, double *values) {
    (void)vc;
    return yf_teval_metrics(counts, names, values);
}

/* What evaluation during training needs beyond the training set. */
typedef struct eval_opts {
    const char *data, *strategy, *metric;
    const char *constrain, *types; /* eval_f1's decoding */
    yf_constrain_mode mode;
    uint32_t type_mask;
    int64_t steps, batch, limit, max_new_tokens;
    double delay;
    bool load_best;
    int64_t save_total_limit, patience;
} eval_opts;

/* The eval set: its examples for eval_loss and, for eval_f1, its records and
 * how to extract them (the tokenizer, template and vocabulary map of the
 * training data). */
static int eval_setup(ctx *c, yf_trainset *es, yf_records *recs, yf_tokenizer **tok, yf_vocab_map *vm, const eval_opts *eo,
                      const yf_trainset_opts *to, const yf_config *cfg, yf_train_hooks *h) {
    if (yf_trainset_load(eo->data, cfg, to, es)) return -1;
    if (g_log)
        fprintf(stderr, "yuanft train: evaluation data %s: %lld examples\n", eo->data, (long long)es->N);
    c->ev = (yf_teval){.model = c->model, .lora = c->lora, .ids = es->ids, .labels = es->labels, .len = es->len,
                       .N = es->N, .T = es->T};
    h->n_eval = es->N;
    h->eval_loss = hook_eval_loss;
    if (!eo->metric || strcmp(eo->metric, "eval_f1") != 0) return 0;
    if (es->n_records == 0)
        return yf_errorf("%s: --metric-for-best-model eval_f1 extracts the eval records: --eval-data must be records "
                         "(.jsonl or .json of {\"input\", \"output\"}), not tokenised data", eo->data);
    char *tp = to->tokenizer ? yf_strdup(to->tokenizer) : yf_path_join(to->model_dir, "tokenizer.model");
    int rc = yf_data_load(eo->data, recs);
    if (rc == 0) rc = yf_tokenizer_load(tp, tok);
    if (rc == 0) rc = yf_vocab_map_load(to->model_dir, yf_tokenizer_n_ids(*tok), vm);
    if (rc == 0) rc = yf_template_load(to->template_spec, &c->ev.x.tpl);
    free(tp);
    if (rc) return -1;
    if (recs->n != (size_t)es->N)
        return yf_errorf("%s: %zu records but %lld examples (internal)", eo->data, recs->n, (long long)es->N);
    c->ev.recs = recs;
    c->ev.x.tok = *tok;
    c->ev.x.vmap = vm;
    c->ev.x.max_new_tokens = eo->max_new_tokens;
    c->ev.x.max_length = to->max_length;
    c->ev.x.batch = eo->batch;
    c->ev.x.constrain = eo->mode;
    c->ev.x.types = eo->type_mask;
    /* the vocabulary as bytes once, not at every evaluation */
    if (eo->mode != YF_CONSTRAIN_NONE && yf_cvocab_build(*tok, vm, cfg->vocab_size, &c->ev.cvocab)) return -1;
    c->ev.x.cvocab = c->ev.cvocab;
    h->n_counts = YF_TEVAL_COUNTS;
    h->n_count_rows = eo->limit;
    h->eval_counts = hook_eval_counts;
    h->eval_metrics = hook_eval_metrics;
    return 0;
}

/* ---- the command ---------------------------------------------------------------- */

static int train(int argc, char **argv, yf_dist *dist) {
    const char *model_dir = NULL, *data = NULL, *out_dir = NULL, *adapter = NULL, *resume = NULL;
    const char *tokenizer = NULL, *template_spec = "resume", *shared_prefix = "auto";
    int64_t max_length = 384;
    const char *sched = "linear", *save = "steps", *targets = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj";
    int64_t bs = 8, accum = 1, max_steps = -1, warmup_steps = 0, logging_steps = 500, save_steps = 500, seed = 42;
    int64_t lora_r = 8;
    double epochs = 3, lr = 5e-5, wd = 0, warmup_ratio = 0, max_grad_norm = 1.0, lora_alpha = 32, lora_dropout = NAN;
    double beta1 = 0.9, beta2 = 0.999, adam_eps = 1e-8;
    bool group_by_length = false, train_on_inputs = false;
    bool gc = false, bf16 = false, dora = false, rslora = false, full = false, no_shuffle = false, each_node = false;
    eval_opts eo = {.strategy = "no", .constrain = "spans", .batch = 8, .max_new_tokens = 128};
    yc_quant qa = {0};
    const yc_opt opts[] = {
        YC_OPT("model", YC_STR, &model_dir, "base model directory (config.json + weights)", .meta = "DIR", .required = true),
        YC_QUANT_OPTS(&qa, "LoRA/DoRA: "),
        YC_OPT("data", YC_STR, &data, "training data: {\"input\",\"output\"} records (.jsonl or .json), or .safetensors "
               "with input_ids and labels [N, T] I64 (-100 = not scored)", .meta = "FILE", .required = true),
        YC_OPT_TOKENIZER(&tokenizer, "text data: "),
        YC_OPT_PROMPT_TEMPLATE(&template_spec, "text data: "),
        YC_OPT("max-length", YC_INT, &max_length, "text data: truncate each example to this many tokens"),
        YC_OPT("train-on-inputs", YC_FLAG, &train_on_inputs, "text data: score the prompt's tokens too (language "
               "modelling on the inputs), not only the answer's as the recipe does; --eval-data's eval_loss "
               "likewise"),
        YC_OPT_OUTPUT_DIR(&out_dir, "where checkpoints, the final adapter/model and loss_curve.svg go"),
        YC_OPT("adapter", YC_STR, &adapter, "start from this PEFT adapter directory (trainable; its r/alpha/targets are "
               "used)", .meta = "DIR"),
        YC_OPT("per-device-train-batch-size", YC_INT, &bs, "examples per micro-batch"),
        YC_OPT("gradient-accumulation-steps", YC_INT, &accum, "micro-batches per optimizer step"),
        YC_OPT("num-train-epochs", YC_FLOAT, &epochs, "epochs"),
        YC_OPT("max-steps", YC_INT, &max_steps, "optimizer steps; > 0 overrides --num-train-epochs"),
        YC_OPT("learning-rate", YC_FLOAT, &lr, "peak AdamW learning rate"),
        YC_OPT("weight-decay", YC_FLOAT, &wd, "AdamW decoupled weight decay; full fine-tuning skips bias/norm weights"),
        YC_OPT("adam-beta1", YC_FLOAT, &beta1, "AdamW beta1"),
        YC_OPT("adam-beta2", YC_FLOAT, &beta2, "AdamW beta2"),
        YC_OPT("adam-epsilon", YC_FLOAT, &adam_eps, "AdamW epsilon"),
        YC_OPT("lr-scheduler-type", YC_STR, &sched, "linear, cosine, constant or constant_with_warmup", .meta = "NAME"),
        YC_OPT("warmup-steps", YC_INT, &warmup_steps, "linear warmup steps"),
        YC_OPT("warmup-ratio", YC_FLOAT, &warmup_ratio, "warmup as a fraction of all steps, used when --warmup-steps is 0"),
        YC_OPT("max-grad-norm", YC_FLOAT, &max_grad_norm, "clip the global gradient norm to this; 0: no clipping"),
        YC_OPT("logging-steps", YC_INT, &logging_steps, "print the mean loss every N optimizer steps"),
        YC_OPT("save-strategy", YC_STR, &save, "no, epoch or steps", .meta = "NAME"),
        YC_OPT("save-steps", YC_INT, &save_steps, "checkpoint every N steps with --save-strategy steps"),
        YC_OPT("seed", YC_INT, &seed, "shuffling, adapter init and dropout"),
        YC_OPT("no-shuffle", YC_FLAG, &no_shuffle, "keep the data file's order"),
        YC_OPT("group-by-length", YC_FLAG, &group_by_length, "batch examples of similar length together (less padding), "
               "as HF's flag"),
        YC_OPT("gradient-checkpointing", YC_FLAG, &gc, "recompute each layer in the backward (less memory, same gradients)"),
        YC_OPT("shared-prefix", YC_STR, &shared_prefix, "auto: a micro-batch's rows compute their common prefix (the "
               "prompt template) once and skip their padding, when the prefix is long enough to pay; same loss and "
               "gradients (LoRA dropout: one mask for the shared prefix); off: every row whole", .meta = "auto|off"),
        YC_OPT("bf16", YC_FLAG, &bf16, "bf16 compute (like torch autocast): activations rounded to bf16 for the matrix "
               "products, fp32 accumulation; without it: fp32-exact products. Weights keep their stored dtype either "
               "way (fp32 copies only with --full-finetune)"),
        YC_OPT("lora-r", YC_INT, &lora_r, "LoRA rank; the recipe's value, as PEFT's default"),
        YC_OPT("lora-alpha", YC_FLOAT, &lora_alpha, "LoRA alpha; the recipe's value (PEFT's default is 8)"),
        YC_OPT("lora-dropout", YC_FLOAT, &lora_dropout, "dropout on the LoRA input; the recipe's value (PEFT's default is 0)",
               .def = "0.1; with --adapter: the adapter's"),
        YC_OPT("target-modules", YC_STR, &targets, "comma-separated projections, or all-linear (the seven projections)",
               .meta = "LIST"),
        YC_OPT("use-dora", YC_FLAG, &dora, "DoRA: also train a magnitude per output row"),
        YC_OPT("use-rslora", YC_FLAG, &rslora, "scaling alpha/sqrt(r) instead of alpha/r"),
        YC_OPT("full-finetune", YC_FLAG, &full, "train every weight instead of an adapter"),
        YC_OPT("resume-from-checkpoint", YC_STR, &resume, "a checkpoint directory, or true for the latest in --output-dir",
               .meta = "DIR|true"),
        YC_OPT("save-on-each-node", YC_FLAG, &each_node, "under mpirun/srun: write checkpoints and the result on the first "
               "rank of every node (node-local disks), not only on rank 0"),
        YC_OPT("save-total-limit", YC_INT, &eo.save_total_limit, "keep at most N checkpoints, deleting the oldest but never "
               "the best; 0: all"),
        YC_OPT("eval-data", YC_STR, &eo.data, "evaluation data, in either form --data takes (records for eval_f1)",
               .meta = "FILE"),
        YC_OPT("eval-strategy", YC_STR, &eo.strategy, "evaluate: no, every --eval-steps steps, or every epoch",
               .meta = "NAME"),
        YC_OPT("eval-steps", YC_INT, &eo.steps, "with --eval-strategy steps: evaluate every N steps", .def = "--logging-steps"),
        YC_OPT("eval-delay", YC_FLOAT, &eo.delay, "no evaluation before this epoch (--eval-strategy epoch) or step (steps)"),
        YC_OPT("per-device-eval-batch-size", YC_INT, &eo.batch, "eval examples a batch, for the loss and for extraction"),
        YC_OPT("metric-for-best-model", YC_STR, &eo.metric, "eval_loss (lower is better) or eval_f1 (extract the eval "
               "records and score them; higher is better): picks best_model_checkpoint", .meta = "NAME",
               .def = "none; eval_loss with --load-best-model-at-end"),
        YC_OPT("eval-limit", YC_INT, &eo.limit, "eval_f1: extract only the first N eval records; 0: all"),
        YC_OPT("eval-max-new-tokens", YC_INT, &eo.max_new_tokens, "eval_f1: answer length cap"),
        YC_OPT_CONSTRAIN(&eo.constrain, "eval_f1's decoding, as yuanft eval's: "),
        YC_OPT_TYPES(&eo.types, "eval_f1: "),
        YC_OPT("load-best-model-at-end", YC_FLAG, &eo.load_best, "end with the best checkpoint's weights in --output-dir "
               "(--save-strategy must be --eval-strategy)"),
        YC_OPT("early-stopping-patience", YC_INT, &eo.patience, "stop after N evaluations without improving the metric; "
               "0: never"),
    };
    int prc = yc_parse("train", "Fine-tune a Yuan model with the Hugging Face Trainer's semantics (AdamW, linear schedule,\n"
                                "gradient clipping, token-averaged accumulation). LoRA by default; the LoRA defaults are\n"
                                "the fine-tuning recipe's (r 8, alpha 32, dropout 0.1, the seven projections).",
                       argc, argv, opts, (int)(sizeof opts / sizeof *opts));
    if (prc) return prc == 1 ? 0 : 2;
    yf_model_opts mo = {.full_finetune = full}; /* bf16 weights stay bf16 (mapped), whatever --bf16 says */
    if (yc_quant_opts("train", &qa, &mo)) return 2;
    if (full && mo.quant.type != YF_QT_NONE)
        return yc_usage_error("train", "--quantize keeps the base weights frozen: use it with LoRA/DoRA, not "
                                       "--full-finetune");

    /* everything that can be checked before loading the weights */
    yf_train_args a = yf_train_args_defaults();
    a.batch_size = bs, a.grad_accum = accum, a.num_epochs = epochs, a.max_steps = max_steps, a.lr = lr;
    a.adam = (yf_adamw_cfg){beta1, beta2, adam_eps, wd};
    a.warmup_steps = warmup_steps, a.warmup_ratio = warmup_ratio, a.max_grad_norm = max_grad_norm;
    a.logging_steps = logging_steps, a.save_steps = save_steps, a.seed = (uint64_t)seed, a.shuffle = !no_shuffle;
    a.output_dir = out_dir, a.decay_all = !full;
    a.dist = dist, a.save_on_each_node = each_node;
    if (!(lr >= 0)) return yf_errorf("--learning-rate must be >= 0 (got %g)", lr), yc_fail("train");
    if (bs <= 0 || accum <= 0)
        return yf_errorf("--per-device-train-batch-size and --gradient-accumulation-steps must be positive"), yc_fail("train");
    if (wd < 0 || warmup_steps < 0 || warmup_ratio < 0 || warmup_ratio > 1 || logging_steps < 0)
        return yf_errorf("--weight-decay, --warmup-steps and --logging-steps must be >= 0, --warmup-ratio in [0, 1]"),
               yc_fail("train");
    if (yf_sched_parse(sched, &a.sched) || yf_save_strategy_parse(save, &a.save_strategy) ||
        yf_save_strategy_parse(eo.strategy, &a.eval_strategy))
        return yc_fail("train");
    if (eo.metric && strcmp(eo.metric, "eval_loss") && strcmp(eo.metric, "loss") && strcmp(eo.metric, "eval_f1") &&
        strcmp(eo.metric, "f1"))
        return yf_errorf("--metric-for-best-model '%s': use eval_loss or eval_f1", eo.metric), yc_fail("train");
    if (eo.metric && !strcmp(eo.metric, "f1")) eo.metric = "eval_f1";
    if (eo.batch <= 0 || eo.batch > 4096 || eo.limit < 0 || eo.max_new_tokens <= 0 || eo.save_total_limit < 0 || eo.patience < 0)
        return yf_errorf("--per-device-eval-batch-size must be in [1, 4096], --eval-max-new-tokens positive, --eval-limit, "
                         "--save-total-limit and --early-stopping-patience >= 0"),
               yc_fail("train");
    if (yf_constrain_mode_parse(eo.constrain, &eo.mode) || (eo.types && yf_types_parse(eo.types, &eo.type_mask)))
        return yc_usage_error("train", "%s", yf_last_error());
    if (a.eval_strategy != YF_SAVE_NO && !eo.data)
        return yf_errorf("--eval-strategy %s needs --eval-data", eo.strategy), yc_fail("train");
    a.eval_steps = eo.steps, a.eval_delay = eo.delay, a.eval_batch_size = eo.batch, a.metric_for_best_model = eo.metric;
    a.load_best_model_at_end = eo.load_best, a.save_total_limit = eo.save_total_limit;
    a.early_stopping_patience = eo.patience;
    yf_share_mode share = YF_SHARE_AUTO;
    if (!strcmp(shared_prefix, "off")) share = YF_SHARE_OFF;
    else if (!strcmp(shared_prefix, "on")) share = YF_SHARE_ON; /* not in --help: every batch, even without a prefix */
    else if (strcmp(shared_prefix, "auto"))
        return yc_usage_error("train", "--shared-prefix must be auto or off (got '%s')", shared_prefix);
    if (!(isnan(lora_dropout) || (lora_dropout >= 0 && lora_dropout < 1)))
        return yf_errorf("--lora-dropout must be in [0, 1) (got %g)", lora_dropout), yc_fail("train");
    yf_lora_cfg lc = {.r = (int)lora_r, .alpha = (float)lora_alpha, .dropout = isnan(lora_dropout) ? 0.1f : (float)lora_dropout,
                      .use_rslora = rslora, .use_dora = dora};
    if (!full && !adapter) {
        if (lora_r <= 0 || lora_r > 65536) return yf_errorf("--lora-r must be a positive rank (got %lld)", (long long)lora_r), yc_fail("train");
        if (yf_lora_parse_targets(targets, &lc.targets)) return yc_fail("train");
    }
    char *cfg_path = yf_path_join(model_dir, "config.json");
    yf_config cfg;
    int crc = yf_config_load(cfg_path, &cfg);
    free(cfg_path);
    if (crc) return yc_fail("train");
    yf_trainset ds;
    yf_trainset_opts to = {.model_dir = model_dir, .tokenizer = tokenizer, .template_spec = template_spec,
                           .max_length = max_length, .train_on_inputs = train_on_inputs};
    if (train_on_inputs && !yf_trainset_is_text(data))
        return yc_usage_error("train", "--train-on-inputs applies to records (.jsonl/.json): a .safetensors file "
                                       "carries its own labels");
    int lrc = yf_trainset_load(data, &cfg, &to, &ds);
    if (g_log && ds.n_records)
        fprintf(stderr, "yuanft train: %s: %lld records, longest %lld tokens, %lld truncated to %lld%s\n", data,
                (long long)ds.n_records, (long long)ds.T, (long long)ds.n_truncated, (long long)max_length,
                ds.vocab_mapped ? " (ids mapped through the model's vocab_map)" : "");
    if (lrc) {
        yf_trainset_free(&ds);
        return yc_fail("train");
    }
    char *resume_dir = NULL;
    if (resume && (!strcmp(resume, "true") || !strcmp(resume, "True"))) {
        if (yf_latest_checkpoint(out_dir, &resume_dir)) {
            yf_trainset_free(&ds);
            return yc_fail("train");
        }
    } else if (resume) {
        resume_dir = yf_strdup(resume);
    }
    if (resume_dir && !yf_dir_exists(resume_dir)) {
        yf_errorf("%s: checkpoint directory not found (--resume-from-checkpoint)", resume_dir);
        free(resume_dir);
        yf_trainset_free(&ds);
        return yc_fail("train");
    }
    a.resume_dir = resume_dir;
    if (group_by_length) a.lengths = ds.len;

    /* model and trainable tensors */
    int rc = 1;
    yf_trainset es;
    memset(&es, 0, sizeof es);
    yf_table_init(&es.tab);
    yf_records erecs = {0};
    yf_tokenizer *etok = NULL;
    yf_vocab_map evm = {0};
    yf_model *m = NULL;
    yf_lora lora, *lo = NULL;
    memset(&lora, 0, sizeof lora);
    ctx c = {.data = &ds, .grad_ckpt = gc, .model_dir = model_dir, .share = share};
    yf_kernels_set_precision(bf16 ? YF_PREC_BF16 : YF_PREC_EXACT);
    yf_par_adapt_to_load();
    /* full fine-tuning resumes from the checkpoint's weights */
    if (yf_model_load(full && resume_dir ? resume_dir : model_dir, &mo, &m)) goto done;
    c.model = m;
    if (!full) {
        const char *from = resume_dir ? resume_dir : adapter;
        if (from) {
            if (yf_lora_load(from, yf_model_config(m), &lora)) goto done;
            if (!isnan(lora_dropout)) lora.cfg.dropout = (float)lora_dropout;
        } else {
            yf_rng init;
            yf_rng_seed(&init, (uint64_t)seed);
            if (yf_lora_create(&lora, yf_model_config(m), &lc) || yf_lora_init(&lora, yf_model_config(m), yf_model_tensors(m), &init)) goto done;
        }
        lo = &lora;
        yf_lora_alloc_grads(lo);
        yf_lora_params(lo, &c.params);
        c.dropout = lo->cfg.dropout;
    } else {
        yf_model_params(m, &c.params);
        if (c.params.n == 0) {
            yf_errorf("%s: the model exposes no trainable parameters for full fine-tuning", model_dir);
            goto done;
        }
    }
    c.lora = lo;
    c.bids = yf_malloc((size_t)(bs * ds.T) * sizeof(int64_t));
    c.blab = yf_malloc((size_t)(bs * ds.T) * sizeof(int64_t));

    int64_t trainable = 0;
    for (int i = 0; i < c.params.n; i++) trainable += c.params.p[i].numel;
    if (g_log)
        fprintf(stderr, "yuanft train: %s, %lld trainable parameters in %d tensors\n",
                full ? "full fine-tuning" : lo->cfg.use_dora ? "DoRA" : "LoRA", (long long)trainable, c.params.n);
    yf_train_hooks h = {.ctx = &c, .n_examples = ds.N, .count_tokens = hook_count, .forward_backward = hook_fb,
                        .save = hook_save, .load = hook_load, .tokens_saved = hook_saved};
    if (eo.data && a.eval_strategy != YF_SAVE_NO && eval_setup(&c, &es, &erecs, &etok, &evm, &eo, &to, &cfg, &h)) goto done;
    yf_train_result res;
    if (yf_train(&a, &h, &c.params, &res)) goto done;
    rc = 0;
done:
    if (rc) yc_fail("train");
    yf_teval_free(&c.ev);
    yf_template_free(&c.ev.x.tpl);
    yf_records_free(&erecs);
    if (etok) yf_tokenizer_free(etok);
    yf_vocab_map_free(&evm);
    yf_trainset_free(&es);
    free(c.params.p);
    free(c.bids);
    free(c.blab);
    if (lo) yf_lora_free(lo);
    if (m) yf_model_free(m);
    yf_trainset_free(&ds);
    free(resume_dir);
    return rc;
}

int cmd_train(int argc, char **argv) {
    /* Under mpirun / srun every rank runs this command. MPI is joined first so
     * that a failure on any one rank ends the whole job (MPI_Abort) instead of
     * leaving its peers waiting in a collective. */
    yf_dist dist;
    if (yf_dist_init(&dist)) return yc_fail("train");
    g_log = dist.rank == 0;
    int rc = train(argc, argv, &dist);
    if (rc) yf_dist_abort(&dist, rc);
    yf_dist_finalize(&dist);
    return rc;
}
