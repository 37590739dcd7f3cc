/* model_internal: the model's structs and per-layer API, for the model's
 * files (load.c, layer.c, head.c, model.c), generation and the tests. Not
 * part of the public API.
 *
 * How a forward is organised:
 *   yf_run          one call's context: rows (B sequences of T positions,
 *                   starting at absolute position pos0), document starts,
 *                   the adapter, dropout seeds, DoRA row norms, workspace.
 *   yf_act          one layer's saved activations for those rows.
 *   yf_layer_fwd    computes one layer from act->x; with a yf_layer_state it
 *                   works incrementally (see below).
 *   yf_layer_bwd    the layer's backward from the saved activations.
 *
 * Incremental decoding (for a generation engine): keep one yf_layer_state per
 * layer. Call yf_layer_fwd on a chunk of T new positions per sequence with
 * run.pos0 = number of positions already cached and run.start[b*T+t] = the
 * first position row t may attend to (its document start, absolute). The
 * layer writes the chunk's keys (after RoPE) and values into the cache at
 * positions pos0..pos0+T-1, attends over 0..pos0+t, and replaces the lf-gate
 * state (last `a` row and last `c` row of each sequence) with the chunk's
 * last rows. A fresh state (a_prev = c_prev = 0) is the start of a sequence.
 * yf_model_forward_chunk (below) is such a driver; it is tested against the
 * full forward.
 *
 * Rows after a shared prefix (training, model/prefix_train.c): the prefix
 * runs as one sequence of P rows; the rows of every batch row after it run
 * as ragged segments (yf_run_init_segments: back to back, each at positions
 * P, P+1, ...) that see the prefix through a yf_pfx_view (its keys, values
 * and last filter rows, read-only) and send their gradients into it through
 * a yf_pfx_grad, which the prefix's own backward then takes in. */
#ifndef YF_MODEL_INTERNAL_H
#define YF_MODEL_INTERNAL_H

#include "formats/weights.h"
#include "model/model.h"
#include "kernels/cpu/kernels.h"

/* One model tensor as the compute sees it. */
typedef struct yf_mw {
    const char *name; /* checkpoint name */
    const void *data; /* YF_F32 or YF_BF16 (small vectors are always F32), or a yf_qmat (YF_QMAT) */
    yf_dtype dt;
    yf_dtype src_dt;  /* dtype in the checkpoint (what yf_model_save writes by default) */
    float *g;         /* gradient [numel] in full-finetune mode, else NULL */
    int64_t numel;
    int ndim;
    int64_t shape[4];
    yf_wpack *pk[2];  /* pre-packed tiles for x·W^T / dy·W (yf_model_wpack), or NULL */
} yf_mw;

typedef struct yf_layer_w {
    yf_mw ln1;               /* input_layernorm [D] */
    yf_mw conv1, conv1_b;    /* [D/2, D, 2, 1] read as [D/2, 2D]; [D/2] */
    yf_mw conv2, conv2_b;    /* [D, D/2, 2, 1] read as [D, D];    [D]   */
    yf_mw lf_ln;             /* lf_gate.output_layernorm [D] */
    yf_mw proj[YF_NPROJ];    /* q, k, v, o [D, D]; gate, up [I, D]; down [D, I] */
    yf_mw ln2;               /* post_attention_layernorm [D] */
} yf_layer_w;

