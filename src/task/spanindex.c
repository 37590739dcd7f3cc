/* spanindex: the suffix automaton of an input's bytes, the index behind span
 * strings. Each state stands for the substrings that end at the same set of
 * positions; every substring is a path from state 0, so "the string so far is
 * a verbatim substring" is one transition a byte and the state is one int32
 * (cheap to copy while the byte trie of the vocabulary is walked). Beside it,
 * for each (state, UTF-8 decoder state), the escaped length of the shortest
 * way to a closable span (non-empty, whole characters) and the byte that
 * starts it: liveness (can this string still become a span?) and the
 * shortest completion both read it. Built in O(n) states and edges. */
#include <stdlib.h>

#include "task/constrain_internal.h"

#define SPAN_MAX_INPUT (1u << 18) /* bytes; the index takes ~60 bytes a byte */

typedef struct bedge {
    int32_t to, next;
    uint8_t byte;
} bedge;

typedef struct builder {
    int32_t *len, *link, *head; /* [cap] per state; head: first edge (-1 none) */
    int32_t n, cap;
    bedge *e;
    int32_t ne, ecap;
    int32_t root[256];          /* state 0's edges, direct (it has the most) */
    int32_t last;
} builder;

static int32_t get(const builder *b, int32_t v, uint8_t c) {
    if (v == 0) return b->root[c];
    for (int32_t i = b->head[v]; i >= 0; i = b->e[i].next)
        if (b->e[i].byte == c) return b->e[i].to;
    return -1;
}

static void add_edge(builder *b, int32_t v, uint8_t c, int32_t to) {
    if (b->ne == b->ecap) {
        b->ecap = b->ecap ? 2 * b->ecap : 1024;
        b->e = yf_realloc(b->e, (size_t)b->ecap * sizeof *b->e);
    }
    b->e[b->ne] = (bedge){to, b->head[v], c};
    b->head[v] = b->ne++;
}

static void set(builder *b, int32_t v, uint8_t c, int32_t to) {
    if (v == 0) {
        b->root[c] = to;
        return;
    }
    for (int32_t i = b->head[v]; i >= 0; i = b->e[i].next)
        if (b->e[i].byte == c) {
            b->e[i].to = to;
            return;
        }
    add_edge(b, v, c, to);
}

static int32_t new_state(builder *b, int32_t len, int32_t link) {
    if (b->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 256;
        b->len = yf_realloc(b->len, (size_t)b->cap * sizeof *b->len);
        b->link = yf_realloc(b->link, (size_t)b->cap * sizeof *b->link);
        b->head = yf_realloc(b->head, (size_t)b->cap * sizeof *b->head);
    }
    b->len[b->n] = len;
    b->link[b->n] = link;
    b->head[b->n] = -1;
    return b->n++;
}

/* The textbook online construction, one byte appended. */
static void extend(builder *b, uint8_t c) {
    int32_t cur = new_state(b, b->len[b->last] + 1, 0);
    int32_t p = b->last;
    while (p >= 0 && get(b, p, c) < 0) {
        set(b, p, c, cur);
        p = b->link[p];
    }
    if (p >= 0) {
        int32_t q = get(b, p, c);
        if (b->len[p] + 1 == b->len[q]) {
            b->link[cur] = q;
        } else {
            int32_t cl = new_state(b, b->len[p] + 1, b->link[q]); /* q is never state 0: it has an edge in */
            for (int32_t i = b->head[q]; i >= 0; i = b->e[i].next) add_edge(b, cl, b->e[i].byte, b->e[i].to);
            while (p >= 0 && get(b, p, c) == q) {
                set(b, p, c, cl);
                p = b->link[p];
            }
            b->link[q] = b->link[cur] = cl;
        }
    }
    b->last = cur;
}

void cs_sam_free(cs_sam *m) {
    free(m->edge_at);
    free(m->edge_byte);
    free(m->edge_to);
    free(m->dist);
    free(m->next);
    memset(m, 0, sizeof *m);
}

