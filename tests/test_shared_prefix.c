/* Shared-prefix training (model/prefix_train.c, docs/shared-prefix.md): a
 * batch whose rows share their first ids, computed with the prefix once and
 * every row's rest as a segment, must give the loss and gradients of every
 * row computed whole, up to fp32 summation order: LoRA, DoRA and full
 * fine-tuning, with and without gradient checkpointing, with <eod> resets
 * (reset_attention_mask) inside the prefix and after it, prefixes of 0 and
 * of whole rows, and rows that score prefix positions. The training CLI
 * path (--shared-prefix) and its MPI form are in test_dist.c. */
#include "harness.h"
#include "model/model_internal.h"
#include "test_model_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ALL7 ((1u << YF_NPROJ) - 1)
enum { EOD = 3 }; /* yt_config's <eod> */

/* ---- prefix detection -------------------------------------------------------- */

TEST(shared_prefix_detection) {
    /* ragged rows, right-padded with <eod>: they first differ at 3 */
    int64_t a[3 * 6] = {7, 8, 9, 10, 3, 3, /**/ 7, 8, 9, 11, 12, 13, /**/ 7, 8, 9, 10, 14, 3};
    CHECK(yf_common_prefix(a, 3, 6) == 3, "ragged: %lld", (long long)yf_common_prefix(a, 3, 6));
    /* padding that equals another row's token counts: the ids are what the layers see */
    int64_t b[2 * 5] = {7, 8, 3, 3, 3, /**/ 7, 8, 3, 9, 3};
    CHECK(yf_common_prefix(b, 2, 5) == 3, "padded: %lld", (long long)yf_common_prefix(b, 2, 5));
    CHECK(yf_common_prefix(a, 1, 6) == 6, "one row: the whole row");
    int64_t c[2 * 3] = {1, 2, 3, 4, 2, 3};
    CHECK(yf_common_prefix(c, 2, 3) == 0, "rows differing at once");
    int64_t d[2 * 3] = {1, 2, 3, 1, 2, 3};
    CHECK(yf_common_prefix(d, 2, 3) == 3, "identical rows");
}

/* ---- gradients: shared against whole rows ---------------------------------- */

/* A batch of B rows of T: a common prefix of P ids (an <eod> inside when
 * eod_in_prefix), then each row its own ids (with an <eod> in row 1), its own
 * length, right-padded with <eod> and -100. Labels: -100 up to `prompt`,
 * then the ids; score_prefix puts row 0's and row 2's first scored label
 * inside the prefix. */
typedef struct batch_spec {
    int64_t B, T, P, prompt;
    bool eod_in_prefix, score_prefix;
    uint64_t seed;
} batch_spec;

static void make_batch(const batch_spec *s, int64_t V, int64_t *ids, int64_t *labels) {
    yf_rng g;
    yf_rng_seed(&g, s->seed);
    int64_t *pre = malloc((size_t)(s->P + 1) * sizeof(int64_t));
    for (int64_t t = 0; t < s->P; t++) pre[t] = 4 + (int64_t)(yf_rng_u64(&g) % (uint64_t)(V - 4));
    if (s->eod_in_prefix && s->P > 3) pre[s->P / 2] = EOD;
    for (int64_t b = 0; b < s->B; b++) {
        int64_t len = s->T - (b * 3) % 5; /* ragged */
        if (len <= s->P) len = s->T;
        for (int64_t t = 0; t < s->T; t++) {
            int64_t id = t < s->P ? pre[t] : 4 + (int64_t)(yf_rng_u64(&g) % (uint64_t)(V - 4));
            if (b == 1 && t == s->P + 2) id = EOD; /* a reset after the prefix */
            int64_t first = s->prompt;
            if (s->score_prefix && (b == 0 || b == 2)) first = s->P > 2 ? s->P - 2 : 1;
            ids[b * s->T + t] = t < len ? id : EOD;
            labels[b * s->T + t] = t < len && t >= first ? ids[b * s->T + t] : -100;
        }
        if (s->P >= s->T) /* whole-row prefix: identical ids, so no padding differences */
            for (int64_t t = 0; t < s->T; t++) ids[b * s->T + t] = pre[t];
    }
    free(pre);
}

