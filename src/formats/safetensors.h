/* safetensors: read (mmap, every offset checked), write, sharded index. */
#ifndef YF_SAFETENSORS_H
#define YF_SAFETENSORS_H

#include "base/tensor.h"

/* Maps path and appends its tensors to tab (data points into the mapping,
 * which tab owns), in header order. Checks: header length within the file,
 * JSON valid, dtype known, offsets inside the data area, not overlapping, and
 * sized shape*dtype; names unique. `__metadata__` is ignored. A tensor whose
 * bytes are not aligned to its element size is copied to an aligned buffer.
 * The mapping is read-only: copy a tensor before writing to it.
 * Errors name the file and the tensor; on error tab is left unchanged. */
int yf_st_load(const char *path, yf_table *tab);
/* The value of key in path's "__metadata__" into out (cap bytes, cut to
 * fit): 1 when present, 0 when absent, -1 (with a message naming the file)
 * when the file or its header cannot be read. Reads the header only. */
int yf_st_metadata(const char *path, const char *key, char *out, size_t cap);
/* Loads a sharded checkpoint through its model.safetensors.index.json (see
 * yf_shard_index_load). */
int yf_st_load_index(const char *index_path, yf_table *tab);
/* Writes tensors (any dtype; data must be set) to path atomically, in the given
 * order. metadata: NULL or a NULL-terminated list of key, value strings. */
int yf_st_save(const char *path, const yf_tensor *ts, int n, const char *const *metadata);

/* Streaming writer, for files larger than one wants in memory at once:
 * open with every tensor's name/dtype/shape (data ignored), then put each
 * tensor's bytes in the same order, then close (which commits atomically).
 * On any error the temporary file is removed; call abort to give up early. */
typedef struct yf_st_writer {
    yf_atomic_file af;
    char *path;
    int n, next;
    size_t *nbytes; /* [n] */
} yf_st_writer;
int yf_st_writer_open(yf_st_writer *w, const char *path, const yf_tensor *ts, int n, const char *const *metadata);
int yf_st_writer_put(yf_st_writer *w, const void *data, size_t nbytes);
int yf_st_writer_close(yf_st_writer *w);
void yf_st_writer_abort(yf_st_writer *w);

/* A sharded checkpoint's index (HF `*.index.json`: {"weight_map": {tensor:
 * shard file}}): loads each shard once with `load` (shards are relative to
 * the index's directory), checks that every listed tensor is in the shard the
 * index names and that no name appears twice, and appends everything to tab.
 * On error tab may hold part of the checkpoint: free it. */
typedef int (*yf_shard_loader)(const char *path, yf_table *tab);
int yf_shard_index_load(const char *index_path, yf_shard_loader load, yf_table *tab);

/* Fails (message naming `where`) when two of tab's entries from index `from`
 * on share a name. */
int yf_table_check_unique(const yf_table *tab, int from, const char *where);

#endif
