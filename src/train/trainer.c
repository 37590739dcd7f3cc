/* trainer: the training loop (see trainer.h): epochs and their order,
 * micro-batches across ranks, accumulation, the optimizer step, logging and
 * progress; checkpoints and resuming are trainer_state.c. */
#include "train/trainer_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/svg.h"
#include "formats/safetensors.h"

/* ---- small helpers --------------------------------------------------------- */

int yf_save_strategy_parse(const char *s, yf_save_strategy *out) {
    if (!strcmp(s, "no")) *out = YF_SAVE_NO;
    else if (!strcmp(s, "epoch")) *out = YF_SAVE_EPOCH;
    else if (!strcmp(s, "steps")) *out = YF_SAVE_STEPS;
    else return yf_errorf("unknown save strategy '%s' (use no, epoch or steps)", s);
    return 0;
}

static const char *strategy_name(yf_save_strategy s) {
    return s == YF_SAVE_NO ? "no" : s == YF_SAVE_EPOCH ? "epoch" : "steps";
}

yf_train_args yf_train_args_defaults(void) {
    yf_train_args a;
    memset(&a, 0, sizeof a);
    a.batch_size = 8;
    a.grad_accum = 1;
    a.num_epochs = 3;
    a.max_steps = -1;
    a.lr = 5e-5;
    a.adam = yf_adamw_defaults();
    a.decay_all = true;
    a.sched = YF_SCHED_LINEAR;
    a.max_grad_norm = 1.0;
    a.logging_steps = 500;
    a.save_strategy = YF_SAVE_STEPS;
    a.save_steps = 500;
    a.seed = 42;
    a.shuffle = true;
    a.progress = -1;
    a.eval_batch_size = 8;
    return a;
}

int64_t yf_steps_per_epoch(int64_t n, int64_t batch, int64_t accum) {
    int64_t micro = (n + batch - 1) / batch;
    return (micro + accum - 1) / accum;
}

const char *yf_py_float(double x, char *buf, size_t cap) {
    if (isnan(x)) return snprintf(buf, cap, "nan"), buf;
    if (isinf(x)) return snprintf(buf, cap, x > 0 ? "inf" : "-inf"), buf;
    if (x == 0) return snprintf(buf, cap, signbit(x) ? "-0.0" : "0.0"), buf;
    /* shortest mantissa that reads back as x */
    char e[40];
    int p;
    for (p = 1; p <= 17; p++) {
        snprintf(e, sizeof e, "%.*e", p - 1, x);
        if (strtod(e, NULL) == x) break;
    }
    int exp10 = atoi(strchr(e, 'e') + 1);
    char digits[24];
    int nd = 0;
    for (const char *s = e; *s && *s != 'e'; s++)
        if (*s >= '0' && *s <= '9') digits[nd++] = *s;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = 0;
    const char *sign = x < 0 ? "-" : "";
    if (exp10 < -4 || exp10 >= 16) {
        /* Python: 4.9e-05, 1e+16 */
        snprintf(buf, cap, "%s%c%s%s%se%c%02d", sign, digits[0], nd > 1 ? "." : "", nd > 1 ? digits + 1 : "", "",
                 exp10 < 0 ? '-' : '+', abs(exp10));
    } else if (exp10 < 0) {
        snprintf(buf, cap, "%s0.%0*d%s", sign, -exp10 - 1, 0, digits);
        if (-exp10 - 1 == 0) snprintf(buf, cap, "%s0.%s", sign, digits);
    } else if (nd <= exp10 + 1) {
        snprintf(buf, cap, "%s%s%0*d.0", sign, digits, exp10 + 1 - nd, 0);
        if (exp10 + 1 - nd == 0) snprintf(buf, cap, "%s%s.0", sign, digits);
    } else {
        snprintf(buf, cap, "%s%.*s.%s", sign, exp10 + 1, digits, digits + exp10 + 1);
    }
    return buf;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

void yf_trun_push_step_loss(yf_trun *r, double loss) {
    if (r->global_step >= r->cap_step_loss) {
        r->cap_step_loss = r->cap_step_loss ? 2 * r->cap_step_loss : 256;
        while (r->cap_step_loss <= r->global_step) r->cap_step_loss *= 2;
        r->step_loss = yf_realloc(r->step_loss, (size_t)r->cap_step_loss * sizeof(double));
    }
    r->step_loss[r->global_step] = loss;
}

/* Prints a dict the way Python prints it: {'loss': 2.5668, 'epoch': 0.03}. */
static void print_py_dict(FILE *f, const cJSON *obj, const char *skip) {
    char buf[64];
    fputc('{', f);
    int k = 0;
    for (const cJSON *it = obj->child; it; it = it->next) {
        if (skip && !strcmp(it->string, skip)) continue;
        fprintf(f, "%s'%s': ", k++ ? ", " : "", it->string);
        if (cJSON_IsNumber(it)) fputs(yf_py_float(it->valuedouble, buf, sizeof buf), f);
        else if (cJSON_IsString(it)) fprintf(f, "'%s'", it->valuestring);
        else fputs("None", f);
    }
    fputs("}\n", f);
    fflush(f);
}

static double round_to(double x, int places) {
    double s = pow(10.0, places);
    return nearbyint(x * s) / s;
}

static void fmt_time(char *buf, size_t cap, double s) {
    if (!(s >= 0) || s > 1e7) s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, cap, "%02ld:%02ld", t / 60, t % 60);
}