struct yf_model {
    yf_config cfg;
    yf_model_opts opts;
    int64_t D, H, hd, I, V, L;
    yf_mw embed;           /* [V, D] */
    yf_mw head;            /* [V, D]; same data (and gradient) as embed when tied */
    bool tied;
    yf_mw norm;            /* model.norm [D] */
    yf_layer_w *layers;    /* [L] */
    float *rope_cos, *rope_sin; /* [max_position_embeddings, hd/2] */
    yf_wspec *specs;       /* [nspecs] every checkpoint tensor, in checkpoint order (formats/weights.h) */
    int64_t nspecs;
    yf_table tab;          /* the checkpoint's tensors (mappings) */
    yf_table own;          /* converted copies, gradients, tables */
    yf_param *params;      /* full-finetune parameter list */
    int nparams;
    size_t pack_bytes, pack_budget; /* pre-packed weight tiles: made so far, allowed */
    bool head_two_pass;             /* tests: the whole-row softmax for the LM head in bf16 too */
    bool head_no_fuse;              /* tests: the packed head without its fused blocks (head_chunk_blocked) */
    int64_t head_fused, head_refits; /* tests: vocabulary blocks the head fused; chunks it redid unfused */
    bool pack_failed;               /* a pack could not be made: no more tries */
    size_t quant_bytes;             /* quantized weights (opts.quant): their bytes */
    int quant_fallbacks;            /* weights quantized otherwise than opts.quant asks (their shape) */
    const char *quant_fallback_name; /* the first of them */
    int int8_act_weights;           /* quantized weights given yf_qmat.int8_act (opts.int8_act) */
};

/* The compute tensor of checkpoint tensor spec s (load.c). */
yf_mw *yf_model_slot(yf_model *m, const yf_wspec *s);
/* W's values in dtype to (F32, BF16, F16; a quantized W dequantized):
 * *data = W's own bytes when they are already, else converted into buf
 * (numel elements of to). */
int yf_mw_bytes(const yf_mw *w, yf_dtype to, void *buf, const void **data);

/* model/quantize.c: whether a model loaded with o quantizes the tensor of
 * spec s; w (bound to t, a [N, K] weight) quantized (t then shows it in the
 * table as YF_QMAT); the one-line note on weights quantized otherwise than
 * asked, on stderr. */
bool yf_model_quantizes(const yf_model_opts *o, const yf_wspec *s, bool tied);
int yf_mw_quantize(yf_model *m, yf_mw *w, yf_tensor *t, const char *what);
void yf_model_quant_note(const yf_model *m);
/* A tensor stored quantized (yuanft quantize: NAME.qweight, .qscale, .qmin
 * in tab) bound to w, checked against spec s; 1 when tab has no NAME.qweight
 * (nothing done), 0 when bound, -1 with a message. */
int yf_mw_bind_stored(yf_model *m, yf_mw *w, const yf_wspec *s, const char *what);
/* The checks of DIR's metadata
 * (its layout version) before they are bound, and the dtype they were
 * quantized from. */
int yf_stored_quant_check(const char *dir, yf_dtype *src_dt);
/* The stored quantized weights' checkpoint dtype (what saving writes; bound
 * as BF16). */
void yf_model_stored_src_dt(yf_model *m, yf_dtype dt);

/* W's pre-packed form for a product of M rows (kind YF_PACK_XWT: x·W^T,
 * YF_PACK_XW: dy·W), made on first use when they pay (a frozen weight on the
 * AMX (bf16), AVX-512 or AVX2 path, at most ~1500 rows: yf_wpack_pays) and fit the
 * model's budget (YF_PACK_MB, default a quarter of RAM up to 4 GiB); else NULL,
 * and the product packs W itself. Same results either way. */
const yf_wpack *yf_model_wpack(yf_model *m, yf_mw *W, yf_pack_kind kind, int64_t M);

/* x·W^T's pack for a forward of N rows; in a training run (backward) also
 * dy·W's when the backward multiplies by W (with_xw), and W's own pages are
 * then given back (load.c). */
const yf_wpack *yf_model_fwd_pack(yf_model *m, yf_mw *W, int64_t N, bool backward, bool with_xw);
/* Rows ids of W as floats [n, W's columns], from W's dy·W pack when it has
 * one (bit for bit W's values). */
void yf_mw_rows(const yf_mw *W, const int64_t *ids, int64_t n, float *out);
/* The embedding of ids [N] into h [N, D]. */
void yf_model_embed_rows(const yf_model *m, const int64_t *ids, int64_t N, float *h);
/* Whether anything below a layer's q, k, v products takes a gradient of its
 * own (full-parameter training): its localized filter or its norms. */
