/* AdamW, schedules and clipping against values worked out by hand from the
 * torch / transformers formulas. */
#include "harness.h"
#include "train/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static yf_param one_param(const char *name, float *w, float *g, int64_t n) {
    yf_param p = {0};
    p.name = name;
    p.w = w;
    p.g = g;
    p.numel = n;
    p.ndim = 1;
    p.shape[0] = n;
    return p;
}

static double rel_err(double got, double want) { return fabs(got - want) / fmax(fabs(want), 1e-12); }

TEST(optim_adamw_matches_hand_computed_steps) {
    /* w0 = 1, grads 0.5, -1, 0.25, lr 0.1, no decay. Step 1: m = 0.05,
     * v = 2.5e-4, m^ = 0.5, v^ = 0.25 -> w = 1 - 0.1 * 0.5 / (0.5 + 1e-8).
     * Step 2: m = -0.055, v = 1.24975e-3, m^ = -0.289474, sqrt(v^) = 0.790688. */
    const double want[3] = {0.900000002, 0.9366103542405654, 0.9502794203389762};
    const double want_wd[3] = {1.880000002, 1.8978103542205655, 1.8925013167767708}; /* w0 = 2, wd 0.1 */
    const float grads[3] = {0.5f, -1.0f, 0.25f};
    float w[2] = {1.0f, 2.0f}, g[2];
    yf_param ps[2] = {one_param("a.lora_A.weight", &w[0], &g[0], 1), one_param("b.lora_B.weight", &w[1], &g[1], 1)};
    yf_param_list pl = {ps, 2};
    yf_adamw_cfg cfg = yf_adamw_defaults();
    cfg.weight_decay = 0.1;
    yf_adamw o;
    yf_adamw_init(&o, &pl, &cfg, true);
    o.decay[0] = false; /* first tensor: no decay */
    double worst = 0;
    for (int s = 0; s < 3; s++) {
        g[0] = g[1] = grads[s];
        yf_adamw_step(&o, 0.1);
        worst = fmax(worst, fmax(rel_err(w[0], want[s]), rel_err(w[1], want_wd[s])));
    }
    CHECK_NEAR("adamw weights after 3 steps (relative)", worst, 1e-6);
    CHECK(o.step == 3);
    yf_adamw_free(&o);
}

TEST(optim_adamw_zero_grad_leaves_weight) {
    float w = -0.5f, g = 0.0f;
    yf_param p = one_param("x", &w, &g, 1);
    yf_param_list pl = {&p, 1};
    yf_adamw_cfg cfg = yf_adamw_defaults();
    yf_adamw o;
    yf_adamw_init(&o, &pl, &cfg, true);
    yf_adamw_step(&o, 0.1);
    yf_adamw_step(&o, 0.1);
    CHECK(w == -0.5f, "w = %.9g", w);
    yf_adamw_free(&o);
}

TEST(optim_no_decay_names) {
    CHECK(yf_param_decays("model.layers.0.self_attn.q_proj.weight"));
    CHECK(!yf_param_decays("model.layers.0.input_layernorm.weight"));
    CHECK(!yf_param_decays("model.norm.weight"));
    CHECK(!yf_param_decays("model.layers.0.self_attn.lf_gate.conv1.bias"));
}

TEST(optim_linear_schedule_golden) {
    /* trajectory.json of the golden training run: lr 1e-2, 3 steps, no warmup */
    yf_sched s = {YF_SCHED_LINEAR, 1e-2, 0, 3};
    const double want[3] = {0.01, 0.006666666666666666, 0.003333333333333333};
    double worst = 0;
    for (int i = 0; i < 3; i++) worst = fmax(worst, rel_err(yf_sched_lr(&s, i), want[i]));
    CHECK_NEAR("linear lr per step (relative)", worst, 1e-12);
    CHECK(yf_sched_lr(&s, 3) == 0.0);
}

