/* model/layer: one decoder layer's forward and backward for a batch of rows
 * (shared/docs/yuan-architecture.md): the run context and activation
 * buffers, the seven projections with their LoRA / DoRA adapters, the
 * localized filter, attention and the MLP. */
#include "model/model_internal.h"

#include <stdlib.h>
#include <string.h>

#include "base/bufcache.h"
#include "kernels/cpu/fused.h"
#include "model/ops.h"

/* ---- run context, activations ------------------------------------------------- */

float *const *yf_dora_norms_override = NULL;


/* Buffers are carved out of one block; a first pass with base == NULL only
 * counts. Offsets stay multiples of 16 floats (64 bytes). */
typedef struct carver {
    float *base;
    int64_t off;
} carver;

static float *carve(carver *c, int64_t n) {
    float *p = c->base ? c->base + c->off : NULL;
    c->off += (n + 15) & ~(int64_t)15;
    return p;
}

/* The adapters a workspace serves (ws_alloc): none (0), or WS_LORA and any of the others. */
enum { WS_LORA = 1, WS_DORA = 2, WS_ROWS = 4 };

static void ws_layout(yf_ws *w, carver *c, int64_t N, int64_t D, int64_t I, int64_t R, int adapters,
                      bool backward) {
    int64_t Dm = D > I ? D : I;
    w->x2 = carve(c, 2 * N * D);
    w->qp = carve(c, N * D);
    w->kp = carve(c, N * D);
    w->e = carve(c, N * D);
    w->hh = carve(c, N * D);
    w->z = carve(c, N * I);
    w->lt = carve(c, N * R + 1);
    w->dlt = carve(c, N * R + 1);
    /* xd, t3: DoRA; t1, t2: DoRA and the per-sequence adapters' gathers (LoRA
     * alone works a block of rows at a time: drop_lt and the like) */
    w->xd = adapters & WS_DORA ? carve(c, N * Dm) : NULL;
    w->t1 = adapters & (WS_DORA | WS_ROWS) ? carve(c, N * Dm) : NULL;
    w->t2 = adapters & (WS_DORA | WS_ROWS) ? carve(c, N * Dm) : NULL;
    w->t3 = adapters & WS_DORA ? carve(c, N * Dm) : NULL;
    if (backward) {
        w->dm = carve(c, N * D);
        w->dh2 = carve(c, N * D);
        w->datt = carve(c, N * D);
        w->da = carve(c, N * D);
        w->df = carve(c, N * D);
        w->ds = carve(c, N * D);
        w->dx2 = carve(c, 2 * N * D);
        w->dq = carve(c, N * D);
        w->dk = carve(c, N * D);
        w->dv = carve(c, N * D);
        w->dc = carve(c, N * D / 2);
    }
}

/* The workspace for r->N rows and adapters of rank up to R. */
static void ws_alloc(yf_run *r, int64_t R, int adapters) {
    carver c = {NULL, 0};
    ws_layout(&r->ws, &c, r->N, r->m->D, r->m->I, R, adapters, r->backward);
    r->ws.block = yf_buf_get((size_t)c.off * sizeof(float)); /* recycled, not zeroed */
    c = (carver){r->ws.block, 0};
    ws_layout(&r->ws, &c, r->N, r->m->D, r->m->I, R, adapters, r->backward);
}

/* The fields every run context sets, the rest zeroed. */
static void run_rows(yf_run *r, yf_model *m, int64_t B, int64_t T, int64_t pos0, const int64_t *start) {
    memset(r, 0, sizeof *r);
    r->m = m;
    r->B = B;
    r->T = T;
    r->N = B * T;
    r->pos0 = pos0;
    r->start = start;
}

/* from's DoRA row norms copied (NULL: none), for a run of the same adapter. */
static float **dora_norms_copy(float *const *from, const yf_model *m, const yf_lora *lo) {
    if (!from) return NULL;
    float **dn = yf_calloc((size_t)(m->L * YF_NPROJ), sizeof *dn);
    for (int64_t l = 0; l < m->L; l++)
        for (int p = 0; p < YF_NPROJ; p++) {
            const float *n = from[l * YF_NPROJ + p];
            if (!n) continue;
            size_t bytes = (size_t)yf_lora_get(lo, l, (yf_proj)p)->out * sizeof(float);
            dn[l * YF_NPROJ + p] = memcpy(yf_malloc(bytes), n, bytes);
        }
    return dn;
}

/* What a run that may train sets up for lo after run_rows: DoRA norms
 * (copied from like's when given), saved adapter intermediates, dropout
 * seeds, the workspace. */
static void run_setup(yf_run *r, const yf_lora *lo, yf_rng *dropout_rng, bool backward, const yf_run *like) {
    yf_model *m = r->m;
    r->lo = lo;
    r->backward = backward;
    if (lo) {
        r->dora_n = like ? dora_norms_copy(like->dora_n, m, lo) : yf_dora_norms_new(m, lo);
        if (!r->dora_n) r->dora_n = yf_calloc((size_t)(m->L * YF_NPROJ), sizeof *r->dora_n);
        if (backward) { /* [N, r] per adapter: the backward does not multiply x' by A again */
            r->lt_saved = yf_buf_get((size_t)(m->L * YF_NPROJ * r->N * lo->cfg.r + 1) * sizeof(float));
            r->lt_valid = yf_calloc((size_t)(m->L * YF_NPROJ), sizeof(bool));
        }
        if (dropout_rng && lo->cfg.dropout > 0) {
            r->drop_p = lo->cfg.dropout;
            r->drop_seed = yf_malloc((size_t)(m->L * YF_NPROJ) * sizeof(uint64_t));
            for (int64_t i = 0; i < m->L * YF_NPROJ; i++) r->drop_seed[i] = yf_rng_u64(dropout_rng);
        }
    }
    ws_alloc(r, lo ? lo->cfg.r : 0, !lo ? 0 : lo->cfg.use_dora ? WS_LORA | WS_DORA : WS_LORA);
}