/* All trainable gradients in one vector. */
static float *grads(const yf_param_list *pl, int64_t *n) {
    int64_t tot = 0;
    for (int i = 0; i < pl->n; i++) tot += pl->p[i].numel;
    float *g = malloc((size_t)(tot + 1) * sizeof(float));
    for (int i = 0, o = 0; i < pl->n; o += (int)pl->p[i].numel, i++)
        memcpy(g + o, pl->p[i].g, (size_t)pl->p[i].numel * sizeof(float));
    *n = tot;
    return g;
}

static void zero(const yf_param_list *pl) {
    for (int i = 0; i < pl->n; i++) memset(pl->p[i].g, 0, (size_t)pl->p[i].numel * sizeof(float));
}

/* Runs the batch whole and shared; returns the gradients' relative
 * difference (max |d| / max |g|) and checks losses and token counts. */
static double compare(yf_model *m, yf_lora *lo, const yf_param_list *pl, const batch_spec *s, bool ckpt,
                      const char *what) {
    int64_t V = yf_model_config(m)->vocab_size;
    int64_t *ids = malloc((size_t)(s->B * s->T) * sizeof(int64_t)), *lab = malloc((size_t)(s->B * s->T) * sizeof(int64_t));
    make_batch(s, V, ids, lab);
    double loss[2];
    int64_t nt[2], n = 0;
    float *g[2];
    yf_share_stats st = {0};
    for (int k = 0; k < 2; k++) {
        zero(pl);
        yf_backward_opts bo = {.loss_scale = 0.05f, .gradient_checkpointing = ckpt,
                               .shared_prefix = k ? YF_SHARE_ON : YF_SHARE_OFF, .share_stats = &st};
        CHECK_OK(yf_model_forward_backward(m, lo, ids, lab, s->B, s->T, &bo, &loss[k], &nt[k]));
        g[k] = grads(pl, &n);
    }
    double gmax = yt_max_abs(g[0], (size_t)n), rel = yt_max_abs_diff(g[0], g[1], (size_t)n) / fmax(gmax, 1e-30);
    CHECK(gmax > 0, "%s: no gradient", what);
    CHECK(nt[0] == nt[1] && nt[0] > 0, "%s: scored tokens %lld vs %lld", what, (long long)nt[0], (long long)nt[1]);
    CHECK(fabs(loss[0] - loss[1]) <= 1e-5 * fabs(loss[0]), "%s: loss %.9g whole vs %.9g shared", what, loss[0], loss[1]);
    int64_t P = yf_common_prefix(ids, s->B, s->T);
    CHECK(st.batches == 1 && st.prefix_saved <= (s->B - 1) * P, "%s: stats %lld batches, %lld saved (P %lld)", what,
          (long long)st.batches, (long long)st.prefix_saved, (long long)P);
    if (getenv("YT_VERBOSE"))
        fprintf(stderr, "    %s: P %lld, loss %.9g / %.9g, grad rel diff %.3g, saved %lld + %lld\n", what, (long long)P,
                loss[0], loss[1], rel, (long long)st.prefix_saved, (long long)st.padding_skipped);
    free(g[0]), free(g[1]), free(ids), free(lab);
    return rel;
}

static const batch_spec cases[] = {
    /* B  T   P  prompt eod-in-prefix score-prefix seed */
    {4, 21, 9, 11, true, false, 1},   /* the recipe's shape: the prompt's start shared */
    {3, 16, 6, 2, false, true, 2},    /* rows scoring prefix positions (the head's copies) */
    {3, 14, 0, 3, false, false, 3},   /* no common prefix: ragged segments only */
    {3, 12, 12, 2, true, true, 4},    /* identical rows: all prefix, no segments */
    {2, 70, 66, 68, true, false, 5},  /* a prefix over attention's 64-row block */
    {1, 13, 5, 3, true, false, 6},    /* one row (forced on): the prefix up to its last scored position */
};

