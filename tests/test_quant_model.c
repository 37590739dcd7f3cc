/* A model loaded with quantized weights (yf_model_opts.quant) against the
 * same model built from the dequantized weights in fp32 (yf_table_dequantized,
 * the reference): logits of the full forward and of cached decoding, LoRA and
 * DoRA gradients (QLoRA: exact for the quantized W), DoRA's initial
 * magnitudes, the group fallback, saving; and the CLI: train over a q4
 * base, merge into the dequantized weights, bad flags. Golden tiny model
 * (shared/golden/yuan-tiny: D 64, I 96, V 320). Tolerances: fp32 summation
 * order only, on logits of order 1-10 and gradients relative to their
 * largest element. */
#include "harness.h"
#include "formats/checkpoint.h"
#include "formats/safetensors.h"
#include "model/model_internal.h"
#include "test_model_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *golden(void) { return yt_shared_path("golden/yuan-tiny"); }

/* The golden model quantized at load (q), and built from its weights
 * quantized and dequantized to fp32 (ref). */
static void load_pair(const yf_model_opts *o, yf_model **q, yf_model **ref) {
    *q = *ref = NULL;
    CHECK_OK(yf_model_load(golden(), o, q));
    yf_config cfg;
    yf_table tab;
    yf_table_init(&tab);
    CHECK_OK(yf_checkpoint_open(golden(), &cfg, &tab));
    CHECK_OK(yf_table_dequantized(&cfg, &tab, o)); /* F32: exact */
    CHECK_OK(yf_model_from_table(&cfg, &tab, NULL, "dequantized golden", ref));
}

static const yf_model_opts variants[] = {
    {.quant = {YF_QT_INT8, 0, false}},
    {.quant = {YF_QT_Q4, 32, false}},
    {.quant = {YF_QT_Q4, 32, false}, .quantize_head = true},
    {.quant = {YF_QT_INT8, 0, false}, .quantize_head = true},
    {.quant = {YF_QT_Q4, 64, true}}, /* down_proj (K 96) falls back to groups of 32 */
};
enum { NVAR = sizeof variants / sizeof *variants };

static const char *vname(const yf_model_opts *o, char *buf, size_t cap) {
    char sb[64];
    snprintf(buf, cap, "%s%s", yf_qspec_str(&o->quant, sb, sizeof sb), o->quantize_head ? " + head" : "");
    return buf;
}

TEST(quant_model_forward_matches_dequantized) {
    yt_batch bt;
    CHECK_OK(yt_batch_load(&bt, yt_shared_path("golden/yuan-tiny/forward.safetensors")));
    const yf_tensor *want = yf_table_find(&bt.tab, "logits");
    for (int v = 0; v < NVAR; v++) {
        yf_model *q, *ref;
        load_pair(&variants[v], &q, &ref);
        if (!q || !ref) continue;
        size_t n = (size_t)(bt.B * bt.T * q->V);
        float *lq = malloc(n * sizeof(float)), *lr = malloc(n * sizeof(float));
        double sq, sr;
        int64_t nt;
        CHECK_OK(yf_model_forward(q, NULL, bt.ids, bt.labels, bt.B, bt.T, lq, &sq, &nt));
        CHECK_OK(yf_model_forward(ref, NULL, bt.ids, bt.labels, bt.B, bt.T, lr, &sr, &nt));
        char what[256], vb[96];
        snprintf(what, sizeof what, "%s: max |logits - dequantized fp32 model's|", vname(&variants[v], vb, sizeof vb));
        CHECK_NEAR(what, yt_max_abs_diff(lq, lr, n), 1e-4);
        /* and the weights were quantized: the logits moved from the fp32 model's */
        CHECK(want && yt_max_abs_diff(lq, want->data, n) > 1e-3, "%s: logits equal the unquantized model's", vb);
        CHECK(q->layers[0].proj[YF_Q].dt == YF_QMAT && q->layers[1].ln1.dt == YF_F32 &&
                  q->layers[1].conv1.dt == YF_F32,
              "projections quantized, norms and convolutions not");
        CHECK((q->head.dt == YF_QMAT) == variants[v].quantize_head, "head quantized only with quantize_head");
        free(lq), free(lr);
        yf_model_free(q);
        yf_model_free(ref);
    }
    yt_batch_free(&bt);
}

