/* yf_model_prefill_batch: several sequences' prefills in one pass (ragged
 * rows, each continuing its own slot of the decoding state) give each
 * sequence the bits of its prefill alone: logits, keys and values, filter
 * rows and document start; with no adapter, one adapter, and one adapter a
 * sequence; in one pass and in several. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "test_model_util.h"
#include "model/model_internal.h"

enum { CAP = 160 };

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
    yf_layer_states_slot(bv, bst, m, bslot);
    yf_layer_states_slot(av, ast, m, 0);
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
        yf_layer_states_slot(view, bst, m, slot[j]);
        yf_layer_states_restart(view, m);
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
    /* the filter rows of every layer too, against yf_model_prefill_rows alone (one adapter) */
    yf_prefill *pf = yf_calloc((size_t)n, sizeof *pf);
    yf_layer_state *views = yf_calloc((size_t)(n * L), sizeof *views);
    float **rows = yf_calloc((size_t)(2 * n * L), sizeof *rows);
    for (int64_t j = 0; j < n; j++) {
        yf_layer_states_slot(views + j * L, bst, m, slot[j]);
        for (int64_t l = 0; l < L; l++) {
            rows[(2 * j) * L + l] = yf_malloc((size_t)(c->len[j] * m->D) * sizeof(float));
            rows[(2 * j + 1) * L + l] = yf_malloc((size_t)(c->len[j] * m->D / 2) * sizeof(float));
        }
        pf[j] = (yf_prefill){.st = views + j * L, .pos = pos[j], .doc_start = doc[j], .ids = ids[j] + c->head[j],
                             .len = c->len[j], .adapter = c->ra ? c->ra->row[j] : -1, .logits = lg + j * V,
                             .a_rows = rows + 2 * j * L, .c_rows = rows + (2 * j + 1) * L};
    }
    CHECK(yf_model_prefill_batch(m, c->lo, c->ra, pf, n) == 0, "%s", yf_last_error());
    for (int64_t j = 0; j < n; j++) doc[j] = pf[j].doc_start;
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
        if (!c->ra) { /* the filter rows, from the prefill of the same rows alone */
            yf_layer_state *rst = yf_layer_states_alloc(m, 1, CAP);
            float **ar = yf_malloc((size_t)(2 * L) * sizeof(float *));
            for (int64_t l = 0; l < 2 * L; l++) ar[l] = yf_malloc((size_t)(c->len[j] * m->D) * sizeof(float));
            int64_t d2 = 0;
            if (c->head[j] > 0)
                CHECK(yf_model_prefill_rows(m, c->lo, rst, 0, &d2, ids[j], c->head[j], NULL, NULL) == 0, "%s",
                      yf_last_error());
            CHECK(yf_model_prefill_rows(m, c->lo, rst, c->head[j], &d2, ids[j] + c->head[j], c->len[j], ar, ar + L) == 0,
                  "%s", yf_last_error());
            for (int64_t l = 0; l < L; l++) {
                for (int64_t i = 0; i < c->len[j] * m->D; i++)
                    d = fmax(d, fabs((double)ar[l][i] - rows[(2 * j) * L + l][i]));
                for (int64_t i = 0; i < c->len[j] * m->D / 2; i++)
                    d = fmax(d, fabs((double)ar[L + l][i] - rows[(2 * j + 1) * L + l][i]));
            }
            for (int64_t l = 0; l < 2 * L; l++) free(ar[l]);
            free(ar);
            yf_layer_states_free(rst, m);
        }
        d = fmax(d, state_diff(m, bst, slot[j], ast, c->head[j] + c->len[j]));
        *doc_bad += d1 != doc[j];
        yf_layer_states_free(ast, m);
    }
    for (int64_t j = 0; j < n; j++) free(ids[j]);
    for (int64_t i = 0; i < 2 * n * L; i++) free(rows[i]);
    free(ids), free(pf), free(views), free(rows), free(slot), free(pos), free(doc), free(lg), free(one);
    yf_layer_states_free(bst, m);
    return d;
}

