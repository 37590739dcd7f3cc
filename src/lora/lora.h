/* lora: LoRA / DoRA adapters over the seven Yuan projections (PEFT semantics,
 * see shared/docs/finetune-semantics.md). Adapters are fp32 whatever the base. */
#ifndef YF_LORA_H
#define YF_LORA_H

#include "base/tensor.h"
#include "formats/config.h"
#include "formats/weights.h"

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

/* Parses "q_proj,k_proj,..." (also "all-linear"/"all") into a target mask;
 * unknown module names are an error naming them. */
int yf_lora_parse_targets(const char *list, unsigned *mask);
/* Allocates the adapter tensors for cfg (A, B zero; m zero). r > 0 required. */
int yf_lora_create(yf_lora *lo, const yf_config *cfg, const yf_lora_cfg *lc);
/* PEFT init: A ~ U(-1/sqrt(in), 1/sqrt(in)), B = 0, DoRA m = row norms of W,
 * read from weights (a table of the base model's checkpoint tensors, any
 * float dtype; only needed for DoRA, else may be NULL). */
int yf_lora_init(yf_lora *lo, const yf_config *cfg, const yf_table *weights, yf_rng *rng);
/* Fails (message) when lo does not fit the model's config. */
int yf_lora_check_fits(const yf_lora *lo, const yf_config *cfg);
/* n[o] = || W[o,:] + s * (B A)[o,:] || for a module (double accumulation):
 * DoRA's row norms. W [out, in] in dtype wt (F32, BF16, F16). */
void yf_lora_row_norms(const yf_lora_mod *md, int r, float s, const void *w, yf_dtype wt, float *n);
/* Reads a PEFT adapter directory (adapter_config.json + adapter_model.safetensors);
 * shapes are checked against cfg (error names the tensor). */
int yf_lora_load(const char *dir, const yf_config *cfg, yf_lora *lo);
/* Writes a PEFT adapter directory (files written atomically). */
int yf_lora_save(const yf_lora *lo, const char *dir, const char *base_model_name_or_path);
/* Allocates (zeroed) gradients for every adapted module; a no-op for those
 * already allocated. */
void yf_lora_alloc_grads(yf_lora *lo);
void yf_lora_zero_grads(yf_lora *lo);
/* The trainable tensors with their PEFT key names
 * (base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight, ...). */
void yf_lora_params(yf_lora *lo, yf_param_list *out);
void yf_lora_free(yf_lora *lo);
/* merge_and_unload on a table of checkpoint tensors (any float dtype): every
 * adapted projection weight is replaced by W + s B A (DoRA: scaled to the
 * magnitude per row), in its own dtype, in a new buffer owned by tab. */
int yf_lora_merge_table(const yf_lora *lo, const yf_config *cfg, yf_table *tab);

#endif