/* prefill of 5 positions for 2 sequences, then single-token steps: the
 * decode products read W in registers (1 and 2 rows) */
TEST(quant_model_cached_decode_matches_dequantized) {
    const int64_t B = 2, P = 5, S = 4;
    for (int v = 0; v < NVAR; v++) {
        yf_model *m[2];
        load_pair(&variants[v], &m[0], &m[1]);
        if (!m[0] || !m[1]) continue;
        int64_t V = m[0]->V;
        float *lg[2] = {malloc((size_t)(B * P * V) * sizeof(float)), malloc((size_t)(B * P * V) * sizeof(float))};
        double worst = 0;
        for (int b1 = 0; b1 < 2; b1++) { /* batch of 2, then one sequence */
            int64_t nb = b1 ? 1 : B;
            yf_layer_state *st[2];
            int64_t doc[2][2] = {{0, 0}, {0, 0}}, ids[2 * 5];
            for (int64_t i = 0; i < nb * P; i++) ids[i] = 5 + (i * 37) % 300;
            for (int k = 0; k < 2; k++) {
                st[k] = yf_layer_states_alloc(m[k], nb, P + S);
                CHECK_OK(yf_model_forward_chunk(m[k], NULL, st[k], 0, doc[k], ids, nb, P, lg[k]));
            }
            worst = fmax(worst, yt_max_abs_diff(lg[0], lg[1], (size_t)(nb * P * V)));
            for (int64_t s = 0; s < S; s++) {
                int64_t step[2] = {7 + s, 100 + s};
                for (int k = 0; k < 2; k++) CHECK_OK(yf_model_forward_chunk(m[k], NULL, st[k], P + s, doc[k], step, nb, 1, lg[k]));
                worst = fmax(worst, yt_max_abs_diff(lg[0], lg[1], (size_t)(nb * V)));
            }
            for (int k = 0; k < 2; k++) yf_layer_states_free(st[k], m[k]);
        }
        char what[256], vb[96];
        snprintf(what, sizeof what, "%s: cached decode, max |logits - dequantized fp32 model's|",
                 vname(&variants[v], vb, sizeof vb));
        CHECK_NEAR(what, worst, 1e-4);
        free(lg[0]), free(lg[1]);
        yf_model_free(m[0]);
        yf_model_free(m[1]);
    }
}

/* int8 activations (--int8-activations): every quantized weight takes them,
 * a stored model's too; decoding then moves from the exact quantized
 * model's logits by the rounding of x only (a few rows: the products of up
 * to 32 rows take them, so the 10-row prefill too) */
