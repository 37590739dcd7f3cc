/* checkpoint: a Hugging Face model directory -> config + table of tensors. */
#ifndef YF_CHECKPOINT_H
#define YF_CHECKPOINT_H

#include "formats/config.h"
#include "base/tensor.h"

/* Opens DIR: config.json plus, in this order of preference,
 * model.safetensors, model.safetensors.index.json, pytorch_model.bin,
 * pytorch_model.bin.index.json. Tensors are appended to tab unconverted
 * (stored dtype, names as in the file; tied heads are the model's business).
 * Errors name the directory or file; on error free tab. */
int yf_checkpoint_open(const char *dir, yf_config *cfg, yf_table *tab);

/* The weights file yf_checkpoint_open would read (malloc'd path into *path),
 * or an error naming DIR and the names looked for. */
int yf_checkpoint_weights_path(const char *dir, char **path);

#endif
