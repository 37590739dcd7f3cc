/* bench-quant-quality: what quantizing the weights does to the model's
 * next-token distributions: per variant (int8, q4 with groups of 32 / 64,
 * with and without a minimum, with and without the head), the mean and the
 * largest KL(p_bf16 || p_quantized) over every position of a batch, the
 * share of positions whose most likely token is unchanged, and the change
 * of the mean loss; the baseline is the same weights in bf16 unquantized.
 * Models: the golden tiny model's bf16 weights on its golden batch and on
 * random sequences, and a 2-layer Yuan2-2B-width model with trained-like
 * weight statistics (below) on random sequences.
 * Trained-like: each projection and the embedding W[n, k] = 0.02 r_n c_k v
 * with v a scale mixture of normals (95% N(0,1), 5% N(0, 3.5^2), scaled to
 * unit variance: heavy tails), r_n = exp(0.2 z) per row and c_k = exp(0.4 z)
 * per input column (outlier features); norm weights exp(0.3 z); the
 * convolutions as HF initialises them.
 * usage: build/bench-quant-quality [--shared DIR] [--seqs N] [--len T] [--no-2layer] */
#include "formats/checkpoint.h"
#include "formats/config.h"
#include "formats/weights.h"
#include "model/model_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* a table whose entries point at base's data (base keeps owning it) */
static void view_table(const yf_table *base, yf_table *v) {
    yf_table_init(v);
    for (int i = 0; i < base->n; i++) {
        const yf_tensor *t = &base->t[i];
        yf_tensor *d = yf_table_add(v, t->name, t->dtype, t->ndim, t->shape, t->data);
        d->nbytes = t->nbytes;
    }
}

static void trained_like(const yf_config *cfg, yf_table *tab, uint64_t seed) {
    yf_rng rng;
    yf_rng_seed(&rng, seed);
    yf_wspec *specs;
    int64_t ns = yf_weight_specs(cfg, &specs);
    for (int64_t i = 0; i < ns; i++) {
        const yf_wspec *s = &specs[i];
        yf_tensor *t = yf_table_find(tab, s->name);
        if (!t || t->dtype != YF_BF16) continue;
        uint16_t *w = t->data;
        if (s->kind == YF_W_LN1 || s->kind == YF_W_LN2 || s->kind == YF_W_LF_LN || s->kind == YF_W_FINAL_NORM) {
            for (int64_t k = 0; k < t->shape[0]; k++) w[k] = yf_f32_to_bf16(expf(0.3f * yf_rng_normal(&rng)));
            continue;
        }
        if (s->kind != YF_W_LINEAR && s->kind != YF_W_EMBED && s->kind != YF_W_LM_HEAD) continue;
        int64_t N = t->shape[0], K = t->shape[1];
        float *c = malloc((size_t)K * sizeof(float));
        for (int64_t k = 0; k < K; k++) c[k] = expf(0.4f * yf_rng_normal(&rng));
        for (int64_t n = 0; n < N; n++) {
            float r = 0.02f * expf(0.2f * yf_rng_normal(&rng)) / 1.25f;
            for (int64_t k = 0; k < K; k++) {
                float v = yf_rng_normal(&rng) * (yf_rng_uniform(&rng) < 0.05 ? 3.5f : 1.0f);
                w[n * K + k] = yf_f32_to_bf16(r * c[k] * v);
            }
        }
        free(c);
    }
    free(specs);
}

typedef struct variant {
    const char *name;
    yf_model_opts o;
} variant;

static const variant variants[] = {
    {"int8", {.quant = {YF_QT_INT8, 0, false}}},
    {"int8 + head", {.quant = {YF_QT_INT8, 0, false}, .quantize_head = true}},
    {"q4 g32", {.quant = {YF_QT_Q4, 32, false}}},
    {"q4 g32 + head", {.quant = {YF_QT_Q4, 32, false}, .quantize_head = true}},
    {"q4 g64", {.quant = {YF_QT_Q4, 64, false}}},
    {"q4 g32 min", {.quant = {YF_QT_Q4, 32, true}}},
    {"q4 g64 min", {.quant = {YF_QT_Q4, 64, true}}},
    {"q4 g64 min + head", {.quant = {YF_QT_Q4, 64, true}, .quantize_head = true}},
    /* int8 activations: the products of up to 32 rows (decoding) round x;
     * these run the batch as decoding does, 32 rows (B x 8 positions) a step */
    {"int8, int8 activations", {.quant = {YF_QT_INT8, 0, false}, .int8_act = true}},
    {"int8 + head, int8 activations", {.quant = {YF_QT_INT8, 0, false}, .quantize_head = true, .int8_act = true}},
    {"q4 g32, int8 activations", {.quant = {YF_QT_Q4, 32, false}, .int8_act = true}},
    {"q4 g32 + head, int8 activations", {.quant = {YF_QT_Q4, 32, false}, .quantize_head = true, .int8_act = true}},
    {"q4 g64 min, int8 activations", {.quant = {YF_QT_Q4, 64, true}, .int8_act = true}},
};

