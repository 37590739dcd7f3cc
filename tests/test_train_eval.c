/* Evaluation during training (train/trainer.h, HF's eval_strategy,
 * metric_for_best_model, load_best_model_at_end, save_total_limit, early
 * stopping) on the toy model, then through `yuanft train --eval-data` on the
 * tiny golden model: HF-shaped log records, the best checkpoint picked and
 * loaded, the best never deleted, early stopping, resume keeping the best. */
#include "harness.h"
#include "test_toy_util.h"
#include "formats/safetensors.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The toy with evaluation: eval_loss over the toy's own rows, and a "score"
 * that peaks when w0 reaches `peak` (-|w0 - peak|), so which evaluation is
 * best depends only on the weights and a resumed run finds the same one. */
typedef struct etoy {
    toy t; /* first: the toy's hooks take the context as a toy */
    double peak;
    double w0_at_eval[64];
    int n_evals;
    int64_t batch_rows[64]; /* rows of each eval_loss batch of the first evaluation */
    int n_batches;
} etoy;

static int etoy_loss(void *ctx, const int64_t *rows, int64_t n, double *loss, int64_t *ntok) {
    etoy *e = ctx;
    double s = 0;
    int64_t nt = 0;
    for (int64_t k = 0; k < n; k++)
        for (int64_t j = 0; j < toy_ntok(rows[k]); j++) {
            double r = e->t.w[0] * toy_x(rows[k], j) + e->t.w[1] - toy_y(rows[k], j);
            s += 0.5 * r * r;
            nt++;
        }
    if (e->n_evals == 0 && e->n_batches < 64) e->batch_rows[e->n_batches++] = n;
    *loss = s / (double)nt;
    *ntok = nt;
    return 0;
}

static int etoy_counts(void *ctx, const int64_t *rows, int64_t n, double *counts) {
    counts[0] += (double)n;
    return 0;
}

static int etoy_metrics(void *ctx, const double *counts, const char **names, double *values) {
    etoy *e = ctx;
    if (e->n_evals < 64) e->w0_at_eval[e->n_evals] = e->t.w[0];
    e->n_evals++;
    names[0] = "score", values[0] = 0.0 - fabs(e->t.w[0] - e->peak);
    names[1] = "rows", values[1] = counts[0];
    return 2;
}

static int etoy_load(void *ctx, const char *dir) { return toy_load(&((etoy *)ctx)->t, dir); }

static void etoy_init(etoy *e, yf_param *p, yf_param_list *pl, yf_train_hooks *h, bool score) {
    memset(e, 0, sizeof *e);
    toy_init(&e->t, p, pl, h);
    h->ctx = e;
    h->n_eval = TOY_N;
    h->eval_loss = etoy_loss;
    h->load = etoy_load;
    if (score) h->n_counts = 1, h->eval_counts = etoy_counts, h->eval_metrics = etoy_metrics;
}

/* The toy's hooks and arguments for a run in sub(dir), logging to sub(dir).log
 * (*out; fclose it after the run): batches of 5 (2 steps an epoch), no loss
 * lines. */
static yf_train_args etoy_args(etoy *e, yf_param *p, yf_param_list *pl, yf_train_hooks *h, bool score, const char *dir,
                               FILE **out) {
    etoy_init(e, p, pl, h, score);
    char log[200];
    snprintf(log, sizeof log, "%s.log", dir);
    *out = fopen(sub(log), "w");
    yf_train_args a = toy_args(sub(dir), *out);
    a.batch_size = 5, a.logging_steps = 0;
    return a;
}

static cJSON *read_state(const char *dir) {
    char path[800];
    snprintf(path, sizeof path, "%s/trainer_state.json", dir);
    char *s = slurp(path);
    cJSON *j = s ? cJSON_Parse(s) : NULL;
    free(s);
    return j;
}

/* Which checkpoint-N directories of dir exist, as "2,4,8". */
static const char *ckpts(const char *dir) {
    static char list[256];
    list[0] = 0;
    for (int s = 1; s <= 40; s++) {
        char p[800];
        snprintf(p, sizeof p, "%s/checkpoint-%d", dir, s);
        if (yf_dir_exists(p)) snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d", list[0] ? "," : "", s);
    }
    return list;
}

