/* safetensors: read (mmap, every offset checked), write, sharded index. */
#ifndef YF_SAFETENSORS_H
#define YF_SAFETENSORS_H

#include "tensor.h"

/* Maps path and appends its tensors to tab (data points into the mapping,
 * which tab owns). Checks: header length within the file, JSON valid, dtype
 * known, offsets inside the data area, in order, not overlapping, and sized
 * shape*dtype. Errors name the file and the tensor. */
int yf_st_load(const char *path, yf_table *tab);
/* Loads a sharded checkpoint through its model.safetensors.index.json. */
int yf_st_load_index(const char *index_path, yf_table *tab);
/* Writes tensors (any dtype; data must be set) to path atomically, in the given
 * order. metadata: NULL or a NULL-terminated list of key, value strings. */
int yf_st_save(const char *path, const yf_tensor *ts, int n, const char *const *metadata);

#endif
