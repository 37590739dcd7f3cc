/* The harness and tests/run.sh themselves: in CI (CI=true) a missing shared
 * folder fails the run; elsewhere the golden tests are skipped. */
#include "harness.h"

#include <string.h>
#include <unistd.h>

/* A test that reads a golden file (yt_shared_path) and nothing else. */
#define GOLDEN_TEST "params_yuan2b_lora_r8_seven_projections"

TEST(harness_ci_fails_golden_tests_without_shared) {
    char exe[1024], out[8192];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    CHECK(n > 0);
    if (n <= 0) return;
    exe[n] = 0;
    int rc = yt_sh(out, sizeof out, "CI=true YF_SHARED=%s/none '%s' " GOLDEN_TEST, yt_tmpdir(), exe);
    CHECK(rc == 1 && strstr(out, "0 passed, 1 failed, 0 skipped") && strstr(out, "CI=true and "), "exit %d:\n%s", rc, out);
    rc = yt_sh(out, sizeof out, "env -u CI YF_SHARED=%s/none '%s' " GOLDEN_TEST, yt_tmpdir(), exe);
    CHECK(rc == 0 && strstr(out, "0 passed, 0 failed, 1 skipped"), "outside CI: exit %d:\n%s", rc, out);
    /* run.sh stops before running anything */
    rc = yt_sh(out, sizeof out, "CI=true YF_SHARED=%s/none sh tests/run.sh " GOLDEN_TEST, yt_tmpdir());
    CHECK(rc == 1 && strstr(out, "ERROR: CI=true and ") && !strstr(out, "[ RUN  ]"), "run.sh: exit %d:\n%s", rc, out);
}
