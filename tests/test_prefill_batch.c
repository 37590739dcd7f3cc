/* yf_model_prefill_batch: several sequences' prefills in one pass (ragged
 * rows, each continuing its own slot of the decoding state) give each
 * sequence the bits of its prefill alone: logits, keys and values, filter
 * rows and document start; with no adapter, one adapter, and one adapter a
 * sequence; in one pass and in several. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "model/model_internal.h"

enum { CAP = 160 };

static yf_model *load_tiny(void) {
    yf_model *m = NULL;
    yf_model_opts o = {0};
    if (yf_model_load(yt_shared_path("golden/yuan-tiny"), &o, &m)) {
        CHECK(0, "load: %s", yf_last_error());
        return NULL;
    }
    return m;
}

/* Sequence b of a [B, ...] state as a one-sequence state. */
static void slot_of(yf_layer_state *view, const yf_layer_state *s, const yf_model *m, int64_t b) {
    for (int64_t l = 0; l < m->L; l++) {
        view[l] = s[l];
        view[l].k = s[l].k + b * m->H * s[l].cap * m->hd;
        view[l].v = s[l].v + b * m->H * s[l].cap * m->hd;
        view[l].a_prev = s[l].a_prev + b * m->D;
        view[l].c_prev = s[l].c_prev + b * m->D / 2;
    }
}

/* Sequence j's ids (an <eod> = 3 inside some, so document starts move). */
static int64_t tok(int64_t j, int64_t t, int64_t V) { return t % 23 == 9 && j % 3 == 1 ? 3 : (j * 41 + t * 13 + 5) % V; }

typedef struct pcase {
    int64_t n;           /* sequences */
    const int64_t *head; /* [n] positions prefilled first, alone (0: none) */
    const int64_t *len;  /* [n] positions of the batched prefill */
    const yf_lora *lo;
    const yf_row_adapters *ra;
} pcase;

/* The largest difference between sequence j's state after the batched
 * prefill (slot[j] of bst) and after its prefill alone (slot 0 of ast), over
 * its keys, values (positions 0..p) and filter rows. */
static double state_diff(const yf_model *m, const yf_layer_state *bst, int64_t bslot, const yf_layer_state *ast,
                         int64_t p) {
    yf_layer_state bv[8], av[8];
    slot_of(bv, bst, m, bslot);
    slot_of(av, ast, m, 0);
    double d = 0;
    for (int64_t l = 0; l < m->L; l++) {
        for (int64_t h = 0; h < m->H; h++)
            for (int64_t i = 0; i < p * m->hd; i++) {
                int64_t o = h * CAP * m->hd + i;
                d = fmax(d, fabs((double)bv[l].k[o] - av[l].k[o]));
                d = fmax(d, fabs((double)bv[l].v[o] - av[l].v[o]));
            }
        for (int64_t i = 0; i < m->D; i++) d = fmax(d, fabs((double)bv[l].a_prev[i] - av[l].a_prev[i]));
        for (int64_t i = 0; i < m->D / 2; i++) d = fmax(d, fabs((double)bv[l].c_prev[i] - av[l].c_prev[i]));
    }
    return d;
}

/* Runs case c; returns the largest difference from the sequences alone
 * (logits and states) and counts the sequences whose document start differs. */
