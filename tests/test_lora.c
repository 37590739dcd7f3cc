/* LoRA / DoRA against the golden PEFT adapters (forward and gradients),
 * adapter files, merge, dropout, and bad adapters. */
#include "harness.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/kernels.h"
#include "model/model_internal.h"
#include "model/ops.h"
#include "formats/safetensors.h"
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

/* One forward + backward of the golden batch through the golden bf16 model
 * with pre-packed weights allowed (budget) or not; the adapter gradients
 * into g (concatenated); returns the loss. */
static double packed_run(yf_model *m, yf_lora *lo, const yt_batch *bt, bool ckpt, float *g, int64_t ng) {
    yf_backward_opts bo = {.loss_scale = 1.0f / (float)count_scored(bt->labels, bt->B, bt->T),
                           .gradient_checkpointing = ckpt};
    yf_lora_zero_grads(lo);
    double ls = 0;
    int64_t nt;
    CHECK_OK(yf_model_forward_backward(m, lo, bt->ids, bt->labels, bt->B, bt->T, &bo, &ls, &nt));
    yf_param_list pl;
    yf_lora_params(lo, &pl);
    int64_t o = 0;
    for (int i = 0; i < pl.n && o + pl.p[i].numel <= ng; i++, o += pl.p[i - 1].numel)
        memcpy(g + o, pl.p[i].g, (size_t)pl.p[i].numel * sizeof(float));
    free(pl.p);
    return ls;
}

/* Frozen bf16 weights packed once for the AMX products (and their mapped
 * pages released) give the same loss and gradients bit for bit as packing
 * per product; a second step on the packs too. Both precisions, with and
 * without checkpointing, LoRA and DoRA. The golden batch twice over: its 13
 * scored rows alone are too few for the LM head's pack, and with the pack
 * the bf16 runs hand the head's products packed operands (yf_apk_put_row). */
TEST(lora_packed_weights_same_gradients) {
    if (!yf_kernels_path_supported(YF_KPATH_AMX)) yt_skip("no AMX here: weights are only pre-packed for it");
    yt_batch golden;
    CHECK_OK(yt_batch_load(&golden, yt_shared_path("golden/yuan-tiny/forward.safetensors")));
    int64_t n1 = golden.B * golden.T;
    int64_t *ids2 = malloc((size_t)(2 * n1) * sizeof(int64_t)), *labels2 = malloc((size_t)(2 * n1) * sizeof(int64_t));
    for (int c = 0; c < 2; c++) {
        memcpy(ids2 + c * n1, golden.ids, (size_t)n1 * sizeof(int64_t));
        memcpy(labels2 + c * n1, golden.labels, (size_t)n1 * sizeof(int64_t));
    }
    yt_batch bt = golden;
    bt.ids = ids2, bt.labels = labels2, bt.B = 2 * golden.B;
    CHECK(count_scored(bt.labels, bt.B, bt.T) >= 16, "%lld scored rows: too few for the LM head's pack",
          (long long)count_scored(bt.labels, bt.B, bt.T));
    for (int kind = 0; kind < 2; kind++)
        for (int prec = 0; prec < 2; prec++)
            for (int ckpt = 0; ckpt < 2; ckpt++) {
                yf_kernels_set_precision(prec ? YF_PREC_BF16 : YF_PREC_EXACT);
                yf_model *m[2] = {NULL, NULL};
                yf_lora lo[2];
                float *g[2] = {NULL, NULL};
                double ls[3];
                int64_t ng = 0;
                for (int k = 0; k < 2; k++) {
                    CHECK_OK(yf_model_load(yt_shared_path("golden/yuan-tiny/bf16"), NULL, &m[k]));
                    CHECK_OK(yf_lora_load(yt_shared_path(kind ? "golden/yuan-tiny/dora" : "golden/yuan-tiny/lora"),
                                          &m[k]->cfg, &lo[k]));
                    yf_lora_alloc_grads(&lo[k]);
                    yf_param_list pl;
                    yf_lora_params(&lo[k], &pl);
                    ng = 0;
                    for (int i = 0; i < pl.n; i++) ng += pl.p[i].numel;
                    free(pl.p);
                    g[k] = calloc((size_t)ng * 2, sizeof(float));
                }
                m[0]->pack_budget = 0; /* per product, as without packs */
                ls[0] = packed_run(m[0], &lo[0], &bt, ckpt, g[0], ng);
                ls[1] = packed_run(m[1], &lo[1], &bt, ckpt, g[1], ng);
                CHECK(m[0]->pack_bytes == 0 && m[1]->pack_bytes > 0, "packs made: %zu without, %zu with",
                      m[0]->pack_bytes, m[1]->pack_bytes);
                const yf_layer_w *l1 = &m[1]->layers[m[1]->L - 1]; /* the [out, in, 2, 1] convolutions too */
                CHECK(l1->conv1.pk[YF_PACK_XWT] && l1->conv1.pk[YF_PACK_XW] && l1->conv2.pk[YF_PACK_XWT] &&
                          l1->conv2.pk[YF_PACK_XW],
                      "the last layer's localized filter was not packed");
                ls[2] = packed_run(m[1], &lo[1], &bt, ckpt, g[1] + ng, ng); /* again, weights released */
                CHECK(ls[0] == ls[1] && ls[1] == ls[2], "%s %s ckpt=%d: loss %.17g unpacked, %.17g %.17g packed",
                      kind ? "DoRA" : "LoRA", prec ? "bf16" : "exact", ckpt, ls[0], ls[1], ls[2]);
                CHECK(memcmp(g[0], g[1], (size_t)ng * sizeof(float)) == 0 &&
                          memcmp(g[1], g[1] + ng, (size_t)ng * sizeof(float)) == 0,
                      "%s %s ckpt=%d: gradients differ (max %g, %g)", kind ? "DoRA" : "LoRA", prec ? "bf16" : "exact",
                      ckpt, yt_max_abs_diff(g[0], g[1], (size_t)ng), yt_max_abs_diff(g[1], g[1] + ng, (size_t)ng));
                char what[96];
                snprintf(what, sizeof what, "%s %s ckpt=%d: max |grad packed - per product|", kind ? "DoRA" : "LoRA",
                         prec ? "bf16" : "exact", ckpt);
                CHECK_NEAR(what, yt_max_abs_diff(g[0], g[1], (size_t)ng), 0.0);
                for (int k = 0; k < 2; k++) {
                    free(g[k]);
                    yf_lora_free(&lo[k]);
                    yf_model_free(m[k]);
                }
            }
    yf_kernels_set_precision(YF_PREC_EXACT);
    free(ids2), free(labels2);
    yt_batch_free(&golden);
}

