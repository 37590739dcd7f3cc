/* Model forward against the golden reference (shared/golden/yuan-tiny), the
 * loss semantics, the incremental (cached) forward, and bad checkpoints. */
#include "harness.h"
#include "model/model_internal.h"
#include "formats/safetensors.h"
#include "test_model_util.h"
#include "formats/weights.h"

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

/* ---- the incremental (cached) path equals the full forward ------------------------- */

static void chunked_vs_full(yf_model *m, const int64_t *ids, int64_t B, int64_t T, const int64_t *cuts, int ncuts,
                            double tol, const char *what) {
    int64_t V = m->V;
    float *full = malloc((size_t)(B * T * V) * sizeof(float)), *inc = malloc((size_t)(B * T * V) * sizeof(float));
    CHECK_OK(yf_model_forward(m, NULL, ids, NULL, B, T, full, NULL, NULL));
    yf_layer_state *st = yf_layer_states_alloc(m, B, T);
    int64_t *docs = calloc((size_t)B, sizeof(int64_t));
    int64_t pos = 0;
    for (int c = 0; c <= ncuts; c++) {
        int64_t end = c < ncuts ? cuts[c] : T, n = end - pos;
        int64_t *cid = malloc((size_t)(B * n) * sizeof(int64_t));
        float *lg = malloc((size_t)(B * n * V) * sizeof(float));
        for (int64_t b = 0; b < B; b++) memcpy(cid + b * n, ids + b * T + pos, (size_t)n * sizeof(int64_t));
        CHECK_OK(yf_model_forward_chunk(m, NULL, st, pos, docs, cid, B, n, lg));
        for (int64_t b = 0; b < B; b++)
            memcpy(inc + (b * T + pos) * V, lg + b * n * V, (size_t)(n * V) * sizeof(float));
        free(cid);
        free(lg);
        pos = end;
    }
    CHECK_NEAR(what, yt_max_abs_diff(full, inc, (size_t)(B * T * V)), tol);
    yf_layer_states_free(st, m);
    free(docs);
    free(full);
    free(inc);
}

TEST(model_cached_chunks_equal_full_forward) {
    yf_config cfg = yt_config(41, 24, 3, 40, 3, 64, true);
    yf_model *m = yt_random_model(&cfg, 31, YF_BF16, 6.0f, NULL);
    CHECK(m != NULL);
    if (!m) return;
    int64_t B = 2, T = 19, ids[38], labels[38];
    yt_random_batch(ids, labels, B, T, cfg.vocab_size, 32);
    int64_t cuts[] = {1, 5, 6, 7, 12};
    chunked_vs_full(m, ids, B, T, cuts, 5, 1e-4, "max |logits(chunks 1,4,1,1,5,7) - logits(full)|");
    yf_model_free(m);
}

TEST(model_golden_generate_cached) {
    yf_model *m = golden_model("golden/yuan-tiny", false);
    if (!m) return;
    yf_table t;
    yf_table_init(&t);
    CHECK_OK(yf_st_load(yt_shared_path("golden/yuan-tiny/generate.safetensors"), &t));
    const yf_tensor *ids = yf_table_find(&t, "ids"), *ref = yf_table_find(&t, "logits_full_forward");
    CHECK(ids && ref && ids->shape[1] == 17);
    if (ids && ref) {
        int64_t T = ids->shape[1], V = m->V;
        float *full = malloc((size_t)(T * V) * sizeof(float));
        CHECK_OK(yf_model_forward(m, NULL, ids->data, NULL, 1, T, full, NULL, NULL));
        CHECK_NEAR("full forward vs logits_full_forward", yt_max_abs_diff(full, ref->data, (size_t)(T * V)), 1e-4);
        /* the prompt (5 tokens) at once, then one token at a time, greedy */
        int64_t cuts[12];
        for (int i = 0; i < 12; i++) cuts[i] = 5 + i;
        chunked_vs_full(m, ids->data, 1, T, cuts, 12, 1e-4, "cached decoding vs full forward");
        const int64_t *id = ids->data;
        int ok = 1;
        for (int64_t t = 4; t + 1 < T; t++) { /* greedy: the argmax at t is the token at t+1 */
            int64_t best = 0;
            for (int64_t v = 1; v < V; v++)
                if (full[t * V + v] > full[t * V + best]) best = v;
            ok &= best == id[t + 1];
        }
        CHECK(ok, "greedy argmax of the full forward must reproduce the golden continuation");
        free(full);
    }
    yf_table_free(&t);
    yf_model_free(m);
}

/* ---- determinism, tied-head variants ---------------------------------------------- */

