/* The training loop on a toy model (a least-squares fit over "tokens"), so the
 * loop's semantics are tested without the Yuan model: accumulation averaging,
 * step/epoch counting, shuffling, logging, checkpoints and exact resume.
 * Then `yuanft train` on the tiny golden model: the reference 3-step
 * trajectories (LoRA, DoRA), accumulation, full fine-tuning, resume, bad input. */
#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "test_toy_util.h"
#include "model/model.h"
#include "formats/safetensors.h"
#include "train/trainer.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

TEST(trainer_accumulation_averages_tokens_over_window) {
    /* one optimizer step over all 10 examples, split three ways; the window's
     * loss is sum/count over the whole window, so the steps must agree */
    const int64_t cfg[3][2] = {{10, 1}, {1, 10}, {3, 4}}; /* batch, accumulation (last window partial) */
    float w[3][2];
    double loss[3];
    for (int c = 0; c < 3; c++) {
        toy m;
        yf_param p;
        yf_param_list pl;
        yf_train_hooks h;
        toy_init(&m, &p, &pl, &h);
        FILE *out = fopen("/dev/null", "w");
        yf_train_args a = toy_args(sub("acc"), out);
        a.batch_size = cfg[c][0], a.grad_accum = cfg[c][1], a.max_steps = 1, a.shuffle = false;
        yf_train_result res;
        CHECK(yf_train(&a, &h, &pl, &res) == 0, "%s", yf_last_error());
        fclose(out);
        CHECK(res.global_step == 1);
        w[c][0] = m.w[0], w[c][1] = m.w[1];
        loss[c] = res.last_loss;
    }
    /* the loss by hand: sum of token losses at the initial weights / 23 tokens */
    double ls = 0;
    int64_t nt = 0;
    for (int64_t i = 0; i < TOY_N; i++)
        for (int64_t j = 0; j < toy_ntok(i); j++) {
            double r = (double)0.1f * toy_x(i, j) + (double)0.3f - toy_y(i, j);
            ls += 0.5 * r * r, nt++;
        }
    CHECK(nt == 23);
    CHECK_NEAR("window loss vs hand sum/23", fabs(loss[0] - ls / 23), 1e-9);
    double d = 0;
    for (int c = 1; c < 3; c++) d = fmax(d, fmax(fabs(w[c][0] - w[0][0]), fabs(w[c][1] - w[0][1])));
    CHECK_NEAR("weights after one step, accumulation split vs one batch", d, 1e-6);
    CHECK_NEAR("loss, accumulation split vs one batch", fmax(fabs(loss[1] - loss[0]), fabs(loss[2] - loss[0])), 1e-9);
}

TEST(trainer_counts_steps_and_epochs) {
    /* 10 examples, batch 3 -> 4 micro-batches; accumulation 2 -> 2 steps/epoch */
    CHECK(yf_steps_per_epoch(10, 3, 2) == 2);
    CHECK(yf_steps_per_epoch(3821, 12, 1) == 319);
    CHECK(yf_steps_per_epoch(2, 8, 1) == 1);
    toy m;
    yf_param p;
    yf_param_list pl;
    yf_train_hooks h;
    toy_init(&m, &p, &pl, &h);
    FILE *out = fopen("/dev/null", "w");
    yf_train_args a = toy_args(sub("steps"), out);
    a.batch_size = 3, a.grad_accum = 2;
    yf_train_result res;
    CHECK(yf_train(&a, &h, &pl, &res) == 0, "%s", yf_last_error());
    CHECK(res.global_step == 6 && res.epoch == 3.0, "steps %lld epoch %g", (long long)res.global_step, res.epoch);
    CHECK(m.nseen == 30, "examples seen %d", m.nseen);
    /* max_steps overrides epochs: 5 steps end half-way through the third epoch */
    toy_init(&m, &p, &pl, &h);
    a.max_steps = 5;
    CHECK(yf_train(&a, &h, &pl, &res) == 0, "%s", yf_last_error());
    CHECK(res.global_step == 5 && res.epoch == 2.5, "steps %lld epoch %g", (long long)res.global_step, res.epoch);
    fclose(out);
}

