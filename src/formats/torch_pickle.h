/* torch_pickle: the PyTorch `torch.save` zip archive and the pickle subset it uses. */
#ifndef YF_TORCH_PICKLE_H
#define YF_TORCH_PICKLE_H

#include "base/tensor.h"

/* Reads pytorch_model.bin (a zip archive from torch.save): parses data.pkl
 * (protocol 2: rebuilt tensors, float/bfloat16/half storages, OrderedDict,
 * shared storages) and appends every tensor to tab. Tensor data is read
 * lazily: stored zip entries are mmapped, never the whole file read twice.
 * Stored entries are mapped read-only: copy a tensor before writing to it.
 * Tensors must be contiguous; two names may share one storage (tied weights).
 * Errors name the file and the problem (corrupt zip, unsupported opcode,
 * with its offset in ARCHIVE/data.pkl); on error tab is left unchanged. */
int yf_torch_load(const char *path, yf_table *tab);

#endif
