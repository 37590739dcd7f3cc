/* Model forward against the golden reference (shared/golden/yuan-tiny), the
 * loss semantics, the incremental (cached) forward, and bad checkpoints. */
#include "harness.h"
#include "model_internal.h"
#include "safetensors.h"
#include "test_model_util.h"
#include "weights.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Loads a model dir through yf_model_load; the golden batch from forward.safetensors. */
static yf_model *golden_model(const char *rel, bool force_f32) {
    yf_model *m = NULL;
    yf_model_opts o = {.force_f32 = force_f32};
    int rc = yf_model_load(yt_shared_path(rel), &o, &m);
    CHECK(rc == 0, "load %s: %s", rel, rc ? yf_last_error() : "");
    return m;
}

static void check_golden_forward_at(const char *path, const char *logits_key, const char *loss_key) {
    yf_model *m = NULL;
    int rc = yf_model_load(path, NULL, &m);
    CHECK(rc == 0, "load %s: %s", path, rc ? yf_last_error() : "");
    if (!m) return;
    yt_batch bt;
    if (yt_batch_load(&bt, yt_shared_path("golden/yuan-tiny/forward.safetensors")) != 0) {
        CHECK(0, "%s", yf_last_error());
        yf_model_free(m);
        return;
    }
    int64_t V = m->V;
    float *logits = malloc((size_t)(bt.B * bt.T * V) * sizeof(float));
    double ls;
    int64_t nt;
    CHECK_OK(yf_model_forward(m, NULL, bt.ids, bt.labels, bt.B, bt.T, logits, &ls, &nt));
    const yf_tensor *ref = yf_table_find(&bt.tab, logits_key);
    const yf_tensor *lref = yf_table_find(&bt.tab, loss_key);
    const yf_tensor *unsh = yf_table_find(&bt.tab, "loss_unshifted");
    CHECK(ref && lref && unsh);
    if (ref && lref && unsh) {
        CHECK(yf_tensor_numel(ref) == bt.B * bt.T * V);
        CHECK_NEAR("max |logits - reference|", yt_max_abs_diff(logits, ref->data, (size_t)(bt.B * bt.T * V)), 1e-4);
        double loss = ls / (double)nt, want = ((float *)lref->data)[0];
        CHECK_NEAR("|loss - reference|", fabs(loss - want), 1e-5);
        double u = ((float *)unsh->data)[0];
        CHECK(fabs(loss - u) > 1e-3, "loss %.6f equals the unshifted loss %.6f: labels are not shifted", loss, u);
    }
    free(logits);
    yt_batch_free(&bt);
    yf_model_free(m);
}

static void check_golden_forward(const char *rel, const char *logits_key, const char *loss_key) {
    char path[800];
    snprintf(path, sizeof path, "%s", yt_shared_path(rel));
    check_golden_forward_at(path, logits_key, loss_key);
}

TEST(model_golden_fp32_safetensors) {
    check_golden_forward("golden/yuan-tiny", "logits", "loss_next_token");
}

TEST(model_golden_bf16_shards) {
    check_golden_forward("golden/yuan-tiny/bf16", "logits_bf16_weights", "loss_next_token_bf16_weights");
}

/* A directory holding only config.json and pytorch_model.bin (links to the golden ones). */
static const char *bin_only_dir(const char *rel) {
    static char dir[700];
    char src[PATH_MAX];
    if (!realpath(yt_shared_path(rel), src)) yt_skip("cannot resolve %s", rel); /* links must be absolute */
    snprintf(dir, sizeof dir, "%s/bin", yt_tmpdir());
    CHECK(yt_sh(NULL, 0, "mkdir -p '%s' && ln -sf '%s/config.json' '%s/pytorch_model.bin' '%s/'", dir, src, src, dir) == 0);
    return dir;
}

static void check_bin(const char *rel, const char *logits_key, const char *loss_key) {
    check_golden_forward_at(bin_only_dir(rel), logits_key, loss_key);
}

TEST(model_golden_fp32_pytorch_bin) {
    check_bin("golden/yuan-tiny", "logits", "loss_next_token");
}

TEST(model_golden_bf16_pytorch_bin) {
    check_bin("golden/yuan-tiny/bf16", "logits_bf16_weights", "loss_next_token_bf16_weights");
}

/* bf16 weights converted to f32 at load give the same numbers */
TEST(model_golden_bf16_force_f32) {
    yf_model *m = golden_model("golden/yuan-tiny/bf16", true);
    if (!m) return;
    CHECK(m->layers[0].proj[YF_Q].dt == YF_F32);
    yf_model_free(m);
    check_golden_forward("golden/yuan-tiny/bf16", "logits_bf16_weights", "loss_next_token_bf16_weights");
}
