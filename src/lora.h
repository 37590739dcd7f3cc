/* lora: LoRA / DoRA adapters over the seven Yuan projections (PEFT semantics,
 * see shared/docs/finetune-semantics.md). Adapters are fp32 whatever the base. */
#ifndef YF_LORA_H
#define YF_LORA_H

#include "config.h"
#include "tensor.h"

/* The seven projections, in this order everywhere. */
typedef enum yf_proj { YF_Q = 0, YF_K, YF_V, YF_O, YF_GATE, YF_UP, YF_DOWN, YF_NPROJ } yf_proj;
extern const char *const yf_proj_names[YF_NPROJ]; /* "q_proj", ..., "down_proj" */

typedef struct yf_lora_cfg {
    int r;
    float alpha;
    float dropout;      /* on the adapter branch only; off in eval/score */
    bool use_rslora;    /* scaling = alpha / sqrt(r) instead of alpha / r */
    bool use_dora;
    unsigned targets;   /* bit (1u << yf_proj) per targeted projection */
} yf_lora_cfg;

/* One adapted projection W [out, in]. */
typedef struct yf_lora_mod {
    int64_t in, out;
    float *A, *B, *m;   /* [r, in], [out, r], DoRA magnitude [out] or NULL */
    float *gA, *gB, *gm; /* gradients, same shapes (NULL until yf_lora_alloc_grads) */
} yf_lora_mod;

typedef struct yf_lora {
    yf_lora_cfg cfg;
    float scaling;
    int64_t n_layers;
    yf_lora_mod *mods;  /* [n_layers * YF_NPROJ]; mods[l*YF_NPROJ+p].A == NULL when p is not targeted */
    yf_table store;     /* owns the buffers */
} yf_lora;

static inline yf_lora_mod *yf_lora_get(const yf_lora *lo, int64_t layer, yf_proj p) {
    yf_lora_mod *m = &lo->mods[layer * YF_NPROJ + p];
    return m->A ? m : NULL;
}

#endif