/* The toy for `epochs` epochs of 2 steps (batch 5 of 10), evaluating and
 * saving every epoch. */
static int erun(etoy *e, const char *outdir, int epochs, const char *metric, bool load_best, int64_t limit,
                int64_t patience, const char *resume, yf_train_result *res) {
    yf_param p;
    yf_param_list pl;
    yf_train_hooks h;
    double peak = e->peak;
    etoy_init(e, &p, &pl, &h, true);
    e->peak = peak;
    if (resume && toy_load(&e->t, resume)) return -1;
    FILE *out = fopen(sub("erun.log"), "w");
    yf_train_args a = toy_args(outdir, out);
    a.batch_size = 5, a.num_epochs = epochs, a.logging_steps = 0;
    a.save_strategy = a.eval_strategy = YF_SAVE_EPOCH;
    a.eval_batch_size = 4;
    a.metric_for_best_model = metric, a.load_best_model_at_end = load_best;
    a.save_total_limit = limit, a.early_stopping_patience = patience;
    a.resume_dir = resume;
    int rc = yf_train(&a, &h, &pl, res);
    fclose(out);
    return rc;
}

/* A first run of `epochs` epochs records w0 at each evaluation; the peak is
 * set where the second evaluation found it, so that in the runs that follow
 * (same weights at the same steps) the best is checkpoint-4. */
static void peak_at_epoch_2(etoy *e, int epochs) {
    yf_train_result res;
    memset(e, 0, sizeof *e);
    e->peak = 1e9;
    CHECK(erun(e, sub("probe"), epochs, NULL, false, 0, 0, NULL, &res) == 0, "%s", yf_last_error());
    CHECK(e->n_evals == epochs, "%d evaluations in %d epochs", e->n_evals, epochs);
    e->peak = e->w0_at_eval[1];
}

/* ---- the loop ---------------------------------------------------------------- */

TEST(train_eval_logs_hf_records) {
    etoy e;
    yf_param p;
    yf_param_list pl;
    yf_train_hooks h;
    etoy_init(&e, &p, &pl, &h, false);
    char *log = sub("hf.log");
    FILE *out = fopen(log, "w");
    yf_train_args a = toy_args(sub("hf"), out);
    a.batch_size = 5, a.num_epochs = 2, a.logging_steps = 1; /* 4 steps */
    a.eval_strategy = YF_SAVE_STEPS, a.eval_steps = 2, a.eval_batch_size = 3;
    yf_train_result res;
    CHECK(yf_train(&a, &h, &pl, &res) == 0, "%s", yf_last_error());
    fclose(out);
    /* eval batches of 3 rows: 3, 3, 3, 1 */
    CHECK(e.n_batches == 8 && e.batch_rows[0] == 3 && e.batch_rows[3] == 1 && e.batch_rows[7] == 1, "%d eval batches (want 2 x 4)", e.n_batches);
    char *s = slurp(log);
    int lines = 0;
    for (char *l = s ? strtok(s, "\n") : NULL; l; l = strtok(NULL, "\n"))
        if (!strncmp(l, "{'eval_loss': ", 14)) {
            lines++;
            /* the order transformers prints: loss, speed metrics, epoch (no step) */
            char *r = strstr(l, "'eval_runtime': "), *sp = strstr(l, "'eval_samples_per_second': ");
            char *st = strstr(l, "'eval_steps_per_second': "), *ep = strstr(l, "'epoch': ");
            CHECK(r && sp && st && ep && r < sp && sp < st && st < ep && !strstr(l, "'step'"), "%s", l);
        }
    free(s);
    CHECK(lines == 2, "%d eval lines (want 2: steps 2 and 4)", lines);
    cJSON *j = read_state(sub("hf"));
    CHECK(j != NULL, "no trainer_state.json");
    if (!j) return;
    const char *want[] = {"eval_loss", "eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "epoch", "step"};
    int evals = 0;
    for (const cJSON *it = cJSON_GetObjectItem(j, "log_history")->child; it; it = it->next) {
        if (!cJSON_GetObjectItem(it, "eval_loss")) continue;
        evals++;
        int k = 0;
        for (const cJSON *f = it->child; f; f = f->next, k++)
            CHECK(k < 6 && !strcmp(f->string, want[k]), "log_history eval entry key %d is '%s', want '%s'", k, f->string,
                  k < 6 ? want[k] : "(none)");
        CHECK(k == 6, "log_history eval entry has %d keys, want 6", k);
        double step = cJSON_GetObjectItem(it, "step")->valuedouble;
        CHECK(step == 2 * evals && cJSON_GetObjectItem(it, "epoch")->valuedouble == evals, "eval %d at step %g", evals, step);
    }
    CHECK(evals == 2, "%d eval entries in log_history", evals);
    CHECK(cJSON_GetObjectItem(j, "eval_steps")->valuedouble == 2, "trainer_state.json eval_steps");
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(j, "best_metric")), "best_metric without metric_for_best_model");
    cJSON_Delete(j);
}