TEST(trainer_shuffles_reproducibly_per_epoch) {
    int64_t order[2][30];
    for (int run = 0; run < 2; run++) {
        toy m;
        yf_param p;
        yf_param_list pl;
        yf_train_hooks h;
        toy_init(&m, &p, &pl, &h);
        FILE *out = fopen("/dev/null", "w");
        yf_train_args a = toy_args(sub("shuf"), out);
        CHECK(yf_train(&a, &h, &pl, &(yf_train_result){0}) == 0, "%s", yf_last_error());
        fclose(out);
        memcpy(order[run], m.seen, sizeof order[run]);
    }
    CHECK(!memcmp(order[0], order[1], sizeof order[0]), "same seed, different order");
    bool differs = false, identity = true;
    for (int e = 0; e < 3; e++) {
        int count[TOY_N] = {0};
        for (int i = 0; i < TOY_N; i++) count[order[0][e * TOY_N + i]]++, identity &= order[0][e * TOY_N + i] == i;
        for (int i = 0; i < TOY_N; i++) CHECK(count[i] == 1, "epoch %d is not a permutation", e);
        if (e) differs |= memcmp(order[0], order[0] + e * TOY_N, TOY_N * sizeof(int64_t)) != 0;
    }
    CHECK(differs && !identity, "epochs should be shuffled differently");
    /* --no-shuffle keeps file order */
    toy m;
    yf_param p;
    yf_param_list pl;
    yf_train_hooks h;
    toy_init(&m, &p, &pl, &h);
    FILE *out = fopen("/dev/null", "w");
    yf_train_args a = toy_args(sub("noshuf"), out);
    a.shuffle = false, a.num_epochs = 1;
    CHECK(yf_train(&a, &h, &pl, &(yf_train_result){0}) == 0, "%s", yf_last_error());
    fclose(out);
    for (int i = 0; i < TOY_N; i++) CHECK(m.seen[i] == i);
}

TEST(trainer_group_by_length_sorts_megabatches) {
    /* lengths 0..TOY_N-1 shuffled by a fixed rule; one megabatch (50 batches)
     * covers the toy data, so each epoch must be a permutation sorted longest first */
    int64_t len[TOY_N];
    for (int i = 0; i < TOY_N; i++) len[i] = (i * 7) % TOY_N;
    toy m;
    yf_param p;
    yf_param_list pl;
    yf_train_hooks h;
    toy_init(&m, &p, &pl, &h);
    FILE *out = fopen("/dev/null", "w");
    yf_train_args a = toy_args(sub("grouped"), out);
    a.lengths = len;
    CHECK(yf_train(&a, &h, &pl, &(yf_train_result){0}) == 0, "%s", yf_last_error());
    fclose(out);
    for (int e = 0; e < 3; e++) {
        int count[TOY_N] = {0}, unsorted = 0;
        for (int i = 0; i < TOY_N; i++) {
            count[m.seen[e * TOY_N + i]]++;
            if (i && len[m.seen[e * TOY_N + i - 1]] < len[m.seen[e * TOY_N + i]]) unsorted++;
        }
        for (int i = 0; i < TOY_N; i++) CHECK(count[i] == 1, "epoch %d is not a permutation", e);
        CHECK(unsorted == 0, "epoch %d: %d places where a shorter example comes before a longer one", e, unsorted);
    }
}

TEST(trainer_logs_hf_lines_and_final_json) {
    toy m;
    yf_param p;
    yf_param_list pl;
    yf_train_hooks h;
    toy_init(&m, &p, &pl, &h);
    char *log = sub("log.txt");
    FILE *out = fopen(log, "w");
    yf_train_args a = toy_args(sub("logs"), out);
    a.batch_size = 5, a.logging_steps = 2, a.num_epochs = 2; /* 4 steps, 2 log lines */
    yf_train_result res;
    CHECK(yf_train(&a, &h, &pl, &res) == 0, "%s", yf_last_error());
    fclose(out);
    char *s = slurp(log);
    CHECK(s != NULL);
    if (!s) return;
    int lines = 0;
    char *last = NULL;
    for (char *l = strtok(s, "\n"); l; l = strtok(NULL, "\n")) {
        if (!strncmp(l, "{'loss': ", 9)) {
            lines++;
            CHECK(strstr(l, "'grad_norm': ") && strstr(l, "'learning_rate': ") && strstr(l, "'epoch': "), "%s", l);
        }
        last = l;
    }
    CHECK(lines == 2, "%d loss lines", lines);
    cJSON *j = last ? cJSON_Parse(last) : NULL;
    CHECK(j != NULL, "last line is not JSON: %s", last ? last : "(none)");
    const char *keys[] = {"train_runtime", "train_samples_per_second", "train_steps_per_second", "train_tokens_per_second",
                          "train_loss", "epoch", "peak_rss_mb"};
    for (int k = 0; j && k < 7; k++) CHECK(cJSON_IsNumber(cJSON_GetObjectItem(j, keys[k])), "missing %s", keys[k]);
    if (j) CHECK(fabs(cJSON_GetObjectItem(j, "train_loss")->valuedouble - res.train_loss) < 1e-12);
    cJSON_Delete(j);
    free(s);
    /* trainer_state.json: log_history with the two logs and the summary */
    s = slurp(sub("logs/trainer_state.json"));
    j = s ? cJSON_Parse(s) : NULL;
    CHECK(j && cJSON_GetArraySize(cJSON_GetObjectItem(j, "log_history")) == 3, "trainer_state.json log_history");
    CHECK(j && cJSON_GetObjectItem(j, "global_step")->valuedouble == 4);
    cJSON_Delete(j);
    free(s);
    CHECK(yf_file_exists(sub("logs/loss_curve.svg")) && yf_file_exists(sub("logs/toy.safetensors")));
}