static void progress(yf_trun *r, bool final) {
    if (!r->progress) return;
    double now = yf_time(), el = now - r->t0;
    int64_t done = r->global_step, tot = r->total_steps;
    double rate = r->steps_run > 0 ? r->steps_run / el : 0;
    double eta = rate > 0 ? (tot - done) / rate : 0;
    char es[32], rs[32];
    fmt_time(es, sizeof es, el);
    fmt_time(rs, sizeof rs, eta);
    if (r->tty) {
        if (!final && now - r->last_progress_t < 0.2) return;
        int w = 30, fill = tot > 0 ? (int)(w * done / tot) : w;
        char bar[64];
        for (int i = 0; i < w; i++) bar[i] = i < fill ? '#' : '.';
        bar[w] = 0;
        fprintf(stderr, "\r%3d%%|%s| %lld/%lld [%s<%s, %.2fit/s, loss %.4f]", tot > 0 ? (int)(100 * done / tot) : 100, bar,
                (long long)done, (long long)tot, es, rs, rate, r->last_loss);
        if (final) fputc('\n', stderr);
        fflush(stderr);
    } else {
        /* plain lines: about every 5% of the run, at least every 60 s, and at the end */
        int64_t every = (tot + 19) / 20 > 0 ? (tot + 19) / 20 : 1;
        if (final ? done == r->last_progress_step
                  : done - r->last_progress_step < every && now - r->last_progress_t < 60)
            return;
        fprintf(stderr, "step %lld/%lld (%d%%) elapsed %s eta %s loss %.4f\n", (long long)done, (long long)tot,
                tot > 0 ? (int)(100 * done / tot) : 100, es, rs, r->last_loss);
        r->last_progress_step = done;
    }
    r->last_progress_t = now;
}

/* ---- the loop ------------------------------------------------------------------ */

/* The data order of epoch e: a permutation that depends only on (seed, e), so a
 * resumed run sees exactly the order an uninterrupted one would. */