static void int8_act_model(yf_qtype t) {
    const int64_t B = 2, P = 5, S = 4;
    yf_model_opts o = {.quant = {t, 32, false}, .quantize_head = true}, oa = o;
    oa.int8_act = true;
    const char *tn = yf_qtype_name(t);
    yf_model *m[2] = {NULL, NULL};
    CHECK_OK(yf_model_load(golden(), &oa, &m[0]));
    CHECK_OK(yf_model_load(golden(), &o, &m[1]));
    if (!m[0] || !m[1]) return;
    const yf_qmat *qd = m[0]->layers[1].proj[YF_DOWN].data, *qh = m[0]->head.data;
    CHECK(((const yf_qmat *)m[0]->layers[0].proj[YF_Q].data)->int8_act && qh->int8_act &&
              !((const yf_qmat *)m[1]->layers[0].proj[YF_Q].data)->int8_act,
          "%s: the weights of the model loaded with int8_act take it, the other model's not", tn);
    CHECK(qd->type == t && qd->int8_act, "%s: down_proj (K 96) too", tn);
    int64_t V = m[0]->V;
    float *lg[2] = {malloc((size_t)(B * P * V) * sizeof(float)), malloc((size_t)(B * P * V) * sizeof(float))};
    yf_layer_state *st[2];
    int64_t doc[2][2] = {{0, 0}, {0, 0}}, ids[2 * 5];
    for (int64_t i = 0; i < B * P; i++) ids[i] = 5 + (i * 37) % 300;
    double worst = 0, mag = 0;
    for (int k = 0; k < 2; k++) {
        st[k] = yf_layer_states_alloc(m[k], B, P + S);
        CHECK_OK(yf_model_forward_chunk(m[k], NULL, st[k], 0, doc[k], ids, B, P, lg[k]));
    }
    worst = yt_max_abs_diff(lg[0], lg[1], (size_t)(B * P * V));
    mag = yt_max_abs(lg[1], (size_t)(B * P * V));
    for (int64_t s = 0; s < S; s++) {
        int64_t step[2] = {7 + s, 100 + s};
        for (int k = 0; k < 2; k++) CHECK_OK(yf_model_forward_chunk(m[k], NULL, st[k], P + s, doc[k], step, B, 1, lg[k]));
        worst = fmax(worst, yt_max_abs_diff(lg[0], lg[1], (size_t)(B * V)));
        mag = fmax(mag, yt_max_abs(lg[1], (size_t)(B * V)));
    }
    CHECK(worst > 0, "%s: int8 activations changed no logit: the integer products did not run", tn);
    /* a sanity bound, not a derived one: the rounding carried through the layers of this random model
     * measured 1.7e-2 of the largest logit for q4, 2.2e-2 for int8 (KL: bench-quant-quality) */
    char what[128];
    snprintf(what, sizeof what, "%s + head, int8 activations: max |logits - exact model's| / max |logit|", tn);
    CHECK_NEAR(what, worst / mag, 5e-2);
    for (int k = 0; k < 2; k++) yf_layer_states_free(st[k], m[k]);
    yf_model_free(m[1]);
    /* a directory stored quantized, loaded with int8_act */
    char dir[700];
    snprintf(dir, sizeof dir, "%s/stored-int8act-%s", yt_tmpdir(), tn);
    CHECK_OK(yf_model_save_quantized(m[0], dir, golden()));
    yf_model_opts so = {.int8_act = true};
    yf_model *sm = NULL;
    CHECK_OK(yf_model_load(dir, &so, &sm));
    CHECK(sm && ((const yf_qmat *)sm->layers[0].proj[YF_Q].data)->int8_act, "%s: a stored model takes int8_act", tn);
    yf_model_free(sm);
    yf_model_free(m[0]);
    free(lg[0]), free(lg[1]);
}

TEST(quant_model_int8_activations) {
    int8_act_model(YF_QT_Q4);
    int8_act_model(YF_QT_INT8);
}

/* adapter gradients over the quantized base equal those over the dequantized
 * fp32 base (the golden LoRA and DoRA adapters, with and without
 * checkpointing, in exact and in bf16 precision: the latter takes the LM
 * head's loss a vocabulary block at a time, through row slices of W). The
 * bf16-pair kernel stays off: it rounds the operands of the packed products
 * only, and the golden batch's 5-32 rows take the few-row quantized kernels
 * (fp32) on one side and packed products on the other. */
static void grads_vs_dequantized(const char *kind) {
    yt_batch bt;
    CHECK_OK(yt_batch_load(&bt, yt_shared_path("golden/yuan-tiny/forward.safetensors")));
    char ad[700];
    snprintf(ad, sizeof ad, "%s/%s", golden(), kind);
    bool was = yf_kernels_set_bf16_dot(false);
    for (int v = 0; v < NVAR; v++)
        for (int ckpt = 0; ckpt < 2; ckpt++) {
            yf_kernels_set_precision(ckpt ? YF_PREC_BF16 : YF_PREC_EXACT);
            yf_model *m[2];
            load_pair(&variants[v], &m[0], &m[1]);
            if (!m[0] || !m[1]) continue;
            yf_lora lo[2];
            double ls[2];
            for (int k = 0; k < 2; k++) {
                CHECK_OK(yf_lora_load(ad, &m[k]->cfg, &lo[k]));
                yf_lora_alloc_grads(&lo[k]);
                yf_backward_opts bo = {.loss_scale = 0.1f, .gradient_checkpointing = ckpt};
                int64_t nt;
                CHECK_OK(yf_model_forward_backward(m[k], &lo[k], bt.ids, bt.labels, bt.B, bt.T, &bo, &ls[k], &nt));
            }
            yf_param_list p0, p1;
            yf_lora_params(&lo[0], &p0);
            yf_lora_params(&lo[1], &p1);
            double worst = 0;
            for (int i = 0; i < p0.n && i < p1.n; i++) {
                double mag = yt_max_abs(p1.p[i].g, (size_t)p1.p[i].numel);
                double e = yt_max_abs_diff(p0.p[i].g, p1.p[i].g, (size_t)p0.p[i].numel) / (mag > 0 ? mag : 1);
                worst = fmax(worst, e);
            }
            char what[256], vb[96];
            snprintf(what, sizeof what, "%s %s ckpt=%d %s: worst per-tensor max|dg| / max|g| vs the dequantized base",
                     kind, vname(&variants[v], vb, sizeof vb), ckpt, ckpt ? "bf16" : "exact");
            CHECK_NEAR(what, worst, 1e-4);
            CHECK(fabs(ls[0] - ls[1]) <= 1e-5 * fabs(ls[1]), "loss %.9g vs %.9g", ls[0], ls[1]);
            free(p0.p), free(p1.p);
            for (int k = 0; k < 2; k++) {
                yf_lora_free(&lo[k]);
                yf_model_free(m[k]);
            }
        }
    yf_kernels_set_bf16_dot(was);
    yf_kernels_set_precision(YF_PREC_EXACT);
    yt_batch_free(&bt);
}