/* Runs the toy for 3 epochs with dropout into outdir; resume_from: checkpoint
 * to continue from (weights loaded here, as cmd_train does). */
static int toy_run(const char *outdir, const char *resume_from, yf_save_strategy ss, int64_t save_steps, float *w,
                   yf_train_result *res, const char *logpath) {
    toy m;
    yf_param p;
    yf_param_list pl;
    yf_train_hooks h;
    toy_init(&m, &p, &pl, &h);
    m.dropout = true;
    if (resume_from && toy_load(&m, resume_from)) return -1;
    FILE *out = fopen(logpath, "w");
    yf_train_args a = toy_args(outdir, out);
    a.batch_size = 3, a.grad_accum = 2, a.num_epochs = 3, a.logging_steps = 3;
    a.adam.weight_decay = 0.01;
    a.warmup_steps = 1;
    a.save_strategy = ss, a.save_steps = save_steps;
    a.resume_dir = resume_from;
    int rc = yf_train(&a, &h, &pl, res);
    fclose(out);
    memcpy(w, m.w, 8);
    return rc;
}

TEST(trainer_resume_after_epoch_matches_uninterrupted) {
    float w_full[2], w_res[2];
    yf_train_result r_full, r_res;
    CHECK(toy_run(sub("full"), NULL, YF_SAVE_EPOCH, 0, w_full, &r_full, sub("full.log")) == 0, "%s", yf_last_error());
    CHECK(yf_dir_exists(sub("full/checkpoint-2")) && yf_dir_exists(sub("full/checkpoint-4")) &&
          yf_dir_exists(sub("full/checkpoint-6")));
    /* continue from the end of epoch 1 in a fresh output directory */
    CHECK(toy_run(sub("resumed"), sub("full/checkpoint-2"), YF_SAVE_EPOCH, 0, w_res, &r_res, sub("res.log")) == 0, "%s",
          yf_last_error());
    CHECK(w_res[0] == w_full[0] && w_res[1] == w_full[1], "resumed w (%.9g, %.9g) vs uninterrupted (%.9g, %.9g)", w_res[0],
          w_res[1], w_full[0], w_full[1]);
    CHECK(r_res.global_step == 6 && r_res.train_loss == r_full.train_loss, "train_loss %.17g vs %.17g", r_res.train_loss,
          r_full.train_loss);
    /* the checkpoint written after resuming holds the same state */
    char *a = slurp(sub("full/checkpoint-6/trainer_state.json")), *b = slurp(sub("resumed/checkpoint-6/trainer_state.json"));
    CHECK(a && b && !strcmp(a, b), "trainer_state.json of checkpoint-6 differs after resume");
    free(a);
    free(b);
}