static double run_case(yf_model *m, const pcase *c, int *doc_bad) {
    int64_t n = c->n, V = m->V, L = m->L;
    yf_layer_state *bst = yf_layer_states_alloc(m, n, CAP), view[8];
    int64_t *slot = yf_malloc((size_t)n * sizeof(int64_t)), *pos = yf_malloc((size_t)n * sizeof(int64_t));
    int64_t *doc = yf_malloc((size_t)n * sizeof(int64_t));
    int64_t **ids = yf_malloc((size_t)n * sizeof(int64_t *));
    float *lg = yf_malloc((size_t)(n * V) * sizeof(float)), *one = yf_malloc((size_t)V * sizeof(float));
    /* slots in reverse order, so that slot and sequence index differ */
    for (int64_t j = 0; j < n; j++) {
        slot[j] = n - 1 - j;
        int64_t tot = c->head[j] + c->len[j];
        ids[j] = yf_malloc((size_t)tot * sizeof(int64_t));
        for (int64_t t = 0; t < tot; t++) ids[j][t] = tok(j, t, V);
        slot_of(view, bst, m, slot[j]);
        for (int64_t l = 0; l < L; l++) {
            memset(view[l].a_prev, 0, (size_t)m->D * sizeof(float));
            memset(view[l].c_prev, 0, (size_t)(m->D / 2) * sizeof(float));
        }
        doc[j] = 0;
        pos[j] = c->head[j];
        if (c->head[j] > 0) {
            const yf_row_adapters *ra = NULL;
            yf_row_adapters one_ra;
            if (c->ra) one_ra = *c->ra, one_ra.row = c->ra->row + j, ra = &one_ra;
            int rc = ra ? yf_model_forward_cached_rows(m, ra, view, 0, NULL, &doc[j], ids[j], 1, c->head[j], NULL, true)
                        : yf_model_forward_cached(m, c->lo, view, 0, NULL, &doc[j], ids[j], 1, c->head[j], NULL, true);
            CHECK(rc == 0, "%s", yf_last_error());
        }
    }
    const int64_t **rest = yf_malloc((size_t)n * sizeof(int64_t *));
    for (int64_t j = 0; j < n; j++) rest[j] = ids[j] + c->head[j];
    CHECK(yf_model_prefill_batch(m, c->lo, c->ra, bst, n, slot, pos, doc, rest, c->len, lg) == 0, "%s",
          yf_last_error());
    double d = 0;
    *doc_bad = 0;
    for (int64_t j = 0; j < n; j++) { /* the same sequence alone, in two chunks as above */
        yf_layer_state *ast = yf_layer_states_alloc(m, 1, CAP);
        int64_t d1 = 0;
        const yf_row_adapters *ra = NULL;
        yf_row_adapters one_ra;
        if (c->ra) one_ra = *c->ra, one_ra.row = c->ra->row + j, ra = &one_ra;
        for (int k = 0; k < 2; k++) {
            int64_t p0 = k ? c->head[j] : 0, T = k ? c->len[j] : c->head[j];
            if (T == 0) continue;
            int rc = ra ? yf_model_forward_cached_rows(m, ra, ast, p0, NULL, &d1, ids[j] + p0, 1, T, one, true)
                        : yf_model_forward_cached(m, c->lo, ast, p0, NULL, &d1, ids[j] + p0, 1, T, one, true);
            CHECK(rc == 0, "%s", yf_last_error());
        }
        for (int64_t v = 0; v < V; v++) d = fmax(d, fabs((double)lg[j * V + v] - one[v]));
        d = fmax(d, state_diff(m, bst, slot[j], ast, c->head[j] + c->len[j]));
        *doc_bad += d1 != doc[j];
        yf_layer_states_free(ast, m);
    }
    for (int64_t j = 0; j < n; j++) free(ids[j]);
    free(ids), free(rest), free(slot), free(pos), free(doc), free(lg), free(one);
    yf_layer_states_free(bst, m);
    return d;
}

