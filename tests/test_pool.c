/* The thread rule (base/pool.h): a pure decision from measured numbers, the
 * measurement itself, and the note the CLI prints when it lowers the count. */
#include "harness.h"
#include "base/pool.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

TEST(pool_thread_rule_uses_the_cores_left_free) {
    static const struct { int want; double ncpu, busy; int use; } cases[] = {
        {2, 2, 0.0, 2},    /* idle: every thread */
        {2, 2, -0.05, 2},  /* noise below zero after our own time is taken off */
        {2, 2, 0.4, 2},    /* a light background process: 1.6 cores free rounds to 2 */
        {2, 2, 0.6, 1},    /* 1.4 free: one thread */
        {2, 2, 1.0, 1},    /* one busy process on a 2-core box */
        {2, 2, 3.5, 1},    /* oversubscribed: still one */
        {16, 16, 4.0, 12}, /* only what is free */
        {16, 16, 0.3, 16},
        {4, 16, 8.0, 4},   /* enough free for what was asked */
        {1, 8, 0.0, 1},    /* one wanted: one */
        {0, 8, 0.0, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int got = yf_par_threads_for_load(cases[i].want, cases[i].ncpu, cases[i].busy);
        CHECK(got == cases[i].use, "want %d, %g CPUs, %g busy: %d threads, expected %d", cases[i].want, cases[i].ncpu,
              cases[i].busy, got, cases[i].use);
    }
}

/* A child spinning on one core is seen as (about) one busy CPU; this
 * process's own spinning is not counted. Other load on the machine can only
 * raise what is seen, so only lower bounds and the CPU count are checked. */
TEST(pool_measure_load_sees_other_processes_not_itself) {
    double ncpu = 0, busy = -1;
    CHECK(yf_par_measure_load(0.05, &ncpu, &busy) == 0);
    CHECK(ncpu >= 1 && busy <= ncpu + 0.2, "%g busy of %g CPUs", busy, ncpu);
    pid_t pid = fork();
    if (pid == 0) {
        alarm(3); /* never outlives the test */
        for (volatile unsigned long k = 0;; k++) {}
    }
    usleep(50000);
    CHECK(yf_par_measure_load(0.2, &ncpu, &busy) == 0);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    CHECK(busy >= 0.6, "a spinning child: %g busy of %g CPUs", busy, ncpu);
}

/* End to end: with every core taken by a spinning process, a command that
 * runs the model says it uses one thread; with OMP_NUM_THREADS set it
 * measures nothing and says nothing. */
TEST(pool_thread_rule_cli_note_when_cores_busy) {
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu < 2 || ncpu > 64) yt_skip("%ld CPUs: the rule only lowers a count above 1 (and 64 spinners is too many)", ncpu);
    const char *g = yt_shared_path("golden/yuan-tiny");
    char out[16384];
    int rc = yt_sh(out, sizeof out,
                   "p=''; for i in $(seq %ld); do timeout 10 sh -c 'while :; do :; done' >/dev/null 2>&1 & p=\"$p $!\"; done; "
                   "sleep 0.2; env -u OMP_NUM_THREADS %s score --model %s --input %s/forward.safetensors; r=$?; kill $p; exit $r",
                   ncpu, yt_cli(), g, g);
    CHECK(rc == 0 && strstr(out, "other processes are using") && strstr(out, ": 1 thread instead of"), "exit %d:\n%s", rc,
          out);
    rc = yt_sh(out, sizeof out, "OMP_NUM_THREADS=2 %s score --model %s --input %s/forward.safetensors", yt_cli(), g, g);
    CHECK(rc == 0 && !strstr(out, "other processes"), "exit %d:\n%s", rc, out);
}