bool yf_layer_grads_below_qkv(const yf_layer_w *lw);

/* Scratch buffers of one call, sized for N rows. */
typedef struct yf_ws {
    float *x2;        /* [N, 2D] packed convolution input */
    float *qp, *kp;   /* [N, D] q_proj / k_proj outputs; backward: their gradients */
    float *e;         /* [N, D] general */
    float *hh;        /* [B,H,T,hd] attention output (forward), its gradient (backward) */
    float *z;         /* [N, I] swiglu output */
    float *lt, *dlt;  /* [N, r] adapter intermediates */
    float *xd;        /* [N, max(D,I)] dropped-out adapter input */
    float *t1, *t2, *t3; /* [N, max(D,I)] adapter backward / DoRA (t2: DoRA or per-sequence adapters; t3: DoRA) */
    /* backward (the gradients of the MLP's [N, I] rows go over z, g and u) */
    float *dm, *dh2, *datt, *da, *df, *ds, *dx2; /* [N, D] (dx2 [N, 2D]) */
    float *dq, *dk, *dv;             /* [B,H,T,hd] */
    float *dc;                       /* [N, D/2] */
    void *block;
} yf_ws;

/* One layer's saved activations for N rows. */
typedef struct yf_act {
    float *x;         /* [N, D] layer input (may point to external storage) */
    float *a, *rs1;   /* input_layernorm output [N, D], 1/rms [N] */
    float *c;         /* [N, D/2] conv1 output */
    float *s, *rslf;  /* [N, D] conv2 output + a, 1/rms [N] */
    float *f;         /* [N, D] lf_gate output */
    float *q, *k, *v; /* [B, H, T, hd] after interleave + RoPE (v: plain split) */
    float *lse;       /* [B, H, T] attention log-sum-exp */
    float *att;       /* [N, D] attention output, heads merged (o_proj input) */
    float *h2;        /* [N, D] residual after attention */
    float *rs2;       /* [N] */
    float *mm;        /* [N, D] post_attention_layernorm output */
    float *g, *u;     /* [N, I] gate_proj, up_proj outputs */
    void *block;
} yf_act;

/* A shared prefix of P positions as the rows after it see it. */
typedef struct yf_pfx_view {
    int64_t P;               /* 0: no prefix (the segments start at position 0) */
    const float *k, *v;      /* [H, P, hd] its keys (after RoPE) and values */
    const float *a_last;     /* [D]   its last input_layernorm row: conv1's previous input */
    const float *c_last;     /* [D/2] its last conv1 row: conv2's previous input */
} yf_pfx_view;

/* The gradients the rows after a prefix send into it: accumulated (+=) by
 * their backward, segment after segment; taken in by the prefix's backward. */
typedef struct yf_pfx_grad {
    float *dk, *dv;          /* [H, P, hd] */
    float *da_last;          /* [D] */
    float *dc_last;          /* [D/2] */
} yf_pfx_grad;
/* Per-sequence adapters of one batched forward (serving: requests for
 * different adapters decode together). Sequence b uses lo[row[b]], or no
 * adapter when row[b] < 0. The base products run once for all rows; each
 * adapter's low-rank term runs over its own rows, with the same bits as a
 * forward of those rows with that adapter alone. Inference only. */
typedef struct yf_row_adapters {
    int64_t n;                   /* adapters */
    const yf_lora *const *lo;    /* [n] */
    float **const *dora_n;       /* [n] each one's yf_dora_norms_new (NULL: computed per call) */
    const int32_t *row;          /* [B] index into lo, -1: the base model */
} yf_row_adapters;