TEST(trainer_resume_mid_epoch_and_latest) {
    float w_full[2], w_res[2];
    yf_train_result r_full, r_res;
    /* save every 3 steps: checkpoint-3 is half-way through epoch 2 (with its
     * log window mid-way too: logging every 3 steps) */
    CHECK(toy_run(sub("out"), NULL, YF_SAVE_STEPS, 3, w_full, &r_full, sub("a.log")) == 0, "%s", yf_last_error());
    char *latest = NULL;
    CHECK(yf_latest_checkpoint(sub("out"), &latest) == 0 && strstr(latest, "checkpoint-6"), "%s",
          latest ? latest : yf_last_error());
    free(latest);
    CHECK(toy_run(sub("out2"), sub("out/checkpoint-3"), YF_SAVE_STEPS, 3, w_res, &r_res, sub("b.log")) == 0, "%s",
          yf_last_error());
    CHECK(w_res[0] == w_full[0] && w_res[1] == w_full[1], "resumed w (%.9g, %.9g) vs uninterrupted (%.9g, %.9g)", w_res[0],
          w_res[1], w_full[0], w_full[1]);
    /* log lines after the resume point are identical */
    char *a = slurp(sub("a.log")), *b = slurp(sub("b.log"));
    CHECK(a && b);
    if (a && b) {
        char *la = strstr(a, "{'loss'"), *lb = strstr(b, "{'loss'");
        la = la ? strstr(la + 1, "{'loss'") : NULL; /* second log line (step 6) */
        CHECK(la && lb && !strncmp(la, lb, strcspn(la, "\n")), "step-6 log lines differ:\n%.200s\n%.200s", la ? la : "",
              lb ? lb : "");
    }
    free(a);
    free(b);
}

TEST(trainer_checkpoint_temp_dirs_are_ignored) {
    char *d = sub("ck");
    CHECK(yf_mkdir_p(sub("ck/checkpoint-4")) == 0 && yf_mkdir_p(sub("ck/checkpoint-10")) == 0 &&
          yf_mkdir_p(sub("ck/.checkpoint-12.tmp.99")) == 0);
    CHECK(yf_write_file_atomic(sub("ck/checkpoint-4/trainer_state.json"), "{}", 2) == 0);
    CHECK(yf_write_file_atomic(sub("ck/.checkpoint-12.tmp.99/trainer_state.json"), "{}", 2) == 0);
    char *latest = NULL;
    /* checkpoint-10 has no trainer_state.json (a partial copy): not a candidate */
    CHECK(yf_latest_checkpoint(d, &latest) == 0 && latest && strstr(latest, "/checkpoint-4"), "%s",
          latest ? latest : yf_last_error());
    free(latest);
    CHECK(yf_latest_checkpoint(sub("nothing-here"), &latest) == -1);
}

/* Temporary checkpoint directories of killed runs are removed at the next
 * start, only when their writer is gone: a live writer's stays. */
TEST(trainer_removes_stale_checkpoint_temps) {
    pid_t dead = fork();
    if (dead == 0) _exit(0);
    waitpid(dead, NULL, 0);
    char a[64], b[64], c[64], e[64];
    snprintf(a, sizeof a, "st/.checkpoint-7.tmp.%d", (int)dead);       /* unlocked .writer: gone */
    snprintf(b, sizeof b, "st/.checkpoint-9.tmp.%d", (int)getppid());  /* .writer locked below: alive */
    snprintf(c, sizeof c, "st/.checkpoint-5.tmp.%d", (int)getppid());  /* no .writer, live pid: kept */
    snprintf(e, sizeof e, "st/.adapter.tmp.%d", (int)dead);            /* no .writer, dead pid: gone */
    const char *dirs[4] = {a, b, c, e};
    for (int i = 0; i < 4; i++) CHECK(yf_mkdir_p(sub(dirs[i])) == 0);
    char wa[96], wb[96];
    snprintf(wa, sizeof wa, "%s/.writer", a);
    snprintf(wb, sizeof wb, "%s/.writer", b);
    CHECK(yf_write_file_atomic(sub(wa), "1\n", 2) == 0 && yf_write_file_atomic(sub(wb), "1\n", 2) == 0);
    int held = open(sub(wb), O_RDONLY);
    CHECK(held >= 0 && flock(held, LOCK_EX) == 0);
    /* flock locks belong to open file descriptions: the trainer's own open
     * of b's .writer (in this process) conflicts with this one, as another
     * run's would */
    float w[2];
    yf_train_result res;
    CHECK(toy_run(sub("st"), NULL, YF_SAVE_NO, 0, w, &res, sub("st.log")) == 0, "%s", yf_last_error());
    CHECK(!yf_dir_exists(sub(a)) && !yf_dir_exists(sub(e)), "stale directories of dead writers remain");
    CHECK(yf_dir_exists(sub(b)) && yf_dir_exists(sub(c)), "a live writer's directory was removed");
    close(held);
}