void yf_run_init(yf_run *r, yf_model *m, const yf_lora *lo, int64_t B, int64_t T, int64_t pos0,
                 const int64_t *start, yf_rng *dropout_rng, bool backward) {
    run_rows(r, m, B, T, pos0, start);
    run_setup(r, lo, dropout_rng, backward, NULL);
}

/* run_rows for nseg ragged segments (seg_off [nseg + 1], none empty). */
static void run_segments(yf_run *r, yf_model *m, int64_t nseg, const int64_t *seg_off, int64_t pos0,
                         const int64_t *start) {
    YF_CHECK(seg_off[0] == 0);
    for (int64_t b = 0; b < nseg; b++) YF_CHECK(seg_off[b + 1] > seg_off[b]);
    run_rows(r, m, nseg, 0, pos0, start);
    r->N = seg_off[nseg];
    r->seg_off = seg_off;
}

void yf_run_init_segments(yf_run *r, yf_model *m, const yf_lora *lo, int64_t nseg, const int64_t *seg_off,
                          const yf_pfx_view *pfx, const int64_t *start, yf_rng *dropout_rng, bool backward,
                          const yf_run *like) {
    run_segments(r, m, nseg, seg_off, pfx->P, start);
    r->pfx = pfx;
    run_setup(r, lo, dropout_rng, backward, like);
}

/* After run_rows: per-sequence adapters and the workspace. */
static void rows_setup(yf_run *r, const yf_row_adapters *ra) {
    r->ra = ra;
    int64_t R = 0;
    for (int64_t a = 0; a < ra->n; a++)
        if (ra->lo[a]->cfg.r > R) R = ra->lo[a]->cfg.r;
    ws_alloc(r, R, R > 0 ? WS_LORA | WS_ROWS : 0); /* t1, t2: an adapter's rows of x and y gathered */
}

void yf_run_init_rows(yf_run *r, yf_model *m, const yf_row_adapters *ra, int64_t B, int64_t T, int64_t pos0,
                      const int64_t *start) {
    run_rows(r, m, B, T, pos0, start);
    rows_setup(r, ra);
}

void yf_run_init_prefill(yf_run *r, yf_model *m, const yf_lora *lo, const yf_row_adapters *ra, int64_t nseq,
                         const int64_t *seg_off, yf_layer_state *const *seg_st, const int64_t *seg_pos,
                         const int64_t *start) {
    YF_CHECK(!(lo && ra));
    run_segments(r, m, nseq, seg_off, 0, start);
    r->seg_st = seg_st;
    r->seg_pos = seg_pos;
    if (ra)
        rows_setup(r, ra);
    else
        run_setup(r, lo, NULL, false, NULL);
}

float **yf_dora_norms_new(yf_model *m, const yf_lora *lo) {
    float **dn = NULL;
    for (int64_t l = 0; l < m->L; l++)
        for (int p = 0; p < YF_NPROJ; p++) {
            yf_lora_mod *md = yf_lora_get(lo, l, (yf_proj)p);
            if (!md || !md->m) continue;
            if (!dn) dn = yf_calloc((size_t)(m->L * YF_NPROJ), sizeof *dn);
            const yf_mw *w = yf_model_proj(m, l, (yf_proj)p);
            float *n = yf_malloc((size_t)md->out * sizeof(float));
            if (yf_dora_norms_override && yf_dora_norms_override[l * YF_NPROJ + p])
                memcpy(n, yf_dora_norms_override[l * YF_NPROJ + p], (size_t)md->out * sizeof(float));
            else
                yf_lora_row_norms(md, lo->cfg.r, lo->scaling, w->data, w->dt, n);
            dn[l * YF_NPROJ + p] = n;
        }
    return dn;
}

void yf_dora_norms_free(float **n, const yf_model *m) {
    if (!n) return;
    for (int64_t i = 0; i < m->L * YF_NPROJ; i++) free(n[i]);
    free(n);
}

void yf_run_free(yf_run *r) {
    yf_dora_norms_free(r->dora_n, r->m);
    free(r->drop_seed);
    yf_buf_put(r->lt_saved);
    free(r->lt_valid);
    yf_buf_put(r->ws.block);
    memset(r, 0, sizeof *r);
}

static void act_layout(yf_act *a, carver *c, int64_t B, int64_t T, int64_t D, int64_t I, int64_t H, bool with_x) {
    int64_t N = B * T;
    a->x = with_x ? carve(c, N * D) : NULL;
    a->a = carve(c, N * D);
    a->rs1 = carve(c, N);
    a->c = carve(c, N * D / 2);
    a->s = carve(c, N * D);
    a->rslf = carve(c, N);
    a->f = carve(c, N * D);
    a->q = carve(c, N * D);
    a->k = carve(c, N * D);
    a->v = carve(c, N * D);
    a->lse = carve(c, B * H * T);
    a->att = carve(c, N * D);
    a->h2 = carve(c, N * D);
    a->rs2 = carve(c, N);
    a->mm = carve(c, N * D);
    a->g = carve(c, N * I);
    a->u = carve(c, N * I);
}

void yf_act_alloc(yf_act *a, const yf_model *m, int64_t B, int64_t T, bool with_x) {
    memset(a, 0, sizeof *a);
    carver c = {NULL, 0};
    act_layout(a, &c, B, T, m->D, m->I, m->H, with_x);
    a->block = yf_buf_get((size_t)c.off * sizeof(float));
    c = (carver){a->block, 0};
    act_layout(a, &c, B, T, m->D, m->I, m->H, with_x);
}

void yf_act_free(yf_act *a) {
    yf_buf_put(a->block);
    memset(a, 0, sizeof *a);
}

/* ---- projections with adapters --------------------------------------------------- */

static void scale_cols(float *y, const float *c, int64_t N, int64_t C) {
#pragma omp parallel for if ((int64_t)(N * C) >= ((int64_t)1 << 21)) schedule(static)
    for (int64_t n = 0; n < N; n++)
        for (int64_t i = 0; i < C; i++) y[n * C + i] *= c[i];
}

