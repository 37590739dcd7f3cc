#include "formats/weights.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const yf_proj_names[YF_NPROJ] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

typedef struct spec_list {
    yf_wspec *s;
    int64_t n, cap;
} spec_list;

static void add(spec_list *L, yf_wkind kind, int64_t layer, yf_proj proj, int ndim, const int64_t *shape,
                const char *name) {
    if (L->n == L->cap) {
        L->cap = L->cap ? L->cap * 2 : 64;
        L->s = yf_realloc(L->s, (size_t)L->cap * sizeof *L->s);
    }
    yf_wspec *w = &L->s[L->n++];
    memset(w, 0, sizeof *w);
    if (layer >= 0)
        snprintf(w->name, sizeof w->name, "model.layers.%lld.%s", (long long)layer, name);
    else
        snprintf(w->name, sizeof w->name, "%s", name);
    w->kind = kind;
    w->layer = layer;
    w->proj = proj;
    w->ndim = ndim;
    for (int i = 0; i < ndim; i++) w->shape[i] = shape[i];
}

int64_t yf_weight_specs(const yf_config *c, yf_wspec **specs) {
    int64_t D = c->hidden_size, I = c->intermediate_size, V = c->vocab_size;
    spec_list L = {0};
    add(&L, YF_W_EMBED, -1, 0, 2, (int64_t[]){V, D}, "model.embed_tokens.weight");
    for (int64_t l = 0; l < c->num_hidden_layers; l++) {
        add(&L, YF_W_LN1, l, 0, 1, (int64_t[]){D}, "input_layernorm.weight");
        add(&L, YF_W_CONV1, l, 0, 4, (int64_t[]){D / 2, D, 2, 1}, "self_attn.lf_gate.conv1.weight");
        add(&L, YF_W_CONV1_B, l, 0, 1, (int64_t[]){D / 2}, "self_attn.lf_gate.conv1.bias");
        add(&L, YF_W_CONV2, l, 0, 4, (int64_t[]){D, D / 2, 2, 1}, "self_attn.lf_gate.conv2.weight");
        add(&L, YF_W_CONV2_B, l, 0, 1, (int64_t[]){D}, "self_attn.lf_gate.conv2.bias");
        add(&L, YF_W_LF_LN, l, 0, 1, (int64_t[]){D}, "self_attn.lf_gate.output_layernorm.weight");
        char name[64];
        for (int p = YF_Q; p <= YF_O; p++) {
            snprintf(name, sizeof name, "self_attn.%s.weight", yf_proj_names[p]);
            add(&L, YF_W_LINEAR, l, (yf_proj)p, 2, (int64_t[]){D, D}, name);
        }
        add(&L, YF_W_LN2, l, 0, 1, (int64_t[]){D}, "post_attention_layernorm.weight");
        for (int p = YF_GATE; p <= YF_DOWN; p++) {
            snprintf(name, sizeof name, "mlp.%s.weight", yf_proj_names[p]);
            int64_t out = p == YF_DOWN ? D : I, in = p == YF_DOWN ? I : D;
            add(&L, YF_W_LINEAR, l, (yf_proj)p, 2, (int64_t[]){out, in}, name);
        }
    }
    add(&L, YF_W_FINAL_NORM, -1, 0, 1, (int64_t[]){D}, "model.norm.weight");
    if (!c->tie_word_embeddings) add(&L, YF_W_LM_HEAD, -1, 0, 2, (int64_t[]){V, D}, "lm_head.weight");
    *specs = L.s;
    return L.n;
}

void yf_weight_fill_random(const yf_config *cfg, const yf_wspec *s, yf_rng *rng, yf_dtype dtype, void *data) {
    YF_CHECK(dtype == YF_F32 || dtype == YF_BF16);
    int64_t numel = 1;
    for (int d = 0; d < s->ndim; d++) numel *= s->shape[d];
    /* fan_in of a width-2 convolution: in_channels * 2 */
    double bound = 0;
    if (s->kind == YF_W_CONV1 || s->kind == YF_W_CONV2) bound = 1.0 / sqrt((double)s->shape[1] * 2);
    if (s->kind == YF_W_CONV1_B) bound = 1.0 / sqrt((double)cfg->hidden_size * 2);
    if (s->kind == YF_W_CONV2_B) bound = 1.0 / sqrt((double)(cfg->hidden_size / 2) * 2);
    for (int64_t k = 0; k < numel; k++) {
        float v;
        switch (s->kind) {
        case YF_W_LN1:
        case YF_W_LF_LN:
        case YF_W_LN2:
        case YF_W_FINAL_NORM: v = 1.0f; break;
        case YF_W_EMBED:
        case YF_W_LINEAR:
        case YF_W_LM_HEAD: v = 0.02f * yf_rng_normal(rng); break;
        default: v = (float)((2 * yf_rng_uniform(rng) - 1) * bound); break;
        }
        if (dtype == YF_F32)
            ((float *)data)[k] = v;
        else
            ((uint16_t *)data)[k] = yf_f32_to_bf16(v);
    }
}

int yf_weights_init_random(const yf_config *cfg, uint64_t seed, yf_dtype dtype, yf_table *tab) {
    if (dtype != YF_F32 && dtype != YF_BF16) return yf_errorf("init: dtype must be f32 or bf16");
    yf_wspec *specs;
    int64_t n = yf_weight_specs(cfg, &specs);
    yf_rng rng;
    yf_rng_seed(&rng, seed);
    yf_table_init(tab);
    for (int64_t i = 0; i < n; i++) {
        yf_tensor *t = yf_table_alloc(tab, specs[i].name, dtype, specs[i].ndim, specs[i].shape);
        yf_weight_fill_random(cfg, &specs[i], &rng, dtype, t->data);
    }
    free(specs);
    return 0;
}
