/* safetensors: the format is an 8-byte little-endian header length N, N bytes
 * of JSON {name: {"dtype", "shape", "data_offsets": [begin, end]}, ...,
 * "__metadata__": {str: str}}, then the data area; offsets are relative to the
 * data area. Everything read from the file is checked before use. */
#include "formats/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The reference implementation refuses headers above 100 MB: a bigger one is
 * a corrupt length, not a real header. */
#define ST_MAX_HEADER ((uint64_t)100 << 20)

typedef struct st_entry {
    const char *name; /* points into the parsed JSON */
    yf_dtype dtype;
    int ndim;
    int64_t shape[YF_MAX_DIMS];
    uint64_t begin, end;
} st_entry;

/* A JSON number that is a non-negative integer below 2^53 (exact in a double). */
static bool json_u64(const cJSON *it, uint64_t *out) {
    if (!cJSON_IsNumber(it)) return false;
    double d = it->valuedouble;
    if (!(d >= 0) || d > 9007199254740992.0 || d != floor(d)) return false;
    *out = (uint64_t)d;
    return true;
}

static int parse_entry(const cJSON *it, const char *path, uint64_t data_size, st_entry *e) {
    memset(e, 0, sizeof *e);
    e->name = it->string;
    if (!cJSON_IsObject(it)) return yf_errorf("%s: tensor \"%s\": header entry is not an object", path, e->name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(it, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
    if (!cJSON_IsString(dt)) return yf_errorf("%s: tensor \"%s\": missing \"dtype\"", path, e->name);
    if (yf_dtype_parse(dt->valuestring, &e->dtype))
        return yf_errorf("%s: tensor \"%s\": unsupported dtype \"%s\" (supported: F32, BF16, F16, I64, I32, U8)", path,
                         e->name, dt->valuestring);
    if (!cJSON_IsArray(sh)) return yf_errorf("%s: tensor \"%s\": missing \"shape\" array", path, e->name);
    int nd = cJSON_GetArraySize(sh);
    if (nd > YF_MAX_DIMS)
        return yf_errorf("%s: tensor \"%s\": %d dimensions (at most %d supported)", path, e->name, nd, YF_MAX_DIMS);
    e->ndim = nd;
    size_t dsize = yf_dtype_size(e->dtype);
    uint64_t numel = 1;
    bool overflow = false;
    for (int i = 0; i < nd; i++) {
        uint64_t d;
        if (!json_u64(cJSON_GetArrayItem(sh, i), &d))
            return yf_errorf("%s: tensor \"%s\": shape[%d] is not a non-negative integer", path, e->name, i);
        e->shape[i] = (int64_t)d;
        if (d && numel > UINT64_MAX / d) overflow = true;
        else numel *= d;
    }
    if (overflow || numel > UINT64_MAX / dsize)
        return yf_errorf("%s: tensor \"%s\": shape is too large", path, e->name);
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || !json_u64(cJSON_GetArrayItem(off, 0), &e->begin) ||
        !json_u64(cJSON_GetArrayItem(off, 1), &e->end))
        return yf_errorf("%s: tensor \"%s\": \"data_offsets\" must be two non-negative integers", path, e->name);
    if (e->begin > e->end || e->end > data_size)
        return yf_errorf("%s: tensor \"%s\": data_offsets [%llu, %llu] fall outside the data area of %llu bytes "
                         "(file truncated or corrupt)",
                         path, e->name, (unsigned long long)e->begin, (unsigned long long)e->end,
                         (unsigned long long)data_size);
    if (e->end - e->begin != numel * dsize) {
        char buf[128];
        yf_tensor tmp = {.ndim = e->ndim};
        memcpy(tmp.shape, e->shape, sizeof tmp.shape);
        return yf_errorf("%s: tensor \"%s\": shape %s of %s needs %llu bytes but data_offsets span %llu", path, e->name,
                         yf_shape_str(&tmp, buf, sizeof buf), yf_dtype_name(e->dtype),
                         (unsigned long long)(numel * dsize), (unsigned long long)(e->end - e->begin));
    }
    return 0;
}

static int cmp_begin(const void *a, const void *b) {
    const st_entry *x = *(st_entry *const *)a, *y = *(st_entry *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

static int cmp_name_idx(const void *a, const void *b, void *tab) {
    const yf_table *t = tab;
    return strcmp(t->t[*(const int *)a].name, t->t[*(const int *)b].name);
}

int yf_table_check_unique(const yf_table *tab, int from, const char *where) {
    int n = tab->n - from;
    if (n < 2) return 0;
    int *idx = yf_malloc((size_t)n * sizeof *idx);
    for (int i = 0; i < n; i++) idx[i] = from + i;
    qsort_r(idx, (size_t)n, sizeof *idx, cmp_name_idx, (void *)tab);
    int rc = 0;
    for (int i = 1; i < n && rc == 0; i++)
        if (strcmp(tab->t[idx[i - 1]].name, tab->t[idx[i]].name) == 0)
            rc = yf_errorf("%s: tensor \"%s\" appears twice", where, tab->t[idx[i]].name);
    free(idx);
    return rc;
}

int yf_st_metadata(const char *path, const char *key, char *out, size_t cap) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return yf_errorf("%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    uint8_t h8[8];
    uint64_t hlen = 0;
    int rc = -1;
    char *hdr = NULL;
    if (fstat(fd, &st) != 0 || pread(fd, h8, 8, 0) != 8) {
        yf_errorf("%s: cannot read a safetensors header", path);
        goto out;
    }
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)h8[i] << (8 * i);
    if (hlen > ST_MAX_HEADER || hlen > (uint64_t)st.st_size - 8) {
        yf_errorf("%s: header length %llu does not fit the file: truncated or not safetensors", path,
                  (unsigned long long)hlen);
        goto out;
    }
    hdr = yf_malloc((size_t)hlen + 1);
    if (pread(fd, hdr, (size_t)hlen, 8) != (ssize_t)hlen) {
        yf_errorf("%s: cannot read its %llu-byte header", path, (unsigned long long)hlen);
        goto out;
    }
    cJSON *root = cJSON_ParseWithLength(hdr, (size_t)hlen);
    const cJSON *meta = root ? cJSON_GetObjectItemCaseSensitive(root, "__metadata__") : NULL;
    const cJSON *v = cJSON_IsObject(meta) ? cJSON_GetObjectItemCaseSensitive(meta, key) : NULL;
    if (!root)
        yf_errorf("%s: header is not a valid JSON object (corrupt file?)", path);
    else if (cJSON_IsString(v))
        snprintf(out, cap, "%s", v->valuestring), rc = 1;
    else
        rc = 0;
    cJSON_Delete(root);
out:
    free(hdr);
    close(fd);
    return rc;
}

int yf_st_load(const char *path, yf_table *tab) {
    int fd;
    uint64_t size;
    /* mapped, not read: no cap beyond the address space */
    if (yf_open_regular(path, UINT64_MAX, &fd, &size)) return -1;
    if (size < 8) {
        close(fd);
        return yf_errorf("%s: truncated: %llu bytes, but a safetensors file starts with an 8-byte header length", path,
                         (unsigned long long)size);
    }
    void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED) return yf_errorf("%s: cannot map: %s", path, strerror(e));

    const uint8_t *base = map;
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)base[i] << (8 * i);
    st_entry *ents = NULL;
    cJSON *root = NULL;
    int rc = -1, first = tab->n;
    if (hlen > size - 8) {
        yf_errorf("%s: header length %llu runs past the end of the file (%llu bytes): truncated or not safetensors",
                  path, (unsigned long long)hlen, (unsigned long long)size);
        goto fail;
    }
    if (hlen > ST_MAX_HEADER) {
        yf_errorf("%s: header length %llu is larger than the 100 MB limit: corrupt file", path, (unsigned long long)hlen);
        goto fail;
    }
    root = cJSON_ParseWithLength((const char *)base + 8, (size_t)hlen);
    if (!root || !cJSON_IsObject(root)) {
        yf_errorf("%s: header is not a valid JSON object (corrupt file?)", path);
        goto fail;
    }
    uint64_t data_size = size - 8 - hlen;
    const uint8_t *data = base + 8 + hlen;
    int cap = cJSON_GetArraySize(root), n = 0;
    ents = yf_calloc((size_t)(cap > 0 ? cap : 1), sizeof *ents);
    const cJSON *it;
    cJSON_ArrayForEach(it, root) {
        if (strcmp(it->string, "__metadata__") == 0) {
            if (!cJSON_IsObject(it)) {
                yf_errorf("%s: \"__metadata__\" must be an object of strings", path);
                goto fail;
            }
            continue;
        }
        if (parse_entry(it, path, data_size, &ents[n])) goto fail;
        n++;
    }
    /* overlap check on the entries sorted by offset; empty tensors overlap nothing */
    st_entry **by = yf_malloc((size_t)(n > 0 ? n : 1) * sizeof *by);
    for (int i = 0; i < n; i++) by[i] = &ents[i];
    qsort(by, (size_t)n, sizeof *by, cmp_begin);
    const st_entry *prev = NULL;
    for (int i = 0; i < n; i++) {
        if (by[i]->begin == by[i]->end) continue;
        if (prev && by[i]->begin < prev->end) {
            yf_errorf("%s: tensors \"%s\" [%llu, %llu] and \"%s\" [%llu, %llu] overlap (corrupt header)", path,
                      prev->name, (unsigned long long)prev->begin, (unsigned long long)prev->end, by[i]->name,
                      (unsigned long long)by[i]->begin, (unsigned long long)by[i]->end);
            free(by);
            goto fail;
        }
        prev = by[i];
    }
    free(by);

    for (int i = 0; i < n; i++) {
        st_entry *s = &ents[i];
        void *p = (void *)(data + s->begin);
        size_t dsize = yf_dtype_size(s->dtype);
        if ((uintptr_t)p % dsize != 0) {
            /* Misaligned element access is undefined behaviour: copy. Files we
             * write (and HF writes) pad the header so this never happens. */
            void *copy = yf_aligned_alloc((size_t)(s->end - s->begin));
            memcpy(copy, p, (size_t)(s->end - s->begin));
            yf_table_own(tab, copy);
            p = copy;
        }
        yf_table_add(tab, s->name, s->dtype, s->ndim, s->shape, p);
    }
    if (yf_table_check_unique(tab, first, path)) goto fail;
    yf_table_own_map(tab, map, (size_t)size);
    cJSON_Delete(root);
    free(ents);
    return 0;
fail:
    /* drop anything added by this call; aligned copies stay owned by tab
     * (freed with it) which is harmless */
    while (tab->n > first) free(tab->t[--tab->n].name);
    cJSON_Delete(root);
    free(ents);
    munmap(map, (size_t)size);
    return rc;
}

