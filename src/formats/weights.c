#include "formats/weights.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void add(yf_wspec **s, int64_t *n, int64_t *cap, yf_wkind kind, int ndim, const int64_t *shape,
                const char *fmt, long long layer) {
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        *s = yf_realloc(*s, (size_t)*cap * sizeof **s);
    }
    yf_wspec *w = &(*s)[(*n)++];
    memset(w, 0, sizeof *w);
    snprintf(w->name, sizeof w->name, fmt, layer);
    w->kind = kind;
    w->ndim = ndim;
    for (int i = 0; i < ndim; i++) w->shape[i] = shape[i];
}

int64_t yf_weight_specs(const yf_config *c, yf_wspec **specs) {
    int64_t n = 0, cap = 0, D = c->hidden_size, I = c->intermediate_size, V = c->vocab_size;
    *specs = NULL;
    add(specs, &n, &cap, YF_W_EMBED, 2, (int64_t[]){V, D}, "model.embed_tokens.weight", 0);
    for (long long l = 0; l < c->num_hidden_layers; l++) {
        add(specs, &n, &cap, YF_W_NORM, 1, (int64_t[]){D}, "model.layers.%lld.input_layernorm.weight", l);
        add(specs, &n, &cap, YF_W_CONV1, 4, (int64_t[]){D / 2, D, 2, 1}, "model.layers.%lld.self_attn.lf_gate.conv1.weight", l);
        add(specs, &n, &cap, YF_W_CONV1_B, 1, (int64_t[]){D / 2}, "model.layers.%lld.self_attn.lf_gate.conv1.bias", l);
        add(specs, &n, &cap, YF_W_CONV2, 4, (int64_t[]){D, D / 2, 2, 1}, "model.layers.%lld.self_attn.lf_gate.conv2.weight", l);
        add(specs, &n, &cap, YF_W_CONV2_B, 1, (int64_t[]){D}, "model.layers.%lld.self_attn.lf_gate.conv2.bias", l);
        add(specs, &n, &cap, YF_W_NORM, 1, (int64_t[]){D}, "model.layers.%lld.self_attn.lf_gate.output_layernorm.weight", l);
        add(specs, &n, &cap, YF_W_LINEAR, 2, (int64_t[]){D, D}, "model.layers.%lld.self_attn.q_proj.weight", l);
        add(specs, &n, &cap, YF_W_LINEAR, 2, (int64_t[]){D, D}, "model.layers.%lld.self_attn.k_proj.weight", l);
        add(specs, &n, &cap, YF_W_LINEAR, 2, (int64_t[]){D, D}, "model.layers.%lld.self_attn.v_proj.weight", l);
        add(specs, &n, &cap, YF_W_LINEAR, 2, (int64_t[]){D, D}, "model.layers.%lld.self_attn.o_proj.weight", l);
        add(specs, &n, &cap, YF_W_NORM, 1, (int64_t[]){D}, "model.layers.%lld.post_attention_layernorm.weight", l);
        add(specs, &n, &cap, YF_W_LINEAR, 2, (int64_t[]){I, D}, "model.layers.%lld.mlp.gate_proj.weight", l);
        add(specs, &n, &cap, YF_W_LINEAR, 2, (int64_t[]){I, D}, "model.layers.%lld.mlp.up_proj.weight", l);
        add(specs, &n, &cap, YF_W_LINEAR, 2, (int64_t[]){D, I}, "model.layers.%lld.mlp.down_proj.weight", l);
    }
    add(specs, &n, &cap, YF_W_NORM, 1, (int64_t[]){D}, "model.norm.weight", 0);
    if (!c->tie_word_embeddings) add(specs, &n, &cap, YF_W_LM_HEAD, 2, (int64_t[]){V, D}, "lm_head.weight", 0);
    return n;
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
        case YF_W_NORM: v = 1.0f; break;
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
