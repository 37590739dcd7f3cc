#include "harness.h"
#include "formats/safetensors.h"
#include "train/dist.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <math.h>

#if defined(__SANITIZE_ADDRESS__)
#define YT_ASAN 1
#include <sanitizer/lsan_interface.h>
static int yt_leak_check(void) { return __lsan_do_recoverable_leak_check(); }
#else
#define YT_ASAN 0
static int yt_leak_check(void) { return 0; }
#endif

typedef struct { const char *name, *file; yt_fn fn; } yt_case;
static yt_case *g_cases;
static int g_n, g_cap;
static int g_failures;
static char g_tmp[512];

void yt_register(const char *name, const char *file, yt_fn fn) {
    if (g_n == g_cap) {
        g_cap = g_cap ? 2 * g_cap : 64;
        g_cases = realloc(g_cases, (size_t)g_cap * sizeof *g_cases);
    }
    g_cases[g_n++] = (yt_case){name, file, fn};
}

void yt_check(bool ok, const char *file, int line, const char *expr, const char *fmt, ...) {
    if (ok) return;
    g_failures++;
    fprintf(stderr, "    FAIL %s:%d: %s", file, line, expr);
    if (fmt && fmt[0]) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, " -- ");
        vfprintf(stderr, fmt, ap);
        va_end(ap);
    }
    fprintf(stderr, "\n");
}

void yt_check_near(const char *file, int line, const char *what, double err, double tol) {
    bool ok = err <= tol && !isnan(err);
    fprintf(stderr, "    %s %s: error %.3g (tolerance %.3g)\n", ok ? "ok  " : "FAIL", what, err, tol);
    if (!ok) {
        g_failures++;
        fprintf(stderr, "    FAIL at %s:%d\n", file, line);
    }
}

void yt_skip(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "    SKIP: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    fflush(stderr);
    _exit(77);
}

void yt_limit(int64_t mem_mb, int secs) {
    struct rlimit r;
    if (!YT_ASAN) {
        r.rlim_cur = r.rlim_max = (rlim_t)mem_mb << 20;
        if (setrlimit(RLIMIT_AS, &r) != 0) perror("setrlimit RLIMIT_AS");
    }
    r.rlim_cur = (rlim_t)secs;
    r.rlim_max = (rlim_t)secs + 5;
    if (setrlimit(RLIMIT_CPU, &r) != 0) perror("setrlimit RLIMIT_CPU");
    alarm((unsigned)(2 * secs));
}

const char *yt_limit_sh(int64_t mem_mb, int secs) {
    static char buf[128];
    if (YT_ASAN) snprintf(buf, sizeof buf, "timeout -s KILL %d", 2 * secs);
    else snprintf(buf, sizeof buf, "ulimit -v %lld; timeout -s KILL %d", (long long)mem_mb << 10, 2 * secs);
    return buf;
}

static const char *yt_shared_dir(void) {
    const char *env = getenv("YF_SHARED");
    return env && env[0] ? env : "../shared";
}

static bool yt_in_ci(void) {
    const char *ci = getenv("CI");
    return ci && !strcmp(ci, "true");
}

const char *yt_shared(void) {
    static char buf[512];
    snprintf(buf, sizeof buf, "%s", yt_shared_dir());
    struct stat st;
    return stat(buf, &st) == 0 ? buf : NULL;
}

const char *yt_shared_path(const char *rel) {
    static char buf[1024];
    const char *s = yt_shared();
    if (!s && yt_in_ci()) {
        fprintf(stderr, "    FAIL: CI=true and %s is absent: the golden reference files are needed (set YF_SHARED)\n",
                yt_shared_dir());
        fflush(stderr);
        _exit(1);
    }
    if (!s) yt_skip("%s is absent: golden reference files not available (set YF_SHARED)", yt_shared_dir());
    snprintf(buf, sizeof buf, "%s/%s", s, rel);
    return buf;
}

const char *yt_tmpdir(void) { return g_tmp; }

const char *yt_cli(void) {
    const char *env = getenv("YF_CLI");
    return env && env[0] ? env : "build/yuanft";
}

int yt_sh(char *out, size_t cap, const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char full[8300];
    snprintf(full, sizeof full, "( %s ) 2>&1", cmd);
    FILE *p = popen(full, "r");
    if (!p) return -1;
    size_t n = 0;
    char buf[4096];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, p)) > 0) {
        if (out && n + 1 < cap) {
            size_t k = got < cap - 1 - n ? got : cap - 1 - n;
            memcpy(out + n, buf, k);
            n += k;
        }
    }
    if (out && cap) out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

int yt_train_small_yuan(char *out, size_t cap, const char *dir, const char *records, const char *tokenizer,
                        int64_t inter, int steps, int seed, const char *name) {
    char path[1024], seeds[32] = "";
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f,
            "{\"vocab_size\": 135040, \"hidden_size\": 64, \"intermediate_size\": %lld, \"num_hidden_layers\": 2, "
            "\"num_attention_heads\": 4, \"max_position_embeddings\": 256, \"torch_dtype\": \"float32\"}\n",
            (long long)inter);
    if (fclose(f)) return -1;
    if (seed >= 0) snprintf(seeds, sizeof seeds, " --seed %d", seed);
    return yt_sh(out, cap,
                 "export OMP_NUM_THREADS=1; %s init --config %s --out %s/base --tokenizer %s --vocab-from %s "
                 "--prompt-template none%s && %s train --model %s/base --data %s --prompt-template none --output-dir "
                 "%s/%s --full-finetune --max-steps %d --per-device-train-batch-size 5 --learning-rate 1e-2 "
                 "--logging-steps 50 --save-strategy no%s",
                 yt_cli(), path, dir, tokenizer, records, seeds, yt_cli(), dir, records, dir, name, steps, seeds);
}