/* The edges as sorted arrays (CSR). */
static void compact(cs_sam *m, const builder *b) {
    m->n = b->n;
    m->edge_at = yf_malloc((size_t)(b->n + 1) * sizeof(int32_t));
    int32_t ne = 0;
    for (int c = 0; c < 256; c++) ne += b->root[c] >= 0;
    ne += b->ne;
    m->edge_byte = yf_malloc((size_t)(ne ? ne : 1));
    m->edge_to = yf_malloc((size_t)(ne ? ne : 1) * sizeof(int32_t));
    int32_t k = 0;
    for (int32_t v = 0; v < b->n; v++) {
        m->edge_at[v] = k;
        if (v == 0) {
            for (int c = 0; c < 256; c++)
                if (b->root[c] >= 0) m->edge_byte[k] = (uint8_t)c, m->edge_to[k++] = b->root[c];
            continue;
        }
        int32_t from = k;
        for (int32_t i = b->head[v]; i >= 0; i = b->e[i].next) {
            int32_t j = k++; /* insertion sort: a state has few edges */
            while (j > from && m->edge_byte[j - 1] > b->e[i].byte) {
                m->edge_byte[j] = m->edge_byte[j - 1];
                m->edge_to[j] = m->edge_to[j - 1];
                j--;
            }
            m->edge_byte[j] = b->e[i].byte;
            m->edge_to[j] = b->e[i].to;
        }
    }
    m->edge_at[b->n] = k;
}

/* dist/next by dynamic programming: every edge goes to a state with a longer
 * longest string, so states in decreasing length have their successors done. */
static void shortest(cs_sam *m, const builder *b) {
    int32_t n = m->n, maxlen = 0;
    for (int32_t v = 0; v < n; v++)
        if (b->len[v] > maxlen) maxlen = b->len[v];
    int32_t *cnt = yf_calloc((size_t)maxlen + 2, sizeof *cnt), *order = yf_malloc((size_t)n * sizeof *order);
    for (int32_t v = 0; v < n; v++) cnt[b->len[v] + 1]++;
    for (int32_t l = 0; l <= maxlen; l++) cnt[l + 1] += cnt[l];
    for (int32_t v = 0; v < n; v++) order[cnt[b->len[v]]++] = v;
    m->dist = yf_malloc((size_t)n * 8 * sizeof *m->dist);
    m->next = yf_calloc((size_t)n * 8, 1);
    for (int32_t i = n - 1; i >= 0; i--) {
        int32_t v = order[i];
        for (uint8_t u = 0; u < 8; u++) {
            int32_t best = CS_INF;
            uint8_t nb = 0;
            if (u == CU_OK && v != 0) {
                best = 0;
            } else {
                for (int32_t k = m->edge_at[v]; k < m->edge_at[v + 1]; k++) {
                    uint8_t c = m->edge_byte[k], u2 = cu_step(u, c);
                    if (u2 == CU_BAD) continue;
                    int32_t d = m->dist[m->edge_to[k] * 8 + u2];
                    if (d < CS_INF && d + cj_escape_len(c) < best) best = d + cj_escape_len(c), nb = c;
                }
            }
            m->dist[v * 8 + u] = best;
            m->next[v * 8 + u] = nb;
        }
    }
    free(cnt);
    free(order);
}

int cs_sam_build(cs_sam *m, const char *s, size_t n) {
    memset(m, 0, sizeof *m);
    if (n > SPAN_MAX_INPUT)
        return yf_errorf("an input of %zu bytes is too long for span-constrained decoding (at most %u bytes); "
                         "split it, or use --constrain schema",
                         n, SPAN_MAX_INPUT);
    builder b = {0};
    for (int c = 0; c < 256; c++) b.root[c] = -1;
    new_state(&b, 0, -1);
    for (size_t i = 0; i < n; i++) extend(&b, (uint8_t)s[i]);
    compact(m, &b);
    shortest(m, &b);
    free(b.len);
    free(b.link);
    free(b.head);
    free(b.e);
    return 0;
}