typedef struct yf_run {
    yf_model *m;
    const yf_lora *lo;     /* adapter for the forward, or NULL */
    const yf_row_adapters *ra; /* or per-sequence adapters (lo NULL; yf_run_init_rows) */
    yf_lora *glo;          /* where adapter gradients go (backward), or NULL */
    int64_t B, T, N;       /* N = B*T rows */
    int64_t pos0;          /* absolute position of each sequence's first row */
    const int64_t *posb;   /* [B] or NULL: sequence b starts at pos0 + posb[b] (batched decoding) */
    const int64_t *start;  /* [N] first position each row may attend to */
    float drop_p;          /* LoRA dropout probability, 0 = none */
    uint64_t *drop_seed;   /* [L*YF_NPROJ] per-module mask seeds (drop_p > 0) */
    float **dora_n;        /* [L*YF_NPROJ] DoRA row norms ||W + s B A|| (NULL where not DoRA) */
    float *lt_saved;       /* backward runs: [L*YF_NPROJ][N*r] each adapter's A x' from the forward */
    bool *lt_valid;        /* [L*YF_NPROJ] which of those the forward wrote */
    bool backward;         /* a backward follows this forward */
    /* ragged rows (yf_run_init_segments): B segments, segment b rows
     * seg_off[b]..seg_off[b+1]-1 at positions pos0.. (T is 0) */
    const int64_t *seg_off;   /* [B+1] or NULL: B sequences of T rows */
    const yf_pfx_view *pfx;   /* segments: the prefix they continue (pos0 = pfx->P) */
    struct yf_layer_state *const *seg_st; /* [B] or NULL: segment b continues the one-sequence decoding state seg_st[b] ([L]) */
    const int64_t *seg_pos;   /* [B] with seg_st: segment b's first position */
    yf_pfx_grad *pfx_out;     /* segments' backward: where the prefix's gradients go */
    const yf_pfx_grad *pfx_in; /* a prefix's backward (one sequence): its continuations' gradients, or NULL */
    yf_ws ws;
} yf_run;

/* The incremental-decoding state of one layer. */
typedef struct yf_layer_state {
    float *k, *v;          /* [B, H, cap, hd] keys (after RoPE), values */
    int64_t cap;
    float *a_prev;         /* [B, D]   last input_layernorm row (zeros at start) */
    float *c_prev;         /* [B, D/2] last conv1 row (zeros at start) */
} yf_layer_state;

/* Builds a model from a config and a table of checkpoint tensors. Always
 * takes ownership of tab (left empty). what names the source in errors. */
int yf_model_from_table(const yf_config *cfg, yf_table *tab, const yf_model_opts *opts, const char *what,
                        yf_model **out);

/* Run context: allocates the workspace for B*T rows; adapter set-up (DoRA
 * norms) from lo; dropout p/seeds only when rng != NULL and lo has dropout. */
void yf_run_init(yf_run *r, yf_model *m, const yf_lora *lo, int64_t B, int64_t T, int64_t pos0,
                 const int64_t *start, yf_rng *dropout_rng, bool backward);
/* The same for ragged rows: nseg segments of lengths seg_off[b+1] -
 * seg_off[b] (> 0), continuing the prefix pfx (P = pfx->P positions; the
 * caller keeps seg_off, start and pfx alive). With like != NULL its DoRA row
 * norms are copied instead of computed (the same adapter). */
void yf_run_init_segments(yf_run *r, yf_model *m, const yf_lora *lo, int64_t nseg, const int64_t *seg_off,
                          const yf_pfx_view *pfx, const int64_t *start, yf_rng *dropout_rng, bool backward,
                          const yf_run *like);
/* The same for per-sequence adapters (no backward, no dropout); ra, its
 * arrays and start stay the caller's. */
void yf_run_init_rows(yf_run *r, yf_model *m, const yf_row_adapters *ra, int64_t B, int64_t T, int64_t pos0,
                      const int64_t *start);
/* The same for a batched prefill: nseq segments (one adapter lo, or one a
 * sequence: ra, row indexed by segment), segment b continuing the
 * one-sequence decoding state seg_st[b] ([L]; yf_layer_fwd then takes st
 * NULL) from position seg_pos[b]. No backward. */