static void scale(float *y, float s, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] *= s;
}

/* magnitude / norm per output row of a DoRA module */
static void dora_ratio(float *mn, const yf_lora_mod *md, const float *n) {
    for (int64_t o = 0; o < md->out; o++) mn[o] = md->m[o] / n[o];
}

/* The rows of sequence b: T, or its segment's. */
static int64_t seq_rows(const yf_run *r, int64_t b) { return r->seg_off ? r->seg_off[b + 1] - r->seg_off[b] : r->T; }

/* Rows of the sequences whose adapter is a, from src [N, n] to dst, or back
 * (to_src); returns the rows. */
static int64_t gather_rows(const yf_run *r, int64_t a, float *dst, float *src, int64_t n, bool to_src) {
    int64_t g = 0;
    for (int64_t b = 0; b < r->B; b++) {
        if (r->ra->row[b] != a) continue;
        int64_t off = r->seg_off ? r->seg_off[b] : b * r->T, rows = seq_rows(r, b);
        size_t bytes = (size_t)(rows * n) * sizeof(float);
        if (to_src)
            memcpy(src + off * n, dst + g * n, bytes);
        else
            memcpy(dst + g * n, src + off * n, bytes);
        g += rows;
    }
    return g;
}

/* yf_linear_fwd with an adapter per sequence: the base product for every
 * row, then each adapter's term on its rows (gathered unless they are all
 * of them), in the steps of the one-adapter path without dropout: y = W x
 * + s B (A x), or for DoRA (m/n) (W x + s B (A x)). */
static void linear_fwd_rows(yf_run *r, int64_t l, yf_proj p, const float *x, float *y) {
    yf_mw *W = &r->m->layers[l].proj[p];
    const yf_row_adapters *ra = r->ra;
    int64_t N = r->N, out = W->shape[0], in = W->shape[1];
    yf_matmul_xwt_pk(y, x, W->data, W->dt, yf_model_fwd_pack(r->m, W, N, false, false), N, out, in, false);
    yf_ws *ws = &r->ws;
    for (int64_t a = 0; a < ra->n; a++) {
        const yf_lora *lo = ra->lo[a];
        const yf_lora_mod *md = yf_lora_get(lo, l, p);
        if (!md) continue;
        int64_t g = 0;
        for (int64_t b = 0; b < r->B; b++) g += ra->row[b] == a ? seq_rows(r, b) : 0;
        if (g == 0) continue;
        bool all = g == N;
        const float *xg = x;
        float *yg = y;
        if (!all) {
            gather_rows(r, a, ws->t1, (float *)x, in, false);
            gather_rows(r, a, ws->t2, y, out, false);
            xg = ws->t1;
            yg = ws->t2;
        }
        int64_t R = lo->cfg.r;
        yf_matmul_xwt(ws->lt, xg, md->A, YF_F32, g, R, in, false);
        scale(ws->lt, lo->scaling, g * R);
        yf_matmul_xwt(yg, ws->lt, md->B, YF_F32, g, out, R, true);
        if (md->m) {
            const float *n = ra->dora_n[a] ? ra->dora_n[a][l * YF_NPROJ + p] : NULL;
            float *own = NULL;
            if (!n) {
                own = yf_malloc((size_t)out * sizeof(float));
                yf_lora_row_norms(md, R, lo->scaling, W->data, W->dt, own);
                n = own;
            }
            float *mn = yf_malloc((size_t)out * sizeof(float));
            dora_ratio(mn, md, n);
            scale_cols(yg, mn, g, out);
            free(mn);
            free(own);
        }
        if (!all) gather_rows(r, a, ws->t2, y, out, true);
    }
}

/* LoRA's dropped-out input x' = dropout(x) [N, in] is made DROP_ROWS rows at
 * a time, never whole (the mask is counter-based: a block is the whole
 * mask's part, yf_dropout_at): lt = x' A^T, gA += dlt^T x', and dx += the
 * masked dlt A. Each row's arithmetic is the whole product's. */
enum { DROP_ROWS = 128 };

static float *drop_block(const yf_run *r, const float *x, int64_t in, uint64_t seed, int64_t r0, int64_t n,
                         float *xb) {
    yf_dropout_at(xb, x + r0 * in, n * in, r->drop_p, seed, r0 * in);
    return xb;
}

static void drop_lt(const yf_run *r, const float *x, int64_t in, const float *A, int64_t R, uint64_t seed,
                    float *lt) {
    float *xb = yf_buf_get((size_t)(DROP_ROWS * in) * sizeof(float));
    for (int64_t r0 = 0; r0 < r->N; r0 += DROP_ROWS) {
        int64_t n = r->N - r0 < DROP_ROWS ? r->N - r0 : DROP_ROWS;
        yf_matmul_xwt(lt + r0 * R, drop_block(r, x, in, seed, r0, n, xb), A, YF_F32, n, R, in, false);
    }
    yf_buf_put(xb);
}

static void drop_dw(const yf_run *r, const float *x, int64_t in, const float *dlt, int64_t R, uint64_t seed,
                    float *gA) {
    float *xb = yf_buf_get((size_t)(DROP_ROWS * in) * sizeof(float));
    for (int64_t r0 = 0; r0 < r->N; r0 += DROP_ROWS) {
        int64_t n = r->N - r0 < DROP_ROWS ? r->N - r0 : DROP_ROWS;
        yf_matmul_dw(gA, dlt + r0 * R, drop_block(r, x, in, seed, r0, n, xb), n, R, in);
    }
    yf_buf_put(xb);
}