TEST(model_forward_deterministic) {
    yf_config cfg = yt_config(37, 16, 2, 24, 2, 64, true);
    yf_model *m = yt_random_model(&cfg, 41, YF_BF16, 1.0f, NULL);
    int64_t B = 3, T = 17, ids[51], labels[51];
    yt_random_batch(ids, labels, B, T, cfg.vocab_size, 42);
    float *a = malloc(51 * 37 * sizeof(float)), *b = malloc(51 * 37 * sizeof(float));
    double la, lb;
    int64_t na, nb;
    CHECK_OK(yf_model_forward(m, NULL, ids, labels, B, T, a, &la, &na));
    CHECK_OK(yf_model_forward(m, NULL, ids, labels, B, T, b, &lb, &nb));
    CHECK(memcmp(a, b, 51 * 37 * sizeof(float)) == 0 && la == lb && na == nb, "two forwards differ");
    /* the loss without logits (the chunked, scored-rows-only head) is the same number */
    double lc;
    CHECK_OK(yf_model_forward(m, NULL, ids, labels, B, T, NULL, &lc, &nb));
    CHECK_NEAR("|loss(no logits) - loss(logits)| / loss", fabs(lc - la) / la, 1e-6);
    free(a);
    free(b);
    yf_model_free(m);
}

/* Builds a model from a golden-shaped random table after edit(tab); returns load rc. */
static int load_edited(const yf_config *cfg, void (*edit)(yf_table *), yf_model **m) {
    yf_table tab;
    yt_random_table(cfg, 51, YF_F32, 1.0f, &tab);
    if (edit) edit(&tab);
    return yf_model_from_table(cfg, &tab, NULL, "test-model", m);
}

static void add_lm_head(yf_table *t) {
    yf_tensor *e = yf_table_find(t, "model.embed_tokens.weight");
    yf_table_add(t, "lm_head.weight", e->dtype, e->ndim, e->shape, e->data);
}
static void rename_embed_to_head(yf_table *t) {
    yf_tensor *e = yf_table_find(t, "model.embed_tokens.weight");
    free(e->name);
    e->name = yf_strdup("lm_head.weight");
}

TEST(model_tied_head_variants) {
    yf_config cfg = yt_config(19, 8, 2, 12, 1, 16, true);
    int64_t ids[6] = {1, 5, 3, 7, 2, 9}, labels[6] = {1, 5, 3, 7, 2, 9};
    double l[3];
    void (*edits[3])(yf_table *) = {NULL, add_lm_head, rename_embed_to_head};
    for (int i = 0; i < 3; i++) {
        yf_model *m = NULL;
        CHECK_OK(load_edited(&cfg, edits[i], &m));
        if (!m) return;
        CHECK_OK(yf_model_forward(m, NULL, ids, labels, 1, 6, NULL, &l[i], NULL));
        yf_model_free(m);
    }
    CHECK(l[0] == l[1] && l[0] == l[2], "embed only %.9g, both %.9g, lm_head only %.9g", l[0], l[1], l[2]);
}

/* ---- bad checkpoints and inputs ------------------------------------------------------ */

static void drop_q_proj(yf_table *t) {
    yf_tensor *e = yf_table_find(t, "model.layers.0.self_attn.q_proj.weight");
    free(e->name);
    e->name = yf_strdup("model.layers.0.self_attn.q_proj.weight.renamed");
}
static void drop_lm_head(yf_table *t) {
    yf_tensor *e = yf_table_find(t, "lm_head.weight");
    free(e->name);
    e->name = yf_strdup("lm_head.weight.renamed");
}
static void bad_conv_shape(yf_table *t) {
    yf_tensor *e = yf_table_find(t, "model.layers.0.self_attn.lf_gate.conv1.weight");
    e->shape[1] /= 2;
    e->shape[2] *= 2;
}
static void int_norm(yf_table *t) { yf_table_find(t, "model.norm.weight")->dtype = YF_I32; }

TEST(model_bad_checkpoint_missing_tensor) {
    yf_config cfg = yt_config(19, 8, 2, 12, 1, 16, true);
    yf_model *m = NULL;
    CHECK(load_edited(&cfg, drop_q_proj, &m) != 0 && m == NULL);
    CHECK(strstr(yf_last_error(), "model.layers.0.self_attn.q_proj.weight") && strstr(yf_last_error(), "missing"),
          "message: %s", yf_last_error());
    yf_config untied = yt_config(19, 8, 2, 12, 1, 16, false);
    CHECK(load_edited(&untied, drop_lm_head, &m) != 0);
    CHECK(strstr(yf_last_error(), "lm_head.weight") != NULL, "untied without lm_head: %s", yf_last_error());
}

TEST(model_bad_checkpoint_wrong_shape_or_dtype) {
    yf_config cfg = yt_config(19, 8, 2, 12, 1, 16, true);
    yf_model *m = NULL;
    CHECK(load_edited(&cfg, bad_conv_shape, &m) != 0);
    CHECK(strstr(yf_last_error(), "lf_gate.conv1.weight") && strstr(yf_last_error(), "[4, 4, 4, 1]"), "message: %s",
          yf_last_error());
    CHECK(load_edited(&cfg, int_norm, &m) != 0);
    CHECK(strstr(yf_last_error(), "model.norm.weight") != NULL, "message: %s", yf_last_error());
    /* a config that does not match the weights */
    yf_config other = yt_config(19, 16, 2, 12, 1, 16, true);
    yf_table tab;
    yt_random_table(&cfg, 51, YF_F32, 1.0f, &tab);
    CHECK(yf_model_from_table(&other, &tab, NULL, "test-model", &m) != 0);
    CHECK(strstr(yf_last_error(), "model.embed_tokens.weight") != NULL, "message: %s", yf_last_error());
}