TEST(quant_model_lora_grads_match_dequantized) { grads_vs_dequantized("lora"); }
TEST(quant_model_dora_grads_match_dequantized) { grads_vs_dequantized("dora"); }

/* a fresh DoRA adapter over a quantized base starts as the identity: its
 * magnitudes are the dequantized rows' norms */
TEST(quant_model_dora_init_uses_dequantized_rows) {
    yf_model_opts o = variants[1];
    yf_model *m = NULL;
    CHECK_OK(yf_model_load(golden(), &o, &m));
    if (!m) return;
    yf_lora lo;
    yf_lora_cfg lc = {.r = 4, .alpha = 8, .use_dora = true, .targets = (1u << YF_NPROJ) - 1};
    yf_rng rng;
    yf_rng_seed(&rng, 3);
    CHECK_OK(yf_lora_create(&lo, &m->cfg, &lc));
    CHECK_OK(yf_lora_init(&lo, &m->cfg, yf_model_tensors(m), &rng));
    int64_t ids[8] = {5, 9, 3, 40, 41, 7, 200, 11}, V = m->V;
    float *a = malloc((size_t)(8 * V) * sizeof(float)), *b = malloc((size_t)(8 * V) * sizeof(float));
    double s;
    int64_t nt;
    CHECK_OK(yf_model_forward(m, NULL, ids, NULL, 1, 8, a, &s, &nt));
    CHECK_OK(yf_model_forward(m, &lo, ids, NULL, 1, 8, b, &s, &nt));
    CHECK_NEAR("max |logits with a fresh DoRA adapter - without|", yt_max_abs_diff(a, b, (size_t)(8 * V)), 1e-5);
    free(a), free(b);
    yf_lora_free(&lo);
    yf_model_free(m);
}

TEST(quant_model_group_fallback_and_bad_opts) {
    yf_model *m = NULL;
    CHECK_OK(yf_model_load(golden(), &variants[4], &m));
    if (m) {
        const yf_qmat *down = m->layers[0].proj[YF_DOWN].data, *up = m->layers[0].proj[YF_UP].data;
        CHECK(m->quant_fallbacks == 2 && down->group == 32 && up->group == 64 && down->with_min,
              "fallbacks %d, down_proj groups of %lld, up_proj %lld", m->quant_fallbacks, (long long)down->group,
              (long long)up->group);
        yf_model_free(m);
    }
    yf_model_opts bad = {.full_finetune = true, .quant = {YF_QT_Q4, 32, false}};
    CHECK(yf_model_load(golden(), &bad, &m) == -1 && strstr(yf_last_error(), "full-finetune"), "%s", yf_last_error());
}

