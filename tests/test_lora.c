/* LoRA / DoRA against the golden PEFT adapters (forward and gradients),
 * adapter files, merge, dropout, and bad adapters. */
#include "harness.h"
#include "model_internal.h"
#include "ops.h"
#include "safetensors.h"
#include "test_model_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int64_t count_scored(const int64_t *labels, int64_t B, int64_t T) {
    int64_t n = 0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 1; t < T; t++) n += labels[b * T + t] != -100;
    return n;
}

/* Forward with the adapter vs forward.safetensors, gradients vs grads.safetensors. */
static void check_golden_adapter(const char *kind, bool ckpt) {
    char rel[128];
    yf_model *m = NULL;
    CHECK_OK(yf_model_load(yt_shared_path("golden/yuan-tiny"), NULL, &m));
    if (!m) return;
    yt_batch bt;
    CHECK_OK(yt_batch_load(&bt, yt_shared_path("golden/yuan-tiny/forward.safetensors")));
    yf_lora lo;
    snprintf(rel, sizeof rel, "golden/yuan-tiny/%s", kind);
    CHECK_OK(yf_lora_load(yt_shared_path(rel), &m->cfg, &lo));
    yf_table fw, gr;
    yf_table_init(&fw);
    yf_table_init(&gr);
    snprintf(rel, sizeof rel, "golden/yuan-tiny/%s/forward.safetensors", kind);
    CHECK_OK(yf_st_load(yt_shared_path(rel), &fw));
    snprintf(rel, sizeof rel, "golden/yuan-tiny/%s/grads.safetensors", kind);
    CHECK_OK(yf_st_load(yt_shared_path(rel), &gr));
    const yf_tensor *ref = yf_table_find(&fw, "logits"), *lref = yf_table_find(&fw, "loss_next_token");
    CHECK(ref && lref);
    if (!ref || !lref || !lo.mods) goto done;

    int64_t n = bt.B * bt.T * m->V;
    float *logits = malloc((size_t)n * sizeof(float));
    double ls;
    int64_t nt;
    CHECK_OK(yf_model_forward(m, &lo, bt.ids, bt.labels, bt.B, bt.T, logits, &ls, &nt));
    CHECK_NEAR("max |logits - reference|", yt_max_abs_diff(logits, ref->data, (size_t)n), 1e-4);
    CHECK_NEAR("|loss - reference|", fabs(ls / nt - ((float *)lref->data)[0]), 1e-5);
    free(logits);

    yf_backward_opts bo = {.loss_scale = 1.0f / (float)count_scored(bt.labels, bt.B, bt.T),
                           .gradient_checkpointing = ckpt};
    yf_lora_alloc_grads(&lo);
    yf_lora_zero_grads(&lo);
    double ls2;
    CHECK_OK(yf_model_forward_backward(m, &lo, bt.ids, bt.labels, bt.B, bt.T, &bo, &ls2, &nt));
    CHECK(fabs(ls2 - ls) < 1e-9 * fabs(ls), "forward_backward loss %.9g differs from forward %.9g", ls2, ls);
    yf_param_list pl;
    yf_lora_params(&lo, &pl);
    CHECK(pl.n == gr.n, "adapter has %d tensors, reference grads %d", pl.n, gr.n);
    double worst = 0;
    for (int i = 0; i < pl.n; i++) {
        const yf_tensor *g = yf_table_find(&gr, pl.p[i].name);
        CHECK(g != NULL, "no reference gradient for %s", pl.p[i].name);
        if (!g || yf_tensor_numel(g) != pl.p[i].numel) continue;
        double rel = yt_max_abs_diff(pl.p[i].g, g->data, (size_t)g->nbytes / 4) / yt_max_abs(g->data, g->nbytes / 4);
        if (rel > worst) worst = rel;
        if (rel > 1e-3) fprintf(stderr, "    %s: relative error %.3g\n", pl.p[i].name, rel);
    }
    CHECK_NEAR("worst per-tensor max|dg|/max|g|", worst, 1e-3);
    free(pl.p);
done:
    yf_table_free(&fw);
    yf_table_free(&gr);
    yf_lora_free(&lo);
    yt_batch_free(&bt);
    yf_model_free(m);
}

TEST(lora_golden_forward_and_grads) { check_golden_adapter("lora", false); }
TEST(lora_golden_grads_checkpointed) { check_golden_adapter("lora", true); }
TEST(dora_golden_forward_and_grads) { check_golden_adapter("dora", false); }
TEST(dora_golden_grads_checkpointed) { check_golden_adapter("dora", true); }