void yf_run_init_prefill(yf_run *r, yf_model *m, const yf_lora *lo, const yf_row_adapters *ra, int64_t nseq,
                         const int64_t *seg_off, struct yf_layer_state *const *seg_st, const int64_t *seg_pos,
                         const int64_t *start);
void yf_run_free(yf_run *r);
/* lo's DoRA row norms ||W + s B A|| per module ([L*YF_NPROJ], NULL where a
 * module is not DoRA), what yf_run_init computes for every call: for a
 * caller that runs an adapter many times (serving). */
float **yf_dora_norms_new(yf_model *m, const yf_lora *lo);
void yf_dora_norms_free(float **n, const yf_model *m);
void yf_act_alloc(yf_act *a, const yf_model *m, int64_t B, int64_t T, bool with_x);
void yf_act_free(yf_act *a);

/* out [N, D] = layer l applied to act->x; fills act. st: NULL (whole
 * sequences, pos0 = 0) or the layer's decoding state. */
void yf_layer_fwd(yf_run *r, int64_t l, yf_act *act, float *out, yf_layer_state *st);
/* dx [N, D] = d loss / d act->x given dout [N, D] (dx may be NULL when not
 * needed); accumulates weight/adapter gradients. dout is not modified. */
void yf_layer_bwd(yf_run *r, int64_t l, yf_act *act, const float *dout, float *dx);

/* A projection with its adapter: y [N,out] = x W^T (+ adapter). */
void yf_linear_fwd(yf_run *r, int64_t l, yf_proj p, const float *x, float *y);
/* dx [N,in] (acc or overwrite) and gradients, from dy [N,out]. */
void yf_linear_bwd(yf_run *r, int64_t l, yf_proj p, const float *x, const float *dy, float *dx, bool acc);

/* Whether the backward multiplies by layer l's weight of projection p (the
 * input gradient): not for the first layer's q, k, v in a LoRA run. */
bool yf_model_bwd_uses_w(const yf_run *r, int64_t l, yf_proj p);
/* The LM head and the loss over the final hidden states hn [N, D] (head.c):
 * returns the summed loss of the rows whose target >= 0; logits [N, V] or
 * NULL; with dhn, writes d(loss_scale * loss)/d hn there (rows not scored:
 * 0) and accumulates the head's gradient in full-finetune mode. */
double yf_model_head_loss(yf_model *m, const float *hn, const int64_t *target, int64_t N, float *logits, float *dhn,
                          float loss_scale);

/* Forward + backward of a batch whose rows share their first P ids
 * (model/prefix_train.c): the contract of yf_model_forward_backward, inputs
 * already checked. */
int yf_model_run_shared(yf_model *m, const yf_lora *lo, yf_lora *glo, const int64_t *ids, const int64_t *labels,
                        int64_t B, int64_t T, int64_t P, const yf_backward_opts *bo, double *loss_sum, int64_t *ntok);

/* The projection weight of (layer, proj), shape [out, in]. */
const yf_mw *yf_model_proj(const yf_model *m, int64_t layer, yf_proj p);

/* Test hook: when set, DoRA row norms are copied from here ([l*YF_NPROJ+p],
 * `out` floats each) instead of computed from the adapter, so that finite
 * differences can hold n constant as PEFT's gradient does. NULL normally. */
extern float *const *yf_dora_norms_override;

/* Incremental forward over T new positions per sequence (see the top of this
 * file). states [L] (allocate with yf_layer_states_alloc, capacity cap
 * positions); pos0 positions already cached; doc_start [B] is each
 * sequence's current document start (updated from the new ids' <eod>s).
 * logits [B, T, V] or NULL. */
int yf_model_forward_chunk(yf_model *m, const yf_lora *lo, yf_layer_state *states, int64_t pos0,
                           int64_t *doc_start, const int64_t *ids, int64_t B, int64_t T, float *logits);