/* ---- writing --------------------------------------------------------------- */

static void sb_put(char **s, size_t *n, size_t *cap, const char *txt, size_t len) {
    if (*n + len + 1 > *cap) {
        while (*n + len + 1 > *cap) *cap = *cap ? *cap * 2 : 4096;
        *s = yf_realloc(*s, *cap);
    }
    memcpy(*s + *n, txt, len);
    *n += len;
    (*s)[*n] = 0;
}

static void sb_str(char **s, size_t *n, size_t *cap, const char *txt) { sb_put(s, n, cap, txt, strlen(txt)); }

/* JSON string literal (quotes, backslashes and control bytes escaped). */
static void sb_json_str(char **s, size_t *n, size_t *cap, const char *txt) {
    sb_put(s, n, cap, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)txt; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            sb_put(s, n, cap, esc, 2);
        } else if (*p < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            sb_put(s, n, cap, esc, 6);
        } else {
            sb_put(s, n, cap, (const char *)p, 1);
        }
    }
    sb_put(s, n, cap, "\"", 1);
}

int yf_st_writer_open(yf_st_writer *w, const char *path, const yf_tensor *ts, int n, const char *const *metadata) {
    memset(w, 0, sizeof *w);
    char *h = NULL;
    size_t hn = 0, hcap = 0;
    sb_str(&h, &hn, &hcap, "{");
    bool first = true;
    if (metadata && metadata[0]) {
        sb_str(&h, &hn, &hcap, "\"__metadata__\":{");
        for (int i = 0; metadata[i]; i += 2) {
            YF_CHECK(metadata[i + 1] != NULL);
            if (i) sb_str(&h, &hn, &hcap, ",");
            sb_json_str(&h, &hn, &hcap, metadata[i]);
            sb_str(&h, &hn, &hcap, ":");
            sb_json_str(&h, &hn, &hcap, metadata[i + 1]);
        }
        sb_str(&h, &hn, &hcap, "}");
        first = false;
    }
    w->nbytes = yf_malloc((size_t)(n > 0 ? n : 1) * sizeof *w->nbytes);
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        const yf_tensor *t = &ts[i];
        YF_CHECK((unsigned)t->dtype < YF_DTYPE_COUNT && t->ndim >= 0 && t->ndim <= YF_MAX_DIMS);
        size_t nb = (size_t)yf_tensor_numel(t) * yf_dtype_size(t->dtype);
        w->nbytes[i] = nb;
        char num[64];
        if (!first) sb_str(&h, &hn, &hcap, ",");
        first = false;
        sb_json_str(&h, &hn, &hcap, t->name);
        sb_str(&h, &hn, &hcap, ":{\"dtype\":\"");
        sb_str(&h, &hn, &hcap, yf_dtype_name(t->dtype));
        sb_str(&h, &hn, &hcap, "\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            snprintf(num, sizeof num, "%s%lld", d ? "," : "", (long long)t->shape[d]);
            sb_str(&h, &hn, &hcap, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                 (unsigned long long)(off + nb));
        sb_str(&h, &hn, &hcap, num);
        off += nb;
    }
    sb_str(&h, &hn, &hcap, "}");
    /* the format recommends padding the header with spaces to 8 bytes so
     * the data area (and every F32/I64 tensor in it) stays aligned */
    while (hn % 8) sb_str(&h, &hn, &hcap, " ");
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)hn >> (8 * i));
    if (yf_atomic_open(&w->af, path)) {
        free(h);
        free(w->nbytes);
        w->nbytes = NULL;
        return -1;
    }
    w->path = yf_strdup(path);
    w->n = n;
    bool ok = fwrite(len8, 1, 8, w->af.f) == 8 && fwrite(h, 1, hn, w->af.f) == hn;
    free(h);
    if (!ok) {
        int e = errno;
        yf_st_writer_abort(w);
        return yf_errorf("%s: write failed: %s (disk full?)", path, strerror(e));
    }
    return 0;
}