void yt_need_mpi(void) {
    if (!yf_dist_built_with_mpi()) yt_skip("this build has no MPI (make MPI=0, or mpicc missing): multi-rank tests skipped");
    if (yt_sh(NULL, 0, "command -v mpirun") != 0) yt_skip("mpirun not found (apt-get install openmpi-bin): multi-rank tests skipped");
}

float yt_frand(uint64_t *state) {
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return (float)((x >> 40) * (1.0 / (1 << 23)) - 1.0);
}

float *yt_frand_n(uint64_t *state, int64_t n, float s) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++) p[i] = yt_frand(state) * s;
    return p;
}

double yt_max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > m || isnan(d)) m = isnan(d) ? INFINITY : d;
    }
    return m;
}

double yt_max_abs(const float *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(a[i]) > m) m = fabs(a[i]);
    return m;
}

double yt_st_rel_err(const char *got_path, const char *want_path) {
    yf_table g, w;
    yf_table_init(&g);
    yf_table_init(&w);
    double worst = INFINITY;
    if (yf_st_load(got_path, &g) || yf_st_load(want_path, &w)) {
        fprintf(stderr, "    %s\n", yf_last_error());
        goto out;
    }
    worst = 0;
    if (g.n != w.n || w.n == 0) fprintf(stderr, "    %d tensors, want %d\n", g.n, w.n), worst = INFINITY;
    for (int i = 0; i < w.n && isfinite(worst); i++) {
        const yf_tensor *b = &w.t[i], *a = yf_table_find(&g, b->name);
        if (!a || yf_tensor_numel(a) != yf_tensor_numel(b) || a->dtype != YF_F32) {
            fprintf(stderr, "    tensor %s missing or mis-shaped\n", b->name);
            worst = INFINITY;
            break;
        }
        int64_t n = yf_tensor_numel(b);
        float *bf = malloc((size_t)n * sizeof *bf);
        yf_tensor_to_f32(b, bf);
        double d = yt_max_abs_diff(a->data, bf, (size_t)n), m = yt_max_abs(bf, (size_t)n);
        worst = fmax(worst, d / fmax(m, 1e-30));
        free(bf);
    }
out:
    yf_table_free(&g);
    yf_table_free(&w);
    return worst;
}

static int cmp_case(const void *a, const void *b) {
    const yt_case *x = a, *y = b;
    int c = strcmp(x->file, y->file);
    return c ? c : strcmp(x->name, y->name);
}

/* usage: yuanft-tests [substring filters...]; a filter matches name or file. */
int main(int argc, char **argv) {
    qsort(g_cases, (size_t)g_n, sizeof *g_cases, cmp_case);
    if (!yt_shared() && yt_in_ci())
        fprintf(stderr, "CI=true and %s is absent: every test that needs the golden files FAILS (set YF_SHARED)\n",
                yt_shared_dir());
    int passed = 0, failed = 0, skipped = 0;
    char root[256];
    snprintf(root, sizeof root, "/tmp/yuanft-tests.%d", (int)getpid());
    mkdir(root, 0755);
    for (int i = 0; i < g_n; i++) {
        yt_case *c = &g_cases[i];
        bool match = argc < 2;
        for (int a = 1; a < argc; a++)
            if (strstr(c->name, argv[a]) || strstr(c->file, argv[a])) match = true;
        if (!match) continue;
        fprintf(stderr, "[ RUN  ] %s (%s)\n", c->name, c->file);
        fflush(stderr);
        snprintf(g_tmp, sizeof g_tmp, "%s/%s", root, c->name);
        mkdir(g_tmp, 0755);
        pid_t pid = fork();
        if (pid == 0) {
            g_failures = 0;
            c->fn();
            fflush(stdout);
            fflush(stderr);
            /* _exit skips LeakSanitizer's exit-time check: run it here, so a
             * leak in what the test called fails the test */
            if (yt_leak_check()) {
                fprintf(stderr, "    FAIL: memory leaked (LeakSanitizer report above)\n");
                g_failures++;
            }
            _exit(g_failures ? 1 : 0);
        }
        int st = 0;
        waitpid(pid, &st, 0);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
            passed++;
            fprintf(stderr, "[  OK  ] %s\n", c->name);
        } else if (WIFEXITED(st) && WEXITSTATUS(st) == 77) {
            skipped++;
            fprintf(stderr, "[ SKIP ] %s\n", c->name);
        } else {
            failed++;
            if (WIFSIGNALED(st))
                fprintf(stderr, "[ FAIL ] %s (crashed: signal %d)\n", c->name, WTERMSIG(st));
            else
                fprintf(stderr, "[ FAIL ] %s\n", c->name);
        }
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", root);
    fflush(stderr);
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed ? 1 : 0;
}