TEST(prefill_batch_equals_each_alone) {
    yf_model *m = load_tiny();
    if (!m) return;
    yf_lora lo[2];
    static const char *dirs[2] = {"golden/yuan-tiny/lora", "golden/yuan-tiny/dora"};
    for (int i = 0; i < 2; i++)
        if (yf_lora_load(yt_shared_path(dirs[i]), yf_model_config(m), &lo[i])) {
            CHECK(0, "%s: %s", dirs[i], yf_last_error());
            yf_model_free(m);
            return;
        }
    /* 12 sequences of 16..60 new positions, half after a first chunk */
    enum { N1 = 12, N2 = 40 };
    int64_t head[N2], len[N2];
    for (int64_t j = 0; j < N2; j++) head[j] = j % 2 ? 17 + j % 5 : 0, len[j] = YF_PREFILL_BATCH_MIN + (j * 7) % 45;
    const yf_lora *los[2] = {&lo[0], &lo[1]};
    float **dn[2] = {NULL, yf_dora_norms_new(m, &lo[1])};
    int32_t row[N2];
    for (int j = 0; j < N2; j++) row[j] = (int32_t)(j % 3) - 1; /* base, LoRA, DoRA, ... */
    yf_row_adapters ra = {2, los, dn, row};
    struct {
        const char *what;
        pcase c;
    } cases[] = {
        {"base model", {N1, head, len, NULL, NULL}},
        {"LoRA", {N1, head, len, &lo[0], NULL}},
        {"DoRA", {N1, head, len, &lo[1], NULL}},
        {"an adapter a sequence (base, LoRA, DoRA)", {N1, head, len, NULL, &ra}},
        {"40 sequences, ~1500 rows: two passes", {N2, head, len, &lo[0], NULL}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int doc_bad;
        double d = run_case(m, &cases[i].c, &doc_bad);
        CHECK(d == 0, "%s: the batched prefill differs from each sequence alone by %.3g (tolerance: none, the same bits)",
              cases[i].what, d);
        CHECK(doc_bad == 0, "%s: %d document starts differ", cases[i].what, doc_bad);
    }
    /* shorter sequences: alone, their products take other kernels; fp32 rounding apart */
    int64_t shead[4] = {0, 5, 0, 9}, slen[4] = {1, 3, 7, 15};
    pcase sc = {4, shead, slen, &lo[1], NULL};
    int doc_bad;
    double d = run_case(m, &sc, &doc_bad);
    CHECK(d <= 1e-5 && doc_bad == 0, "sequences of 1..15 new positions: differ by %.3g (tolerance 1e-5), %d document "
                                     "starts differ", d, doc_bad);
    yf_dora_norms_free(dn[1], m);
    yf_lora_free(&lo[0]);
    yf_lora_free(&lo[1]);
    yf_model_free(m);
}

TEST(prefill_batch_bad_input) {
    yf_model *m = load_tiny();
    if (!m) return;
    yf_layer_state *st = yf_layer_states_alloc(m, 2, 32);
    int64_t a[20], b[20], slot[2] = {0, 1}, pos[2] = {0, 0}, doc[2] = {0, 0}, len[2] = {20, 20};
    for (int t = 0; t < 20; t++) a[t] = t + 5, b[t] = t + 7;
    const int64_t *ids[2] = {a, b};
    float *lg = yf_malloc((size_t)(2 * m->V) * sizeof(float));
    b[4] = m->V; /* outside the vocabulary */
    CHECK(yf_model_prefill_batch(m, NULL, NULL, st, 2, slot, pos, doc, ids, len, lg) != 0);
    CHECK(strstr(yf_last_error(), "vocabulary") != NULL, "error: %s", yf_last_error());
    b[4] = 9;
    pos[1] = 20; /* 40 positions in a cache of 32 */
    CHECK(yf_model_prefill_batch(m, NULL, NULL, st, 2, slot, pos, doc, ids, len, lg) != 0);
    CHECK(strstr(yf_last_error(), "do not fit") != NULL, "error: %s", yf_last_error());
    pos[1] = 0;
    len[0] = 0;
    CHECK(yf_model_prefill_batch(m, NULL, NULL, st, 2, slot, pos, doc, ids, len, lg) != 0);
    len[0] = 20;
    int32_t row[2] = {0, 1};
    yf_row_adapters ra = {0, NULL, NULL, row};
    CHECK(yf_model_prefill_batch(m, NULL, &ra, st, 2, slot, pos, doc, ids, len, lg) != 0);
    CHECK(strstr(yf_last_error(), "adapter") != NULL, "error: %s", yf_last_error());
    CHECK(yf_model_prefill_batch(m, NULL, NULL, st, 2, slot, pos, doc, ids, len, lg) == 0, "%s", yf_last_error());
    free(lg);
    yf_layer_states_free(st, m);
    yf_model_free(m);
}