int yf_st_writer_put(yf_st_writer *w, const void *data, size_t nbytes) {
    YF_CHECK(w->next < w->n && nbytes == w->nbytes[w->next]);
    if (nbytes && fwrite(data, 1, nbytes, w->af.f) != nbytes) {
        int e = errno;
        char *p = yf_strdup(w->path);
        yf_st_writer_abort(w);
        yf_errorf("%s: write failed: %s (disk full?)", p, strerror(e));
        free(p);
        return -1;
    }
    w->next++;
    return 0;
}

int yf_st_writer_close(yf_st_writer *w) {
    YF_CHECK(w->next == w->n);
    int rc = yf_atomic_commit(&w->af);
    free(w->path);
    free(w->nbytes);
    memset(w, 0, sizeof *w);
    return rc;
}

void yf_st_writer_abort(yf_st_writer *w) {
    if (w->af.f) yf_atomic_abort(&w->af);
    free(w->path);
    free(w->nbytes);
    memset(w, 0, sizeof *w);
}

int yf_st_save(const char *path, const yf_tensor *ts, int n, const char *const *metadata) {
    yf_st_writer w;
    if (yf_st_writer_open(&w, path, ts, n, metadata)) return -1;
    for (int i = 0; i < n; i++) {
        YF_CHECK(ts[i].data != NULL || w.nbytes[i] == 0);
        if (yf_st_writer_put(&w, ts[i].data, w.nbytes[i])) return -1;
    }
    return yf_st_writer_close(&w);
}