TEST(trainer_bad_args_and_resume_dir) {
    toy m;
    yf_param p;
    yf_param_list pl;
    yf_train_hooks h;
    toy_init(&m, &p, &pl, &h);
    yf_train_args a = toy_args(sub("bad"), stdout);
    yf_train_result res;
    a.batch_size = 0;
    CHECK(yf_train(&a, &h, &pl, &res) == -1 && strstr(yf_last_error(), "batch"), "%s", yf_last_error());
    a = toy_args(sub("bad"), stdout);
    a.lr = -1;
    CHECK(yf_train(&a, &h, &pl, &res) == -1 && strstr(yf_last_error(), "learning_rate"), "%s", yf_last_error());
    a = toy_args(sub("bad"), stdout);
    a.resume_dir = sub("no-such-checkpoint");
    CHECK(yf_train(&a, &h, &pl, &res) == -1 && strstr(yf_last_error(), "no-such-checkpoint"), "%s", yf_last_error());
    /* a checkpoint whose trainer_state.json is garbage */
    CHECK(yf_mkdir_p(sub("badck")) == 0);
    CHECK(yf_write_file_atomic(sub("badck/trainer_state.json"), "{\"global_step\": ", 16) == 0);
    a.resume_dir = sub("badck");
    CHECK(yf_train(&a, &h, &pl, &res) == -1 && strstr(yf_last_error(), "trainer_state.json"), "%s", yf_last_error());
}

/* A resumed trainer_state.json's counters size buffers (a loss per step) and
 * index the data: forged ones must fail with one line, not allocate by them. */