static void epoch_order(const yf_trun *r, int64_t e, int64_t *perm) {
    for (int64_t i = 0; i < r->n; i++) perm[i] = i;
    if (!r->a->shuffle) return;
    yf_rng g;
    yf_rng_seed(&g, r->a->seed * 0x9e3779b97f4a7c15ull + (uint64_t)e + 1);
    for (int64_t i = r->n - 1; i > 0; i--) {
        int64_t j = (int64_t)(yf_rng_u64(&g) % (uint64_t)(i + 1));
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    if (!r->a->lengths) return;
    /* group_by_length (HF's LengthGroupedSampler): megabatches of 50 global
     * batches, each sorted longest first, so a batch pads little */
    int64_t mb = 50 * r->gbs;
    const int64_t *len = r->a->lengths;
    for (int64_t m0 = 0; m0 < r->n; m0 += mb) {
        int64_t m1 = m0 + mb < r->n ? m0 + mb : r->n;
        for (int64_t i = m0 + 1; i < m1; i++) { /* insertion sort: stable, deterministic */
            int64_t v = perm[i], j = i;
            while (j > m0 && len[perm[j - 1]] < len[v]) perm[j] = perm[j - 1], j--;
            perm[j] = v;
        }
    }
}

static void log_step(yf_trun *r, double grad_norm, double lr) {
    cJSON *e = cJSON_CreateObject();
    int64_t nsteps = r->global_step - r->last_logged_step;
    cJSON_AddNumberToObject(e, "loss", round_to(r->loss_since_log / (double)(nsteps > 0 ? nsteps : 1), 4));
    cJSON_AddNumberToObject(e, "grad_norm", (double)(float)grad_norm);
    cJSON_AddNumberToObject(e, "learning_rate", lr);
    cJSON_AddNumberToObject(e, "epoch", r->epoch);
    cJSON_AddNumberToObject(e, "step", (double)r->global_step);
    if (r->logger) {
        if (r->tty && r->progress) fputc('\n', stderr); /* keep the bar off the log line */
        print_py_dict(r->out, e, "step");
    }
    cJSON_AddItemToArray(r->log_history, e);
    r->loss_since_log = 0;
    r->last_logged_step = r->global_step;
}

/* ---- evaluation ------------------------------------------------------------------ */

/* Early stopping (HF's EarlyStoppingCallback, against the best before this
 * evaluation), then the best metric and its checkpoint. */
static int track_best(yf_trun *r, const cJSON *metrics) {
    if (!r->metric[0]) return 0;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(metrics, r->metric);
    if (!cJSON_IsNumber(m)) {
        char names[256] = "";
        for (const cJSON *it = metrics->child; it; it = it->next)
            if (!strncmp(it->string, "eval_", 5) && strlen(names) + strlen(it->string) + 3 < sizeof names)
                strcat(strcat(names, names[0] ? ", " : ""), it->string);
        return yf_errorf("metric_for_best_model '%s' is not among the evaluation's metrics (%s)", r->metric, names);
    }
    double v = m->valuedouble;
    bool better = r->greater_is_better ? v > r->best_metric : v < r->best_metric;
    if (r->a->early_stopping_patience > 0) {
        if (!r->has_best || (better && fabs(v - r->best_metric) > r->a->early_stopping_threshold)) r->patience_counter = 0;
        else r->patience_counter++;
        if (r->patience_counter >= r->a->early_stopping_patience) r->stop_early = true;
    }
    if (!r->has_best || better) {
        char name[64];
        snprintf(name, sizeof name, "checkpoint-%lld", (long long)r->global_step);
        free(r->best_ckpt);
        r->best_ckpt = yf_path_join(r->a->output_dir, name);
        r->best_metric = v;
        r->best_step = r->global_step;
        r->has_best = true;
    }
    return 0;
}

/* One evaluation of the current weights on the eval set: eval_loss over
 * every batch, the hooks' counts over the first n_count_rows rows; batch k on
 * rank k % world. Logs HF's entry, then tracks the best. */
static int evaluate(yf_trun *r) {
    const yf_train_hooks *h = r->h;
    int64_t B = r->a->eval_batch_size, n = h->n_eval, nb = (n + B - 1) / B;
    int64_t n_rows = h->n_count_rows > 0 && h->n_count_rows < n ? h->n_count_rows : n;
    int nc = h->eval_counts ? h->n_counts : 0;
    double t0 = yf_time();
    /* per batch: rows x loss, and rows (0 when the batch scores no token). Each
     * slot has one rank's value and zeros from the others, so the all-reduce is
     * exact and every rank sums the same numbers in batch order. */
    double *lb = yf_calloc((size_t)(2 * nb + nc), sizeof *lb), *counts = lb + 2 * nb;
    int64_t *rows = yf_malloc((size_t)B * sizeof *rows);
    int rc = -1;
    for (int64_t k = r->rank; k < nb; k += r->world) {
        int64_t lo = k * B, cnt = n - lo < B ? n - lo : B, ntok = 0;
        for (int64_t i = 0; i < cnt; i++) rows[i] = lo + i;
        double loss = 0;
        if (h->eval_loss(h->ctx, rows, cnt, &loss, &ntok)) goto done;
        if (ntok > 0) lb[2 * k] = loss * (double)cnt, lb[2 * k + 1] = (double)cnt;
        if (nc && lo < n_rows && h->eval_counts(h->ctx, rows, n_rows - lo < cnt ? n_rows - lo : cnt, counts)) goto done;
    }
    if (yf_dist_sum_f64(r->dist, lb, 2 * nb + nc, "all-reduce evaluation")) goto done;
    double sum = 0, w = 0;
    for (int64_t k = 0; k < nb; k++) sum += lb[2 * k], w += lb[2 * k + 1];
    double runtime = yf_time() - t0;
    cJSON *e = cJSON_CreateObject();
    cJSON_AddNumberToObject(e, "eval_loss", w > 0 ? sum / w : NAN);
    if (nc) {
        const char *names[YF_EVAL_MAX_METRICS];
        double values[YF_EVAL_MAX_METRICS];
        int nm = h->eval_metrics(h->ctx, counts, names, values);
        for (int i = 0; i < nm && i < YF_EVAL_MAX_METRICS; i++) {
            char key[64];
            snprintf(key, sizeof key, "%s%s", strncmp(names[i], "eval_", 5) ? "eval_" : "", names[i]);
            cJSON_AddNumberToObject(e, key, values[i]);
        }
    }
    /* transformers' speed_metrics: steps are global eval batches */
    int64_t steps = (n + B * r->world - 1) / (B * r->world);
    cJSON_AddNumberToObject(e, "eval_runtime", round_to(runtime, 4));
    cJSON_AddNumberToObject(e, "eval_samples_per_second", runtime > 0 ? round_to((double)n / runtime, 3) : 0);
    cJSON_AddNumberToObject(e, "eval_steps_per_second", runtime > 0 ? round_to((double)steps / runtime, 3) : 0);
    cJSON_AddNumberToObject(e, "epoch", r->epoch);
    cJSON_AddNumberToObject(e, "step", (double)r->global_step);
    if (r->logger) {
        if (r->tty && r->progress) fputc('\n', stderr);
        print_py_dict(r->out, e, "step");
    }
    cJSON_AddItemToArray(r->log_history, e);
    rc = track_best(r, e);
done:
    free(lb);
    free(rows);
    return rc;
}

/* Checks the evaluation arguments and fills in what HF derives from them. */
static int eval_setup(yf_trun *r) {
    const yf_train_args *a = r->a;
    const yf_train_hooks *h = r->h;
    bool eval = a->eval_strategy != YF_SAVE_NO;
    if (eval && (h->n_eval <= 0 || !h->eval_loss))
        return yf_errorf("eval_strategy %s needs evaluation data (--eval-data)", strategy_name(a->eval_strategy));
    if (eval && a->eval_batch_size <= 0)
        return yf_errorf("per_device_eval_batch_size must be positive (got %lld)", (long long)a->eval_batch_size);
    r->eval_steps = a->eval_steps > 0 ? a->eval_steps : a->logging_steps;
    if (a->eval_strategy == YF_SAVE_STEPS && r->eval_steps <= 0)
        return yf_errorf("eval_strategy steps needs eval_steps (or logging_steps) > 0");
    const char *m = a->metric_for_best_model;
    if (!m && (a->load_best_model_at_end || a->early_stopping_patience > 0)) m = "eval_loss";
    if (m) {
        snprintf(r->metric, sizeof r->metric, "%s%s", strncmp(m, "eval_", 5) ? "eval_" : "", m);
        size_t len = strlen(r->metric);
        r->greater_is_better = !(len >= 4 && !strcmp(r->metric + len - 4, "loss"));
    }
    if (r->metric[0] && strcmp(r->metric, "eval_loss") && eval && !(h->eval_counts && h->eval_metrics))
        return yf_errorf("metric_for_best_model '%s': this evaluation computes only eval_loss", r->metric);
    if ((a->load_best_model_at_end || a->early_stopping_patience > 0) && !eval)
        return yf_errorf("load_best_model_at_end and early stopping need an eval_strategy (steps or epoch) and evaluation data");
    if (a->load_best_model_at_end) {
        /* as HF: the best evaluation must have a checkpoint to load */
        if (a->save_strategy != a->eval_strategy)
            return yf_errorf("load_best_model_at_end needs save_strategy and eval_strategy to match (got %s and %s)",
                             strategy_name(a->save_strategy), strategy_name(a->eval_strategy));
        if (a->save_strategy == YF_SAVE_STEPS && a->save_steps % r->eval_steps != 0)
            return yf_errorf("load_best_model_at_end needs save_steps (%lld) to be a multiple of eval_steps (%lld)",
                             (long long)a->save_steps, (long long)r->eval_steps);
        if (!h->load) return yf_errorf("load_best_model_at_end: this trainer cannot load weights back");
    }
    if (a->save_total_limit < 0 || a->early_stopping_patience < 0 || !(a->eval_delay >= 0))
        return yf_errorf("save_total_limit, early_stopping_patience and eval_delay must be >= 0");
    return 0;
}

/* Ends the run with the best checkpoint's weights (HF: "Loading best model from ..."). */
static int load_best(yf_trun *r) {
    if (!r->a->load_best_model_at_end || !r->best_ckpt || !r->writer) return 0;
    if (!yf_dir_exists(r->best_ckpt)) {
        fprintf(stderr, "yuanft train: warning: could not locate the best model at %s: the output keeps the last weights\n",
                r->best_ckpt);
        return 0;
    }
    char b[64];
    fprintf(stderr, "yuanft train: loading best model from %s (score: %s)\n", r->best_ckpt,
            yf_py_float(r->best_metric, b, sizeof b));
    return r->h->load(r->h->ctx, r->best_ckpt);
}

/* A checkpoint, then save_total_limit. */
static int save_checkpoint(yf_trun *r) {
    if (!r->writer) return 0;
    if (yf_trun_save_checkpoint(r)) return -1;
    yf_trun_rotate_checkpoints(r);
    return 0;
}

/* This rank's rows of global micro-batch k: *lo into the order, returns the
 * count (0 when the epoch's last micro-batch ends before this rank's share). */
static int64_t rank_rows(const yf_trun *r, int64_t k, int64_t *lo) {
    int64_t a = k * r->gbs + (int64_t)r->rank * r->a->batch_size, b = a + r->a->batch_size;
    if (b > r->n) b = r->n;
    if (a > b) a = b;
    *lo = a;
    return b - a;
}

/* One optimizer step over global micro-batches [m0, m0+nm) of the epoch's order. */
static int train_step(yf_trun *r, const int64_t *perm, int64_t m0, int64_t nm) {
    yf_dist_set_step(r->dist, r->global_step + 1);
    yf_dist_fault_point(r->dist, r->global_step + 1);
    int64_t ntok = 0, lo, n;
    for (int64_t k = m0; k < m0 + nm; k++)
        if ((n = rank_rows(r, k, &lo)) > 0) ntok += r->h->count_tokens(r->h->ctx, perm + lo, n);
    /* the window spans every rank: its loss is the token-loss sum over all its
     * scored tokens, so each rank scales by the job-wide count */
    if (yf_dist_sum_i64(r->dist, &ntok, 1, "all-reduce token count")) return -1;
    float scale = ntok > 0 ? (float)(1.0 / (double)ntok) : 0.0f;
    /* rank 0 draws dropout from the checkpointed stream (a single process is
     * unchanged); other ranks from their own stream, re-seeded every step so that
     * a resumed run draws the same masks */
    yf_rng rank_rng, *drng = &r->dropout_rng;
    if (r->rank > 0) {
        yf_rng_seed(&rank_rng, (r->a->seed ^ 0x5bd1e995ull) + 0x9e3779b97f4a7c15ull * (uint64_t)r->rank +
                                   0xbf58476d1ce4e5b9ull * (uint64_t)r->global_step);
        drng = &rank_rng;
    }
    double t_step = yf_time();
    double stats[3] = {0, 0, 0}; /* loss sum, rows, input positions */
    for (int64_t k = m0; k < m0 + nm; k++) {
        if ((n = rank_rows(r, k, &lo)) == 0) continue;
        double ls = 0;
        int64_t nt = 0, nin = 0;
        if (r->h->forward_backward(r->h->ctx, perm + lo, n, scale, drng, &ls, &nt, &nin)) return -1;
        stats[0] += ls, stats[1] += (double)n, stats[2] += (double)nin;
    }
    /* the sum of every rank's gradients is the single-process gradient; clipping
     * and AdamW then run on identical numbers everywhere */
    if (yf_dist_sum_grads(r->dist, r->pl) || yf_dist_sum_f64(r->dist, stats, 3, "all-reduce loss")) return -1;
    double loss_sum = stats[0];
    r->samples_run += (int64_t)stats[1];
    r->tokens_run += (int64_t)stats[2];
    double loss = ntok > 0 ? loss_sum / (double)ntok : 0.0;
    double norm = yf_clip_grad_norm(r->pl, r->a->max_grad_norm);
    if (!isfinite(loss) || !isfinite(norm))
        return yf_errorf("step %lld: loss %g, gradient norm %g: training diverged (lower --learning-rate?)",
                         (long long)r->global_step + 1, loss, norm);
    double lr = yf_sched_lr(&r->sched, r->global_step);
    yf_adamw_step(&r->opt, lr);
    yf_zero_grads(r->pl);

    yf_trun_push_step_loss(r, loss);
    double dt = yf_time() - t_step;
    r->step_tps = yf_realloc(r->step_tps, (size_t)(r->steps_run + 1) * sizeof(double));
    r->step_tps[r->steps_run] = dt > 0 ? stats[2] / dt : 0;
    if (r->steps_run > 0) r->warm_s += dt, r->warm_tokens += stats[2];
    r->global_step++;
    r->steps_run++;
    r->micro_in_epoch = m0 + nm;
    r->epoch = (double)r->epoch_index + (double)r->micro_in_epoch / (double)r->micro_per_epoch;
    r->total_loss += loss;
    r->loss_since_log += loss;
    r->last_loss = loss;
    r->last_grad_norm = norm;
    if (r->a->logging_steps > 0 && r->global_step % r->a->logging_steps == 0) log_step(r, norm, lr);
    progress(r, false);
    return 0;
}

int yf_train(const yf_train_args *a, const yf_train_hooks *h, const yf_param_list *pl, yf_train_result *res) {
    if (a->batch_size <= 0) return yf_errorf("per_device_train_batch_size must be positive (got %lld)", (long long)a->batch_size);
    if (a->grad_accum <= 0) return yf_errorf("gradient_accumulation_steps must be positive (got %lld)", (long long)a->grad_accum);
    if (!(a->lr >= 0)) return yf_errorf("learning_rate must be >= 0 (got %g)", a->lr);
    if (h->n_examples <= 0) return yf_errorf("the training data has no examples");
    if (a->max_steps <= 0 && !(a->num_epochs > 0 && a->num_epochs <= 1e6))
        return yf_errorf("num_train_epochs must be in (0, 1e6] (got %g)", a->num_epochs);
    if (a->save_strategy == YF_SAVE_STEPS && a->save_steps <= 0) return yf_errorf("save_steps must be positive with save_strategy steps");
    if (yf_dist_writes(a->dist, a->save_on_each_node)) {
        if (yf_mkdir_p(a->output_dir)) return -1;
        yf_trun_remove_stale(a->output_dir, !a->dist || a->dist->rank == 0);
    }

    yf_trun R, *r = &R;
    memset(r, 0, sizeof R);
    r->a = a, r->h = h, r->pl = pl;
    r->out = a->out ? a->out : stdout;
    r->dist = a->dist;
    r->rank = a->dist ? a->dist->rank : 0;
    r->world = a->dist ? a->dist->size : 1;
    r->logger = r->rank == 0;
    r->writer = yf_dist_writes(a->dist, a->save_on_each_node);
    r->gbs = a->batch_size * r->world;
    r->n = h->n_examples;
    r->micro_per_epoch = (r->n + r->gbs - 1) / r->gbs;
    r->steps_per_epoch = (r->micro_per_epoch + a->grad_accum - 1) / a->grad_accum;
    if (a->max_steps > 0) {
        r->total_steps = a->max_steps;
        r->n_epochs = (a->max_steps + r->steps_per_epoch - 1) / r->steps_per_epoch;
    } else {
        r->total_steps = (int64_t)ceil(a->num_epochs * (double)r->steps_per_epoch);
        r->n_epochs = (int64_t)ceil(a->num_epochs);
    }
    r->sched = (yf_sched){a->sched, a->lr, yf_warmup_steps(a->warmup_steps, a->warmup_ratio, r->total_steps), r->total_steps};
    yf_adamw_init(&r->opt, pl, &a->adam, a->decay_all);
    yf_rng_seed(&r->dropout_rng, a->seed ^ 0x5bd1e995ull);
    r->log_history = cJSON_CreateArray();
    r->tty = isatty(2);
    r->progress = a->progress < 0 ? 1 : a->progress; /* a bar on a terminal, plain lines otherwise */
    if (!r->logger) r->progress = 0;
    int64_t *perm = yf_malloc((size_t)r->n * sizeof *perm);
    int rc = -1;
    if (eval_setup(r)) goto done;

    if (a->resume_dir) {
        if (yf_trun_resume(r, a->resume_dir)) goto done;
        if (r->logger)
            fprintf(stderr, "yuanft train: resuming from %s at step %lld (epoch %.2f)\n", a->resume_dir,
                    (long long)r->global_step, r->epoch);
    }
    char ranks[48] = "";
    if (r->world > 1) snprintf(ranks, sizeof ranks, " x %d ranks", r->world);
    if (r->logger)
        fprintf(stderr,
                "yuanft train: %lld examples, %lld epochs, batch %lld%s x accumulation %lld, %lld steps per epoch, %lld steps\n",
                (long long)r->n, (long long)r->n_epochs, (long long)a->batch_size, ranks, (long long)a->grad_accum,
                (long long)r->steps_per_epoch, (long long)r->total_steps);
    yf_zero_grads(pl);
    r->t0 = yf_time();
    r->last_progress_t = r->t0;
    r->last_progress_step = r->global_step;

    bool stop = r->global_step >= r->total_steps;
    int64_t e = r->epoch_index, m = r->micro_in_epoch;
    if (m >= r->micro_per_epoch) e++, m = 0;
    for (; !stop && e < r->n_epochs; e++, m = 0) {
        epoch_order(r, e, perm);
        r->epoch_index = e;
        r->micro_in_epoch = m;
        for (; m < r->micro_per_epoch && !stop; m += a->grad_accum) {
            int64_t nm = r->micro_per_epoch - m < a->grad_accum ? r->micro_per_epoch - m : a->grad_accum;
            if (train_step(r, perm, m, nm)) goto done;
            stop = r->global_step >= r->total_steps;
            if (a->eval_strategy == YF_SAVE_STEPS && r->global_step % r->eval_steps == 0 &&
                a->eval_delay <= (double)r->global_step) {
                if (evaluate(r)) goto done;
                stop = stop || r->stop_early;
            }
            if (a->save_strategy == YF_SAVE_STEPS && (r->global_step % a->save_steps == 0 || stop) && save_checkpoint(r))
                goto done;
        }
        if (a->eval_strategy == YF_SAVE_EPOCH && a->eval_delay <= r->epoch) {
            if (evaluate(r)) goto done;
            stop = stop || r->stop_early;
        }
        if (a->save_strategy == YF_SAVE_EPOCH && save_checkpoint(r)) goto done;
    }
    progress(r, true);
    if (r->stop_early && r->logger)
        fprintf(stderr, "yuanft train: early stopping at step %lld: %s did not improve for %lld evaluations\n",
                (long long)r->global_step, r->metric, (long long)r->a->early_stopping_patience);
    if (load_best(r)) goto done;

    /* final weights, state and curve in the output directory itself */
    double runtime = yf_time() - r->t0;
    if (r->writer && h->save(h->ctx, a->output_dir)) goto done;
    res->global_step = r->global_step;
    res->epoch = r->epoch;
    res->train_loss = r->global_step > 0 ? r->total_loss / (double)r->global_step : 0;
    res->runtime_s = runtime;
    res->samples_per_s = runtime > 0 ? r->samples_run / runtime : 0;
    res->steps_per_s = runtime > 0 ? r->steps_run / runtime : 0;
    res->tokens_per_s = runtime > 0 ? r->tokens_run / runtime : 0;
    res->last_loss = r->last_loss;
    res->last_grad_norm = r->last_grad_norm;
    res->best_metric = r->has_best ? r->best_metric : NAN;
    snprintf(res->best_model_checkpoint, sizeof res->best_model_checkpoint, "%s", r->best_ckpt ? r->best_ckpt : "");
    res->stopped_early = r->stop_early;

    cJSON *sum = cJSON_CreateObject();
    cJSON_AddNumberToObject(sum, "train_runtime", round_to(runtime, 4));
    cJSON_AddNumberToObject(sum, "train_samples_per_second", round_to(res->samples_per_s, 3));
    cJSON_AddNumberToObject(sum, "train_steps_per_second", round_to(res->steps_per_s, 3));
    cJSON_AddNumberToObject(sum, "total_flos", 0);
    cJSON_AddNumberToObject(sum, "train_loss", res->train_loss);
    cJSON_AddNumberToObject(sum, "epoch", r->epoch);
    cJSON_AddNumberToObject(sum, "step", (double)r->global_step);
    cJSON_AddItemToArray(r->log_history, sum);
    if (r->writer) {
        cJSON *st = yf_trun_state_json(r);
        int wrc = yf_trun_write_json(a->output_dir, "trainer_state.json", st);
        cJSON_Delete(st);
        if (wrc) goto done;
        double *xs = yf_malloc((size_t)(r->global_step + 1) * sizeof *xs);
        for (int64_t i = 0; i < r->global_step; i++) xs[i] = (double)(i + 1);
        char *svg = yf_path_join(a->output_dir, "loss_curve.svg");
        wrc = yf_svg_line_chart(svg, xs, r->step_loss ? r->step_loss : xs, r->global_step, "training loss", "optimizer step",
                                "loss");
        free(svg);
        free(xs);
        if (wrc) goto done;
    }
    /* what a shared prefix saved, over every rank (each rank calls the sum) */
    int64_t saved[2] = {0, 0};
    bool has_saved = h->tokens_saved != NULL;
    if (has_saved) {
        h->tokens_saved(h->ctx, saved);
        if (yf_dist_sum_i64(r->dist, saved, 2, "all-reduce tokens saved")) goto done;
    }
    if (!r->logger) {
        rc = 0;
        goto done;
    }

    /* HF's summary line (without total_flos), then one machine-readable JSON line */
    cJSON *hf = cJSON_CreateObject();
    cJSON_AddNumberToObject(hf, "train_runtime", round_to(runtime, 4));
    cJSON_AddNumberToObject(hf, "train_samples_per_second", round_to(res->samples_per_s, 3));
    cJSON_AddNumberToObject(hf, "train_steps_per_second", round_to(res->steps_per_s, 3));
    cJSON_AddNumberToObject(hf, "train_loss", res->train_loss);
    cJSON_AddNumberToObject(hf, "epoch", r->epoch);
    print_py_dict(r->out, hf, NULL);
    cJSON_Delete(hf);
    /* steady state: the median step after the first (which also pays for
     * faulting in the weights and packing them), as a benchmark that times
     * steps after a warm-up step reports */
    char b[6][64], dist[256] = "", steady[288] = "", shared[160] = "";
    if (has_saved)
        snprintf(shared, sizeof shared, ", \"shared_prefix_tokens_saved\": %lld, \"padding_tokens_skipped\": %lld",
                 (long long)saved[0], (long long)saved[1]);
    if (r->steps_run >= 2) {
        int64_t n = r->steps_run - 1;
        double *v = yf_malloc((size_t)n * sizeof(double));
        memcpy(v, r->step_tps + 1, (size_t)n * sizeof(double));
        qsort(v, (size_t)n, sizeof(double), cmp_double);
        double med = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]), best = v[n - 1];
        free(v);
        /* and the fastest such step: on a shared machine the least disturbed one */
        /* and all of them together: steps of different sizes (batches padded to
         * their own longest row) weigh by their tokens */
        char mb[64], bb[64], wb[64];
        snprintf(steady, sizeof steady,
                 ", \"steady_tokens_per_second\": %s, \"fastest_step_tokens_per_second\": %s, "
                 "\"warm_tokens_per_second\": %s",
                 yf_py_float(round_to(med, 1), mb, sizeof mb), yf_py_float(round_to(best, 1), bb, sizeof bb),
                 yf_py_float(round_to(r->warm_s > 0 ? r->warm_tokens / r->warm_s : 0, 1), wb, sizeof wb));
    }
    if (r->world > 1) {
        /* what the all-reduces cost rank 0 (waiting for slower ranks included) */
        const yf_dist *d = r->dist;
        double steps = r->steps_run > 0 ? (double)r->steps_run : 1;
        snprintf(dist, sizeof dist,
                 ", \"world_size\": %d, \"comm_s_per_step\": %.6f, \"grad_allreduce_s_per_step\": %.6f, "
                 "\"grad_allreduce_mb_per_step\": %.3f, \"rank_wait_s_per_step\": %.6f",
                 r->world, d->comm_s / steps, d->grad_s / steps, (double)d->grad_bytes / steps / 1e6, d->sync_s / steps);
        fprintf(stderr,
                "yuanft train: %d ranks: per step %.3f MB of gradients all-reduced in %.2f ms; %.2f ms in collectives "
                "in all (%.1f%% of the step time)\n",
                r->world, (double)d->grad_bytes / steps / 1e6, 1e3 * d->grad_s / steps, 1e3 * d->comm_s / steps,
                runtime > 0 ? 100.0 * d->comm_s / runtime : 0.0);
    }
    fprintf(r->out,
            "{\"train_runtime\": %s, \"train_samples_per_second\": %s, \"train_steps_per_second\": %s, "
            "\"train_tokens_per_second\": %s%s, \"train_loss\": %s, \"epoch\": %s, \"peak_rss_mb\": %zu%s%s}\n",
            yf_py_float(round_to(runtime, 4), b[0], 64), yf_py_float(round_to(res->samples_per_s, 3), b[1], 64),
            yf_py_float(round_to(res->steps_per_s, 3), b[2], 64), yf_py_float(round_to(res->tokens_per_s, 1), b[3], 64),
            steady, yf_py_float(res->train_loss, b[4], 64), yf_py_float(r->epoch, b[5], 64), yf_peak_rss_mb(), shared, dist);
    fflush(r->out);
    rc = 0;
done:
    free(perm);
    free(r->step_loss);
    free(r->step_tps);
    cJSON_Delete(r->log_history);
    free(r->best_ckpt);
    yf_adamw_free(&r->opt);
    return rc;
}
