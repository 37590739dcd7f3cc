/* prefix_cache: see prefix_cache.h. An entry is one allocation: per layer
 * the keys and values [H, n, hd] (the layout of a one-sequence decoding
 * state of capacity n, so that the entry's prefill writes them in place)
 * and the filter rows a [n, D] and c [n, D/2]. */
#include "model/prefix_cache.h"

#include <stdlib.h>
#include <string.h>

#include "model/model_internal.h"

typedef struct pc_entry {
    int64_t *ids;          /* [n] */
    int64_t n;
    int64_t tag;           /* the cache's tag when it was made */
    float *block;          /* everything below */
    float **k, **v, **a, **c; /* [L] each: [H, n, hd], [H, n, hd], [n, D], [n, D/2] */
    size_t bytes;
    uint64_t used;         /* the cache's clock at the last use */
} pc_entry;

struct yf_prefix_cache {
    int64_t L, H, hd, D;
    int64_t eod;           /* <eod>, or -1 without reset_attention_mask */
    int64_t tag;           /* yf_prefix_cache_set_tag: the entries seen and made now */
    size_t budget;
    pc_entry *e;
    int64_t n, cap;
    uint64_t clock;
    yf_prefix_cache_stats st;
};

yf_prefix_cache *yf_prefix_cache_new(const yf_model *m, size_t budget_bytes) {
    yf_prefix_cache *c = yf_calloc(1, sizeof *c);
    c->L = m->L, c->H = m->H, c->hd = m->hd, c->D = m->D;
    c->eod = m->cfg.reset_attention_mask ? m->cfg.eod_token : -1;
    c->budget = budget_bytes;
    return c;
}

static void entry_free(pc_entry *e) {
    free(e->ids), free(e->block), free(e->k), free(e->v), free(e->a), free(e->c);
    memset(e, 0, sizeof *e);
}

void yf_prefix_cache_clear(yf_prefix_cache *c) {
    for (int64_t i = 0; i < c->n; i++) entry_free(&c->e[i]);
    c->n = 0;
    c->st.bytes = 0;
    c->st.entries = 0;
}

void yf_prefix_cache_set_tag(yf_prefix_cache *c, int64_t tag) { c->tag = tag; }

void yf_prefix_cache_free(yf_prefix_cache *c) {
    if (!c) return;
    yf_prefix_cache_clear(c);
    free(c->e);
    free(c);
}

static int64_t floats_per_position(const yf_prefix_cache *c) { return c->L * (2 * c->H * c->hd + c->D + c->D / 2); }

size_t yf_prefix_cache_entry_bytes(const yf_prefix_cache *c, int64_t n) {
    return (size_t)(n * floats_per_position(c)) * sizeof(float) + (size_t)n * sizeof(int64_t);
}

/* The entry with the longest common prefix with ids[0..n) (the most recently
 * used among equals), and that length; -1 when no entry shares a position. */
static int64_t best_entry(const yf_prefix_cache *c, const int64_t *ids, int64_t n, int64_t *len) {
    int64_t best = -1, bk = 0;
    for (int64_t i = 0; i < c->n; i++) {
        const pc_entry *e = &c->e[i];
        if (e->tag != c->tag) continue;
        int64_t k = 0, lim = e->n < n ? e->n : n;
        while (k < lim && e->ids[k] == ids[k]) k++;
        if (k > bk || (k == bk && k > 0 && best >= 0 && e->used > c->e[best].used)) best = i, bk = k;
    }
    *len = bk;
    return bk > 0 ? best : -1;
}

int64_t yf_prefix_cache_match(const yf_prefix_cache *c, const int64_t *ids, int64_t n) {
    int64_t k;
    best_entry(c, ids, n, &k);
    return k;
}

/* The document start after ids[0..k): past the last <eod> (reset_attention_mask). */
static int64_t doc_start_after(const yf_prefix_cache *c, const int64_t *ids, int64_t k) {
    int64_t s = 0;
    for (int64_t t = 0; t < k; t++)
        if (ids[t] == c->eod) s = t + 1;
    return s;
}

/* Copies positions 0..k-1 of entry e's keys and values into states st[L]
 * (one sequence, capacity st->cap) and its filter rows at k-1 into st's. */