static void drop_add_dx(const yf_run *r, float *dx, int64_t in, const float *dlt, const float *A, int64_t R,
                        uint64_t seed) {
    float *gb = yf_buf_get((size_t)(DROP_ROWS * in) * sizeof(float));
    for (int64_t r0 = 0; r0 < r->N; r0 += DROP_ROWS) {
        int64_t n = r->N - r0 < DROP_ROWS ? r->N - r0 : DROP_ROWS;
        yf_matmul_xw(gb, dlt + r0 * R, A, YF_F32, n, R, in, false);
        yf_dropout_at(gb, gb, n * in, r->drop_p, seed, r0 * in);
        yf_add(dx + r0 * in, dx + r0 * in, gb, n * in);
    }
    yf_buf_put(gb);
}

void yf_linear_fwd(yf_run *r, int64_t l, yf_proj p, const float *x, float *y) {
    if (r->ra) {
        linear_fwd_rows(r, l, p, x, y);
        return;
    }
    yf_mw *W = &r->m->layers[l].proj[p];
    int64_t N = r->N, out = W->shape[0], in = W->shape[1];
    const yf_wpack *pk = yf_model_fwd_pack(r->m, W, N, r->backward, yf_model_bwd_uses_w(r, l, p));
    const yf_lora_mod *md = r->lo ? yf_lora_get(r->lo, l, p) : NULL;
    if (!md) {
        yf_matmul_xwt_pk(y, x, W->data, W->dt, pk, N, out, in, false);
        return;
    }
    yf_ws *ws = &r->ws;
    int64_t R = r->lo->cfg.r;
    float s = r->lo->scaling;
    const float *xin = x;
    if (r->drop_p > 0 && !md->m) {
        drop_lt(r, x, in, md->A, R, r->drop_seed[l * YF_NPROJ + p], ws->lt);
    } else {
        if (r->drop_p > 0) { /* DoRA: x' whole, its W x' below too */
            yf_dropout(ws->xd, x, N * in, r->drop_p, r->drop_seed[l * YF_NPROJ + p]);
            xin = ws->xd;
        }
        yf_matmul_xwt(ws->lt, xin, md->A, YF_F32, N, R, in, false);
    }
    if (r->lt_saved) { /* for the backward */
        memcpy(r->lt_saved + (l * YF_NPROJ + p) * N * R, ws->lt, (size_t)(N * R) * sizeof(float));
        r->lt_valid[l * YF_NPROJ + p] = true;
    }
    scale(ws->lt, s, N * R);
    if (!md->m) { /* y = Wx + s B A x', the second term added inside the product where it can be */
        yf_matmul_xwt_pk_lr(y, x, W->data, W->dt, pk, N, out, in, false, ws->lt, md->B, R);
        return;
    }
    yf_matmul_xwt_pk(y, x, W->data, W->dt, pk, N, out, in, false);
    float *mn = yf_malloc((size_t)out * sizeof(float));
    dora_ratio(mn, md, r->dora_n[l * YF_NPROJ + p]);
    if (r->drop_p == 0) {
        /* y = (m/n) (W x + s B A x) */
        yf_matmul_xwt(y, ws->lt, md->B, YF_F32, N, out, R, true);
        scale_cols(y, mn, N, out);
    } else {
        /* y = W x - W x' + (m/n) (W x' + s B A x') */
        float *wx = ws->t3;
        yf_matmul_xwt_pk(wx, xin, W->data, W->dt, yf_model_wpack(r->m, W, YF_PACK_XWT, N), N, out, in, false);
        for (int64_t i = 0; i < N * out; i++) y[i] -= wx[i];
        yf_matmul_xwt(wx, ws->lt, md->B, YF_F32, N, out, R, true);
        scale_cols(wx, mn, N, out);
        yf_add(y, y, wx, N * out);
    }
    free(mn);
}