TEST(optim_warmup_and_other_schedules) {
    /* warmup_ratio 0.1 of 25 steps -> ceil(2.5) = 3 warmup steps */
    CHECK(yf_warmup_steps(0, 0.1, 25) == 3);
    CHECK(yf_warmup_steps(5, 0.1, 25) == 5);
    CHECK(yf_warmup_steps(0, 0.0, 25) == 0);
    yf_sched s = {YF_SCHED_LINEAR, 1.0, 4, 12};
    /* warmup: 0, 1/4, 2/4, 3/4; then (12-s)/8 */
    const double lin[6] = {0.0, 0.25, 0.5, 0.75, 1.0, 7.0 / 8};
    for (int i = 0; i < 6; i++) CHECK(fabs(yf_sched_lr(&s, i) - lin[i]) < 1e-12, "linear step %d: %g", i, yf_sched_lr(&s, i));
    s.kind = YF_SCHED_COSINE;
    CHECK(fabs(yf_sched_lr(&s, 4) - 1.0) < 1e-12);
    CHECK(fabs(yf_sched_lr(&s, 8) - 0.5) < 1e-12, "cosine half way: %g", yf_sched_lr(&s, 8));
    CHECK(fabs(yf_sched_lr(&s, 12)) < 1e-12);
    s.kind = YF_SCHED_CONSTANT;
    CHECK(yf_sched_lr(&s, 0) == 1.0 && yf_sched_lr(&s, 11) == 1.0);
    s.kind = YF_SCHED_CONSTANT_WITH_WARMUP;
    CHECK(yf_sched_lr(&s, 2) == 0.5 && yf_sched_lr(&s, 9) == 1.0);
    yf_sched_kind k;
    CHECK(yf_sched_parse("cosine", &k) == 0 && k == YF_SCHED_COSINE);
    CHECK(yf_sched_parse("polynomial-ish", &k) == -1);
    CHECK(strstr(yf_last_error(), "polynomial-ish") != NULL, "%s", yf_last_error());
}

TEST(optim_clip_global_norm) {
    /* two tensors, grads (3, 4) and (12): global norm 13 */
    float w[3] = {0}, g[3] = {3, 4, 12};
    yf_param ps[2] = {one_param("a", w, g, 2), one_param("b", w + 2, g + 2, 1)};
    yf_param_list pl = {ps, 2};
    double norm = yf_clip_grad_norm(&pl, 1.0);
    CHECK_NEAR("norm before clipping", fabs(norm - 13.0), 1e-9);
    double c = 1.0 / (13.0 + 1e-6);
    CHECK_NEAR("clipped grads", fmax(fabs(g[0] - 3 * c), fmax(fabs(g[1] - 4 * c), fabs(g[2] - 12 * c))), 1e-7);
    /* below the limit: untouched */
    float h[2] = {0.3f, 0.4f};
    yf_param q = one_param("c", w, h, 2);
    yf_param_list ql = {&q, 1};
    CHECK_NEAR("small norm", fabs(yf_clip_grad_norm(&ql, 1.0) - 0.5), 1e-7);
    CHECK(h[0] == 0.3f && h[1] == 0.4f);
}

TEST(optim_moment_tensors_round_trip) {
    float w[4] = {1, 2, 3, 4}, g[4] = {1, -1, 2, -2};
    yf_param p = one_param("layer.weight", w, g, 4);
    yf_param_list pl = {&p, 1};
    yf_adamw_cfg cfg = yf_adamw_defaults();
    yf_adamw a, b;
    yf_adamw_init(&a, &pl, &cfg, true);
    yf_adamw_step(&a, 0.01);
    yf_tensor *ts;
    int n = yf_adamw_tensors(&a, &ts);
    CHECK(n == 2 && !strcmp(ts[0].name, "exp_avg.layer.weight") && !strcmp(ts[1].name, "exp_avg_sq.layer.weight"));
    yf_table tab;
    yf_table_init(&tab);
    for (int i = 0; i < n; i++) yf_table_add(&tab, ts[i].name, ts[i].dtype, ts[i].ndim, ts[i].shape, ts[i].data);
    yf_adamw_init(&b, &pl, &cfg, true);
    CHECK(yf_adamw_restore(&b, &tab, "test") == 0, "%s", yf_last_error());
    CHECK(!memcmp(a.m[0], b.m[0], 16) && !memcmp(a.v[0], b.v[0], 16));
    yf_table_free(&tab);
    yf_table_init(&tab);
    CHECK(yf_adamw_restore(&b, &tab, "ckpt/optimizer.safetensors") == -1);
    CHECK(strstr(yf_last_error(), "exp_avg.layer.weight") != NULL, "%s", yf_last_error());
    yf_table_free(&tab);
    yf_adamw_free_tensors(ts, n);
    yf_adamw_free(&a);
    yf_adamw_free(&b);
}