static void copy_into(const yf_prefix_cache *c, const pc_entry *e, int64_t k, yf_layer_state *st) {
    int64_t hd = c->hd;
    for (int64_t l = 0; l < c->L; l++) {
        YF_CHECK(st[l].cap >= k);
        for (int64_t h = 0; h < c->H; h++) {
            memcpy(st[l].k + h * st[l].cap * hd, e->k[l] + h * e->n * hd, (size_t)(k * hd) * sizeof(float));
            memcpy(st[l].v + h * st[l].cap * hd, e->v[l] + h * e->n * hd, (size_t)(k * hd) * sizeof(float));
        }
        memcpy(st[l].a_prev, e->a[l] + (k - 1) * c->D, (size_t)c->D * sizeof(float));
        memcpy(st[l].c_prev, e->c[l] + (k - 1) * c->D / 2, (size_t)(c->D / 2) * sizeof(float));
    }
}

static void entry_alloc(const yf_prefix_cache *c, pc_entry *e, const int64_t *ids, int64_t n) {
    int64_t L = c->L, kv = c->H * n * c->hd;
    e->n = n;
    e->tag = c->tag;
    e->ids = yf_malloc((size_t)n * sizeof(int64_t));
    memcpy(e->ids, ids, (size_t)n * sizeof(int64_t));
    e->block = yf_aligned_alloc((size_t)(n * floats_per_position(c)) * sizeof(float));
    e->k = yf_malloc((size_t)L * sizeof(float *)), e->v = yf_malloc((size_t)L * sizeof(float *));
    e->a = yf_malloc((size_t)L * sizeof(float *)), e->c = yf_malloc((size_t)L * sizeof(float *));
    float *p = e->block;
    for (int64_t l = 0; l < L; l++) {
        e->k[l] = p, p += kv;
        e->v[l] = p, p += kv;
        e->a[l] = p, p += n * c->D;
        e->c[l] = p, p += n * c->D / 2;
    }
    e->bytes = yf_prefix_cache_entry_bytes(c, n);
}

/* Drops least recently used entries other than keep until the budget holds. */
static void fit_budget(yf_prefix_cache *c, int64_t keep) {
    while (c->st.bytes > c->budget && c->n > 1) {
        int64_t lru = -1;
        for (int64_t i = 0; i < c->n; i++)
            if (i != keep && (lru < 0 || c->e[i].used < c->e[lru].used)) lru = i;
        c->st.bytes -= c->e[lru].bytes;
        entry_free(&c->e[lru]);
        c->e[lru] = c->e[c->n - 1];
        if (keep == c->n - 1) keep = lru;
        c->n--;
        c->st.evicted++;
    }
    c->st.entries = c->n;
}

/* Adds entry ne (computed) to the cache and fits the budget. */
static void entry_commit(yf_prefix_cache *c, pc_entry *ne, int64_t computed) {
    ne->used = ++c->clock;
    if (c->n == c->cap) c->e = yf_realloc(c->e, (size_t)(c->cap = c->cap ? 2 * c->cap : 4) * sizeof *c->e);
    c->e[c->n++] = *ne;
    c->st.bytes += ne->bytes;
    c->st.tokens_computed += computed;
    fit_budget(c, c->n - 1);
}

/* The length of the common prefix of ids[i][0..n[i]), i < count. */
static int64_t common_len(const int64_t *const *ids, const int64_t *n, int64_t count) {
    int64_t p = n[0];
    for (int64_t i = 1; i < count; i++) {
        int64_t k = 0, lim = n[i] < p ? n[i] : p;
        while (k < lim && ids[i][k] == ids[0][k]) k++;
        p = k;
    }
    return p;
}

/* Makes ids[i][0..n[i]) held, i < count: a new entry for each that no
 * entry holds (nor one made here), each starting from a copy of the longest
 * held prefix of it, their rests computed in one batched prefill. */