void yf_linear_bwd(yf_run *r, int64_t l, yf_proj p, const float *x, const float *dy, float *dx, bool acc) {
    yf_mw *W = &r->m->layers[l].proj[p];
    int64_t N = r->N, out = W->shape[0], in = W->shape[1];
    const yf_wpack *pkb = dx ? yf_model_wpack(r->m, W, YF_PACK_XW, N) : NULL;
    if (W->g) yf_matmul_dw(W->g, dy, x, N, out, in);
    const yf_lora_mod *md = r->lo ? yf_lora_get(r->lo, l, p) : NULL;
    if (!md) {
        if (dx) yf_matmul_xw_pk(dx, dy, W->data, W->dt, pkb, N, out, in, acc);
        return;
    }
    yf_lora_mod *gmd = r->glo ? yf_lora_get(r->glo, l, p) : NULL;
    yf_ws *ws = &r->ws;
    int64_t R = r->lo->cfg.r;
    float s = r->lo->scaling;
    bool drop = r->drop_p > 0;
    uint64_t seed = drop ? r->drop_seed[l * YF_NPROJ + p] : 0;
    const float *xin = x;
    bool blocks = drop && !md->m; /* LoRA: x' a block of rows at a time; DoRA: whole */
    if (drop && !blocks) {
        yf_dropout(ws->xd, x, N * in, r->drop_p, seed);
        xin = ws->xd;
    }
    if (r->lt_valid && r->lt_valid[l * YF_NPROJ + p]) /* A x', as the forward computed it */
        memcpy(ws->lt, r->lt_saved + (l * YF_NPROJ + p) * N * R, (size_t)(N * R) * sizeof(float));
    else if (blocks)
        drop_lt(r, x, in, md->A, R, seed, ws->lt);
    else
        yf_matmul_xwt(ws->lt, xin, md->A, YF_F32, N, R, in, false);
    const float *dya = dy;  /* the gradient the adapter branch sees */
    float *mn = NULL;
    if (md->m) {
        mn = yf_malloc((size_t)out * sizeof(float));
        const float *n = r->dora_n[l * YF_NPROJ + p];
        dora_ratio(mn, md, n);
        if (gmd) {
            /* dm_o = sum_rows dy_o (W x' + s B A x')_o / n_o */
            float *t = ws->t3;
            yf_matmul_xwt_pk(t, xin, W->data, W->dt, yf_model_wpack(r->m, W, YF_PACK_XWT, N), N, out, in, false);
            float *lts = ws->dlt;
            for (int64_t i = 0; i < N * R; i++) lts[i] = s * ws->lt[i];
            yf_matmul_xwt(t, lts, md->B, YF_F32, N, out, R, true);
#pragma omp parallel for if ((int64_t)(N * out) >= ((int64_t)1 << 21)) schedule(static)
            for (int64_t o = 0; o < out; o++) {
                double acc_m = 0;
                for (int64_t i = 0; i < N; i++) acc_m += (double)dy[i * out + o] * t[i * out + o];
                gmd->gm[o] += (float)(acc_m / n[o]);
            }
        }
        float *t2 = ws->t2;
        memcpy(t2, dy, (size_t)(N * out) * sizeof(float));
        scale_cols(t2, mn, N, out);
        dya = t2;
    }
    if (gmd) {
        /* gB += s dya^T (A x') */
        scale(ws->lt, s, N * R);
        yf_matmul_dw(gmd->gB, dya, ws->lt, N, out, R);
    }
    /* dlt = s dya B */
    yf_matmul_xw(ws->dlt, dya, md->B, YF_F32, N, out, R, false);
    scale(ws->dlt, s, N * R);
    if (gmd && blocks)
        drop_dw(r, x, in, ws->dlt, R, seed, gmd->gA);
    else if (gmd)
        yf_matmul_dw(gmd->gA, ws->dlt, xin, N, R, in);
    if (!dx) {
        free(mn);
        return;
    }
    if (!drop) {
        /* x' = x: LoRA dx = W^T dy + A^T dlt; DoRA dx = W^T (m/n dy) + A^T dlt */
        yf_matmul_xw_pk(dx, dya, W->data, W->dt, pkb, N, out, in, acc);
        yf_matmul_xw(dx, ws->dlt, md->A, YF_F32, N, R, in, true);
    } else {
        /* gradient wrt x': A^T dlt (+ W^T ((m/n - 1) dy) for DoRA), then through
         * the mask, added to the base product's */
        yf_drop d = yf_dropout_params(r->drop_p, seed);
        if (!mn && yf_matmul_xw_pk_drop(dx, dy, W->data, W->dt, pkb, N, out, in, acc, ws->dlt, md->A, R, &d))
            return; /* the same steps as below, inside the base product */
        if (!mn) { /* W^T dy, then the masked A^T dlt a block of rows at a time */
            yf_matmul_xw_pk(dx, dy, W->data, W->dt, pkb, N, out, in, acc);
            drop_add_dx(r, dx, in, ws->dlt, md->A, R, seed);
            return;
        }
        float *gx = ws->t1;
        yf_matmul_xw(gx, ws->dlt, md->A, YF_F32, N, R, in, false);
        if (mn) {
            float *t2 = ws->t2; /* = (m/n) dy: turn into (m/n - 1) dy */
            for (int64_t i = 0; i < N * out; i++) t2[i] -= dy[i];
            yf_matmul_xw_pk(gx, t2, W->data, W->dt, pkb, N, out, in, true);
        }
        yf_dropout(gx, gx, N * in, r->drop_p, seed);
        yf_matmul_xw_pk(dx, dy, W->data, W->dt, pkb, N, out, in, acc);
        yf_add(dx, dx, gx, N * in);
    }
    free(mn);
}

/* ---- one layer ------------------------------------------------------------------ */

static const float *F(const yf_mw *w) { return (const float *)w->data; }

/* The steps that see the rows as sequences (the convolutions, RoPE, the
 * heads' layout, attention) run per group: one group of B sequences of T
 * rows, or one group per segment of ragged rows (one sequence each). A
 * group's rows start at row `off`; its [B, H, T, hd] head blocks at off * D
 * floats, its log-sum-exps at off * H. */
typedef struct grp {
    int64_t off, B, T;
} grp;

static int64_t ngroups(const yf_run *r) { return r->seg_off ? r->B : 1; }

static grp group(const yf_run *r, int64_t g) {
    if (!r->seg_off) return (grp){0, r->B, r->T};
    return (grp){r->seg_off[g], 1, r->seg_off[g + 1] - r->seg_off[g]};
}

/* The absolute position of group g's first row (with posb: of the first
 * row of sequence 0; each sequence adds its own). */
static int64_t group_pos(const yf_run *r, int64_t g) { return r->seg_pos ? r->seg_pos[g] : r->pos0; }

/* Group g's decoding state at layer l (st: the whole batch's), or NULL. */
static yf_layer_state *group_state(const yf_run *r, yf_layer_state *st, int64_t l, int64_t g) {
    return r->seg_st ? &r->seg_st[g][l] : st;
}

/* The row before group g's sequences of the convolution over x [N, C] (a,
 * or c when half) at layer l: the decoding state's, the shared prefix's
 * last, or none. */
static const float *conv_prev(const yf_run *r, yf_layer_state *st, int64_t l, bool half, int64_t g) {
    const yf_layer_state *gs = group_state(r, st, l, g);
    if (gs) return half ? gs->c_prev : gs->a_prev;
    if (r->pfx && r->pfx->P > 0) return half ? r->pfx->c_last : r->pfx->a_last;
    return NULL;
}

static void conv_pack_groups(const yf_run *r, float *x2, const float *x, yf_layer_state *st, int64_t l, bool half) {
    int64_t C = half ? r->m->D / 2 : r->m->D;
    for (int64_t g = 0; g < ngroups(r); g++) {
        grp q = group(r, g);
        yf_conv_pack(x2 + q.off * 2 * C, x + q.off * C, conv_prev(r, st, l, half, g), q.B, q.T, C);
    }
}

/* dx [N, C] (+)= the gradient of x through its packed form dx2 [N, 2C]; the
 * part for the row before the segments goes to dprev (a shared prefix's). */