TEST(trainer_bad_forged_resume_counters) {
    float w[2];
    yf_train_result res;
    CHECK(toy_run(sub("run"), NULL, YF_SAVE_EPOCH, 0, w, &res, sub("run.log")) == 0, "%s", yf_last_error());
    yt_limit(512, 20);
    static const struct { const char *key, *value, *want; } cases[] = {
        {"global_step", "1e15", "per-step losses"},       /* 8 PB of step losses */
        {"global_step", "1e300", "[0, 2^53)"},            /* an undefined double -> int64 cast */
        {"micro_batches_done_in_epoch", "4000000000", "micro-batches done"},
        {"per_device_train_batch_size", "9007199254740991", "micro-batches done"},
        {"epoch", "1e308", "do not fit"},
        {"last_logged_step", "-1", "[0, 2^53)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *text = slurp(sub("run/checkpoint-2/trainer_state.json"));
        cJSON *j = cJSON_Parse(text);
        free(text);
        cJSON *y = cJSON_GetObjectItem(j, "yuanft");
        cJSON *where = cJSON_GetObjectItem(j, cases[i].key) ? j : y;
        cJSON_ReplaceItemInObject(where, cases[i].key, cJSON_Parse(cases[i].value));
        char dir[64];
        snprintf(dir, sizeof dir, "forged%zu", i);
        CHECK(yt_sh(NULL, 0, "cp -r %s %s", sub("run/checkpoint-2"), sub(dir)) == 0);
        char name[96];
        snprintf(name, sizeof name, "%s/trainer_state.json", dir);
        char *out = cJSON_Print(j);
        CHECK(yf_write_file_atomic(sub(name), out, strlen(out)) == 0);
        free(out);
        cJSON_Delete(j);
        CHECK(toy_run(sub("res"), sub(dir), YF_SAVE_NO, 0, w, &res, sub("res.log")) == -1 &&
                  strstr(yf_last_error(), cases[i].want),
              "%s = %s: %s", cases[i].key, cases[i].value, yf_last_error());
    }
}

TEST(trainer_python_float_repr) {
    char b[64];
    const struct { double x; const char *s; } cases[] = {
        {2.5668, "2.5668"}, {4.9e-05, "4.9e-05"}, {0.01, "0.01"}, {3.0, "3.0"}, {100.0, "100.0"}, {0.0001, "0.0001"},
        {1e16, "1e+16"}, {-0.5, "-0.5"}, {0.006666666666666666, "0.006666666666666666"}, {123456.75, "123456.75"},
        {1.5e-10, "1.5e-10"}, {0.0, "0.0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        CHECK(!strcmp(yf_py_float(cases[i].x, b, sizeof b), cases[i].s), "%.17g -> %s, want %s", cases[i].x, b, cases[i].s);
}

/* ---- yuanft train on the tiny golden model -------------------------------- */


static void need_model(void) {
    if (!yf_dir_exists(yt_shared_path("golden/yuan-tiny"))) yt_skip("golden/yuan-tiny not available");
}

static void golden_train(const char *kind) {
    need_model();
    char tiny[600], adapter[700], data[700], traj[700], want[700];
    snprintf(tiny, sizeof tiny, "%s", yt_shared_path("golden/yuan-tiny"));
    snprintf(adapter, sizeof adapter, "%s/%s", tiny, kind);
    snprintf(data, sizeof data, "%s/forward.safetensors", tiny);
    snprintf(traj, sizeof traj, "%s/%s/train/trajectory.json", tiny, kind);
    snprintf(want, sizeof want, "%s/%s/train/adapter_model.safetensors", tiny, kind);
    char out[16384];
    int st = yt_sh(out, sizeof out,
                   "%s train --model %s --data %s --adapter %s --output-dir %s --per-device-train-batch-size 2 --no-shuffle "
                   "--learning-rate 1e-2 --max-steps 3 --lora-dropout 0 --logging-steps 1 --save-strategy no",
                   yt_cli(), tiny, data, adapter, sub("out"));
    CHECK(st == 0, "exit %d:\n%s", st, out);
    if (st) return;
    /* the reference trajectory against trainer_state.json (unrounded step losses,
     * and the logged grad_norm / learning_rate of every step) */
    char *tj = slurp(traj), *sj = slurp(sub("out/trainer_state.json"));
    cJSON *T = tj ? cJSON_Parse(tj) : NULL, *S = sj ? cJSON_Parse(sj) : NULL;
    CHECK(T && S, "cannot read trajectory.json / trainer_state.json");
    if (T && S) {
        const cJSON *lh = cJSON_GetObjectItem(S, "log_history");
        const cJSON *sl = cJSON_GetObjectItem(cJSON_GetObjectItem(S, "yuanft"), "step_losses");
        double el = 0, eg = 0, er = 0;
        for (int s = 0; s < 3; s++) {
            double wl = cJSON_GetArrayItem(cJSON_GetObjectItem(T, "loss_per_step"), s)->valuedouble;
            double wg = cJSON_GetArrayItem(cJSON_GetObjectItem(T, "grad_norm_before_clip"), s)->valuedouble;
            double wr = cJSON_GetArrayItem(cJSON_GetObjectItem(T, "lr_per_step"), s)->valuedouble;
            const cJSON *e = cJSON_GetArrayItem(lh, s), *l = cJSON_GetArrayItem(sl, s);
            if (!e || !l) {
                CHECK(0, "step %d missing from trainer_state.json", s + 1);
                break;
            }
            el = fmax(el, fabs(l->valuedouble - wl) / fabs(wl));
            eg = fmax(eg, fabs(cJSON_GetObjectItem(e, "grad_norm")->valuedouble - wg) / fabs(wg));
            er = fmax(er, fabs(cJSON_GetObjectItem(e, "learning_rate")->valuedouble - wr) / fabs(wr));
        }
        CHECK_NEAR("loss per step (relative)", el, 1e-4);
        CHECK_NEAR("grad norm before clipping per step (relative)", eg, 1e-4);
        CHECK_NEAR("learning rate per step (relative)", er, 1e-4);
    }
    cJSON_Delete(T);
    cJSON_Delete(S);
    free(tj);
    free(sj);
    CHECK_NEAR("final adapter vs golden (max |d| / max |ref| per tensor)",
               yt_st_rel_err(sub("out/adapter_model.safetensors"), want), 1e-4);
    CHECK(yf_file_exists(sub("out/adapter_config.json")) && yf_file_exists(sub("out/loss_curve.svg")));
    /* the last line of the run is one JSON object */
    char *last = strrchr(out, '{');
    cJSON *j = last ? cJSON_Parse(last) : NULL;
    CHECK(j && cJSON_GetObjectItem(j, "train_tokens_per_second") && cJSON_GetObjectItem(j, "peak_rss_mb"), "last line: %s",
          last ? last : "(none)");
    cJSON_Delete(j);
}

TEST(train_golden_lora_three_steps) { golden_train("lora"); }
TEST(train_golden_dora_three_steps) { golden_train("dora"); }

TEST(train_resume_after_epoch_cli) {
    need_model();
    char tiny[600], cmd[2048], out[16384];
    snprintf(tiny, sizeof tiny, "%s", yt_shared_path("golden/yuan-tiny"));
    /* fresh adapter (r 4, dropout on), batch 1, shuffled, 3 epochs of 2 steps */
    snprintf(cmd, sizeof cmd,
             "%s train --model %s --data %s/forward.safetensors --per-device-train-batch-size 1 --num-train-epochs 3 "
             "--learning-rate 1e-2 --lora-r 4 --lora-alpha 8 --lora-dropout 0.1 --warmup-steps 1 --weight-decay 0.01 "
             "--save-strategy epoch --seed 7",
             yt_cli(), tiny, tiny);
    int st = yt_sh(out, sizeof out, "%s --output-dir %s", cmd, sub("full"));
    CHECK(st == 0, "exit %d:\n%s", st, out);
    CHECK(yf_dir_exists(sub("full/checkpoint-2")) && yf_dir_exists(sub("full/checkpoint-6")));
    /* a run that stopped after epoch 1: only checkpoint-2 in its output dir */
    st = yt_sh(out, sizeof out, "mkdir -p %s && cp -r %s %s/", sub("part"), sub("full/checkpoint-2"), sub("part"));
    CHECK(st == 0, "%s", out);
    st = yt_sh(out, sizeof out, "%s --output-dir %s --resume-from-checkpoint true", cmd, sub("part"));
    CHECK(st == 0 && strstr(out, "resuming from"), "exit %d:\n%s", st, out);
    CHECK_NEAR("resumed final adapter vs uninterrupted (exact)",
               yt_st_rel_err(sub("part/adapter_model.safetensors"), sub("full/adapter_model.safetensors")), 0);
}

static void expect_train_failure(const char *extra, const char *needle) {
    char tiny[600], out[16384];
    snprintf(tiny, sizeof tiny, "%s", yt_shared_path("golden/yuan-tiny"));
    int st = yt_sh(out, sizeof out, "%s train --model %s --output-dir %s %s", yt_cli(), tiny, sub("bad"), extra);
    CHECK(st != 0 && st != 139 && strstr(out, needle), "exit %d, want a message with '%s':\n%s", st, needle, out);
}

TEST(train_bad_unknown_target_module) {
    char a[800];
    snprintf(a, sizeof a, "--data %s --target-modules q_proj,attn_proj", yt_shared_path("golden/yuan-tiny/forward.safetensors"));
    expect_train_failure(a, "attn_proj");
}

TEST(train_bad_rank_zero_and_negative_lr) {
    char a[800];
    snprintf(a, sizeof a, "--data %s --lora-r 0", yt_shared_path("golden/yuan-tiny/forward.safetensors"));
    expect_train_failure(a, "lora-r");
    snprintf(a, sizeof a, "--data %s --learning-rate -0.001", yt_shared_path("golden/yuan-tiny/forward.safetensors"));
    expect_train_failure(a, "learning-rate");
}

TEST(train_bad_missing_data_file) { expect_train_failure("--data /nonexistent/train.safetensors", "/nonexistent/train.safetensors"); }

TEST(train_bad_rows_longer_than_max_positions) {
    /* the tiny model allows 256 positions; one row of 300 scored tokens */
    const int64_t T = 300;
    int64_t *ids = calloc((size_t)T, sizeof *ids), *lab = calloc((size_t)T, sizeof *lab);
    for (int64_t t = 0; t < T; t++) ids[t] = lab[t] = 5 + t % 100;
    yf_tensor ts[2] = {{.name = "input_ids", .dtype = YF_I64, .ndim = 2, .shape = {1, T}, .data = ids, .nbytes = T * 8},
                       {.name = "labels", .dtype = YF_I64, .ndim = 2, .shape = {1, T}, .data = lab, .nbytes = T * 8}};
    CHECK(yf_st_save(sub("long.safetensors"), ts, 2, NULL) == 0, "%s", yf_last_error());
    free(ids);
    free(lab);
    char a[800];
    snprintf(a, sizeof a, "--data %s", sub("long.safetensors"));
    expect_train_failure(a, "max_position_embeddings");
    /* and a file without labels */
    yf_tensor one = {.name = "input_ids", .dtype = YF_I64, .ndim = 2, .shape = {1, 1}, .data = (int64_t[]){5}, .nbytes = 8};
    CHECK(yf_st_save(sub("nolabels.safetensors"), &one, 1, NULL) == 0);
    snprintf(a, sizeof a, "--data %s", sub("nolabels.safetensors"));
    expect_train_failure(a, "labels");
}

TEST(train_bad_resume_checkpoint_missing) {
    char a[800];
    snprintf(a, sizeof a, "--data %s --resume-from-checkpoint %s", yt_shared_path("golden/yuan-tiny/forward.safetensors"),
             sub("no-such-ckpt"));
    expect_train_failure(a, "no-such-ckpt");
}

TEST(train_accumulation_cli_matches_one_batch) {
    /* batch 1 x accumulation 2 over the two golden rows (different scored-token
     * counts) must step like one batch of 2: the window loss is sum / count */
    need_model();
    char tiny[600], out[16384];
    snprintf(tiny, sizeof tiny, "%s", yt_shared_path("golden/yuan-tiny"));
    const char *dirs[2] = {"acc1", "acc2"};
    const int bs[2] = {2, 1}, acc[2] = {1, 2};
    for (int i = 0; i < 2; i++) {
        int st = yt_sh(out, sizeof out,
                       "%s train --model %s --data %s/forward.safetensors --adapter %s/lora --output-dir %s "
                       "--per-device-train-batch-size %d --gradient-accumulation-steps %d --no-shuffle --learning-rate 1e-2 "
                       "--max-steps 3 --lora-dropout 0 --save-strategy no",
                       yt_cli(), tiny, tiny, tiny, sub(dirs[i]), bs[i], acc[i]);
        CHECK(st == 0, "exit %d:\n%s", st, out);
    }
    CHECK_NEAR("adapter, batch 1 x accumulation 2 vs batch 2 (relative)",
               yt_st_rel_err(sub("acc2/adapter_model.safetensors"), sub("acc1/adapter_model.safetensors")), 1e-5);
}

TEST(train_full_finetune_saves_model_and_resumes) {
    need_model();
    char tiny[600], cmd[2048], out[16384];
    snprintf(tiny, sizeof tiny, "%s", yt_shared_path("golden/yuan-tiny"));
    snprintf(cmd, sizeof cmd,
             "%s train --model %s --data %s/forward.safetensors --full-finetune --per-device-train-batch-size 1 "
             "--num-train-epochs 2 --learning-rate 1e-3 --weight-decay 0.1 --save-strategy epoch --seed 3",
             yt_cli(), tiny, tiny);
    int st = yt_sh(out, sizeof out, "%s --output-dir %s", cmd, sub("full"));
    CHECK(st == 0, "exit %d:\n%s", st, out);
    /* the written model loads and scores the golden batch better than the base */
    yf_model *m = NULL;
    yf_model_opts mo = {0};
    CHECK(yf_model_load(sub("full"), &mo, &m) == 0, "%s", yf_last_error());
    if (m) {
        yf_table b;
        yf_table_init(&b);
        char fw[700];
        snprintf(fw, sizeof fw, "%s/forward.safetensors", tiny);
        CHECK(yf_st_load(fw, &b) == 0);
        const yf_tensor *ids = yf_table_find(&b, "input_ids"), *lab = yf_table_find(&b, "labels"),
                        *l0 = yf_table_find(&b, "loss_next_token");
        double ls = 0;
        int64_t nt = 0;
        CHECK(yf_model_forward(m, NULL, ids->data, lab->data, ids->shape[0], ids->shape[1], NULL, &ls, &nt) == 0, "%s",
              yf_last_error());
        double base = yf_tensor_get_f32(l0, 0);
        CHECK(nt > 0 && ls / nt < base, "loss after training %g, base %g", nt ? ls / nt : -1, base);
        yf_table_free(&b);
        yf_model_free(m);
    }
    /* resume from the end of epoch 1 in a copy: the same final weights, bit for bit */
    st = yt_sh(out, sizeof out, "mkdir -p %s && cp -r %s %s/", sub("part"), sub("full/checkpoint-2"), sub("part"));
    st = st || yt_sh(out, sizeof out, "%s --output-dir %s --resume-from-checkpoint true", cmd, sub("part"));
    CHECK(st == 0, "exit %d:\n%s", st, out);
    CHECK_NEAR("resumed full model vs uninterrupted (exact)",
               yt_st_rel_err(sub("part/model.safetensors"), sub("full/model.safetensors")), 0);
}