static int add_entries(yf_prefix_cache *c, yf_model *m, const yf_lora *lo, const int64_t *const *ids,
                       const int64_t *n, int64_t count) {
    YF_CHECK(m->L == c->L && m->D == c->D && m->H == c->H);
    int64_t L = c->L, D = c->D;
    pc_entry *ne = yf_calloc((size_t)count, sizeof *ne);
    yf_prefill *pf = yf_calloc((size_t)count, sizeof *pf);
    yf_layer_state *st = yf_calloc((size_t)(count * L), sizeof *st);
    float *prev = yf_calloc((size_t)(count * L * (D + D / 2)), sizeof(float));
    float **rows = yf_malloc((size_t)(2 * count * L) * sizeof(float *));
    int64_t np = 0;
    size_t planned = 0;
    for (int64_t i = 0; i < count; i++) {
        if (n[i] <= 0) continue;
        int64_t k, src = best_entry(c, ids[i], n[i], &k);
        bool dup = false; /* held by an entry planned here already */
        for (int64_t j = 0; j < np && !dup; j++)
            dup = ne[j].n >= n[i] && memcmp(ne[j].ids, ids[i], (size_t)n[i] * sizeof(int64_t)) == 0;
        if (k >= n[i] || dup) {
            if (src >= 0) c->e[src].used = ++c->clock;
            continue;
        }
        size_t bytes = yf_prefix_cache_entry_bytes(c, n[i]);
        if (bytes > c->budget || planned + bytes > c->budget) continue; /* not kept, or left to a later add */
        planned += bytes;
        pc_entry *e = &ne[np];
        entry_alloc(c, e, ids[i], n[i]);
        /* a one-sequence decoding state over the entry's own storage */
        yf_layer_state *es = st + np * L;
        for (int64_t l = 0; l < L; l++) {
            float *pv = prev + (np * L + l) * (D + D / 2);
            es[l] = (yf_layer_state){.k = e->k[l], .v = e->v[l], .cap = n[i], .a_prev = pv, .c_prev = pv + D};
            rows[(2 * np) * L + l] = e->a[l] + k * D;
            rows[(2 * np + 1) * L + l] = e->c[l] + k * D / 2;
        }
        if (src >= 0) { /* from the held part */
            copy_into(c, &c->e[src], k, es);
            for (int64_t l = 0; l < L; l++) {
                memcpy(e->a[l], c->e[src].a[l], (size_t)(k * D) * sizeof(float));
                memcpy(e->c[l], c->e[src].c[l], (size_t)(k * D / 2) * sizeof(float));
            }
            c->e[src].used = ++c->clock;
        }
        pf[np] = (yf_prefill){.st = es, .pos = k, .doc_start = doc_start_after(c, ids[i], k), .ids = ids[i] + k,
                              .len = n[i] - k, .adapter = -1, .a_rows = rows + 2 * np * L,
                              .c_rows = rows + (2 * np + 1) * L};
        np++;
    }
    int rc = np ? yf_model_prefill_batch(m, lo, NULL, pf, np) : 0;
    for (int64_t j = 0; j < np; j++) {
        if (rc == 0)
            entry_commit(c, &ne[j], pf[j].len);
        else
            entry_free(&ne[j]);
    }
    free(ne), free(pf), free(st), free(prev), free(rows);
    return rc;
}

int yf_prefix_cache_add(yf_prefix_cache *c, yf_model *m, const yf_lora *lo, const int64_t *ids, int64_t n) {
    return add_entries(c, m, lo, &ids, &n, 1);
}

int yf_prefix_cache_add_many(yf_prefix_cache *c, yf_model *m, const yf_lora *lo, const int64_t *const *ids,
                             const int64_t *n, int64_t count) {
    if (count <= 0) return 0;
    /* their common part first, once (the rest then starts from it) */
    int64_t p = common_len(ids, n, count);
    if (count > 1 && p >= YF_PREFIX_CACHE_MIN && yf_prefix_cache_add(c, m, lo, ids[0], p) != 0) return -1;
    return add_entries(c, m, lo, ids, n, count);
}

int64_t yf_prefix_cache_load(yf_prefix_cache *c, const int64_t *ids, int64_t n, int64_t max, yf_layer_state *st,
                             int64_t *doc_start) {
    int64_t k, i = best_entry(c, ids, n < max ? n : max, &k);
    if (i < 0) {
        c->st.misses++;
        return 0;
    }
    copy_into(c, &c->e[i], k, st);
    *doc_start = doc_start_after(c, ids, k);
    c->e[i].used = ++c->clock;
    c->st.hits++;
    c->st.tokens_reused += k;
    return k;
}

void yf_prefix_cache_get_stats(const yf_prefix_cache *c, yf_prefix_cache_stats *out) {
    *out = c->st;
    out->entries = c->n;
    out->budget = c->budget;
}

int yf_prefix_cache_add_common(yf_prefix_cache *c, yf_model *m, const yf_lora *lo, const int64_t *const *prompts,
                               const int64_t *plen, int64_t n) {
    if (n < 2) return 0;
    int64_t *less = yf_malloc((size_t)n * sizeof(int64_t)); /* each short of its last token */
    for (int64_t i = 0; i < n; i++) less[i] = plen[i] - 1;
    int64_t p = common_len(prompts, less, n);
    free(less);
    return p < YF_PREFIX_CACHE_MIN ? 0 : yf_prefix_cache_add(c, m, lo, prompts[0], p);
}