TEST(train_eval_loss_is_the_row_weighted_mean_of_batch_losses) {
    /* evaluate the final weights once more by hand: batches of 4 rows (4, 4, 2),
     * each its own token mean, weighted by rows, as transformers averages */
    etoy e;
    yf_param p;
    yf_param_list pl;
    yf_train_hooks h;
    FILE *out;
    yf_train_args a = etoy_args(&e, &p, &pl, &h, false, "w", &out);
    a.num_epochs = 1, a.eval_strategy = YF_SAVE_EPOCH, a.eval_batch_size = 4;
    CHECK(yf_train(&a, &h, &pl, &(yf_train_result){0}) == 0, "%s", yf_last_error());
    fclose(out);
    double want = 0;
    for (int b = 0; b < 3; b++) {
        int64_t rows[4], n = b < 2 ? 4 : 2, nt;
        for (int64_t k = 0; k < n; k++) rows[k] = 4 * b + k;
        double l;
        e.n_evals = 1; /* keep batch_rows */
        etoy_loss(&e, rows, n, &l, &nt);
        want += l * (double)n / TOY_N;
    }
    cJSON *j = read_state(sub("w"));
    const cJSON *lh = j ? cJSON_GetObjectItem(j, "log_history") : NULL;
    const cJSON *got = lh ? cJSON_GetObjectItem(cJSON_GetArrayItem(lh, 0), "eval_loss") : NULL;
    CHECK(got != NULL, "no eval entry");
    if (got) CHECK_NEAR("eval_loss vs rows-weighted batch means (relative)", fabs(got->valuedouble - want) / want, 1e-12);
    cJSON_Delete(j);
}

TEST(train_eval_delay_skips_the_first_evaluations) {
    /* HF's eval_delay: epochs with the epoch strategy, steps with steps */
    for (int k = 0; k < 2; k++) {
        etoy e;
        yf_param p;
        yf_param_list pl;
        yf_train_hooks h;
        FILE *out;
        yf_train_args a = etoy_args(&e, &p, &pl, &h, true, k ? "delay-steps" : "delay-epochs", &out);
        a.num_epochs = 4; /* 2 steps an epoch */
        a.eval_strategy = k ? YF_SAVE_STEPS : YF_SAVE_EPOCH, a.eval_steps = 1;
        a.eval_delay = k ? 5 : 3; /* steps 5..8, or epochs 3 and 4 */
        CHECK(yf_train(&a, &h, &pl, &(yf_train_result){0}) == 0, "%s", yf_last_error());
        fclose(out);
        CHECK(e.n_evals == (k ? 4 : 2), "%s: %d evaluations, want %d", k ? "steps" : "epochs", e.n_evals, k ? 4 : 2);
        cJSON *j = read_state(sub(k ? "delay-steps" : "delay-epochs"));
        const cJSON *first = NULL;
        for (const cJSON *it = j ? cJSON_GetObjectItem(j, "log_history")->child : NULL; it && !first; it = it->next)
            if (cJSON_GetObjectItem(it, "eval_loss")) first = it;
        CHECK(first && cJSON_GetObjectItem(first, "step")->valuedouble == (k ? 5 : 6), "first evaluation at step %g",
              first ? cJSON_GetObjectItem(first, "step")->valuedouble : -1);
        cJSON_Delete(j);
    }
}