/* yf_model_save writes the dequantized weights */
TEST(quant_model_save_writes_dequantized) {
    yf_model *q, *ref;
    load_pair(&variants[2], &q, &ref);
    if (!q || !ref) return;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/saved", yt_tmpdir());
    CHECK_OK(yf_model_save(q, dir, YF_F32));
    yf_config cfg;
    yf_table saved;
    yf_table_init(&saved);
    CHECK_OK(yf_checkpoint_open(dir, &cfg, &saved));
    const yf_mw *want[] = {&ref->layers[1].proj[YF_GATE], &ref->embed, &ref->layers[0].conv2};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        const yf_tensor *t = yf_table_find(&saved, want[i]->name);
        CHECK(t && t->dtype == YF_F32 && memcmp(t->data, want[i]->data, (size_t)want[i]->numel * 4) == 0,
              "saved %s differs from the dequantized model's", want[i]->name);
    }
    yf_table_free(&saved);
    yf_model_free(q);
    yf_model_free(ref);
}

static double score_loss(const char *args) {
    char out[8192];
    int st = yt_sh(out, sizeof out, "%s score --input %s/forward.safetensors %s", yt_cli(), golden(), args);
    CHECK(st == 0, "score %s: exit %d\n%s", args, st, out);
    const char *l = strstr(out, "loss ");
    return st == 0 && l ? atof(l + 5) : NAN;
}

/* QLoRA end to end: train an adapter over the q4 base; merging it into the
 * dequantized weights gives the model the adapter was trained with */
TEST(quant_cli_train_merge_score) {
    const char *t = yt_tmpdir();
    char out[16384];
    int st = yt_sh(out, sizeof out,
                   "%s train --model %s --data %s/forward.safetensors --quantize q4 --output-dir %s/qlora "
                   "--per-device-train-batch-size 2 --max-steps 2 --learning-rate 1e-2 --lora-r 4 --lora-alpha 8 "
                   "--lora-dropout 0.1 --save-strategy no --logging-steps 1",
                   yt_cli(), golden(), golden(), t);
    CHECK(st == 0, "train --quantize q4: exit %d\n%s", st, out);
    st = yt_sh(out, sizeof out, "%s merge --model %s --adapter %s/qlora --quantize q4 --output-dir %s/merged", yt_cli(),
               golden(), t, t);
    CHECK(st == 0 && strstr(out, "dequantized"), "merge --quantize q4: exit %d\n%s", st, out);
    char a[800], b[800];
    snprintf(a, sizeof a, "--model %s --quantize q4 --adapter %s/qlora", golden(), t);
    snprintf(b, sizeof b, "--model %s/merged", t);
    double la = score_loss(a), lb = score_loss(b);
    CHECK(fabs(la - lb) <= 1e-5, "loss over the q4 base + adapter %.6f, merged %.6f", la, lb);
    snprintf(b, sizeof b, "--model %s --adapter %s/qlora", golden(), t);
    CHECK(fabs(la - score_loss(b)) > 1e-5, "the unquantized base gave the same loss: nothing was quantized");
}

TEST(quant_cli_bad_flags) {
    char out[4096];
    int st = yt_sh(out, sizeof out, "%s generate --model %s --prompt-ids 1,2 --quantize int4", yt_cli(), golden());
    CHECK(st == 2 && strstr(out, "int8 or q4"), "exit %d: %s", st, out);
    st = yt_sh(out, sizeof out, "%s generate --model %s --prompt-ids 1,2 --quantize-head", yt_cli(), golden());
    CHECK(st == 2 && strstr(out, "needs --quantize"), "exit %d: %s", st, out);
    st = yt_sh(out, sizeof out, "%s train --model %s --data x --output-dir %s/o --full-finetune --quantize q4",
               yt_cli(), golden(), yt_tmpdir());
    CHECK(st == 2 && strstr(out, "full-finetune"), "exit %d: %s", st, out);
    st = yt_sh(out, sizeof out, "echo; OMP_NUM_THREADS=1 %s generate --model %s --prompt-ids 5,6,7 --max-new-tokens 4 "
               "--json --int8-activations", yt_cli(), golden());
    CHECK(st == 0 && strstr(out, "holds none"), "--int8-activations on an unquantized model: exit %d: %s", st, out);
    st = yt_sh(out, sizeof out, "echo; OMP_NUM_THREADS=1 %s generate --model %s --prompt-ids 5,6,7 --max-new-tokens 4 "
               "--json --quantize q4 --int8-activations", yt_cli(), golden());
    CHECK(st == 0 && strstr(out, "quantized, int8 activations)"), "generate says it uses int8 activations: exit %d: %s",
          st, out);
    st = yt_sh(out, sizeof out, "echo; OMP_NUM_THREADS=1 %s generate --model %s --prompt-ids 5,6,7 --max-new-tokens 4 "
               "--json --quantize q4 --quantize-head", yt_cli(), golden());
    CHECK(st == 0 && strstr(out, "\n[") && strstr(out, "MB of them quantized"), "generate --quantize q4 --quantize-head: exit %d: %s", st, out);
}