/* log-softmax of n logits into out (double) */
static void log_softmax(const float *l, int64_t n, double *out) {
    double mx = -INFINITY, s = 0;
    for (int64_t i = 0; i < n; i++) mx = l[i] > mx ? l[i] : mx;
    for (int64_t i = 0; i < n; i++) s += exp((double)l[i] - mx);
    double lse = mx + log(s);
    for (int64_t i = 0; i < n; i++) out[i] = (double)l[i] - lse;
}

static int64_t argmax(const float *l, int64_t n) {
    int64_t b = 0;
    for (int64_t i = 1; i < n; i++)
        if (l[i] > l[b]) b = i;
    return b;
}

/* logits of every position of ids [B, T] through a model built on a view of
 * base with opts o; the mean loss of next-token prediction into *loss */
static float *run(const yf_config *cfg, const yf_table *base, const yf_model_opts *o, const int64_t *ids,
                  const int64_t *labels, int64_t B, int64_t T, double *loss, size_t *qbytes) {
    yf_table v;
    view_table(base, &v);
    yf_model *m = NULL;
    if (yf_model_from_table(cfg, &v, o, "bench model", &m)) {
        fprintf(stderr, "bench-quant-quality: %s\n", yf_last_error());
        exit(1);
    }
    *qbytes = m->quant_bytes;
    int64_t V = cfg->vocab_size;
    float *lg = yf_malloc((size_t)(B * T * V) * sizeof(float));
    double ls = 0;
    int64_t nt = 0;
    if (!o->int8_act) {
        if (yf_model_forward(m, NULL, ids, labels, B, T, lg, &ls, &nt)) {
            fprintf(stderr, "bench-quant-quality: %s\n", yf_last_error());
            exit(1);
        }
    } else { /* through the cache, at most 32 rows a step: the products that take int8 activations */
        int64_t step = 32 / B > 0 ? 32 / B : 1, *doc = calloc((size_t)B, sizeof(int64_t));
        int64_t *cid = malloc((size_t)(B * step) * sizeof(int64_t));
        float *cl = yf_malloc((size_t)(B * step * V) * sizeof(float));
        double *lsm = malloc((size_t)V * sizeof(double));
        yf_layer_state *st = yf_layer_states_alloc(m, B, T);
        for (int64_t t0 = 0; t0 < T; t0 += step) {
            int64_t n = T - t0 < step ? T - t0 : step;
            for (int64_t b = 0; b < B; b++) memcpy(cid + b * n, ids + b * T + t0, (size_t)n * sizeof(int64_t));
            if (yf_model_forward_chunk(m, NULL, st, t0, doc, cid, B, n, cl)) {
                fprintf(stderr, "bench-quant-quality: %s\n", yf_last_error());
                exit(1);
            }
            for (int64_t b = 0; b < B; b++)
                memcpy(lg + (b * T + t0) * V, cl + b * n * V, (size_t)(n * V) * sizeof(float));
        }
        for (int64_t b = 0; b < B; b++) /* the loss as yf_model_forward counts it: labels[t + 1] against logits[t] */
            for (int64_t t = 0; t + 1 < T; t++) {
                if (labels[b * T + t + 1] < 0) continue;
                log_softmax(lg + (b * T + t) * V, V, lsm);
                ls -= lsm[labels[b * T + t + 1]];
                nt++;
            }
        yf_layer_states_free(st, m);
        free(doc), free(cid), free(cl), free(lsm);
    }
    *loss = ls / (double)(nt ? nt : 1);
    yf_model_free(m);
    return lg;
}