TEST(train_eval_best_checkpoint_picked_and_loaded) {
    etoy e;
    peak_at_epoch_2(&e, 4);
    yf_train_result res;
    CHECK(erun(&e, sub("best"), 4, "score", true, 0, 0, NULL, &res) == 0, "%s", yf_last_error());
    char want[800];
    snprintf(want, sizeof want, "%s", sub("best/checkpoint-4"));
    CHECK(!strcmp(res.best_model_checkpoint, want) && res.best_metric == 0, "best %s (%g), want %s", res.best_model_checkpoint,
          res.best_metric, want);
    cJSON *j = read_state(sub("best"));
    CHECK(j && cJSON_IsString(cJSON_GetObjectItem(j, "best_model_checkpoint")) &&
              !strcmp(cJSON_GetObjectItem(j, "best_model_checkpoint")->valuestring, want) &&
              cJSON_GetObjectItem(j, "best_metric")->valuedouble == 0,
          "trainer_state.json best_model_checkpoint / best_metric");
    /* every eval entry has eval_score and eval_rows (all 10 rows counted) */
    int n = 0;
    for (const cJSON *it = j ? cJSON_GetObjectItem(j, "log_history")->child : NULL; it; it = it->next)
        if (cJSON_GetObjectItem(it, "eval_score")) n += cJSON_GetObjectItem(it, "eval_rows")->valuedouble == TOY_N;
    CHECK(n == 4, "%d eval entries with eval_score and eval_rows", n);
    cJSON_Delete(j);
    /* load_best_model_at_end: the output directory has checkpoint-4's weights */
    CHECK_NEAR("final weights vs checkpoint-4's (max |d| / max |ref|)",
               yt_st_rel_err(sub("best/toy.safetensors"), sub("best/checkpoint-4/toy.safetensors")), 0);
    CHECK(yt_st_rel_err(sub("best/checkpoint-8/toy.safetensors"), sub("best/checkpoint-4/toy.safetensors")) > 0,
          "the last checkpoint equals the best: the test proves nothing");
    /* lower is better for a loss: eval_loss picks the lowest */
    CHECK(erun(&e, sub("byloss"), 4, "loss", false, 0, 0, NULL, &res) == 0, "%s", yf_last_error());
    j = read_state(sub("byloss"));
    double lo = INFINITY;
    int64_t lo_step = -1;
    for (const cJSON *it = j ? cJSON_GetObjectItem(j, "log_history")->child : NULL; it; it = it->next) {
        const cJSON *l = cJSON_GetObjectItem(it, "eval_loss");
        if (l && l->valuedouble < lo) lo = l->valuedouble, lo_step = (int64_t)cJSON_GetObjectItem(it, "step")->valuedouble;
    }
    snprintf(want, sizeof want, "%s/checkpoint-%lld", sub("byloss"), (long long)lo_step);
    /* (trainer_state.json's numbers carry 15 significant digits) */
    CHECK(!strcmp(res.best_model_checkpoint, want) && fabs(res.best_metric - lo) <= 1e-14 * lo, "best %s (%.17g), want %s (%.17g)",
          res.best_model_checkpoint, res.best_metric, want, lo);
    cJSON_Delete(j);
}