/* ---- weights stored quantized (yuanft quantize) ---- */

static void stored_dir(const yf_model_opts *o, const char *dir) {
    yf_model *m = NULL;
    CHECK_OK(yf_model_load(golden(), o, &m));
    if (m) CHECK_OK(yf_model_save_quantized(m, dir, golden()));
    yf_model_free(m);
}

/* loading the stored weights gives the model quantized at load, bit for bit */
TEST(quant_stored_round_trip) {
    yt_batch bt;
    CHECK_OK(yt_batch_load(&bt, yt_shared_path("golden/yuan-tiny/forward.safetensors")));
    for (int v = 0; v < NVAR; v++) {
        char dir[700], vb[96];
        snprintf(dir, sizeof dir, "%s/stored-%d", yt_tmpdir(), v);
        stored_dir(&variants[v], dir);
        yf_model *a = NULL, *b = NULL;
        CHECK_OK(yf_model_load(golden(), &variants[v], &a));
        CHECK_OK(yf_model_load(dir, NULL, &b));
        if (!a || !b) continue;
        size_t n = (size_t)(bt.B * bt.T * a->V);
        float *la = malloc(n * sizeof(float)), *lb = malloc(n * sizeof(float));
        double s;
        int64_t nt;
        CHECK_OK(yf_model_forward(a, NULL, bt.ids, NULL, bt.B, bt.T, la, &s, &nt));
        CHECK_OK(yf_model_forward(b, NULL, bt.ids, NULL, bt.B, bt.T, lb, &s, &nt));
        CHECK(memcmp(la, lb, n * sizeof(float)) == 0 && a->quant_bytes == b->quant_bytes,
              "%s: stored and reloaded, the logits differ (max %g)", vname(&variants[v], vb, sizeof vb),
              yt_max_abs_diff(la, lb, n));
        /* what a DoRA initialisation reads, and what saving writes: the dequantized weights, F32 as the source */
        const yf_tensor *t = yf_table_find(yf_model_tensors(b), "model.layers.1.mlp.up_proj.weight");
        CHECK(t && t->dtype == YF_QMAT, "the table shows the stored weight under its name");
        CHECK(b->layers[0].proj[YF_V].src_dt == YF_F32, "source dtype %s", yf_dtype_name(b->layers[0].proj[YF_V].src_dt));
        free(la), free(lb);
        yf_model_free(a);
        yf_model_free(b);
    }
    yt_batch_free(&bt);
}

/* rewrites dir's model.safetensors with tensor `name` replaced by `repl`
 * (NULL: dropped) and the metadata meta */
static void damage(const char *dir, const char *name, const yf_tensor *repl, const char *const *meta) {
    yf_config cfg;
    yf_table tab;
    yf_table_init(&tab);
    CHECK_OK(yf_checkpoint_open(dir, &cfg, &tab));
    yf_tensor *ts = malloc((size_t)tab.n * sizeof *ts);
    int n = 0;
    for (int i = 0; i < tab.n; i++) {
        if (strcmp(tab.t[i].name, name) != 0) ts[n++] = tab.t[i];
        else if (repl) ts[n++] = *repl;
    }
    char out[800];
    snprintf(out, sizeof out, "%s-damaged", dir);
    CHECK_OK(yf_model_dir_write_meta(out, &cfg, ts, n, NULL, NULL, NULL, meta));
    free(ts);
    yf_table_free(&tab);
}