static void conv_unpack_groups(const yf_run *r, float *dx, const float *dx2, int64_t C, bool acc, float *dprev) {
    for (int64_t g = 0; g < ngroups(r); g++) {
        grp q = group(r, g);
        yf_conv_unpack_bwd(dx + q.off * C, dx2 + q.off * 2 * C, q.B, q.T, C, acc);
        if (dprev) yf_conv_prev_bwd(dprev, dx2 + q.off * 2 * C, q.B, q.T, C);
    }
}

static void heads_groups(const yf_run *r, float *dst, const float *src, bool merge) {
    int64_t H = r->m->H, hd = r->m->hd, D = r->m->D;
    for (int64_t g = 0; g < ngroups(r); g++) {
        grp q = group(r, g);
        if (merge)
            yf_heads_merge(dst + q.off * D, src + q.off * D, q.B, q.T, H, hd);
        else
            yf_heads_split(dst + q.off * D, src + q.off * D, q.B, q.T, H, hd);
    }
}

/* A segment's keys (or values) after the prefix's: [H, P + n, hd] */
static void kv_concat(float *dst, const float *pfx, const float *own, int64_t H, int64_t P, int64_t n, int64_t hd) {
    for (int64_t h = 0; h < H; h++) {
        if (P > 0) memcpy(dst + h * (P + n) * hd, pfx + h * P * hd, (size_t)(P * hd) * sizeof(float));
        memcpy(dst + (h * (P + n) + P) * hd, own + h * n * hd, (size_t)(n * hd) * sizeof(float));
    }
}

/* Attention of ragged segments over the prefix's keys and values and their
 * own (forward; with dout, the backward: dq, dk, dv of the segments written,
 * the prefix's dk, dv added to pfx_out). */
static void attention_segments(yf_run *r, yf_act *act, const float *dout) {
    yf_model *m = r->m;
    yf_ws *ws = &r->ws;
    int64_t H = m->H, hd = m->hd, D = m->D, P = r->pfx->P, nmax = 0;
    for (int64_t g = 0; g < r->B; g++) nmax = group(r, g).T > nmax ? group(r, g).T : nmax;
    int64_t kvn = H * (P + nmax) * hd;
    float *kc = yf_buf_get((size_t)kvn * sizeof(float)), *vc = yf_buf_get((size_t)kvn * sizeof(float));
    float *dkc = dout ? yf_buf_get((size_t)kvn * sizeof(float)) : NULL, *dvc = dout ? yf_buf_get((size_t)kvn * sizeof(float)) : NULL;
    for (int64_t g = 0; g < r->B; g++) {
        grp q = group(r, g);
        int64_t o = q.off * D, n = q.T;
        kv_concat(kc, r->pfx->k, act->k + o, H, P, n, hd);
        kv_concat(vc, r->pfx->v, act->v + o, H, P, n, hd);
        if (!dout) {
            yf_attention_fwd_kv(ws->hh + o, act->lse + q.off * H, act->q + o, kc, vc, r->start + q.off, 1, H, n, P + n, hd, P);
            continue;
        }
        yf_attention_bwd_kv(ws->dq + o, dkc, dvc, dout + o, act->lse + q.off * H, act->q + o, kc, vc, r->start + q.off, 1,
                            H, n, P + n, hd, P);
        for (int64_t h = 0; h < H; h++) { /* the segment's own rows; the prefix's part summed into its gradient */
            const float *sk = dkc + h * (P + n) * hd, *sv = dvc + h * (P + n) * hd;
            if (P > 0) {
                yf_add(r->pfx_out->dk + h * P * hd, r->pfx_out->dk + h * P * hd, sk, P * hd);
                yf_add(r->pfx_out->dv + h * P * hd, r->pfx_out->dv + h * P * hd, sv, P * hd);
            }
            memcpy(ws->dk + o + h * n * hd, sk + P * hd, (size_t)(n * hd) * sizeof(float));
            memcpy(ws->dv + o + h * n * hd, sv + P * hd, (size_t)(n * hd) * sizeof(float));
        }
    }
    yf_buf_put(kc), yf_buf_put(vc), yf_buf_put(dkc), yf_buf_put(dvc);
}

/* Attention of ragged segments, each continuing its own decoding state (at
 * layer l): the segment's keys and values go into its cache, then each
 * segment takes the attention its sequence would take as a chunk alone. */
static void attention_cached_segments(yf_run *r, int64_t l, yf_act *act) {
    yf_ws *ws = &r->ws;
    int64_t H = r->m->H, hd = r->m->hd, D = r->m->D;
    for (int64_t g = 0; g < r->B; g++) {
        grp q = group(r, g);
        const yf_layer_state *gs = &r->seg_st[g][l];
        int64_t o = q.off * D, n = q.T, p = r->seg_pos[g], cap = gs->cap;
        float *sk = gs->k, *sv = gs->v;
        for (int64_t h = 0; h < H; h++) {
            memcpy(sk + (h * cap + p) * hd, act->k + o + h * n * hd, (size_t)(n * hd) * sizeof(float));
            memcpy(sv + (h * cap + p) * hd, act->v + o + h * n * hd, (size_t)(n * hd) * sizeof(float));
        }
        const int64_t *start = r->start + q.off;
        float *lse = act->lse + q.off * H;
        if (n == 1)
            yf_attention_decode(ws->hh + o, lse, act->q + o, sk, sv, start, 1, H, cap, hd, p, NULL);
        else if (p == 0)
            yf_attention_fwd_train(ws->hh + o, lse, act->q + o, act->k + o, act->v + o, start, 1, H, n, hd);
        else
            yf_attention_fwd_kv(ws->hh + o, lse, act->q + o, sk, sv, start, 1, H, n, cap, hd, p);
    }
}