TEST(train_eval_save_total_limit_keeps_the_best) {
    etoy e;
    peak_at_epoch_2(&e, 4); /* the best: checkpoint-4 of 2, 4, 6, 8 */
    static const struct {
        const char *dir, *metric;
        int64_t limit;
        const char *want, *why;
    } cases[] = {
        {"l2", "score", 2, "4,8", "the best and the newest"},
        {"l1", "score", 1, "4,8", "a best that is not the newest stays beside it"},
        {"l3", "score", 3, "4,6,8", "the best and the two newest"},
        {"nobest", NULL, 2, "6,8", "no metric: the newest"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        yf_train_result res;
        CHECK(erun(&e, sub(cases[i].dir), 4, cases[i].metric, cases[i].limit == 1, cases[i].limit, 0, NULL, &res) == 0, "%s",
              yf_last_error());
        const char *got = ckpts(sub(cases[i].dir));
        CHECK(!strcmp(got, cases[i].want), "save_total_limit %lld kept %s, want %s (%s)", (long long)cases[i].limit, got,
              cases[i].want, cases[i].why);
    }
}

TEST(train_eval_early_stopping_stops_and_resume_keeps_the_best) {
    etoy e;
    peak_at_epoch_2(&e, 8); /* then 2 evaluations without improvement end the run */
    yf_train_result res;
    CHECK(erun(&e, sub("es"), 8, "score", true, 0, 2, NULL, &res) == 0, "%s", yf_last_error());
    CHECK(res.stopped_early && res.global_step == 8 && e.n_evals == 4, "stopped early %d at step %lld after %d evaluations",
          res.stopped_early, (long long)res.global_step, e.n_evals);
    CHECK(!strcmp(ckpts(sub("es")), "2,4,6,8"), "checkpoints %s", ckpts(sub("es")));
    cJSON *j = read_state(sub("es/checkpoint-6"));
    const cJSON *cnt = j ? cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(
                                                   j, "stateful_callbacks"), "EarlyStoppingCallback"), "attributes"),
                                               "early_stopping_patience_counter")
                         : NULL;
    CHECK(cnt && cnt->valuedouble == 1, "checkpoint-6: early_stopping_patience_counter %g, want 1", cnt ? cnt->valuedouble : -1);
    cJSON_Delete(j);
    /* resumed after the best, from checkpoint-6: the same best, the same stop */
    CHECK(yt_sh(NULL, 0, "mkdir -p %s && cp -r %s %s/", sub("res"), sub("es/checkpoint-6"), sub("res")) == 0);
    char from[800];
    snprintf(from, sizeof from, "%s", sub("res/checkpoint-6"));
    yf_train_result r2;
    CHECK(erun(&e, sub("res"), 8, "score", true, 0, 2, from, &r2) == 0, "%s", yf_last_error());
    CHECK(r2.stopped_early && r2.global_step == 8, "resumed: stopped early %d at step %lld (want step 8)", r2.stopped_early,
          (long long)r2.global_step);
    CHECK(!strcmp(r2.best_model_checkpoint, res.best_model_checkpoint) && r2.best_metric == res.best_metric,
          "resumed best %s (%g) vs %s (%g)", r2.best_model_checkpoint, r2.best_metric, res.best_model_checkpoint,
          res.best_metric);
    CHECK_NEAR("resumed run's final weights vs uninterrupted (both the best's)",
               yt_st_rel_err(sub("res/toy.safetensors"), sub("es/toy.safetensors")), 0);
}

TEST(train_eval_bad_arguments) {
    etoy e;
    yf_param p;
    yf_param_list pl;
    yf_train_hooks h;
    etoy_init(&e, &p, &pl, &h, false);
    yf_train_result res;
    yf_train_args a = toy_args(sub("bad"), stdout);
    a.load_best_model_at_end = true, a.eval_strategy = YF_SAVE_EPOCH, a.save_strategy = YF_SAVE_STEPS;
    CHECK(yf_train(&a, &h, &pl, &res) == -1 && strstr(yf_last_error(), "match"), "%s", yf_last_error());
    a = toy_args(sub("bad"), stdout);
    a.load_best_model_at_end = true, a.eval_strategy = a.save_strategy = YF_SAVE_STEPS, a.eval_steps = 3, a.save_steps = 4;
    CHECK(yf_train(&a, &h, &pl, &res) == -1 && strstr(yf_last_error(), "multiple"), "%s", yf_last_error());
    a = toy_args(sub("bad"), stdout);
    a.early_stopping_patience = 2;
    CHECK(yf_train(&a, &h, &pl, &res) == -1 && strstr(yf_last_error(), "eval_strategy"), "%s", yf_last_error());
    a = toy_args(sub("bad"), stdout);
    a.eval_strategy = YF_SAVE_EPOCH, a.metric_for_best_model = "eval_f1";
    CHECK(yf_train(&a, &h, &pl, &res) == -1 && strstr(yf_last_error(), "eval_f1") && strstr(yf_last_error(), "eval_loss"),
          "%s", yf_last_error());
    h.n_eval = 0;
    a = toy_args(sub("bad"), stdout);
    a.eval_strategy = YF_SAVE_STEPS;
    CHECK(yf_train(&a, &h, &pl, &res) == -1 && strstr(yf_last_error(), "evaluation data"), "%s", yf_last_error());
}