static void report(const char *model, const yf_config *cfg, const yf_table *base, const int64_t *ids,
                   const int64_t *labels, int64_t B, int64_t T) {
    int64_t V = cfg->vocab_size, N = B * T;
    double l0;
    size_t qb;
    yf_model_opts none = {0};
    float *ref = run(cfg, base, &none, ids, labels, B, T, &l0, &qb);
    printf("\n%s: %lld positions (B %lld, T %lld), bf16 mean loss %.4f\n", model, (long long)N, (long long)B,
           (long long)T, l0);
    printf("| variant | quantized MB | mean KL | max KL | top-1 same | loss change |\n| --- | ---: | ---: | ---: | ---: | ---: |\n");
    double *lp = malloc((size_t)V * sizeof(double)), *lq = malloc((size_t)V * sizeof(double));
    for (size_t vi = 0; vi < sizeof variants / sizeof *variants; vi++) {
        double lv;
        float *q = run(cfg, base, &variants[vi].o, ids, labels, B, T, &lv, &qb);
        double kl_sum = 0, kl_max = 0;
        int64_t same = 0;
        for (int64_t i = 0; i < N; i++) {
            log_softmax(ref + i * V, V, lp);
            log_softmax(q + i * V, V, lq);
            double kl = 0;
            for (int64_t j = 0; j < V; j++) kl += exp(lp[j]) * (lp[j] - lq[j]);
            kl_sum += kl;
            kl_max = kl > kl_max ? kl : kl_max;
            same += argmax(ref + i * V, V) == argmax(q + i * V, V);
        }
        printf("| %s | %.1f | %.2e | %.2e | %.1f%% | %+.4f |\n", variants[vi].name, qb / 1e6, kl_sum / (double)N, kl_max,
               100.0 * (double)same / (double)N, lv - l0);
        free(q);
    }
    free(lp), free(lq), free(ref);
}

static void random_ids(int64_t *ids, int64_t *labels, int64_t n, int64_t V, uint64_t seed) {
    yf_rng r;
    yf_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) labels[i] = ids[i] = (int64_t)(yf_rng_u64(&r) % (uint64_t)V);
}

int main(int argc, char **argv) {
    const char *shared = "../shared";
    int64_t seqs = 4, len = 128;
    bool two = true;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--shared") && i + 1 < argc) shared = argv[++i];
        else if (!strcmp(argv[i], "--seqs") && i + 1 < argc) seqs = atol(argv[++i]);
        else if (!strcmp(argv[i], "--len") && i + 1 < argc) len = atol(argv[++i]);
        else if (!strcmp(argv[i], "--no-2layer")) two = false;
        else {
            fprintf(stderr, "usage: %s [--shared DIR] [--seqs N] [--len T] [--no-2layer]\n", argv[0]);
            return strcmp(argv[i], "--help") ? 2 : 0;
        }
    }
    if (seqs < 1 || len < 2 || seqs * len > 4096) {
        fprintf(stderr, "bench-quant-quality: --seqs x --len must be 2..4096 positions\n");
        return 2;
    }
    int64_t *ids = malloc((size_t)(seqs * len) * sizeof(int64_t)), *labels = malloc((size_t)(seqs * len) * sizeof(int64_t));
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/golden/yuan-tiny/bf16", shared);
    yf_config cfg;
    yf_table tab;
    yf_table_init(&tab);
    if (yf_checkpoint_open(dir, &cfg, &tab)) {
        fprintf(stderr, "bench-quant-quality: %s (pass --shared DIR)\n", yf_last_error());
        return 1;
    }
    random_ids(ids, labels, seqs * len, cfg.vocab_size, 7);
    report("golden tiny model (bf16 weights), random ids", &cfg, &tab, ids, labels, seqs, len);
    yf_table_free(&tab);
    if (two) {
        if (yf_config_load("bench/configs/yuan2b-2layer.json", &cfg)) {
            fprintf(stderr, "bench-quant-quality: %s (run from the repository root)\n", yf_last_error());
            return 1;
        }
        if (yf_weights_init_random(&cfg, 11, YF_BF16, &tab)) {
            fprintf(stderr, "bench-quant-quality: %s\n", yf_last_error());
            return 1;
        }
        trained_like(&cfg, &tab, 12);
        random_ids(ids, labels, seqs * len, cfg.vocab_size, 8);
        report("2-layer Yuan2-2B width, trained-like weights, random ids", &cfg, &tab, ids, labels, seqs, len);
        yf_table_free(&tab);
    }
    free(ids), free(labels);
    return 0;
}