static void lora_case(bool dora, bool ckpt, uint64_t seed, const char *what) {
    yf_config cfg = yt_config(37, 16, 4, 24, 3, 96, true);
    yf_model *m = yt_random_model(&cfg, seed, YF_F32, 3.0f, NULL);
    CHECK(m != NULL, "%s", yf_last_error());
    if (!m) return;
    yf_lora lo;
    yf_lora_cfg lc = {.r = 4, .alpha = 8, .dropout = 0, .use_dora = dora, .targets = ALL7};
    CHECK_OK(yf_lora_create(&lo, &cfg, &lc));
    yt_randomize_lora(&lo, seed + 1, 0.2f);
    yf_lora_alloc_grads(&lo);
    yf_param_list pl;
    yf_lora_params(&lo, &pl);
    double worst = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) worst = fmax(worst, compare(m, &lo, &pl, &cases[i], ckpt, what));
    CHECK_NEAR(what, worst, 2e-5);
    free(pl.p);
    yf_lora_free(&lo);
    yf_model_free(m);
}

TEST(shared_prefix_lora_equals_whole_rows) {
    lora_case(false, false, 10, "LoRA: shared vs whole rows, 6 batches (max |d grad| / max |grad|)");
}

TEST(shared_prefix_lora_checkpointed_equals_whole_rows) {
    lora_case(false, true, 20, "LoRA, checkpointed: shared vs whole rows (max |d grad| / max |grad|)");
}

TEST(shared_prefix_dora_equals_whole_rows) {
    lora_case(true, true, 30, "DoRA, checkpointed: shared vs whole rows (max |d grad| / max |grad|)");
}

TEST(shared_prefix_full_finetune_equals_whole_rows) {
    for (int ckpt = 0; ckpt < 2; ckpt++) {
        yf_config cfg = yt_config(37, 16, 4, 24, 2, 96, ckpt == 1); /* tied, then untied */
        yf_model_opts mo = {.full_finetune = true};
        yf_model *m = yt_random_model(&cfg, 40 + (uint64_t)ckpt, YF_F32, 3.0f, &mo);
        CHECK(m != NULL, "%s", yf_last_error());
        if (!m) return;
        yf_param_list pl;
        yf_model_params(m, &pl);
        double worst = 0;
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
            worst = fmax(worst, compare(m, NULL, &pl, &cases[i], ckpt, "full"));
        CHECK_NEAR(ckpt ? "full fine-tuning, untied, checkpointed: shared vs whole rows (relative)"
                        : "full fine-tuning, tied: shared vs whole rows (relative)",
                   worst, 2e-5);
        free(pl.p);
        yf_model_free(m);
    }
}

/* auto on a one-row batch (per-device batch 1, or an epoch's last rank
 * share): nothing to share, so the whole-row path, whatever the prefix */
TEST(shared_prefix_auto_single_row_runs_whole) {
    yf_config cfg = yt_config(37, 16, 4, 24, 2, 96, true);
    yf_model *m = yt_random_model(&cfg, 60, YF_F32, 3.0f, NULL);
    CHECK(m != NULL, "%s", yf_last_error());
    if (!m) return;
    yf_lora lo;
    yf_lora_cfg lc = {.r = 4, .alpha = 8, .targets = ALL7};
    CHECK_OK(yf_lora_create(&lo, &cfg, &lc));
    yt_randomize_lora(&lo, 61, 0.2f);
    yf_lora_alloc_grads(&lo);
    batch_spec s = {1, 60, 50, 40, true, false, 62};
    int64_t ids[60], lab[60];
    make_batch(&s, cfg.vocab_size, ids, lab);
    CHECK(yf_common_prefix(ids, 1, 60) == 60, "one row's prefix: %lld", (long long)yf_common_prefix(ids, 1, 60));
    yf_share_stats st = {0};
    yf_backward_opts bo = {.loss_scale = 0.01f, .shared_prefix = YF_SHARE_AUTO, .share_stats = &st};
    double ls;
    int64_t nt;
    CHECK_OK(yf_model_forward_backward(m, &lo, ids, lab, 1, 60, &bo, &ls, &nt));
    CHECK(st.batches == 0 && st.prefix_saved == 0 && nt > 0, "auto, one row: %lld shared batches, %lld saved",
          (long long)st.batches, (long long)st.prefix_saved);
    yf_lora_free(&lo);
    yf_model_free(m);
}

