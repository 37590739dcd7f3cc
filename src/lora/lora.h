/* lora: LoRA / DoRA adapters over the seven Yuan projections (PEFT semantics,
 * see shared/docs/finetune-semantics.md). Adapters are fp32 whatever the base. */
#ifndef YF_LORA_H
#define YF_LORA_H

#include "formats/config.h"
#include "base/tensor.h"

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

struct yf_model;

/* Parses "q_proj,k_proj,..." (also "all-linear"/"all") into a target mask;
 * unknown module names are an error naming them. */
int yf_lora_parse_targets(const char *list, unsigned *mask);
/* Allocates the adapter tensors for cfg (A, B zero; m zero). r > 0 required. */
int yf_lora_create(yf_lora *lo, const yf_config *cfg, const yf_lora_cfg *lc);
/* PEFT init: A ~ U(-1/sqrt(in), 1/sqrt(in)), B = 0, DoRA m = row norms of W. */
int yf_lora_init(yf_lora *lo, struct yf_model *m, yf_rng *rng);
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
