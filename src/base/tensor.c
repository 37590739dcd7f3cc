#include "base/tensor.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static const struct { const char *name; size_t size; } g_dtypes[YF_DTYPE_COUNT] = {
    [YF_F32] = {"F32", 4}, [YF_BF16] = {"BF16", 2}, [YF_F16] = {"F16", 2},
    [YF_I64] = {"I64", 8}, [YF_I32] = {"I32", 4},   [YF_U8] = {"U8", 1}, [YF_I8] = {"I8", 1},
};

size_t yf_dtype_size(yf_dtype t) { return (unsigned)t < YF_DTYPE_COUNT ? g_dtypes[t].size : 0; }
const char *yf_dtype_name(yf_dtype t) {
    return (unsigned)t < YF_DTYPE_COUNT ? g_dtypes[t].name : t == YF_QMAT ? "QMAT" : "?";
}

int yf_dtype_parse(const char *s, yf_dtype *out) {
    for (int i = 0; i < YF_DTYPE_COUNT; i++)
        if (strcmp(s, g_dtypes[i].name) == 0) {
            *out = (yf_dtype)i;
            return 0;
        }
    return -1;
}

int64_t yf_tensor_numel(const yf_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

float yf_tensor_get_f32(const yf_tensor *t, int64_t i) {
    switch (t->dtype) {
    case YF_F32: return ((const float *)t->data)[i];
    case YF_BF16: return yf_bf16_to_f32(((const uint16_t *)t->data)[i]);
    case YF_F16: return yf_f16_to_f32(((const uint16_t *)t->data)[i]);
    case YF_I64: return (float)((const int64_t *)t->data)[i];
    case YF_I32: return (float)((const int32_t *)t->data)[i];
    case YF_U8: return (float)((const uint8_t *)t->data)[i];
    case YF_I8: return (float)((const int8_t *)t->data)[i];
    default: YF_CHECK(0);
    }
    return 0;
}

void yf_tensor_to_f32(const yf_tensor *t, float *out) {
    int64_t n = yf_tensor_numel(t);
    if (t->dtype == YF_F32) {
        memcpy(out, t->data, (size_t)n * 4);
        return;
    }
    for (int64_t i = 0; i < n; i++) out[i] = yf_tensor_get_f32(t, i);
}

const char *yf_shape_str(const yf_tensor *t, char *buf, size_t cap) {
    size_t k = 0;
    k += snprintf(buf + k, cap - k, "[");
    for (int i = 0; i < t->ndim && k < cap; i++)
        k += snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
    return buf;
}

void yf_table_init(yf_table *tab) { memset(tab, 0, sizeof *tab); }

void yf_table_free(yf_table *tab) {
    for (int i = 0; i < tab->n; i++) free(tab->t[i].name);
    for (int i = 0; i < tab->nbufs; i++) free(tab->bufs[i]);
    for (int i = 0; i < tab->nmaps; i++) munmap(tab->maps[i].addr, tab->maps[i].len);
    free(tab->t);
    free(tab->bufs);
    free(tab->maps);
    memset(tab, 0, sizeof *tab);
}

yf_tensor *yf_table_add(yf_table *tab, const char *name, yf_dtype dt, int ndim, const int64_t *shape, void *data) {
    YF_CHECK(ndim >= 0 && ndim <= YF_MAX_DIMS);
    if (tab->n == tab->cap) {
        tab->cap = tab->cap ? tab->cap * 2 : 64;
        tab->t = yf_realloc(tab->t, (size_t)tab->cap * sizeof *tab->t);
    }
    yf_tensor *t = &tab->t[tab->n++];
    memset(t, 0, sizeof *t);
    t->name = yf_strdup(name);
    t->dtype = dt;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->data = data;
    t->nbytes = (size_t)yf_tensor_numel(t) * yf_dtype_size(dt);
    return t;
}

void yf_table_own(yf_table *tab, void *buf) {
    if (tab->nbufs == tab->capbufs) {
        tab->capbufs = tab->capbufs ? tab->capbufs * 2 : 16;
        tab->bufs = yf_realloc(tab->bufs, (size_t)tab->capbufs * sizeof *tab->bufs);
    }
    tab->bufs[tab->nbufs++] = buf;
}

void yf_table_own_map(yf_table *tab, void *addr, size_t len) {
    if (tab->nmaps == tab->capmaps) {
        tab->capmaps = tab->capmaps ? tab->capmaps * 2 : 4;
        tab->maps = yf_realloc(tab->maps, (size_t)tab->capmaps * sizeof *tab->maps);
    }
    tab->maps[tab->nmaps].addr = addr;
    tab->maps[tab->nmaps].len = len;
    tab->nmaps++;
}

yf_tensor *yf_table_alloc(yf_table *tab, const char *name, yf_dtype dt, int ndim, const int64_t *shape) {
    yf_tensor *t = yf_table_add(tab, name, dt, ndim, shape, NULL);
    t->data = yf_aligned_alloc(t->nbytes);
    yf_table_own(tab, t->data);
    return t;
}

yf_tensor *yf_table_find(const yf_table *tab, const char *name) {
    for (int i = 0; i < tab->n; i++)
        if (strcmp(tab->t[i].name, name) == 0) return &tab->t[i];
    return NULL;
}

void yf_table_merge(yf_table *dst, yf_table *src) {
    for (int i = 0; i < src->n; i++) {
        yf_tensor *s = &src->t[i];
        yf_tensor *d = yf_table_add(dst, s->name, s->dtype, s->ndim, s->shape, s->data);
        d->nbytes = s->nbytes;
    }
    for (int i = 0; i < src->nbufs; i++) yf_table_own(dst, src->bufs[i]);
    for (int i = 0; i < src->nmaps; i++) yf_table_own_map(dst, src->maps[i].addr, src->maps[i].len);
    src->nbufs = src->nmaps = 0;
    yf_table_free(src);
}