TEST(prefill_batch_equals_each_alone) {
    yf_model *m = yt_load_tiny();
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
    /* shorter sequences: 1..4 new positions batched row-stable, 5..15 alone; one pass each way */
    int64_t shead[8] = {0, 5, 0, 9, 0, 0, 20, 3}, slen[8] = {1, 3, 7, 15, 4, 2, 40, 1};
    pcase sc[2] = {{8, shead, slen, &lo[1], NULL}, {8, shead, slen, NULL, &ra}};
    for (int i = 0; i < 2; i++) {
        int doc_bad;
        double d = run_case(m, &sc[i], &doc_bad);
        CHECK(d == 0 && doc_bad == 0, "sequences of 1..40 new positions (%s): differ by %.3g (tolerance: none), %d "
                                      "document starts differ", i ? "an adapter each" : "DoRA", d, doc_bad);
    }
    yf_dora_norms_free(dn[1], m);
    yf_lora_free(&lo[0]);
    yf_lora_free(&lo[1]);
    yf_model_free(m);
}

/* A model with quantized weights: its products change kernels at another
 * row count (up to 32 rows in registers, more through fp32 blocks), and
 * with int8 activations the few-row ones round x: a batched prefill still
 * gives each sequence its bits alone, for lengths on either side of 32 */
TEST(prefill_batch_quantized_equals_each_alone) {
    for (int v = 0; v < 2; v++) {
        yf_model_opts o = {.quant = {YF_QT_Q4, 32, false}, .quantize_head = true, .int8_act = v == 1};
        yf_model *m = NULL;
        CHECK_OK(yf_model_load(yt_shared_path("golden/yuan-tiny"), &o, &m));
        if (!m) return;
        int64_t head[10] = {0, 5, 0, 9, 0, 0, 20, 3, 0, 17}, len[10] = {1, 3, 7, 20, 4, 30, 40, 2, 33, 60};
        pcase c = {10, head, len, NULL, NULL};
        int doc_bad;
        double d = run_case(m, &c, &doc_bad);
        CHECK(d == 0 && doc_bad == 0, "q4%s: sequences of 1..60 new positions differ from each alone by %.3g "
              "(tolerance: none), %d document starts differ", v ? ", int8 activations" : "", d, doc_bad);
        yf_model_free(m);
    }
}

TEST(prefill_batch_bad_input) {
    yf_model *m = yt_load_tiny();
    if (!m) return;
    yf_layer_state *st[2] = {yf_layer_states_alloc(m, 1, 32), yf_layer_states_alloc(m, 1, 32)};
    int64_t a[20], b[20];
    for (int t = 0; t < 20; t++) a[t] = t + 5, b[t] = t + 7;
    float *lg = yf_malloc((size_t)(2 * m->V) * sizeof(float));
    yf_prefill pf[2] = {{.st = st[0], .ids = a, .len = 20, .adapter = -1, .logits = lg},
                        {.st = st[1], .ids = b, .len = 20, .adapter = -1, .logits = lg + m->V}};
    b[4] = m->V; /* outside the vocabulary */
    CHECK(yf_model_prefill_batch(m, NULL, NULL, pf, 2) != 0);
    CHECK(strstr(yf_last_error(), "vocabulary") != NULL, "error: %s", yf_last_error());
    b[4] = 9;
    pf[1].pos = 20; /* 40 positions in a cache of 32 */
    CHECK(yf_model_prefill_batch(m, NULL, NULL, pf, 2) != 0);
    CHECK(strstr(yf_last_error(), "do not fit") != NULL, "error: %s", yf_last_error());
    pf[1].pos = 0;
    pf[0].len = 0;
    CHECK(yf_model_prefill_batch(m, NULL, NULL, pf, 2) != 0);
    pf[0].len = 20;
    pf[1].adapter = 1;
    yf_row_adapters ra = {0, NULL, NULL, NULL};
    CHECK(yf_model_prefill_batch(m, NULL, &ra, pf, 2) != 0);
    CHECK(strstr(yf_last_error(), "adapter") != NULL, "error: %s", yf_last_error());
    pf[1].adapter = -1;
    CHECK(yf_model_prefill_batch(m, NULL, NULL, pf, 2) == 0, "%s", yf_last_error());
    free(lg);
    yf_layer_states_free(st[0], m);
    yf_layer_states_free(st[1], m);
    yf_model_free(m);
}