TEST(lora_golden_forward_and_grads) { check_golden_adapter("lora", false); }
TEST(lora_golden_grads_checkpointed) { check_golden_adapter("lora", true); }
TEST(dora_golden_forward_and_grads) { check_golden_adapter("dora", false); }
TEST(dora_golden_grads_checkpointed) { check_golden_adapter("dora", true); }

/* bf16 training runs the LM head a vocabulary block (2048 rows) at a time
 * with an online softmax (model/head.c, head_chunk_blocked) instead of the
 * two-pass softmax over whole rows. With 5000 tokens (three blocks) and 4136
 * (a short last block joined to the one before), and weights large enough
 * that a row's max often moves to a later block, the loss and the LoRA
 * gradients agree with the two-pass head's (also bf16), with and without the
 * head's packs. The gradients differ by the bf16 rounding of the logit
 * gradient, which this sensitive network amplifies: 0.15% and 1.4% of the
 * largest (both routes are 6% and 15% from fp32 here); a missed rescale
 * when the max moves is 15%. With packs (AMX), the blocks after the first
 * are fused (exp(L - m) from the product's blocks, m the first block's max):
 * checked to have run, and without them the packed route gives the same bits
 * as the unpacked one. boost > 1 scales the head's rows past the first block
 * so that some logit exceeds its row's first-block max by more than the
 * fused blocks take (HEAD_EXP_LIM): the chunk is redone unfused (checked to
 * have happened), with the same results. */
/* One forward and backward through m with a fresh adapter of lc (random
 * values from seed) on ids and labels: the loss, and every adapter
 * gradient in parameter order (*ng floats, malloc'd). */
static float *head_run_grads(yf_model *m, const yf_config *cfg, const yf_lora_cfg *lc, uint64_t seed,
                             const int64_t *ids, const int64_t *labels, int64_t B, int64_t T, double *loss,
                             int64_t *ng) {
    yf_lora lo;
    CHECK_OK(yf_lora_create(&lo, cfg, lc));
    yt_randomize_lora(&lo, seed, 0.05f);
    yf_lora_alloc_grads(&lo);
    yf_lora_zero_grads(&lo);
    yf_backward_opts bo = {.loss_scale = 1.0f / (float)count_scored(labels, B, T)};
    int64_t nt;
    CHECK_OK(yf_model_forward_backward(m, &lo, ids, labels, B, T, &bo, loss, &nt));
    yf_param_list pl;
    yf_lora_params(&lo, &pl);
    *ng = 0;
    for (int i = 0; i < pl.n; i++) *ng += pl.p[i].numel;
    float *g = malloc((size_t)*ng * sizeof(float));
    for (int i = 0, o = 0; i < pl.n; o += (int)pl.p[i].numel, i++)
        memcpy(g + o, pl.p[i].g, (size_t)pl.p[i].numel * sizeof(float));
    free(pl.p);
    yf_lora_free(&lo);
    return g;
}

static void check_blocked_head(int64_t V, int64_t B, float boost);
TEST(lora_blocked_head_matches_two_pass_softmax) {
    check_blocked_head(5000, 2, 1); /* blocks of 2048, 2048, 904 */
    check_blocked_head(4136, 2, 1); /* 2048 and 2088: a 40-row tail joins the block before */
    check_blocked_head(4136, 6, 1); /* ~110 scored rows: with 2+ threads, each takes panels of rows on its own */
    check_blocked_head(5000, 2, 8); /* logits far above the first block's: the fused chunk is redone */
}

static void check_blocked_head(int64_t V, int64_t B, float boost) {
    int64_t T = 24;
    yf_config cfg = yt_config(V, 64, 2, 96, 1, 64, false);
    int64_t *ids = malloc((size_t)(B * T) * sizeof(int64_t)), *labels = malloc((size_t)(B * T) * sizeof(int64_t));
    yt_random_batch(ids, labels, B, T, V, 17);
    yf_lora_cfg lc = {.r = 4, .alpha = 8, .dropout = 0, .targets = (1u << YF_NPROJ) - 1};
    enum { RUNS = 4 }; /* two-pass; blocked without packs; with packs (fused); with packs, not fused */
    static const char *names[RUNS] = {"two-pass", "no packs", "packs", "packs, not fused"};
    double loss[RUNS] = {0};
    float *g[RUNS] = {NULL};
    int64_t ng = 0, fused = 0, refits = 0;
    yf_kernels_set_precision(YF_PREC_BF16);
    for (int run = 0; run < RUNS; run++) {
        yf_model *m = yt_random_model(&cfg, 23, YF_BF16, 30.0f, NULL); /* logits spread over tens */
        CHECK(m->head.dt == YF_BF16, "the test model's head is not bf16");
        uint16_t *w = (uint16_t *)m->head.data; /* the test's own random table */
        for (int64_t i = 2048 * cfg.hidden_size; boost != 1 && i < V * cfg.hidden_size; i++)
            w[i] = yf_f32_to_bf16(boost * yf_bf16_to_f32(w[i]));
        m->head_two_pass = run == 0;
        m->head_no_fuse = run == 3;
        if (run == 1) m->pack_budget = 0;
        g[run] = head_run_grads(m, &cfg, &lc, 29, ids, labels, B, T, &loss[run], &ng);
        if (run == 2) fused = m->head_fused, refits = m->head_refits;
        yf_model_free(m);
    }
    yf_kernels_set_precision(YF_PREC_EXACT);
    double gmax = 0;
    for (int64_t i = 0; i < ng; i++) gmax = fmax(gmax, fabs(g[0][i]));
    char what[128];
    for (int run = 1; run < RUNS; run++) {
        snprintf(what, sizeof what, "V %lld B %lld boost %g, blocked head (%s) vs two-pass: |loss difference| / loss",
                 (long long)V, (long long)B, boost, names[run]);
        CHECK_NEAR(what, fabs(loss[run] - loss[0]) / fabs(loss[0]), 1e-5);
        snprintf(what, sizeof what,
                 "V %lld B %lld boost %g, blocked head (%s) vs two-pass: max |grad difference| / max |grad|",
                 (long long)V, (long long)B, boost, names[run]);
        CHECK_NEAR(what, yt_max_abs_diff(g[0], g[run], (size_t)ng) / gmax, 3e-2);
    }
    snprintf(what, sizeof what, "V %lld B %lld boost %g, blocked head: packs, not fused vs no packs, max |grad difference|",
             (long long)V, (long long)B, boost);
    CHECK_NEAR(what, yt_max_abs_diff(g[1], g[3], (size_t)ng), 0.0);
    if (yf_kernels_path() == YF_KPATH_AMX) {
        fprintf(stderr, "    packs: %lld fused blocks, %lld chunks redone unfused\n", (long long)fused,
                (long long)refits);
        CHECK(boost != 1 || fused > 0, "the packed head fused no vocabulary block");
        CHECK(boost == 1 ? refits == 0 : refits > 0, "%lld chunks redone unfused (boost %g)", (long long)refits,
              boost);
    } else {
        fprintf(stderr, "    no AMX: the head's fused blocks are not run here\n");
    }
    for (int run = 0; run < RUNS; run++) free(g[run]);
    free(ids), free(labels);
}