TEST(model_bad_inputs) {
    yf_config cfg = yt_config(19, 8, 2, 12, 1, 16, true);
    yf_model *m = NULL;
    CHECK_OK(load_edited(&cfg, NULL, &m));
    if (!m) return;
    int64_t ids[4] = {1, 2, 19, 3}, labels[4] = {1, 2, 3, -5}, ok_ids[4] = {1, 2, 3, 4};
    CHECK(yf_model_forward(m, NULL, ids, NULL, 1, 4, NULL, NULL, NULL) != 0);
    CHECK(strstr(yf_last_error(), "input_ids[0][2] = 19") != NULL, "%s", yf_last_error());
    CHECK(yf_model_forward(m, NULL, ok_ids, labels, 1, 4, NULL, NULL, NULL) != 0);
    CHECK(strstr(yf_last_error(), "labels[0][3] = -5") != NULL, "%s", yf_last_error());
    int64_t *longer = calloc(17, sizeof(int64_t));
    CHECK(yf_model_forward(m, NULL, longer, NULL, 1, 17, NULL, NULL, NULL) != 0);
    CHECK(strstr(yf_last_error(), "max_position_embeddings") != NULL, "%s", yf_last_error());
    free(longer);
    yf_model_free(m);
}

/* ---- full fine-tuning: a step, then save and reload ------------------------------------ */

TEST(model_full_finetune_step_save_reload) {
    yf_model_opts o = {.full_finetune = true};
    yf_model *m = NULL;
    CHECK_OK(yf_model_load(yt_shared_path("golden/yuan-tiny/bf16"), &o, &m));
    if (!m) return;
    yt_batch bt;
    CHECK_OK(yt_batch_load(&bt, yt_shared_path("golden/yuan-tiny/forward.safetensors")));
    yf_param_list pl;
    yf_model_params(m, &pl);
    CHECK(pl.n == 1 + 14 * 2 + 1, "%d parameters (tied head counted once)", pl.n);
    double l0, l1;
    int64_t nt;
    yf_backward_opts bo = {.loss_scale = 1.0f / 13};
    CHECK_OK(yf_model_forward_backward(m, NULL, bt.ids, bt.labels, bt.B, bt.T, &bo, &l0, &nt));
    for (int i = 0; i < pl.n; i++)
        for (int64_t k = 0; k < pl.p[i].numel; k++) pl.p[i].w[k] -= 0.05f * pl.p[i].g[k];
    CHECK_OK(yf_model_forward(m, NULL, bt.ids, bt.labels, bt.B, bt.T, NULL, &l1, &nt));
    CHECK(l1 < l0, "a gradient step must lower the loss (%.6f -> %.6f)", l0 / nt, l1 / nt);
    int64_t n = bt.B * bt.T * m->V;
    float *a = malloc((size_t)n * sizeof(float)), *b = malloc((size_t)n * sizeof(float));
    CHECK_OK(yf_model_forward(m, NULL, bt.ids, NULL, bt.B, bt.T, a, NULL, NULL));
    char dir[600];
    snprintf(dir, sizeof dir, "%s/saved-f32", yt_tmpdir());
    CHECK_OK(yf_model_save(m, dir, YF_F32));
    yf_model *r = NULL;
    CHECK_OK(yf_model_load(dir, NULL, &r));
    if (r) {
        CHECK_OK(yf_model_forward(r, NULL, bt.ids, NULL, bt.B, bt.T, b, NULL, NULL));
        CHECK_NEAR("f32 save/reload: max |logits - logits before|", yt_max_abs_diff(a, b, (size_t)n), 0);
        yf_model_free(r);
    }
    snprintf(dir, sizeof dir, "%s/saved-bf16", yt_tmpdir());
    CHECK_OK(yf_model_save(m, dir, YF_DTYPE_COUNT)); /* the checkpoint's dtype: bf16 */
    CHECK_OK(yf_model_load(dir, NULL, &r));
    if (r) {
        CHECK(r->layers[0].proj[YF_Q].dt == YF_BF16 && !strcmp(r->cfg.torch_dtype, "bfloat16"));
        CHECK_OK(yf_model_forward(r, NULL, bt.ids, NULL, bt.B, bt.T, b, NULL, NULL));
        CHECK_NEAR("bf16 save/reload: max |logits - logits before| (bf16 rounding)", yt_max_abs_diff(a, b, (size_t)n), 0.1);
        yf_model_free(r);
    }
    free(a);
    free(b);
    free(pl.p);
    yt_batch_free(&bt);
    yf_model_free(m);
}
