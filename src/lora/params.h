/* params: parameter counts of a Yuan model and a LoRA/DoRA set-up, from the
 * config alone (what PEFT's print_trainable_parameters reports). */
#ifndef YF_PARAMS_H
#define YF_PARAMS_H

#include "formats/config.h"
#include "lora/lora.h"

typedef struct yf_param_counts {
    int64_t base;     /* every base weight, the tied head once */
    int64_t adapter;  /* LoRA A and B of every targeted projection, plus DoRA magnitudes */
} yf_param_counts;

/* lc may be NULL (no adapter). Errors: r <= 0, no target. */
int yf_count_params(const yf_config *cfg, const yf_lora_cfg *lc, yf_param_counts *out);
/* [in, out] features of projection p. */
void yf_proj_dims(const yf_config *cfg, yf_proj p, int64_t *in, int64_t *out);
/* PEFT's line: "trainable params: 9,043,968 || all params: 2,097,768,448 || trainable%: 0.4311". */
void yf_format_trainable(char *buf, size_t cap, int64_t trainable, int64_t all);

#endif
