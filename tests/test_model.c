/* Model forward against the golden reference (shared/golden/yuan-tiny), the
 * loss semantics, the incremental (cached) forward, and bad checkpoints. */
#include "harness.h"
#include "model_internal.h"
#include "safetensors.h"
#include "test_model_util.h"
#include "weights.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Loads a model dir through yf_model_load; the golden batch from forward.safetensors. */
static yf_model *golden_model(const char *rel, bool force_f32) {
    yf_model *m = NULL;
    yf_model_opts o = {.force_f32 = force_f32};
    int rc = yf_model_load(yt_shared_path(rel), &o, &m);
    CHECK(rc == 0, "load %s: %s", rel, yf_last_error());
    return m;
}

static void check_golden_forward(const char *dir, const char *logits_key, const char *loss_key) {
    yf_model *m = golden_model(dir, false);
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
    CHECK(yf_model_forward(m, NULL, bt.ids, bt.labels, bt.B, bt.T, logits, &ls, &nt) == 0, "%s", yf_last_error());
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

TEST(model_golden_fp32_safetensors) {
    check_golden_forward("golden/yuan-tiny", "logits", "loss_next_token");
}

TEST(model_golden_bf16_shards) {
    check_golden_forward("golden/yuan-tiny/bf16", "logits_bf16_weights", "loss_next_token_bf16_weights");
}
