/* checkpoint: a Hugging Face model directory -> config + table of tensors. */
#ifndef YF_CHECKPOINT_H
#define YF_CHECKPOINT_H

#include "config.h"
#include "tensor.h"

/* Opens DIR: config.json plus, in this order of preference,
 * model.safetensors, model.safetensors.index.json, pytorch_model.bin,
 * pytorch_model.bin.index.json. Tensors are appended to tab unconverted. */
int yf_checkpoint_open(const char *dir, yf_config *cfg, yf_table *tab);

#endif
