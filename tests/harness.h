/* A tiny test harness: TEST(name) registers a test; the runner forks one
 * process per test (a crash is a failure, not the end of the run) and ends
 * with "N passed, N failed, N skipped". */
#ifndef YF_HARNESS_H
#define YF_HARNESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>

typedef void (*yt_fn)(void);
void yt_register(const char *name, const char *file, yt_fn fn);

#define TEST(name)                                                                   \
    static void name(void);                                                          \
    __attribute__((constructor)) static void yt_reg_##name(void) { yt_register(#name, __FILE__, name); } \
    static void name(void)

/* Records a failure (the test goes on) when cond is false. */
#define CHECK(cond, ...) yt_check((cond), __FILE__, __LINE__, #cond, "" __VA_ARGS__)
void yt_check(bool ok, const char *file, int line, const char *expr, const char *fmt, ...);
/* Numerical check: prints the error seen and the tolerance either way. */
#define CHECK_NEAR(what, err, tol) yt_check_near(__FILE__, __LINE__, (what), (double)(err), (double)(tol))
void yt_check_near(const char *file, int line, const char *what, double err, double tol);
/* Marks the test skipped (with a loud reason) and leaves it. */
void yt_skip(const char *fmt, ...) __attribute__((noreturn));

/* Runs the rest of the test (and the commands it starts) under limits: an
 * address space of mem_mb MiB, secs seconds of CPU time and 2 x secs of wall
 * time. Under AddressSanitizer (whose shadow needs terabytes of address
 * space) the memory limit is ASAN_OPTIONS' hard_rss_limit_mb instead, set by
 * tests/run.sh. A test that runs out is killed: a failure. */
void yt_limit(int64_t mem_mb, int secs);
/* The same limits for a CLI run under yt_sh: "ulimit -v N; timeout ..." to
 * put before the command (empty memory part under ASan); static buffer. */
const char *yt_limit_sh(int64_t mem_mb, int secs);

/* Paths: repo root (cwd of `make test`), ../shared beside it, build dir. */
const char *yt_shared(void);          /* NULL when ../shared is absent */
/* static buffer; when shared is absent the test is skipped, or fails in CI
 * (CI=true), where the golden tests must run */
const char *yt_shared_path(const char *rel);
const char *yt_tmpdir(void);          /* a fresh per-test directory */
const char *yt_cli(void);             /* path to the yuanft binary (YF_CLI env or build/yuanft) */
/* Runs a shell command; returns its exit status; output (stdout+stderr,
 * truncated to cap) into out when out != NULL. */
int yt_sh(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A small Yuan trained from scratch on a records file through the CLI, for
 * tests that need a model whose answers mean something: dir/config.json (the
 * golden tiny model's shapes with FFN width `inter`), `yuanft init` into
 * dir/base with the vocabulary pruned to the records' ids, then full-parameter
 * training (batch 5, learning rate 1e-2, `steps` steps, one thread) into
 * dir/NAME. seed < 0 leaves both commands' default seed. Returns the exit
 * status; out holds the commands' output. */
int yt_train_small_yuan(char *out, size_t cap, const char *dir, const char *records, const char *tokenizer,
                        int64_t inter, int steps, int seed, const char *name);

/* mpirun for this machine: root allowed, more ranks than cores allowed, one
 * OpenMP thread a rank (2 shared cores). Under ASan the ranks check no
 * leaks: Open MPI's plugins leak at exit and are unloaded before
 * LeakSanitizer looks, so their frames cannot be matched by a suppression
 * (docs/reliability.md); single-process runs of the same code are checked.
 * yt_need_mpi skips the test when the build has no MPI or mpirun is missing. */
#define YT_MPIRUN                                                                                                  \
    "env ASAN_OPTIONS=\"$ASAN_OPTIONS:detect_leaks=0\" OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 "                 \
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 "                                       \
    "mpirun --allow-run-as-root --oversubscribe --bind-to none"
void yt_need_mpi(void);

/* Two safetensors files of f32 tensors: max over want's tensors of
 * max|got-want| / max|want| (want may be any float dtype); INFINITY when a
 * file, a tensor or a shape does not match (the reason printed). */
double yt_st_rel_err(const char *got_path, const char *want_path);

/* Max |a-b| and max |b| over n floats. */
double yt_max_abs_diff(const float *a, const float *b, size_t n);
double yt_max_abs(const float *a, size_t n);

/* Uniform floats in [-1, 1) from a xorshift64 stream; each test file keeps
 * its own state, so its data do not depend on the other files. yt_frand_n
 * mallocs n of them times s (at least one element). */
float yt_frand(uint64_t *state);
float *yt_frand_n(uint64_t *state, int64_t n, float s);

#endif