/* Exact mode on the AVX-512 and AVX2 paths takes the blocked head as well
 * (fp32 products either way there): its online softmax must stay at fp32
 * level against the two-pass head, with an f32 and a bf16 head, the max
 * moving to later blocks (weights spread over tens), with and without the
 * head's packs (the same bits). */
static void check_exact_blocked_head(yf_dtype dt, int64_t V, int64_t B);
TEST(lora_exact_blocked_head_matches_two_pass_on_fma) {
    yf_kpath p = yf_kernels_path();
    if (p != YF_KPATH_AVX512 && p != YF_KPATH_AVX2) {
        yt_skip("the exact blocked head runs on the avx512 and avx2 paths only (this: %s)", yf_kpath_name(p));
        return;
    }
    check_exact_blocked_head(YF_F32, 5000, 2);
    check_exact_blocked_head(YF_BF16, 4136, 6);
}

/* A LoRA step on a bf16 model in exact mode and with --bf16: loss and
 * gradients (g[0] exact, g[1] bf16); returns the gradients' count. */
static int64_t bf16_vs_exact(double loss[2], float *g[2]) {
    int64_t B = 2, T = 24, V = 3000, ng[2];
    yf_config cfg = yt_config(V, 64, 2, 96, 1, 64, false);
    int64_t ids[2 * 24], labels[2 * 24];
    yt_random_batch(ids, labels, B, T, V, 41);
    yf_lora_cfg lc = {.r = 4, .alpha = 8, .dropout = 0.1f, .targets = (1u << YF_NPROJ) - 1};
    for (int run = 0; run < 2; run++) {
        yf_kernels_set_precision(run ? YF_PREC_BF16 : YF_PREC_EXACT);
        yf_model *m = yt_random_model(&cfg, 43, YF_BF16, 1.0f, NULL);
        g[run] = head_run_grads(m, &cfg, &lc, 47, ids, labels, B, T, &loss[run], &ng[run]);
        yf_model_free(m);
    }
    yf_kernels_set_precision(YF_PREC_EXACT);
    CHECK(ng[0] == ng[1]);
    return ng[0];
}

/* On the AVX-512 and AVX2 paths without the bf16-pair kernel --bf16
 * computes what exact mode computes (fp32 products, bf16 weights widened
 * exactly; the README says so): a LoRA step on a bf16 model gives the same
 * bits in both precisions. */
TEST(lora_bf16_is_exact_mode_on_fma) {
    yf_kpath p = yf_kernels_path();
    if (p != YF_KPATH_AVX512 && p != YF_KPATH_AVX2) {
        yt_skip("--bf16 rounds activations on the %s path", yf_kpath_name(p));
        return;
    }
    bool was = yf_kernels_set_bf16_dot(false);
    double loss[2];
    float *g[2];
    int64_t ng = bf16_vs_exact(loss, g);
    yf_kernels_set_bf16_dot(was);
    CHECK(loss[0] == loss[1], "%s: loss %.9g with --bf16, %.9g exact", yf_kpath_name(p), loss[1], loss[0]);
    CHECK_NEAR("--bf16 vs exact on the FMA path: max |grad difference|", yt_max_abs_diff(g[0], g[1], (size_t)ng), 0.0);
    free(g[0]), free(g[1]);
}

/* With the bf16-pair kernel (AVX512-BF16) --bf16 rounds the products'
 * operands as AMX's bf16 mode does: the step's loss and gradients stay
 * within bf16 tolerances of exact mode's (loss 1e-3 relative; gradients 3e-2
 * of the largest), and differ from them (the kernel ran). */
TEST(lora_bf16_pairs_near_exact_mode) {
    if (yf_kernels_path() != YF_KPATH_AVX512 || !yf_cpu()->avx512_bf16) {
        yt_skip("the bf16-pair kernel needs the avx512 path and AVX512-BF16 (this: %s)",
                yf_kpath_name(yf_kernels_path()));
        return;
    }
    bool was = yf_kernels_set_bf16_dot(true);
    double loss[2];
    float *g[2];
    int64_t ng = bf16_vs_exact(loss, g);
    yf_kernels_set_bf16_dot(was);
    double gmax = 0;
    for (int64_t i = 0; i < ng; i++) gmax = fmax(gmax, fabs(g[0][i]));
    double eg = yt_max_abs_diff(g[0], g[1], (size_t)ng) / gmax;
    CHECK(loss[0] != loss[1] || eg > 0, "--bf16 gave exact mode's bits: the pair kernel did not run");
    CHECK_NEAR("--bf16 (bf16 pairs) vs exact: |loss difference| / loss", fabs(loss[1] - loss[0]) / loss[0], 1e-3);
    CHECK_NEAR("--bf16 (bf16 pairs) vs exact: max |grad difference| / max |grad|", eg, 3e-2);
    free(g[0]), free(g[1]);
}