/* Attention of a chunk over the decoding state's cache. */
static void attention_cached(yf_run *r, yf_act *act, yf_layer_state *st) {
    yf_ws *ws = &r->ws;
    int64_t B = r->B, T = r->T, H = r->m->H, hd = r->m->hd;
    for (int64_t bh = 0; bh < B * H; bh++) {
        int64_t p = r->pos0 + (r->posb ? r->posb[bh / H] : 0);
        memcpy(st->k + (bh * st->cap + p) * hd, act->k + bh * T * hd, (size_t)(T * hd) * sizeof(float));
        memcpy(st->v + (bh * st->cap + p) * hd, act->v + bh * T * hd, (size_t)(T * hd) * sizeof(float));
    }
    /* a sequence whose chunk starts at position 0 (a prompt's prefill)
     * sees only the chunk's own keys: the blocked training attention; a
     * later chunk of several rows (a prompt after a cached prefix) the
     * blocked attention over the cache; decode steps the one-row one.
     * Chosen per sequence, so a sequence's result does not depend on the
     * batch around it. */
    if (T == 1) {
        yf_attention_decode(ws->hh, act->lse, act->q, st->k, st->v, r->start, B, H, st->cap, hd, r->pos0, r->posb);
        return;
    }
    for (int64_t b = 0; b < B; b++) {
        int64_t o = b * H * T, p = r->pos0 + (r->posb ? r->posb[b] : 0);
        if (p == 0)
            yf_attention_fwd_train(ws->hh + o * hd, act->lse + o, act->q + o * hd, act->k + o * hd, act->v + o * hd,
                                   r->start + b * T, 1, H, T, hd);
        else
            yf_attention_fwd_kv(ws->hh + o * hd, act->lse + o, act->q + o * hd, st->k + b * H * st->cap * hd,
                                st->v + b * H * st->cap * hd, r->start + b * T, 1, H, T, st->cap, hd, p);
    }
}

void yf_layer_fwd(yf_run *r, int64_t l, yf_act *act, float *out, yf_layer_state *st) {
    yf_model *m = r->m;
    yf_layer_w *lw = &m->layers[l];
    yf_ws *ws = &r->ws;
    int64_t B = r->B, T = r->T, N = r->N, D = m->D, H = m->H, hd = m->hd, I = m->I;
    float eps = m->cfg.rms_norm_eps;
    YF_CHECK(!(st && r->seg_off));
    bool cached = st || r->seg_st;

    yf_rmsnorm_fwd(act->a, act->rs1, act->x, F(&lw->ln1), N, D, eps);
    /* localized filtering: two causal width-2 convolutions, then RMSNorm(e + a) */
    conv_pack_groups(r, ws->x2, act->a, st, l, false);
    const yf_wpack *pk1 = yf_model_fwd_pack(r->m, &lw->conv1, N, r->backward, yf_model_bwd_uses_w(r, l, YF_Q));
    yf_matmul_xwt_pk(act->c, ws->x2, lw->conv1.data, lw->conv1.dt, pk1, N, D / 2, 2 * D, false);
    yf_bias_fwd(act->c, F(&lw->conv1_b), N, D / 2);
    conv_pack_groups(r, ws->x2, act->c, st, l, true);
    const yf_wpack *pk2 = yf_model_fwd_pack(r->m, &lw->conv2, N, r->backward, yf_model_bwd_uses_w(r, l, YF_Q));
    yf_matmul_xwt_pk(ws->e, ws->x2, lw->conv2.data, lw->conv2.dt, pk2, N, D, D, false);
    yf_bias_fwd(ws->e, F(&lw->conv2_b), N, D);
    yf_add(act->s, ws->e, act->a, N * D);
    yf_rmsnorm_fwd(act->f, act->rslf, act->s, F(&lw->lf_ln), N, D, eps);
    for (int64_t g = 0; cached && g < ngroups(r); g++) { /* each sequence's last rows: its state's filter rows */
        grp q = group(r, g);
        yf_layer_state *gs = group_state(r, st, l, g);
        for (int64_t b = 0; b < q.B; b++) {
            int64_t last = q.off + b * q.T + q.T - 1;
            memcpy(gs->a_prev + b * D, act->a + last * D, (size_t)D * sizeof(float));
            memcpy(gs->c_prev + b * D / 2, act->c + last * D / 2, (size_t)(D / 2) * sizeof(float));
        }
    }

    /* queries and keys from the filtered f, values from a */
    yf_linear_fwd(r, l, YF_Q, act->f, ws->qp);
    yf_linear_fwd(r, l, YF_K, act->f, ws->kp);
    for (int64_t g = 0; g < ngroups(r); g++) {
        grp q = group(r, g);
        yf_qk_rope_fwd(act->q + q.off * D, act->k + q.off * D, ws->qp + q.off * D, ws->kp + q.off * D, m->rope_cos,
                       m->rope_sin, q.B, q.T, H, hd, group_pos(r, g), r->posb);
    }
    yf_linear_fwd(r, l, YF_V, act->a, ws->e);
    heads_groups(r, act->v, ws->e, false);
    if (r->seg_st)
        attention_cached_segments(r, l, act);
    else if (st)
        attention_cached(r, act, st);
    else if (r->pfx)
        attention_segments(r, act, NULL);
    else
        yf_attention_fwd_train(ws->hh, act->lse, act->q, act->k, act->v, r->start, B, H, T, hd);
    heads_groups(r, act->att, ws->hh, true);
    yf_linear_fwd(r, l, YF_O, act->att, ws->e);
    yf_add(act->h2, act->x, ws->e, N * D);

    /* MLP: (m Wg^T) * silu(m Wu^T), then down */
    yf_rmsnorm_fwd(act->mm, act->rs2, act->h2, F(&lw->ln2), N, D, eps);
    yf_linear_fwd(r, l, YF_GATE, act->mm, act->g);
    yf_linear_fwd(r, l, YF_UP, act->mm, act->u);
    yf_swiglu_fwd(ws->z, act->g, act->u, N * I);
    yf_linear_fwd(r, l, YF_DOWN, ws->z, ws->e);
    yf_add(out, act->h2, ws->e, N * D);
}