/* ---- yuanft train --eval-data ------------------------------------------------ */

/* "'KEY': VALUE" of every line that has it, as one comma-separated string. */
static const char *values_of(const char *out, const char *key) {
    static char v[2048];
    v[0] = 0;
    char pat[64];
    snprintf(pat, sizeof pat, "'%s': ", key);
    for (const char *p = out; (p = strstr(p, pat)); p++) {
        p += strlen(pat);
        size_t n = strcspn(p, ",}");
        if (strlen(v) + n + 2 < sizeof v) snprintf(v + strlen(v), sizeof v - strlen(v), "%s%.*s", v[0] ? "," : "", (int)n, p);
    }
    return v;
}

TEST(train_eval_cli_loss_matches_the_reference) {
    char tiny[600];
    snprintf(tiny, sizeof tiny, "%s", yt_shared_path("golden/yuan-tiny"));
    if (!yf_dir_exists(tiny)) yt_skip("golden/yuan-tiny not available");
    /* learning rate 0: the weights stay the golden ones, and one eval batch of
     * both rows is the reference batch, whose loss the golden files hold */
    char out[16384];
    int st = yt_sh(out, sizeof out,
                   "%s train --model %s --adapter %s/lora --data %s/forward.safetensors --output-dir %s --learning-rate 0 "
                   "--max-steps 2 --lora-dropout 0 --save-strategy steps --save-steps 1 --eval-data %s/forward.safetensors "
                   "--eval-strategy steps --eval-steps 1 --per-device-eval-batch-size 2 --save-total-limit 1",
                   yt_cli(), tiny, tiny, tiny, sub("cli"), tiny);
    CHECK(st == 0, "exit %d:\n%s", st, out);
    yf_table ref;
    yf_table_init(&ref);
    char path[800];
    snprintf(path, sizeof path, "%s/lora/forward.safetensors", tiny);
    CHECK(yf_st_load(path, &ref) == 0, "%s", yf_last_error());
    const yf_tensor *t = yf_table_find(&ref, "loss_next_token");
    double want = t ? ((const float *)t->data)[0] : NAN, got = atof(values_of(out, "eval_loss"));
    CHECK_NEAR("eval_loss vs the golden adapter's loss (relative)", fabs(got - want) / want, 1e-5);
    yf_table_free(&ref);
    CHECK(strchr(values_of(out, "eval_loss"), ',') != NULL, "want 2 eval lines:\n%s", out);
    /* no metric: the limit keeps the newest checkpoint only */
    CHECK(!strcmp(ckpts(sub("cli")), "2"), "checkpoints %s, want 2", ckpts(sub("cli")));
}