static void check_exact_blocked_head(yf_dtype dt, int64_t V, int64_t B) {
    int64_t T = 24;
    yf_config cfg = yt_config(V, 64, 2, 96, 1, 64, false);
    int64_t *ids = malloc((size_t)(B * T) * sizeof(int64_t)), *labels = malloc((size_t)(B * T) * sizeof(int64_t));
    yt_random_batch(ids, labels, B, T, V, 19);
    yf_lora_cfg lc = {.r = 4, .alpha = 8, .dropout = 0, .targets = (1u << YF_NPROJ) - 1};
    enum { RUNS = 3 }; /* two-pass; blocked without packs; blocked with packs */
    double loss[RUNS] = {0};
    float *g[RUNS] = {NULL};
    int64_t ng = 0;
    CHECK(yf_kernels_precision() == YF_PREC_EXACT, "the tests run in exact mode");
    for (int run = 0; run < RUNS; run++) {
        yf_model *m = yt_random_model(&cfg, 31, dt, 30.0f, NULL);
        m->head_two_pass = run == 0;
        if (run == 1) m->pack_budget = 0;
        g[run] = head_run_grads(m, &cfg, &lc, 37, ids, labels, B, T, &loss[run], &ng);
        yf_model_free(m);
    }
    double gmax = 0;
    for (int64_t i = 0; i < ng; i++) gmax = fmax(gmax, fabs(g[0][i]));
    char what[160];
    /* fp32 rounding of a sum over 5000 exps and of the rescaled U, amplified
     * by the network as in the bf16 test (there 1.4e-2 for bf16 roundings) */
    snprintf(what, sizeof what, "%s head V %lld B %lld, exact blocked vs two-pass: |loss difference| / loss",
             dt == YF_F32 ? "f32" : "bf16", (long long)V, (long long)B);
    CHECK_NEAR(what, fabs(loss[1] - loss[0]) / fabs(loss[0]), 1e-6);
    snprintf(what, sizeof what, "%s head V %lld B %lld, exact blocked vs two-pass: max |grad difference| / max |grad|",
             dt == YF_F32 ? "f32" : "bf16", (long long)V, (long long)B);
    CHECK_NEAR(what, yt_max_abs_diff(g[0], g[1], (size_t)ng) / gmax, 1e-4);
    snprintf(what, sizeof what, "%s head V %lld B %lld, exact blocked: packs vs no packs, max |grad difference|",
             dt == YF_F32 ? "f32" : "bf16", (long long)V, (long long)B);
    CHECK_NEAR(what, yt_max_abs_diff(g[1], g[2], (size_t)ng), 0.0);
    CHECK(loss[1] == loss[2], "exact blocked head: loss with packs %.9g, without %.9g", loss[2], loss[1]);
    /* the blocked route ran: its other order of sums leaves different last bits */
    CHECK(loss[1] != loss[0] || yt_max_abs_diff(g[0], g[1], (size_t)ng) > 0,
          "exact mode took the two-pass head here too (the same bits)");
    for (int run = 0; run < RUNS; run++) free(g[run]);
    free(ids), free(labels);
}

/* ---- dropout ----------------------------------------------------------------------- */

/* With A = B = identity (r = D, alpha = r: scaling 1) the branch output of
 * q_proj, y - W x, is exactly the dropped-out input x'. */
TEST(lora_dropout_branch_statistics) {
    int64_t D = 16, B = 4, T = 32, N = B * T;
    yf_config cfg = yt_config(19, D, 2, 24, 1, 64, true);
    yf_model *m = yt_random_model(&cfg, 61, YF_F32, 1.0f, NULL);
    yf_lora lo;
    float p = 0.25f;
    yf_lora_cfg lc = {.r = (int)D, .alpha = (float)D, .dropout = p, .targets = 1u << YF_Q};
    CHECK_OK(yf_lora_create(&lo, &cfg, &lc));
    yf_lora_mod *md = yf_lora_get(&lo, 0, YF_Q);
    for (int64_t i = 0; i < D; i++) md->A[i * D + i] = md->B[i * D + i] = 1;
    float *x = malloc((size_t)(N * D) * sizeof(float)), *y = malloc((size_t)(N * D) * sizeof(float));
    float *wx = malloc((size_t)(N * D) * sizeof(float));
    for (int64_t i = 0; i < N * D; i++) x[i] = 1.0f + (float)(i % 7);
    yf_rng rng;
    yf_rng_seed(&rng, 5);
    int64_t start[128] = {0};
    yf_run r;
    yf_run_init(&r, m, &lo, B, T, 0, start, &rng, false);
    yf_linear_fwd(&r, 0, YF_Q, x, y);
    yf_run_free(&r);
    yf_run_init(&r, m, NULL, B, T, 0, start, NULL, false);
    yf_linear_fwd(&r, 0, YF_Q, x, wx);
    yf_run_free(&r);
    int64_t zeros = 0, bad = 0;
    for (int64_t i = 0; i < N * D; i++) {
        float br = y[i] - wx[i];
        if (fabsf(br) < 1e-4f) zeros++;
        else if (fabsf(br - x[i] / (1 - p)) > 1e-4f * x[i]) bad++;
    }
    double rate = (double)zeros / (double)(N * D), sigma = sqrt(p * (1 - p) / (double)(N * D));
    fprintf(stderr, "    dropped fraction %.4f (p = %.2f, sigma %.4f)\n", rate, p, sigma);
    CHECK_NEAR("|dropped fraction - p| in standard deviations", fabs(rate - p) / sigma, 4.5);
    CHECK(bad == 0, "%lld kept inputs are not scaled by 1/(1-p)", (long long)bad);
    /* eval (no rng): no dropout at all */
    yf_run_init(&r, m, &lo, B, T, 0, start, NULL, false);
    yf_linear_fwd(&r, 0, YF_Q, x, y);
    yf_run_free(&r);
    double e = 0;
    for (int64_t i = 0; i < N * D; i++) e = fmax(e, fabs(y[i] - wx[i] - x[i]));
    CHECK_NEAR("no dropout without an rng: branch = x", e, 1e-4);
    free(x), free(y), free(wx);
    yf_lora_free(&lo);
    yf_model_free(m);
}