/* ---- sharded checkpoints ---------------------------------------------------- */

/* A shard name from an index must stay inside the checkpoint directory. */
static bool safe_shard_name(const char *s) {
    if (!s[0] || s[0] == '/') return false;
    for (const char *p = s; *p;) {
        const char *q = strchr(p, '/');
        size_t len = q ? (size_t)(q - p) : strlen(p);
        if (len == 2 && p[0] == '.' && p[1] == '.') return false;
        if (!q) break;
        p = q + 1;
    }
    return true;
}

typedef struct wm_pair {
    const char *tensor, *shard;
} wm_pair;

static int cmp_pair(const void *a, const void *b) {
    const wm_pair *x = a, *y = b;
    int c = strcmp(x->shard, y->shard);
    return c ? c : strcmp(x->tensor, y->tensor);
}

/* Whether tab (with by[] its indices sorted by name) holds name. */
static bool sorted_has(const yf_table *tab, const int *by, const char *name) {
    int lo = 0, hi = tab->n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(tab->t[by[mid]].name, name);
        if (c == 0) return true;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return false;
}

int yf_shard_index_load(const char *index_path, yf_shard_loader load, yf_table *tab) {
    char *text = NULL;
    if (yf_read_file_max(index_path, YF_MAX_INDEX_BYTES, &text, NULL)) return -1;
    cJSON *root = cJSON_Parse(text);
    free(text);
    int rc = -1, first = tab->n;
    wm_pair *pairs = NULL;
    char *dir = yf_strdup(index_path);
    char *slash = strrchr(dir, '/');
    if (slash) slash[1] = 0;
    else strcpy(dir, ".");
    yf_table loaded;
    yf_table_init(&loaded);

    if (!root || !cJSON_IsObject(root)) {
        yf_errorf("%s: not a valid JSON object", index_path);
        goto done;
    }
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm)) {
        yf_errorf("%s: missing \"weight_map\" object", index_path);
        goto done;
    }
    int nw = cJSON_GetArraySize(wm);
    if (nw == 0) {
        yf_errorf("%s: \"weight_map\" is empty", index_path);
        goto done;
    }
    /* (tensor, shard) sorted by shard: each shard is one run, loaded once,
     * and its tensors are looked up by binary search (O(n log n) for an
     * index of n entries, however they are spread over shards) */
    pairs = yf_malloc((size_t)nw * sizeof *pairs);
    int np = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, wm) {
        if (!cJSON_IsString(it) || !safe_shard_name(it->valuestring)) {
            yf_errorf("%s: tensor \"%s\": shard must be a file name inside the checkpoint directory", index_path,
                      it->string);
            goto done;
        }
        pairs[np++] = (wm_pair){it->string, it->valuestring};
    }
    qsort(pairs, (size_t)np, sizeof *pairs, cmp_pair);
    for (int a = 0, b; a < np; a = b) {
        for (b = a + 1; b < np && !strcmp(pairs[b].shard, pairs[a].shard);) b++;
        char *p = yf_path_join(dir, pairs[a].shard);
        yf_table one;
        yf_table_init(&one);
        if (load(p, &one)) {
            yf_table_free(&one);
            free(p);
            goto done;
        }
        free(p);
        int *by = yf_malloc((size_t)(one.n ? one.n : 1) * sizeof *by);
        for (int i = 0; i < one.n; i++) by[i] = i;
        qsort_r(by, (size_t)one.n, sizeof *by, cmp_name_idx, &one);
        for (int k = a; k < b; k++)
            if (!sorted_has(&one, by, pairs[k].tensor)) {
                yf_errorf("%s: tensor \"%s\" is listed in shard %s, but that shard has no such tensor", index_path,
                          pairs[k].tensor, pairs[k].shard);
                free(by);
                yf_table_free(&one);
                goto done;
            }
        free(by);
        yf_table_merge(&loaded, &one);
    }
    yf_table_merge(tab, &loaded);
    /* a name in two shards (or already in tab) is ambiguous */
    if (yf_table_check_unique(tab, first, index_path)) goto done;
    rc = 0;
done:
    yf_table_free(&loaded);
    free(pairs);
    free(dir);
    cJSON_Delete(root);
    return rc;
}

int yf_st_load_index(const char *index_path, yf_table *tab) { return yf_shard_index_load(index_path, yf_st_load, tab); }
