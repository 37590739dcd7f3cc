/* weights: the Yuan checkpoint layout — the name and shape of every tensor
 * for a config (shared/docs/yuan-architecture.md, Tensors). Used by the model
 * loader (to find and check tensors) and by `yuanft init`. */
#ifndef YF_WEIGHTS_H
#define YF_WEIGHTS_H

#include "formats/config.h"
#include "base/tensor.h"

/* The seven projections of a layer, in this order everywhere (checkpoint
 * order, adapter order, yf_lora's module table). */
typedef enum yf_proj { YF_Q = 0, YF_K, YF_V, YF_O, YF_GATE, YF_UP, YF_DOWN, YF_NPROJ } yf_proj;
extern const char *const yf_proj_names[YF_NPROJ]; /* "q_proj", ..., "down_proj" */

/* What a tensor is. Per layer (spec.layer >= 0): LN1 .. LN2 and LINEAR (with
 * spec.proj); model-wide (spec.layer == -1): EMBED, FINAL_NORM, LM_HEAD. */
typedef enum yf_wkind {
    YF_W_EMBED,      /* model.embed_tokens.weight        [V, D] */
    YF_W_LN1,        /* input_layernorm.weight           [D]    */
    YF_W_CONV1,      /* lf_gate.conv1.weight             [D/2, D, 2, 1] */
    YF_W_CONV1_B,    /* lf_gate.conv1.bias               [D/2]  */
    YF_W_CONV2,      /* lf_gate.conv2.weight             [D, D/2, 2, 1] */
    YF_W_CONV2_B,    /* lf_gate.conv2.bias               [D]    */
    YF_W_LF_LN,      /* lf_gate.output_layernorm.weight  [D]    */
    YF_W_LINEAR,     /* a projection [out, in] (spec.proj says which) */
    YF_W_LN2,        /* post_attention_layernorm.weight  [D]    */
    YF_W_FINAL_NORM, /* model.norm.weight                [D]    */
    YF_W_LM_HEAD     /* lm_head.weight [V, D] (absent from the list when tied) */
} yf_wkind;

typedef struct yf_wspec {
    char name[96];
    yf_wkind kind;
    int64_t layer; /* -1 for the model-wide tensors */
    yf_proj proj;  /* YF_W_LINEAR only */
    int ndim;
    int64_t shape[4];
} yf_wspec;

/* RMSNorm weights and convolution biases: vectors the compute keeps in fp32. */
static inline bool yf_wkind_is_vector(yf_wkind k) {
    return k == YF_W_LN1 || k == YF_W_LF_LN || k == YF_W_LN2 || k == YF_W_FINAL_NORM || k == YF_W_CONV1_B ||
           k == YF_W_CONV2_B;
}

/* Fills *specs (malloc'd) with every tensor of a Yuan model, in checkpoint
 * order: embedding, then per layer input_layernorm, lf_gate conv1 (w, b),
 * conv2 (w, b), output_layernorm, q, k, v, o, post_attention_layernorm,
 * gate, up, down; model.norm; lm_head.weight unless tied. The one source of
 * that order: the loader, the parameter list and every writer follow it. */
int64_t yf_weight_specs(const yf_config *cfg, yf_wspec **specs);

/* Random initialisation as the HF model does: linear and embedding weights
 * N(0, 0.02), norms 1, convolutions U(±1/sqrt(fan_in)). Returns a table of
 * tensors in dtype (F32 or BF16) owning its buffers. */
int yf_weights_init_random(const yf_config *cfg, uint64_t seed, yf_dtype dtype, yf_table *tab);
/* One tensor of the same initialisation: fills data (numel of s, in dtype F32
 * or BF16) drawing from rng. Calling it for every spec in order with one rng
 * seeded with seed gives exactly yf_weights_init_random's values; lets a
 * writer stream a large model one tensor at a time. */
void yf_weight_fill_random(const yf_config *cfg, const yf_wspec *s, yf_rng *rng, yf_dtype dtype, void *data);

#endif
