#include "formats/vocab_map.h"

#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"

static void index_map(yf_vocab_map *vm) {
    vm->max_orig = 0;
    for (int64_t i = 0; i < vm->n; i++)
        if (vm->orig[i] > vm->max_orig) vm->max_orig = vm->orig[i];
    vm->to_model = yf_malloc((size_t)(vm->max_orig + 1) * sizeof(int64_t));
    for (int64_t i = 0; i <= vm->max_orig; i++) vm->to_model[i] = -1;
    for (int64_t i = 0; i < vm->n; i++) vm->to_model[vm->orig[i]] = i;
}

int yf_vocab_map_load(const char *dir, yf_vocab_map *vm) {
    memset(vm, 0, sizeof *vm);
    char *path = yf_path_join(dir, YF_VOCAB_MAP_FILE);
    if (!yf_file_exists(path)) {
        free(path);
        return 0;
    }
    yf_table tab;
    yf_table_init(&tab);
    int rc = yf_st_load(path, &tab);
    yf_tensor *t = rc ? NULL : yf_table_find(&tab, "orig_ids");
    if (rc == 0 && (!t || t->dtype != YF_I64 || t->ndim != 1 || t->shape[0] < 1))
        rc = yf_errorf("%s: needs an I64 tensor 'orig_ids' of shape [V']", path);
    if (rc == 0) {
        vm->n = t->shape[0];
        vm->orig = yf_malloc((size_t)vm->n * sizeof(int64_t));
        memcpy(vm->orig, t->data, (size_t)vm->n * sizeof(int64_t));
        for (int64_t i = 0; i < vm->n && rc == 0; i++)
            if (vm->orig[i] < 0 || vm->orig[i] > (int64_t)1 << 31)
                rc = yf_errorf("%s: orig_ids[%lld] = %lld is not a token id", path, (long long)i, (long long)vm->orig[i]);
        if (rc == 0) index_map(vm);
    }
    yf_table_free(&tab);
    free(path);
    if (rc) yf_vocab_map_free(vm);
    return rc;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

void yf_vocab_map_build(yf_vocab_map *vm, const int64_t *ids, int64_t n) {
    memset(vm, 0, sizeof *vm);
    int64_t *s = yf_malloc((size_t)(n + 1) * sizeof(int64_t));
    memcpy(s, ids, (size_t)n * sizeof(int64_t));
    s[n] = 0; /* <unk> always present, first after sorting */
    qsort(s, (size_t)n + 1, sizeof(int64_t), cmp_i64);
    int64_t k = 0;
    for (int64_t i = 0; i <= n; i++)
        if (s[i] >= 0 && (k == 0 || s[i] != s[k - 1])) s[k++] = s[i];
    vm->n = k;
    vm->orig = s;
    index_map(vm);
}

int yf_vocab_map_save(const yf_vocab_map *vm, const char *dir) {
    char *path = yf_path_join(dir, YF_VOCAB_MAP_FILE);
    yf_tensor t = {0};
    t.name = "orig_ids";
    t.dtype = YF_I64;
    t.ndim = 1;
    t.shape[0] = vm->n;
    t.data = vm->orig;
    t.nbytes = (size_t)vm->n * sizeof(int64_t);
    int rc = yf_st_save(path, &t, 1, NULL);
    free(path);
    return rc;
}

void yf_vocab_map_free(yf_vocab_map *vm) {
    free(vm->orig);
    free(vm->to_model);
    memset(vm, 0, sizeof *vm);
}

void yf_vocab_map_ids(const yf_vocab_map *vm, int64_t *ids, int64_t n) {
    if (!vm || vm->n == 0) return;
    for (int64_t i = 0; i < n; i++)
        if (ids[i] != -100) ids[i] = yf_vocab_to_model(vm, ids[i]);
}