/* The same with sequence b starting at position pos0 + posb[b] (posb [B] or
 * NULL), so that sequences of different lengths decode together; with
 * last_only, logits is [B, V]: each sequence's last row only. A decode step
 * (T = 1) of up to YF_ROWSTABLE_M sequences gives each the bits it gets
 * alone (yf_kernels_set_rowstable): batching does not change the tokens. */
int yf_model_forward_cached(yf_model *m, const yf_lora *lo, yf_layer_state *states, int64_t pos0,
                            const int64_t *posb, int64_t *doc_start, const int64_t *ids, int64_t B, int64_t T,
                            float *logits, bool last_only);
/* yf_model_forward_cached for one sequence without logits, also writing
 * each layer's input_layernorm rows a_rows[l] [T, D] and conv1 rows
 * c_rows[l] [T, D/2]: the one-sequence reference for the filter rows of
 * yf_model_prefill_batch (which the prefix cache's entries take). */
int yf_model_prefill_rows(yf_model *m, const yf_lora *lo, yf_layer_state *states, int64_t pos0, int64_t *doc_start,
                          const int64_t *ids, int64_t T, float *const *a_rows, float *const *c_rows);
/* The same with an adapter per sequence (ra->row [B]): the bits of
 * yf_model_forward_cached for each sequence with its adapter, alone. */
int yf_model_forward_cached_rows(yf_model *m, const yf_row_adapters *ra, yf_layer_state *states, int64_t pos0,
                                 const int64_t *posb, int64_t *doc_start, const int64_t *ids, int64_t B, int64_t T,
                                 float *logits, bool last_only);
/* One sequence of a batched prefill (yf_model_prefill_batch). */
typedef struct yf_prefill {
    yf_layer_state *st;     /* [L] its one-sequence decoding state (capacity >= pos + len) */
    int64_t pos;            /* positions cached in st (its filter rows as left after them) */
    int64_t doc_start;      /* the document start after them; updated past the new ids' <eod>s */
    const int64_t *ids;     /* [len] the new ids */
    int64_t len;
    int32_t adapter;        /* with per-sequence adapters: index into them, -1 none */
    float *logits;          /* [V]: the last new row's, or NULL */
    float *const *a_rows;   /* [L] of [len, D]: each layer's input_layernorm rows, or NULL */
    float *const *c_rows;   /* [L] of [len, D/2]: each layer's conv1 rows, or NULL */
} yf_prefill;

/* The prefills of n sequences, as few passes as fit: the new rows of many
 * sequences share each product (ragged rows, each sequence its own
 * convolution, positions and attention over its own cache). Each sequence
 * gets the bits of its prefill alone (yf_model_forward_cached, last_only):
 * those of at least YF_PREFILL_BATCH_MIN new positions go together (their
 * products take the packed kernels, as alone), the shorter ones in passes
 * of at most YF_ROWSTABLE_M rows (row-stable products). One adapter lo, or
 * one a sequence (ra, each sequence's adapter field), or none. */
#define YF_PREFILL_BATCH_MIN 16
int yf_model_prefill_batch(yf_model *m, const yf_lora *lo, const yf_row_adapters *ra, yf_prefill *seq, int64_t n);
yf_layer_state *yf_layer_states_alloc(const yf_model *m, int64_t B, int64_t cap);
void yf_layer_states_free(yf_layer_state *s, const yf_model *m);
/* Sequence b of the B-sequence state s ([L]) as a one-sequence state
 * view[L] over the same storage (the layout [B, H, cap, hd] keeps a
 * sequence's keys and values contiguous). */
void yf_layer_states_slot(yf_layer_state *view, const yf_layer_state *s, const yf_model *m, int64_t b);
/* A one-sequence state st[L] made the start of a new sequence: a zero
 * filter state (its cached keys and values are then overwritten). */
void yf_layer_states_restart(yf_layer_state *st, const yf_model *m);

#endif
