#include "formats/vocab_map.h"

#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The lookup side: ids sorted with their rows. Returns the first id that
 * appears twice, or -1. */
static int64_t index_map(yf_vocab_map *vm) {
    int64_t n = vm->n, *pair = yf_malloc((size_t)n * 2 * sizeof(int64_t));
    for (int64_t i = 0; i < n; i++) pair[2 * i] = vm->orig[i], pair[2 * i + 1] = i;
    qsort(pair, (size_t)n, 2 * sizeof(int64_t), cmp_i64); /* compares the id, the first of each pair */
    vm->sorted = yf_malloc((size_t)n * sizeof(int64_t));
    vm->sorted_row = yf_malloc((size_t)n * sizeof(int64_t));
    int64_t dup = -1;
    for (int64_t i = 0; i < n; i++) {
        vm->sorted[i] = pair[2 * i];
        vm->sorted_row[i] = pair[2 * i + 1];
        if (i > 0 && vm->sorted[i] == vm->sorted[i - 1] && dup < 0) dup = vm->sorted[i];
    }
    free(pair);
    return dup;
}

int64_t yf_vocab_to_model(const yf_vocab_map *vm, int64_t id) {
    if (!vm || vm->n == 0 || id < 0) return id;
    int64_t lo = 0, hi = vm->n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (vm->sorted[mid] < id) lo = mid + 1;
        else hi = mid;
    }
    return lo < vm->n && vm->sorted[lo] == id ? vm->sorted_row[lo] : 0;
}

int yf_vocab_map_load(const char *dir, int64_t n_tok_ids, yf_vocab_map *vm) {
    memset(vm, 0, sizeof *vm);
    char *path = yf_path_join(dir, YF_VOCAB_MAP_FILE);
    if (!yf_file_exists(path)) {
        free(path);
        return 0;
    }
    int64_t limit = n_tok_ids > 0 ? n_tok_ids : (int64_t)1 << 31;
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
            if (vm->orig[i] < 0 || vm->orig[i] >= limit)
                rc = yf_errorf("%s: orig_ids[%lld] = %lld is not a token id of %s (%lld ids)", path, (long long)i,
                               (long long)vm->orig[i], n_tok_ids > 0 ? "the tokenizer" : "any tokenizer",
                               (long long)limit);
        if (rc == 0 && vm->orig[0] != 0)
            rc = yf_errorf("%s: orig_ids[0] = %lld, but row 0 must be <unk> (id 0)", path, (long long)vm->orig[0]);
        int64_t dup = rc == 0 ? index_map(vm) : -1;
        if (dup >= 0) rc = yf_errorf("%s: token id %lld appears twice in orig_ids", path, (long long)dup);
    }
    yf_table_free(&tab);
    free(path);
    if (rc) yf_vocab_map_free(vm);
    return rc;
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
    (void)index_map(vm); /* s has no repeats */
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
    free(vm->sorted);
    free(vm->sorted_row);
    memset(vm, 0, sizeof *vm);
}

void yf_vocab_map_ids(const yf_vocab_map *vm, int64_t *ids, int64_t n) {
    if (!vm || vm->n == 0) return;
    for (int64_t i = 0; i < n; i++)
        if (ids[i] != -100) ids[i] = yf_vocab_to_model(vm, ids[i]);
}