TEST(train_eval_cli_bad_flags) {
    char tiny[600];
    snprintf(tiny, sizeof tiny, "%s", yt_shared_path("golden/yuan-tiny"));
    if (!yf_dir_exists(tiny)) yt_skip("golden/yuan-tiny not available");
    const struct { const char *args, *want; } cases[] = {
        {"--eval-strategy steps", "--eval-data"},
        {"--eval-strategy bogus --eval-data D", "bogus"},
        {"--eval-strategy epoch --eval-data D --metric-for-best-model eval_f1", "records"},
        {"--eval-strategy epoch --eval-data D --metric-for-best-model accuracy", "accuracy"},
        {"--eval-strategy epoch --save-strategy steps --eval-data D --load-best-model-at-end", "match"},
        {"--eval-strategy epoch --eval-data D --per-device-eval-batch-size 0", "eval-batch-size"},
        {"--eval-strategy epoch --eval-data /nonexistent/eval.jsonl", "/nonexistent/eval.jsonl"},
        {"--early-stopping-patience 2", "eval_strategy"},
        {"--constrain grammar", "grammar"},
        {"--types 姓名,CITY", "CITY"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char args[600], out[8192];
        snprintf(args, sizeof args, "%s", cases[i].args);
        char *d = strstr(args, " D");
        if (d && (d[2] == ' ' || d[2] == 0)) {
            char rest[600];
            snprintf(rest, sizeof rest, "%s", d + 2);
            snprintf(d, sizeof args - (size_t)(d - args), " %s/forward.safetensors%s", tiny, rest);
        }
        int st = yt_sh(out, sizeof out, "%s train --model %s --data %s/forward.safetensors --output-dir %s --max-steps 1 %s",
                       yt_cli(), tiny, tiny, sub("bad"), args);
        CHECK(st != 0 && strstr(out, cases[i].want) && !strstr(out, "Segmentation"), "%s: exit %d, want an error naming '%s':\n%s",
              cases[i].args, st, cases[i].want, out);
    }
}

/* A small model with the Yuan tokenizer, overfitted for 20 steps on four dev
 * sentences so that it extracts some of their entities (F1 between 0 and 1). */
static const char *f1_model(char *recs, size_t cap) {
    char tok[700], dev[700]; /* (yt_shared_path's buffer is static) */
    snprintf(tok, sizeof tok, "%s", yt_shared_path("yuan/tokenizer.model"));
    snprintf(dev, sizeof dev, "%s", yt_shared_path("data/resume-ner/dev.char.bmes"));
    snprintf(recs, cap, "%s", sub("four.jsonl"));
    const char *cfg = "{\"architectures\": [\"YuanForCausalLM\"], \"model_type\": \"yuan\", \"vocab_size\": 135040, "
                      "\"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 2, \"num_attention_heads\": 2, "
                      "\"max_position_embeddings\": 512, \"rms_norm_eps\": 1e-06, \"initializer_range\": 0.02, "
                      "\"tie_word_embeddings\": true, \"reset_attention_mask\": true, \"eod_token\": 77185, "
                      "\"sep_token\": 77187, \"pad_token_id\": 77185, \"torch_dtype\": \"float32\"}";
    CHECK(yf_write_file_atomic(sub("cfg.json"), cfg, strlen(cfg)) == 0);
    char out[16384];
    int st = yt_sh(out, sizeof out,
                   "%s data resume-ner --bmes %s --output-file %s/dev.jsonl >/dev/null && head -4 %s/dev.jsonl > %s && "
                   "%s init --config %s --output-dir %s --seed 1 --tokenizer %s --vocab-from %s --prompt-template none && "
                   "OMP_NUM_THREADS=1 %s train --model %s --data %s --prompt-template none --output-dir %s --full-finetune "
                   "--max-steps 20 --per-device-train-batch-size 4 --learning-rate 1e-2 --save-strategy no",
                   yt_cli(), dev, yt_tmpdir(), yt_tmpdir(), recs, yt_cli(), sub("cfg.json"), sub("base"), tok, recs, yt_cli(),
                   sub("base"), recs, sub("m"));
    CHECK(st == 0, "exit %d:\n%s", st, out);
    if (st) yt_skip("could not build the test model");
    return sub("m");
}

TEST(train_eval_cli_f1_matches_yuanft_eval_and_two_ranks) {
    char recs[700], model[700];
    snprintf(model, sizeof model, "%s", f1_model(recs, sizeof recs));
    /* learning rate 0: the evaluation of step 1 is of the model's weights */
    char common[4096], out[16384], out2[16384], ev[8192];
    snprintf(common, sizeof common,
             "train --model %s --data %s --prompt-template none --full-finetune --learning-rate 0 --max-steps 1 "
             "--per-device-train-batch-size 2 --save-strategy no --eval-data %s --eval-strategy steps --eval-steps 1 "
             "--metric-for-best-model eval_f1 --per-device-eval-batch-size 1 --eval-max-new-tokens 64",
             model, recs, recs);
    int st = yt_sh(out, sizeof out, "OMP_NUM_THREADS=1 %s %s --output-dir %s", yt_cli(), common, sub("one"));
    CHECK(st == 0, "exit %d:\n%s", st, out);
    st = yt_sh(ev, sizeof ev, "%s eval --model %s --data %s --prompt-template none --max-new-tokens 64 --batch 1", yt_cli(),
               model, recs);
    CHECK(st == 0, "yuanft eval: exit %d:\n%s", st, ev);
    const char *micro = strstr(ev, "\nmicro");
    double p, r, f1 = -1, got = atof(values_of(out, "eval_f1"));
    CHECK(micro && sscanf(micro, "\nmicro %lf %lf %lf", &p, &r, &f1) == 3, "no micro row:\n%s", ev);
    CHECK(f1 > 0 && f1 < 1, "the test model's F1 is %g: the comparison would prove little", f1);
    CHECK_NEAR("eval_f1 during training vs yuanft eval's micro F1 (4 decimals)", fabs(got - f1), 5e-5);
    /* --eval-limit: only the first records are extracted */
    st = yt_sh(out2, sizeof out2, "OMP_NUM_THREADS=1 %s %s --output-dir %s --eval-limit 2", yt_cli(), common, sub("lim"));
    st |= yt_sh(ev, sizeof ev, "%s eval --model %s --data %s --prompt-template none --max-new-tokens 64 --batch 1 --limit 2",
                yt_cli(), model, recs);
    micro = strstr(ev, "\nmicro");
    CHECK(st == 0 && micro && sscanf(micro, "\nmicro %lf %lf %lf", &p, &r, &f1) == 3, "exit %d:\n%s\n%s", st, out2, ev);
    CHECK_NEAR("eval_f1 with --eval-limit 2 vs yuanft eval --limit 2", fabs(atof(values_of(out2, "eval_f1")) - f1), 5e-5);
    /* --constrain reaches eval_f1's decoding: unconstrained = yuanft eval --constrain none */
    double f1c = f1;
    st = yt_sh(out2, sizeof out2, "OMP_NUM_THREADS=1 %s %s --output-dir %s --eval-limit 2 --constrain none", yt_cli(), common,
               sub("free"));
    st |= yt_sh(ev, sizeof ev, "%s eval --model %s --data %s --prompt-template none --max-new-tokens 64 --batch 1 --limit 2 "
                "--constrain none", yt_cli(), model, recs);
    micro = strstr(ev, "\nmicro");
    CHECK(st == 0 && micro && sscanf(micro, "\nmicro %lf %lf %lf", &p, &r, &f1) == 3, "exit %d:\n%s\n%s", st, out2, ev);
    CHECK_NEAR("eval_f1 with --constrain none vs yuanft eval --constrain none", fabs(atof(values_of(out2, "eval_f1")) - f1), 5e-5);
    if (f1 == f1c) fprintf(stderr, "    note: the test model's F1 is %g with and without the constraint\n", f1);
    /* two ranks split the eval set (batch k on rank k % 2): the same numbers */
    yt_need_mpi();
    st = yt_sh(out2, sizeof out2, "timeout 120 " YT_MPIRUN " -np 2 %s %s --per-device-train-batch-size 1 --output-dir %s",
               yt_cli(), common, sub("two"));
    CHECK(st == 0, "mpirun -np 2: exit %d:\n%s", st, out2);
    CHECK(!strcmp(values_of(out, "eval_f1"), values_of(out2, "eval_f1")) &&
              !strcmp(values_of(out, "eval_loss"), values_of(out2, "eval_loss")),
          "one process: eval_loss %s eval_f1 %s; two ranks: %s, %s", values_of(out, "eval_loss"), values_of(out, "eval_f1"),
          values_of(out2, "eval_loss"), values_of(out2, "eval_f1"));
}