/* Dropout acts on the adapter branch only: with B = 0 (fresh init) the loss
 * with dropout is the loss without; with B != 0 it differs, reproducibly. */
TEST(lora_dropout_only_on_branch) {
    yf_config cfg = yt_config(29, 16, 4, 24, 2, 64, true);
    yf_model *m = yt_random_model(&cfg, 71, YF_BF16, 1.0f, NULL);
    yf_lora lo;
    yf_lora_cfg lc = {.r = 4, .alpha = 8, .dropout = 0.5f, .targets = (1u << YF_NPROJ) - 1};
    CHECK_OK(yf_lora_create(&lo, &cfg, &lc));
    yf_rng rng;
    yf_rng_seed(&rng, 1);
    CHECK_OK(yf_lora_init(&lo, yf_model_config(m), yf_model_tensors(m), &rng));
    int64_t B = 2, T = 16, ids[32], labels[32];
    yt_random_batch(ids, labels, B, T, cfg.vocab_size, 72);
    double l0, l1, l2, l3;
    CHECK_OK(yf_model_forward(m, &lo, ids, labels, B, T, NULL, &l0, NULL));
    yf_backward_opts bo = {.loss_scale = 1, .dropout_rng = &rng};
    CHECK_OK(yf_model_forward_backward(m, &lo, ids, labels, B, T, &bo, &l1, NULL));
    CHECK(l0 == l1, "B = 0: dropout changed the loss (%.9g vs %.9g)", l0, l1);
    yt_randomize_lora(&lo, 73, 0.5f);
    CHECK_OK(yf_model_forward(m, &lo, ids, labels, B, T, NULL, &l0, NULL));
    yf_rng_seed(&rng, 2);
    CHECK_OK(yf_model_forward_backward(m, &lo, ids, labels, B, T, &bo, &l1, NULL));
    yf_rng_seed(&rng, 2);
    CHECK_OK(yf_model_forward_backward(m, &lo, ids, labels, B, T, &bo, &l2, NULL));
    CHECK_OK(yf_model_forward_backward(m, &lo, ids, labels, B, T, &bo, &l3, NULL));
    CHECK(l1 != l0, "dropout had no effect on a non-zero adapter");
    CHECK(l1 == l2, "the same rng state must give the same masks");
    CHECK(l3 != l2, "a new rng state must give new masks");
    yf_lora_free(&lo);
    yf_model_free(m);
}

/* ---- init, files, parameters -------------------------------------------------------- */