TEST(quant_stored_bad_files) {
    char dir[700], bad[800];
    snprintf(dir, sizeof dir, "%s/stored", yt_tmpdir());
    snprintf(bad, sizeof bad, "%s-damaged", dir);
    stored_dir(&variants[1], dir);
    const char *ok_meta[] = {"yuanft_quantization", "q4", "yuanft_quantization_version", "1", NULL};
    const char *new_meta[] = {"yuanft_quantization", "q4", "yuanft_quantization_version", "7", NULL};
    const char *qs = "model.layers.0.self_attn.o_proj.weight.qscale";
    uint16_t scales[64 * 4];
    for (int i = 0; i < 64 * 4; i++) scales[i] = 0x3c00;
    yf_tensor wrong = {.name = (char *)qs, .dtype = YF_F16, .ndim = 2, .shape = {64, 3}, .data = scales,
                       .nbytes = 64 * 3 * 2};
    yf_tensor nan = {.name = (char *)qs, .dtype = YF_F16, .ndim = 2, .shape = {64, 2}, .data = scales, .nbytes = 64 * 2 * 2};
    scales[77] = 0x7e00;
    /* a .qweight for a weight yuanft never quantizes (the final norm, [64]) in place of the norm */
    int8_t q1[64] = {0};
    yf_tensor norm = {.name = "model.norm.weight.qweight", .dtype = YF_I8, .ndim = 2, .shape = {64, 1}, .data = q1,
                      .nbytes = 64};
    struct {
        const char *what, *name;
        const yf_tensor *repl;
        const char *const *meta;
        const char *want;
    } cases[] = {
        {"no metadata", "", NULL, NULL, "no yuanft_quantization_version"},
        {"a newer layout", "", NULL, new_meta, "version 7"},
        {"scales of the wrong shape", qs, &wrong, ok_meta, "o_proj"},
        {"a scale that is not finite", qs, &nan, ok_meta, "not finite"},
        {"scales missing", qs, NULL, ok_meta, "missing"},
        {"a norm stored quantized", "model.norm.weight", &norm, ok_meta, "only the projections"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        damage(dir, cases[i].name, cases[i].repl, cases[i].meta);
        yf_model *m = NULL;
        int rc = yf_model_load(bad, NULL, &m);
        printf("    %s: %s\n", cases[i].what, rc ? yf_last_error() : "loaded");
        CHECK(rc == -1 && !m && strstr(yf_last_error(), cases[i].want), "%s: rc %d, message: %s", cases[i].what, rc,
              rc ? yf_last_error() : "");
        yf_model_free(m);
    }
    /* a cut file: the safetensors reader's error */
    char out[4096];
    int st = yt_sh(out, sizeof out, "truncate -s 50000 %s/model.safetensors && %s generate --model %s --prompt-ids 5 "
                   "--max-new-tokens 1", dir, yt_cli(), dir);
    CHECK(st == 1 && strstr(out, "model.safetensors"), "a cut file: exit %d: %s", st, out);
}

TEST(quant_cli_quantize) {
    const char *t = yt_tmpdir();
    char out[8192];
    int st = yt_sh(out, sizeof out, "%s quantize --model %s --output-dir %s/q8 --type int8", yt_cli(), golden(), t);
    CHECK(st == 0 && strstr(out, "quantized"), "exit %d: %s", st, out);
    st = yt_sh(out, sizeof out, "OMP_NUM_THREADS=1 %s generate --model %s/q8 --prompt-ids 5,6,7 --max-new-tokens 4 "
               "--json 2>&1 && echo; OMP_NUM_THREADS=1 %s generate --model %s --quantize int8 --prompt-ids 5,6,7 "
               "--max-new-tokens 4 --json", yt_cli(), t, yt_cli(), golden());
    char *a = strchr(out, '['), *b = a ? strchr(a + 1, '[') : NULL;
    CHECK(st == 0 && a && b && strncmp(a, b, (size_t)(strchr(a, ']') - a)) == 0, "stored vs at load: %s", out);
    st = yt_sh(out, sizeof out, "%s generate --model %s/q8 --quantize q4 --prompt-ids 5 --max-new-tokens 1", yt_cli(), t);
    CHECK(st == 1 && strstr(out, "stored quantized to int8"), "exit %d: %s", st, out);
    st = yt_sh(out, sizeof out, "%s merge --model %s/q8 --adapter %s/lora --output-dir %s/m", yt_cli(), t, golden(), t);
    CHECK(st == 1 && strstr(out, "--quantize"), "merge onto stored weights: exit %d: %s", st, out);
    st = yt_sh(out, sizeof out, "%s quantize --model %s --output-dir %s/x --type int4", yt_cli(), golden(), t);
    CHECK(st == 2 && strstr(out, "int8 or q4"), "exit %d: %s", st, out);
}
