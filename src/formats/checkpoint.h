/* checkpoint: a Hugging Face model directory: reading it (config + table of
 * tensors) and writing one. */
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

/* Fills buf (ts[i].nbytes bytes) with tensor i's bytes, or points *data at
 * them; returns 0, or -1 with a message. */
typedef int (*yf_tensor_source)(void *ctx, int64_t i, void *buf, const void **data);

/* Writes the model directory DIR (created if needed): model.safetensors with
 * the n tensors ts in this order (their bytes at ts[i].data, or from src
 * when given, one tensor at a time, so a 4 GB model streams through one
 * tensor's buffer), config.json (cfg with torch_dtype set from the first
 * tensor's dtype), and tokenizer.model and the vocabulary map copied from
 * the model directory copy_from (NULL: none) where it has them. Each file
 * is written atomically. The one writer of model directories: init, merge,
 * full fine-tuning's checkpoints and yf_model_save all come here. */
int yf_model_dir_write(const char *dir, const yf_config *cfg, const yf_tensor *ts, int64_t n, yf_tensor_source src,
                       void *ctx, const char *copy_from);
/* The same with more "__metadata__" entries (NULL-terminated key, value
 * list, or NULL) besides format = pt. */
int yf_model_dir_write_meta(const char *dir, const yf_config *cfg, const yf_tensor *ts, int64_t n,
                            yf_tensor_source src, void *ctx, const char *copy_from, const char *const *meta);

#endif