TEST(lora_init_and_trainable_count_yuan2b) {
    /* Yuan2-2B shapes, r = 8, the seven projections: PEFT reports 9,043,968 trainable */
    yf_config cfg = yt_config(135040, 2048, 32, 8192, 24, 4096, true);
    yf_lora lo;
    yf_lora_cfg lc = {.r = 8, .alpha = 32, .dropout = 0.1f, .targets = (1u << YF_NPROJ) - 1};
    CHECK_OK(yf_lora_create(&lo, &cfg, &lc));
    yf_param_list pl;
    yf_lora_params(&lo, &pl);
    int64_t n = 0;
    for (int i = 0; i < pl.n; i++) n += pl.p[i].numel;
    CHECK(n == 9043968, "trainable %lld", (long long)n);
    CHECK(pl.n == 24 * 7 * 2);
    CHECK(!strcmp(pl.p[0].name, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"), "%s", pl.p[0].name);
    CHECK(!strcmp(pl.p[13].name, "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight"), "%s", pl.p[13].name);
    CHECK(fabsf(lo.scaling - 4.0f) < 1e-7f);
    free(pl.p);
    yf_lora_free(&lo);
    lc.use_rslora = true;
    CHECK_OK(yf_lora_create(&lo, &cfg, &lc));
    CHECK(fabsf(lo.scaling - 32.0f / sqrtf(8.0f)) < 1e-6f, "rslora scaling %g", lo.scaling);
    yf_lora_free(&lo);
}

TEST(lora_init_peft) {
    yf_config cfg = yt_config(29, 16, 4, 24, 2, 64, true);
    yf_model *m = yt_random_model(&cfg, 81, YF_BF16, 1.0f, NULL);
    yf_lora lo;
    yf_lora_cfg lc = {.r = 4, .alpha = 8, .use_dora = true, .targets = (1u << YF_NPROJ) - 1};
    CHECK_OK(yf_lora_create(&lo, &cfg, &lc));
    yf_rng rng;
    yf_rng_seed(&rng, 3);
    CHECK_OK(yf_lora_init(&lo, yf_model_config(m), yf_model_tensors(m), &rng));
    yf_lora_mod *md = yf_lora_get(&lo, 1, YF_DOWN);
    float amax = 0;
    for (int64_t i = 0; i < 4 * md->in; i++) amax = fmaxf(amax, fabsf(md->A[i]));
    CHECK(amax <= 1 / sqrtf((float)md->in) && amax > 0.8f / sqrtf((float)md->in), "A bound %g", amax);
    CHECK(yt_max_abs(md->B, (size_t)(md->out * 4)) == 0, "B must start at zero");
    const yf_mw *w = yf_model_proj(m, 1, YF_DOWN);
    double ss = 0;
    for (int64_t i = 0; i < md->in; i++) {
        double v = yf_bf16_to_f32(((const uint16_t *)w->data)[i]);
        ss += v * v;
    }
    CHECK_NEAR("DoRA m[0] - ||W[0,:]||", fabs(md->m[0] - sqrt(ss)), 1e-6);
    /* a fresh adapter does not change the model */
    int64_t ids[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    double a, b;
    CHECK_OK(yf_model_forward(m, NULL, ids, ids, 1, 10, NULL, &a, NULL));
    CHECK_OK(yf_model_forward(m, &lo, ids, ids, 1, 10, NULL, &b, NULL));
    CHECK_NEAR("loss(fresh DoRA) - loss(base)", fabs(a - b), 1e-5 * a);
    yf_lora_free(&lo);
    yf_model_free(m);
}

TEST(lora_save_load_round_trip) {
    yf_config cfg = yt_config(29, 16, 4, 24, 2, 64, true);
    yf_lora lo, back;
    yf_lora_cfg lc = {.r = 3, .alpha = 7, .dropout = 0.05f, .use_rslora = true, .use_dora = true,
                      .targets = (1u << YF_K) | (1u << YF_GATE)};
    CHECK_OK(yf_lora_create(&lo, &cfg, &lc));
    yt_randomize_lora(&lo, 91, 1);
    char dir[600];
    snprintf(dir, sizeof dir, "%s/adapter", yt_tmpdir());
    CHECK_OK(yf_lora_save(&lo, dir, "some/base"));
    CHECK_OK(yf_lora_load(dir, &cfg, &back));
    if (!back.mods) return;
    CHECK(back.cfg.r == 3 && back.cfg.alpha == 7 && fabsf(back.cfg.dropout - 0.05f) < 1e-7f && back.cfg.use_rslora &&
          back.cfg.use_dora && back.cfg.targets == lc.targets);
    CHECK(back.store.n == lo.store.n);
    for (int i = 0; i < lo.store.n && i < back.store.n; i++) {
        const yf_tensor *t = yf_table_find(&back.store, lo.store.t[i].name);
        CHECK(t && memcmp(t->data, lo.store.t[i].data, t->nbytes) == 0, "%s", lo.store.t[i].name);
    }
    char out[4096];
    yt_sh(out, sizeof out, "cat '%s/adapter_config.json'", dir);
    CHECK(strstr(out, "\"peft_type\": \"LORA\"") && strstr(out, "\"task_type\": \"CAUSAL_LM\"") &&
          strstr(out, "\"base_model_name_or_path\": \"some/base\""), "%s", out);
    yf_lora_free(&lo);
    yf_lora_free(&back);
}

/* ---- merge ---------------------------------------------------------------------------- */

static void merge_equals_adapter(const yf_config *cfg, bool dora, uint64_t seed, const char *what) {
    yf_table tab;
    yt_random_table(cfg, seed, YF_F32, 1.0f, &tab);
    yf_table copy;
    yt_random_table(cfg, seed, YF_F32, 1.0f, &copy);
    yf_model *base = NULL, *merged = NULL;
    CHECK_OK(yf_model_from_table(cfg, &tab, NULL, "base", &base));
    yf_lora lo;
    yf_lora_cfg lc = {.r = 4, .alpha = 6, .use_dora = dora, .targets = (1u << YF_NPROJ) - 1};
    CHECK_OK(yf_lora_create(&lo, cfg, &lc));
    yt_randomize_lora(&lo, seed + 1, 0.05f);
    CHECK_OK(yf_lora_merge_table(&lo, cfg, &copy));
    CHECK_OK(yf_model_from_table(cfg, &copy, NULL, "merged", &merged));
    if (!base || !merged) return;
    int64_t B = 2, T = 13, ids[26], labels[26], V = cfg->vocab_size;
    yt_random_batch(ids, labels, B, T, V, seed + 2);
    float *a = malloc((size_t)(B * T * V) * sizeof(float)), *b = malloc((size_t)(B * T * V) * sizeof(float));
    CHECK_OK(yf_model_forward(base, &lo, ids, NULL, B, T, a, NULL, NULL));
    CHECK_OK(yf_model_forward(merged, NULL, ids, NULL, B, T, b, NULL, NULL));
    CHECK_NEAR(what, yt_max_abs_diff(a, b, (size_t)(B * T * V)) / yt_max_abs(a, (size_t)(B * T * V)), 1e-5);
    free(a);
    free(b);
    yf_lora_free(&lo);
    yf_model_free(base);
    yf_model_free(merged);
}

TEST(lora_merge_equals_adapter) {
    yf_config c1 = yt_config(29, 16, 4, 24, 2, 64, true);
    merge_equals_adapter(&c1, false, 100, "LoRA: max|logits(merged) - logits(base+adapter)| / max|logits|");
    yf_config c2 = yt_config(31, 24, 3, 40, 3, 64, false);
    merge_equals_adapter(&c2, true, 200, "DoRA (D=24 H=3 L=3): relative max|logits(merged) - logits(adapter)|");
}

/* ---- bad adapters -------------------------------------------------------------------- */

TEST(lora_bad_targets_and_rank) {
    unsigned mask;
    CHECK(yf_lora_parse_targets("q_proj, lf_gate", &mask) != 0);
    CHECK(strstr(yf_last_error(), "lf_gate") != NULL, "%s", yf_last_error());
    CHECK_OK(yf_lora_parse_targets("q_proj,v_proj", &mask));
    CHECK(mask == ((1u << YF_Q) | (1u << YF_V)));
    CHECK_OK(yf_lora_parse_targets("all-linear", &mask));
    CHECK(mask == (1u << YF_NPROJ) - 1);
    yf_config cfg = yt_config(29, 16, 4, 24, 2, 64, true);
    yf_lora lo;
    yf_lora_cfg lc = {.r = 0, .alpha = 8, .targets = 1};
    CHECK(yf_lora_create(&lo, &cfg, &lc) != 0);
    CHECK(strstr(yf_last_error(), "r must be") != NULL, "%s", yf_last_error());
}

/* Writes an adapter dir with the given config JSON and the golden adapter's tensors. */
static const char *adapter_with_config(const char *json) {
    static char dir[700];
    char src[1024];
    snprintf(src, sizeof src, "%s", yt_shared_path("golden/yuan-tiny/lora/adapter_model.safetensors"));
    snprintf(dir, sizeof dir, "%s/ad", yt_tmpdir());
    yt_sh(NULL, 0, "mkdir -p '%s' && cp '%s' '%s/' && chmod u+w '%s/adapter_model.safetensors'", dir, src, dir, dir);
    char *p = yf_path_join(dir, "adapter_config.json");
    yf_write_file_atomic(p, json, strlen(json));
    free(p);
    return dir;
}

TEST(lora_bad_adapter_config) {
    yf_config cfg;
    CHECK_OK(yf_config_load(yt_shared_path("golden/yuan-tiny/config.json"), &cfg));
    yf_lora lo;
    const char *d = adapter_with_config("{\"r\": 0, \"lora_alpha\": 8, \"target_modules\": [\"q_proj\"]}");
    CHECK(yf_lora_load(d, &cfg, &lo) != 0);
    CHECK(strstr(yf_last_error(), "r must be") != NULL, "%s", yf_last_error());
    d = adapter_with_config("{\"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"q_proj\", \"conv1\"]}");
    CHECK(yf_lora_load(d, &cfg, &lo) != 0);
    CHECK(strstr(yf_last_error(), "unknown target module 'conv1'") != NULL, "%s", yf_last_error());
    /* fewer targets than the file holds: the extra tensors are reported */
    d = adapter_with_config("{\"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"q_proj\"]}");
    CHECK(yf_lora_load(d, &cfg, &lo) != 0);
    CHECK(strstr(yf_last_error(), "unexpected tensor") != NULL, "%s", yf_last_error());
    /* DoRA claimed but no magnitude vectors: a missing tensor */
    d = adapter_with_config("{\"r\": 4, \"lora_alpha\": 8, \"use_dora\": true, \"target_modules\": \"all-linear\"}");
    CHECK(yf_lora_load(d, &cfg, &lo) != 0);
    CHECK(strstr(yf_last_error(), "lora_magnitude_vector is missing") != NULL, "%s", yf_last_error());
    /* wrong rank: shapes do not fit */
    d = adapter_with_config("{\"r\": 8, \"lora_alpha\": 8, \"target_modules\": \"all-linear\"}");
    CHECK(yf_lora_load(d, &cfg, &lo) != 0);
    CHECK(strstr(yf_last_error(), "[4, 64]") && strstr(yf_last_error(), "does not fit"), "%s", yf_last_error());
    d = adapter_with_config("[1, 2]");
    CHECK(yf_lora_load(d, &cfg, &lo) != 0);
    d = adapter_with_config("{\"r\": 4, \"lora_alpha\": 8, \"target_modules\": \"all-linear\"}");
    CHECK_OK(yf_lora_load(d, &cfg, &lo));
    yf_lora_free(&lo);
}

/* A rank from adapter_config.json sizes every adapter buffer: r = 1,000,000
 * on the tiny model would be gigabytes before the tensors are even read. */
TEST(lora_bad_rank_bounded) {
    const char *d = adapter_with_config("{\"r\": 1000000, \"lora_alpha\": 8, \"target_modules\": [\"q_proj\"]}");
    yt_limit(1024, 20);
    yf_config cfg;
    CHECK_OK(yf_config_load(yt_shared_path("golden/yuan-tiny/config.json"), &cfg));
    yf_lora lo;
    CHECK(yf_lora_load(d, &cfg, &lo) != 0);
    CHECK(strstr(yf_last_error(), "smaller side") != NULL, "%s", yf_last_error());
    /* r within min(in, out) but more than the file holds */
    d = adapter_with_config("{\"r\": 64, \"lora_alpha\": 8, \"target_modules\": \"all-linear\"}");
    CHECK(yf_lora_load(d, &cfg, &lo) != 0);
    CHECK(strstr(yf_last_error(), "needs at least") != NULL, "%s", yf_last_error());
    /* the CLI: one line, exit 1 */
    d = adapter_with_config("{\"r\": 1000000, \"lora_alpha\": 8, \"target_modules\": [\"q_proj\"]}");
    char out[4096];
    int rc = yt_sh(out, sizeof out, "%s %s generate --model %s --adapter %s --prompt-ids 1,2 --max-new-tokens 1",
                   yt_limit_sh(1024, 20), yt_cli(), yt_shared_path("golden/yuan-tiny"), d);
    CHECK(rc == 1 && strstr(out, "smaller side"), "exit %d: %s", rc, out);
}

TEST(lora_bad_adapter_for_other_model) {
    /* the golden adapter (D=64, L=2) against a model with D=32, and one with L=3 */
    yf_config small = yt_config(320, 32, 4, 96, 2, 256, true);
    yf_lora lo;
    CHECK(yf_lora_load(yt_shared_path("golden/yuan-tiny/lora"), &small, &lo) != 0);
    CHECK(strstr(yf_last_error(), "does not fit") != NULL, "%s", yf_last_error());
    yf_config deep = yt_config(320, 64, 4, 96, 3, 256, true);
    CHECK(yf_lora_load(yt_shared_path("golden/yuan-tiny/lora"), &deep, &lo) != 0);
    CHECK(strstr(yf_last_error(), "layers.2.") && strstr(yf_last_error(), "missing"), "%s", yf_last_error());
    /* an adapter created for one config used with a model of another */
    yf_config shallow = yt_config(320, 64, 4, 96, 1, 256, true);
    yf_model *m = NULL;
    CHECK_OK(yf_model_load(yt_shared_path("golden/yuan-tiny"), NULL, &m));
    yf_lora_cfg lc = {.r = 2, .alpha = 2, .targets = 1};
    CHECK_OK(yf_lora_create(&lo, &shallow, &lc));
    int64_t ids[3] = {1, 2, 3};
    CHECK(yf_model_forward(m, &lo, ids, NULL, 1, 3, NULL, NULL, NULL) != 0);
    CHECK(strstr(yf_last_error(), "1 layers but the model has 2") != NULL, "%s", yf_last_error());
    yf_lora_free(&lo);
    yf_model_free(m);
}

/* ---- the CLI: score and merge ---------------------------------------------------------- */

static double file_max_diff(const char *path, const char *key, const char *refpath, const char *refkey, bool rel) {
    yf_table a, b;
    yf_table_init(&a);
    yf_table_init(&b);
    double d = INFINITY;
    if (yf_st_load(path, &a) == 0 && yf_st_load(refpath, &b) == 0) {
        const yf_tensor *x = yf_table_find(&a, key), *y = yf_table_find(&b, refkey);
        if (x && y && x->nbytes == y->nbytes && x->dtype == YF_F32) {
            d = yt_max_abs_diff(x->data, y->data, x->nbytes / 4);
            if (rel) d /= yt_max_abs(y->data, y->nbytes / 4);
        }
    }
    yf_table_free(&a);
    yf_table_free(&b);
    return d;
}

static void cli_golden_score(const char *kind) {
    char g[600], out[700], gr[700], msg[4096], ref[800];
    snprintf(g, sizeof g, "%s", yt_shared_path("golden/yuan-tiny"));
    snprintf(out, sizeof out, "%s/out.safetensors", yt_tmpdir());
    snprintf(gr, sizeof gr, "%s/grads.safetensors", yt_tmpdir());
    int rc = yt_sh(msg, sizeof msg,
                   "%s score --model %s --adapter %s/%s --input %s/forward.safetensors --output-file %s --grads %s", yt_cli(),
                   g, g, kind, g, out, gr);
    CHECK(rc == 0, "score failed: %s", msg);
    CHECK(strstr(msg, "peak RSS") != NULL, "score must print its peak RSS: %s", msg);
    snprintf(ref, sizeof ref, "%s/%s/forward.safetensors", g, kind);
    CHECK_NEAR("score: max |logits - reference|", file_max_diff(out, "logits", ref, "logits", false), 1e-4);
    CHECK_NEAR("score: |loss - reference|", file_max_diff(out, "loss", ref, "loss_next_token", false), 1e-5);
    snprintf(ref, sizeof ref, "%s/%s/grads.safetensors", g, kind);
    yf_table a, b;
    yf_table_init(&a);
    yf_table_init(&b);
    CHECK_OK(yf_st_load(gr, &a));
    CHECK_OK(yf_st_load(ref, &b));
    CHECK(a.n == b.n, "%d gradient tensors, reference %d", a.n, b.n);
    double worst = 0;
    for (int i = 0; i < b.n; i++) {
        const yf_tensor *x = yf_table_find(&a, b.t[i].name);
        CHECK(x != NULL, "score --grads lacks %s", b.t[i].name);
        if (x && x->nbytes == b.t[i].nbytes)
            worst = fmax(worst, yt_max_abs_diff(x->data, b.t[i].data, x->nbytes / 4) / yt_max_abs(b.t[i].data, x->nbytes / 4));
    }
    CHECK_NEAR("score --grads: worst max|dg|/max|g| per tensor", worst, 1e-3);
    yf_table_free(&a);
    yf_table_free(&b);
    /* determinism: the same command writes the same bytes */
    rc = yt_sh(msg, sizeof msg,
               "%s score --model %s --adapter %s/%s --input %s/forward.safetensors --output-file %s.2 --grads %s.2 "
               "&& cmp %s %s.2 && cmp %s %s.2", yt_cli(), g, g, kind, g, out, gr, out, out, gr, gr);
    CHECK(rc == 0, "two score runs differ: %s", msg);
}

TEST(cli_score_lora_golden) { cli_golden_score("lora"); }
TEST(cli_score_dora_golden) { cli_golden_score("dora"); }

TEST(cli_merge_golden) {
    const char *kinds[2] = {"lora", "dora"};
    for (int k = 0; k < 2; k++) {
        char g[600], dir[700], out[800], msg[4096], ref[800];
        snprintf(g, sizeof g, "%s", yt_shared_path("golden/yuan-tiny"));
        snprintf(dir, sizeof dir, "%s/merged-%s", yt_tmpdir(), kinds[k]);
        snprintf(out, sizeof out, "%s/out.safetensors", dir);
        int rc = yt_sh(msg, sizeof msg, "%s merge --model %s --adapter %s/%s --output-dir %s && %s score --model %s --input "
                       "%s/forward.safetensors --output-file %s", yt_cli(), g, g, kinds[k], dir, yt_cli(), dir, g, out);
        CHECK(rc == 0, "merge + score failed: %s", msg);
        snprintf(ref, sizeof ref, "%s/%s/forward.safetensors", g, kinds[k]);
        char what[128];
        snprintf(what, sizeof what, "%s merged: max |logits - logits(base + adapter)|", kinds[k]);
        CHECK_NEAR(what, file_max_diff(out, "logits", ref, "logits", false), 1e-4);
    }
    /* a bf16 base stays bf16 */
    char g[600], dir[700], msg[4096];
    snprintf(g, sizeof g, "%s", yt_shared_path("golden/yuan-tiny"));
    snprintf(dir, sizeof dir, "%s/merged-bf16", yt_tmpdir());
    CHECK(yt_sh(msg, sizeof msg, "%s merge --model %s/bf16 --adapter %s/lora --output-dir %s", yt_cli(), g, g, dir) == 0, "%s",
          msg);
    yf_model *m = NULL;
    CHECK_OK(yf_model_load(dir, NULL, &m));
    if (m) CHECK(m->layers[1].proj[YF_DOWN].dt == YF_BF16, "merged weights must keep the base dtype");
    yf_model_free(m);
}

TEST(cli_score_merge_bad_arguments) {
    char msg[4096], g[600];
    snprintf(g, sizeof g, "%s", yt_shared_path("golden/yuan-tiny"));
    CHECK(yt_sh(msg, sizeof msg, "%s score --model %s", yt_cli(), g) == 2, "missing --input: %s", msg);
    CHECK(yt_sh(msg, sizeof msg, "%s score --model %s --input %s/forward.safetensors --grads x", yt_cli(), g, g) == 2,
          "--grads without --adapter: %s", msg);
    CHECK(yt_sh(msg, sizeof msg, "%s score --model %s --input %s/lora/forward.safetensors", yt_cli(), g, g) == 1, "%s", msg);
    CHECK(strstr(msg, "input_ids") != NULL, "a batch without input_ids must be named: %s", msg);
    CHECK(yt_sh(msg, sizeof msg, "%s score --model %s/lora --input %s/forward.safetensors", yt_cli(), g, g) == 1, "%s", msg);
    CHECK(yt_sh(msg, sizeof msg, "%s merge --model %s --adapter %s --output-dir %s/m", yt_cli(), g, g, yt_tmpdir()) == 1,
          "a model dir is not an adapter: %s", msg);
    CHECK(strstr(msg, "adapter_config.json") != NULL, "%s", msg);
    CHECK(yt_sh(msg, sizeof msg, "%s merge --model %s --adapter %s/lora", yt_cli(), g, g) == 2, "missing --output-dir: %s", msg);
}
