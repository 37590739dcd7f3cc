/* Checkpoints a crash cannot hurt: training on the golden tiny model is
 * killed with SIGKILL at random moments (during steps and during the saves,
 * which happen after every step here), resumed with
 * --resume-from-checkpoint true until it finishes, and must end with the
 * same bytes as a run that was never interrupted: adapter_model.safetensors,
 * adapter_config.json and trainer_state.json (whose final summary's three
 * wall-clock figures, train_runtime and the two per-second rates, are the
 * only fields that differ between any two runs, and are set aside). */
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "harness.h"
#include "base/util.h"
#include "train/trainer.h"

static char g_tiny[600];

/* Starts `yuanft train ... --output-dir out [extra]` (output to log); kills it
 * with SIGKILL after kill_s seconds unless it ended first (kill_s < 0: never).
 * Returns 0 when it finished with exit 0, 1 when it was killed, -1 on failure. */
static int run_train(const char *out, const char *extra, double kill_s, const char *log) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "exec env OMP_NUM_THREADS=1 %s train --model %s --data %s/forward.safetensors --per-device-train-batch-size 1 "
             "--num-train-epochs 4 --learning-rate 1e-2 --lora-r 4 --lora-alpha 8 --lora-dropout 0.1 --warmup-steps 1 "
             "--weight-decay 0.01 --save-strategy steps --save-steps 1 --logging-steps 1 --seed 7 --output-dir %s %s "
             ">>%s 2>&1",
             yt_cli(), g_tiny, g_tiny, out, extra, log);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    if (kill_s >= 0) {
        double t0 = yf_time();
        while (yf_time() - t0 < kill_s) {
            if (waitpid(pid, &st, WNOHANG) == pid) return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
            struct timespec ts = {0, 2000000}; /* 2 ms */
            nanosleep(&ts, NULL);
        }
        kill(pid, SIGKILL);
    }
    waitpid(pid, &st, 0);
    if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) return 1;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static char *slurp(const char *dir, const char *name, size_t *len) {
    char *p = yf_path_join(dir, name), *s = NULL;
    if (yf_read_file(p, &s, len)) s = NULL;
    free(p);
    return s;
}

/* trainer_state.json without the wall-clock figures of the final summary */
static char *state_without_clock(const char *dir) {
    char *s = slurp(dir, "trainer_state.json", NULL);
    cJSON *j = s ? cJSON_Parse(s) : NULL;
    free(s);
    if (!j) return NULL;
    cJSON *lh = cJSON_GetObjectItem(j, "log_history");
    cJSON *last = lh ? cJSON_GetArrayItem(lh, cJSON_GetArraySize(lh) - 1) : NULL;
    static const char *const clock[] = {"train_runtime", "train_samples_per_second", "train_steps_per_second"};
    for (int i = 0; last && i < 3; i++) cJSON_DeleteItemFromObject(last, clock[i]);
    char *out = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return out;
}

static bool same_file(const char *a, const char *b, const char *name) {
    size_t la = 0, lb = 0;
    char *x = slurp(a, name, &la), *y = slurp(b, name, &lb);
    bool same = x && y && la == lb && memcmp(x, y, la) == 0;
    free(x);
    free(y);
    return same;
}

TEST(train_crash_sigkill_resume_bit_identical) {
    snprintf(g_tiny, sizeof g_tiny, "%s", yt_shared_path("golden/yuan-tiny"));
    if (!yf_dir_exists(g_tiny)) yt_skip("golden/yuan-tiny not available");
    char full[600], log[600];
    snprintf(full, sizeof full, "%s/full", yt_tmpdir());
    snprintf(log, sizeof log, "%s/train.log", yt_tmpdir());
    double t0 = yf_time();
    CHECK(run_train(full, "", -1, log) == 0, "the uninterrupted run failed (see %s)", log);
    double dur = yf_time() - t0;
    char *want_state = state_without_clock(full);
    CHECK(want_state != NULL);
    int kills = 0, stale_seen = 0;
    for (uint64_t seed = 1; seed <= 4; seed++) {
        yf_rng g;
        yf_rng_seed(&g, seed);
        char out[600];
        snprintf(out, sizeof out, "%s/run%llu", yt_tmpdir(), (unsigned long long)seed);
        /* at least 2 kills a seed, at uniform times within the run's length;
         * a run that ends before its kill starts over with a shorter bound
         * (the machine is shared: run times vary) */
        int rc = 1, seed_kills = 0;
        for (int attempt = 0; attempt < 40; attempt++) {
            char *latest = NULL, ckpt[700] = "";
            bool has = yf_dir_exists(out) && yf_latest_checkpoint(out, &latest) == 0;
            free(latest);
            if (has) snprintf(ckpt, sizeof ckpt, "--resume-from-checkpoint true");
            double when = seed_kills < 2 ? yf_rng_uniform(&g) * dur : -1, t1 = yf_time();
            rc = run_train(out, ckpt, when, log);
            if (rc == 1) seed_kills++;
            if (rc == 0 && seed_kills < 2) { /* finished first: again, from scratch */
                dur = fmin(dur, yf_time() - t1);
                yt_sh(NULL, 0, "rm -rf %s", out);
                rc = 1;
                continue;
            }
            if (rc != 1) break;
        }
        kills += seed_kills;
        CHECK(rc == 0, "seed %llu: the run did not finish (see %s)", (unsigned long long)seed, log);
        CHECK(same_file(out, full, "adapter_model.safetensors"), "seed %llu: final adapter differs",
              (unsigned long long)seed);
        CHECK(same_file(out, full, "adapter_config.json"), "seed %llu: adapter_config.json differs",
              (unsigned long long)seed);
        char *got = state_without_clock(out);
        bool same = got && want_state && !strcmp(got, want_state);
        CHECK(same, "seed %llu: trainer_state.json differs (kept in /tmp/yuanft-crash-*.json)", (unsigned long long)seed);
        if (!same) {
            yf_write_file_atomic("/tmp/yuanft-crash-got.json", got ? got : "", got ? strlen(got) : 0);
            yf_write_file_atomic("/tmp/yuanft-crash-want.json", want_state, strlen(want_state));
        }
        free(got);
    }
    char *l = slurp(yt_tmpdir(), "train.log", NULL);
    for (const char *p = l; p && (p = strstr(p, "left by a run that was killed while saving")); p++) stale_seen++;
    free(l);
    fprintf(stderr, "    uninterrupted run %.2f s; %d kills over 4 seeds, %d of them during a save (temporary "
            "checkpoint removed on restart)\n", dur, kills, stale_seen);
    CHECK(kills >= 8, "only %d runs were killed", kills);
    free(want_state);
}
