/* tensor: the neutral "table of named tensors" that every loader returns and
 * every writer takes. Only the model knows Yuan's names. */
#ifndef YF_TENSOR_H
#define YF_TENSOR_H

#include "base/util.h"

typedef enum yf_dtype {
    YF_F32 = 0,
    YF_BF16,
    YF_F16,
    YF_I64,
    YF_I32,
    YF_U8,
    YF_I8,
    YF_DTYPE_COUNT,
    /* Not a file dtype: a matrix quantized in memory (kernels/cpu/quant.h);
     * the data pointer is then a yf_qmat's. Size 0, name "QMAT". */
    YF_QMAT = 64
} yf_dtype;

size_t yf_dtype_size(yf_dtype t);
const char *yf_dtype_name(yf_dtype t);     /* safetensors spelling: "F32", "BF16", ... */
int yf_dtype_parse(const char *s, yf_dtype *out); /* 0 ok, -1 unknown (no message set) */

#define YF_MAX_DIMS 8

/* A tensor view: data points into a mapping or buffer owned by a table (or by
 * whoever built the view). Row-major, contiguous. */
typedef struct yf_tensor {
    char *name;
    yf_dtype dtype;
    int ndim;
    int64_t shape[YF_MAX_DIMS];
    void *data;
    size_t nbytes;
} yf_tensor;

int64_t yf_tensor_numel(const yf_tensor *t);
/* Converts element i of any float dtype to f32. */
float yf_tensor_get_f32(const yf_tensor *t, int64_t i);
/* Copies/converts the whole tensor into a caller-provided f32 array. */
void yf_tensor_to_f32(const yf_tensor *t, float *out);
/* "[2, 12, 320]" into buf. */
const char *yf_shape_str(const yf_tensor *t, char *buf, size_t cap);

/* A table of named tensors plus the resources backing them (mmaps, buffers),
 * released together by yf_table_free. */
typedef struct yf_table {
    yf_tensor *t;
    int n, cap;
    void **bufs; /* malloc'd blocks to free */
    int nbufs, capbufs;
    struct { void *addr; size_t len; } *maps; /* mmaps to unmap */
    int nmaps, capmaps;
} yf_table;

void yf_table_init(yf_table *tab);
void yf_table_free(yf_table *tab);
/* Adds a tensor entry (name is copied; data is not). Returns it. */
yf_tensor *yf_table_add(yf_table *tab, const char *name, yf_dtype dt, int ndim, const int64_t *shape, void *data);
/* Allocates a zeroed, 64-byte aligned buffer owned by the table and adds the tensor. */
yf_tensor *yf_table_alloc(yf_table *tab, const char *name, yf_dtype dt, int ndim, const int64_t *shape);
void yf_table_own(yf_table *tab, void *buf);
void yf_table_own_map(yf_table *tab, void *addr, size_t len);
yf_tensor *yf_table_find(const yf_table *tab, const char *name);
/* Moves every entry and resource of src into dst (src left empty). */
void yf_table_merge(yf_table *dst, yf_table *src);

/* A trainable fp32 tensor and its gradient, for the optimiser. */
typedef struct yf_param {
    const char *name;   /* checkpoint / adapter key */
    float *w;           /* [numel] */
    float *g;           /* [numel], accumulated with += */
    int64_t numel;
    int ndim;
    int64_t shape[YF_MAX_DIMS];
} yf_param;

typedef struct yf_param_list {
    yf_param *p; /* malloc'd array; free(list.p) */
    int n;
} yf_param_list;

#endif