/* bf16 weights and products: the same computation in another order, so the
 * agreement is that of bf16 rounding, and auto takes the shared path only for
 * a long enough prefix. */
TEST(shared_prefix_bf16_and_auto) {
    yf_config cfg = yt_config(37, 32, 4, 48, 2, 128, true);
    yf_model *m = yt_random_model(&cfg, 50, YF_BF16, 1.0f, NULL);
    CHECK(m != NULL, "%s", yf_last_error());
    if (!m) return;
    yf_lora lo;
    yf_lora_cfg lc = {.r = 4, .alpha = 8, .dropout = 0.1f, .targets = ALL7};
    CHECK_OK(yf_lora_create(&lo, &cfg, &lc));
    yt_randomize_lora(&lo, 51, 0.2f);
    yf_lora_alloc_grads(&lo);
    yf_param_list pl;
    yf_lora_params(&lo, &pl);
    yf_kernels_set_precision(YF_PREC_BF16);
    batch_spec s = {4, 60, YF_SHARE_AUTO_MIN + 20, 50, true, false, 52};
    lo.cfg.dropout = 0; /* exactness needs the same masks: none */
    double rel = compare(m, &lo, &pl, &s, true, "bf16");
    CHECK_NEAR("bf16 products: shared vs whole rows (relative)", rel, 2e-2);
    /* auto: a prefix shorter than the threshold runs whole, a longer one shared */
    int64_t ids[4 * 60], lab[4 * 60];
    for (int k = 0; k < 2; k++) {
        s.P = k ? YF_SHARE_AUTO_MIN : YF_SHARE_AUTO_MIN - 1;
        make_batch(&s, cfg.vocab_size, ids, lab);
        yf_share_stats st = {0};
        yf_backward_opts bo = {.loss_scale = 0.01f, .shared_prefix = YF_SHARE_AUTO, .share_stats = &st};
        double ls;
        int64_t nt;
        CHECK_OK(yf_model_forward_backward(m, &lo, ids, lab, s.B, s.T, &bo, &ls, &nt));
        CHECK(st.batches == k, "auto with a prefix of %lld: %lld shared batches", (long long)s.P, (long long)st.batches);
    }
    /* dropout on: runs (one mask for the prefix), finite, and a different
     * draw than whole rows, as documented */
    lo.cfg.dropout = 0.1f;
    make_batch(&s, cfg.vocab_size, ids, lab);
    yf_rng r1;
    yf_rng_seed(&r1, 3);
    yf_backward_opts bo = {.loss_scale = 0.01f, .dropout_rng = &r1, .shared_prefix = YF_SHARE_ON};
    double ls;
    int64_t nt;
    zero(&pl);
    CHECK_OK(yf_model_forward_backward(m, &lo, ids, lab, s.B, s.T, &bo, &ls, &nt));
    int64_t n;
    float *g = grads(&pl, &n);
    CHECK(isfinite(ls) && isfinite(yt_max_abs(g, (size_t)n)) && yt_max_abs(g, (size_t)n) > 0, "dropout: loss %g", ls);
    free(g);
    yf_kernels_set_precision(YF_PREC_EXACT);
    free(pl.p);
    yf_lora_free(&lo);
    yf_model_free(m);
}