void yf_layer_bwd(yf_run *r, int64_t l, yf_act *act, const float *dout, float *dx) {
    yf_model *m = r->m;
    yf_layer_w *lw = &m->layers[l];
    yf_ws *ws = &r->ws;
    int64_t B = r->B, T = r->T, N = r->N, D = m->D, H = m->H, hd = m->hd, I = m->I;
    const yf_pfx_grad *pin = r->pfx_in;
    yf_pfx_grad *pout = r->pfx && r->pfx->P > 0 ? r->pfx_out : NULL;
    YF_CHECK(!r->pfx || r->pfx->P == 0 || r->pfx_out);
    YF_CHECK(!pin || (!r->seg_off && B == 1));

    /* MLP */
    yf_swiglu_fwd(ws->z, act->g, act->u, N * I); /* recomputed: cheaper than keeping it */
    /* in place, [N, I] each: z's gradient over z (the product reads its
     * input before it writes the gradient), those of g and u over g and u
     * (nothing reads them after) */
    float *dz = ws->z, *dg = act->g, *du = act->u;
    yf_linear_bwd(r, l, YF_DOWN, ws->z, dout, dz, false);
    yf_swiglu_bwd(dg, du, dz, act->g, act->u, N * I);
    yf_linear_bwd(r, l, YF_GATE, act->mm, dg, ws->dm, false);
    yf_linear_bwd(r, l, YF_UP, act->mm, du, ws->dm, true);
    memcpy(ws->dh2, dout, (size_t)(N * D) * sizeof(float));
    yf_rmsnorm_bwd(ws->dh2, lw->ln2.g, ws->dm, act->h2, act->rs2, F(&lw->ln2), N, D, true);

    /* attention */
    yf_linear_bwd(r, l, YF_O, act->att, ws->dh2, ws->datt, false);
    heads_groups(r, ws->hh, ws->datt, false);
    if (r->pfx) {
        attention_segments(r, act, ws->hh);
    } else {
        yf_attention_bwd(ws->dq, ws->dk, ws->dv, ws->hh, act->lse, act->q, act->k, act->v, r->start, B, H, T, hd);
        if (pin) { /* the prefix's keys and values, as every row after it used them */
            yf_add(ws->dk, ws->dk, pin->dk, N * D);
            yf_add(ws->dv, ws->dv, pin->dv, N * D);
        }
    }
    heads_groups(r, ws->datt, ws->dv, true);
    /* Below q, k, v only the input gradient and the gradients of the
     * localized filter and input norm remain. The first layer of a LoRA run
     * needs none of them: its q, k, v adapters take their gradients from
     * dq, dk, dv alone, so the products with Wq, Wk, Wv, the convolutions'
     * and the norms' backward are skipped (~1/6 of the layer's backward). */
    bool need_below = dx || yf_layer_grads_below_qkv(lw);
    yf_linear_bwd(r, l, YF_V, act->a, ws->datt, need_below ? ws->da : NULL, false);
    for (int64_t g = 0; g < ngroups(r); g++) {
        grp q = group(r, g);
        yf_qk_rope_bwd(ws->qp + q.off * D, ws->kp + q.off * D, ws->dq + q.off * D, ws->dk + q.off * D, m->rope_cos,
                       m->rope_sin, q.B, q.T, H, hd, r->pos0);
    }
    yf_linear_bwd(r, l, YF_Q, act->f, ws->qp, need_below ? ws->df : NULL, false);
    yf_linear_bwd(r, l, YF_K, act->f, ws->kp, need_below ? ws->df : NULL, true);
    if (!need_below) return;

    /* localized filtering */
    yf_rmsnorm_bwd(ws->ds, lw->lf_ln.g, ws->df, act->s, act->rslf, F(&lw->lf_ln), N, D, false);
    for (int64_t i = 0; i < N * D; i++) ws->da[i] += ws->ds[i]; /* s = e + a */
    if (lw->conv2.g) {
        yf_bias_bwd(lw->conv2_b.g, ws->ds, N, D);
        conv_pack_groups(r, ws->x2, act->c, NULL, l, true);
        yf_matmul_dw(lw->conv2.g, ws->ds, ws->x2, N, D, D);
    }
    yf_matmul_xw_pk(ws->dx2, ws->ds, lw->conv2.data, lw->conv2.dt, yf_model_wpack(r->m, &lw->conv2, YF_PACK_XW, N), N, D,
                    D, false);
    conv_unpack_groups(r, ws->dc, ws->dx2, D / 2, false, pout ? pout->dc_last : NULL);
    if (pin) yf_add(ws->dc + (N - 1) * D / 2, ws->dc + (N - 1) * D / 2, pin->dc_last, D / 2); /* the last c row */
    if (lw->conv1.g) {
        yf_bias_bwd(lw->conv1_b.g, ws->dc, N, D / 2);
        conv_pack_groups(r, ws->x2, act->a, NULL, l, false);
        yf_matmul_dw(lw->conv1.g, ws->dc, ws->x2, N, D / 2, 2 * D);
    }
    yf_matmul_xw_pk(ws->dx2, ws->dc, lw->conv1.data, lw->conv1.dt, yf_model_wpack(r->m, &lw->conv1, YF_PACK_XW, N), N,
                    D / 2, 2 * D, false);
    conv_unpack_groups(r, ws->da, ws->dx2, D, true, pout ? pout->da_last : NULL);
    if (pin) yf_add(ws->da + (N - 1) * D, ws->da + (N - 1) * D, pin->da_last, D); /* the last a row */

    /* input norm and the residual */
    if (dx) {
        memcpy(dx, ws->dh2, (size_t)(N * D) * sizeof(float));
        yf_rmsnorm_bwd(dx, lw->ln1.g, ws->da, act->x, act->rs1, F(&lw->ln1), N, D, true);
    } else if (lw->ln1.g) {
        yf_rmsnorm_bwd(ws->df, lw->ln1.g, ws->da, act->x, act->rs1, F(&lw->ln1), N, D, false);
    }
}