/* The step runs in pool pieces of up to 64K elements (tensors split, small
 * ones a piece each, empty ones none): every element against the formula in
 * double, over tensors on both sides of the piece size, with and without
 * decay. A piece sent to the wrong tensor or offset leaves elements stale. */
TEST(optim_adamw_pieces_cover_every_element) {
    static const int64_t sizes[] = {1, 65536, 0, 65537, 200003, 5};
    enum { NT = 6 };
    yf_param ps[NT];
    float *w[NT], *g[NT];
    double *rw[NT], *rm[NT], *rv[NT];
    uint64_t s = 12345;
    for (int i = 0; i < NT; i++) {
        int64_t n = sizes[i];
        w[i] = malloc((size_t)(n + 1) * sizeof(float)), g[i] = malloc((size_t)(n + 1) * sizeof(float));
        rw[i] = malloc((size_t)(n + 1) * sizeof(double)), rm[i] = calloc((size_t)(n + 1), sizeof(double));
        rv[i] = calloc((size_t)(n + 1), sizeof(double));
        for (int64_t k = 0; k < n; k++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            w[i][k] = (float)((double)(s >> 40) / (double)(1 << 24) - 0.5);
            rw[i][k] = w[i][k];
        }
        ps[i] = one_param(i % 2 ? "x.lora_A.weight" : "x.norm.weight", w[i], g[i], n);
    }
    yf_param_list pl = {ps, NT};
    yf_adamw_cfg cfg = yf_adamw_defaults();
    cfg.weight_decay = 0.05;
    yf_adamw o;
    yf_adamw_init(&o, &pl, &cfg, false); /* the "norm" tensors do not decay */
    double worst = 0, lr = 1e-3;
    for (int step = 1; step <= 3; step++) {
        for (int i = 0; i < NT; i++)
            for (int64_t k = 0; k < sizes[i]; k++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                g[i][k] = (float)((double)(s >> 40) / (double)(1 << 24) - 0.5) * (float)(k % 7 + 1);
            }
        yf_adamw_step(&o, lr);
        double bc1 = 1 - pow(0.9, step), bc2 = 1 - pow(0.999, step);
        for (int i = 0; i < NT; i++) {
            double decay = i % 2 ? cfg.weight_decay : 0;
            for (int64_t k = 0; k < sizes[i]; k++) {
                double gk = g[i][k];
                rm[i][k] = 0.9 * rm[i][k] + 0.1 * gk;
                rv[i][k] = 0.999 * rv[i][k] + 0.001 * gk * gk;
                rw[i][k] = rw[i][k] * (1 - lr * decay) -
                           lr / bc1 * rm[i][k] / (sqrt(rv[i][k]) / sqrt(bc2) + cfg.eps);
                double e = fabs(w[i][k] - rw[i][k]);
                if (!(e <= worst)) worst = e;
            }
        }
    }
    /* the weights move by ~1e-3 a step; fp32 rounding of w (|w| <= 0.5) is ~3e-8 */
    CHECK_NEAR("AdamW in pool pieces vs the formula in double (max abs error)", worst, 1e-6);
    yf_adamw_free(&o);
    for (int i = 0; i < NT; i++) free(w[i]), free(g[i]), free(rw[i]), free(rm[i]), free(rv[i]);
}
