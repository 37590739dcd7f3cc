/* ops: the per-op forward/backward kernels of the Yuan decoder, except the
 * matrix products (kernels/cpu/kernels.h). Everything is fp32, row-major.
 * Conventions (llm.c style): outputs first; a backward takes the forward's
 * inputs and saved statistics; weight gradients are ACCUMULATED (+=) and may
 * be NULL when not wanted; `acc` says whether an input gradient is added to
 * (true) or overwritten (false).
 * Letters: N rows (= B*T), D features, B sequences of T positions, H heads,
 * hd head dim. */
#ifndef YF_OPS_H
#define YF_OPS_H

#include "kernels/cpu/fused.h"
#include "base/tensor.h"

/* ---- RMSNorm: y = w * x / sqrt(mean(x^2) + eps), statistics in fp32 ----- */
/* y [N,D]; rs [N] receives 1/sqrt(mean(x^2)+eps) (may be NULL). */
void yf_rmsnorm_fwd(float *y, float *rs, const float *x, const float *w, int64_t N, int64_t D, float eps);
/* dx [N,D] (acc or overwrite), dw [D] += (may be NULL). */
void yf_rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *rs, const float *w,
                    int64_t N, int64_t D, bool acc);

/* ---- causal width-2 convolution along time (lf_gate) ----------------------
 * A Conv2d weight [Cout, Cin, 2, 1] read as a matrix [Cout, 2*Cin] multiplies
 * the interleaved input x2[t, 2i] = a[t-1, i], x2[t, 2i+1] = a[t, i].
 * Rows are B sequences of T positions; prev [B, Cin] is the row before each
 * sequence (the lf-gate state of incremental decoding), NULL = zeros. */
void yf_conv_pack(float *x2, const float *a, const float *prev, int64_t B, int64_t T, int64_t C);
/* da [B*T, C] (acc or overwrite) from dx2 [B*T, 2C] (the gradient of prev is dropped). */
void yf_conv_unpack_bwd(float *da, const float *dx2, int64_t B, int64_t T, int64_t C, bool acc);
/* The gradient of prev: dprev [B, C] += what dx2 [B*T, 2C] sends to the row
 * before each sequence (a shared prefix's last row, model/prefix_train.c). */
void yf_conv_prev_bwd(float *dprev, const float *dx2, int64_t B, int64_t T, int64_t C);
/* y[N,C] += b[C]; db[C] += sum over rows of dy. */
void yf_bias_fwd(float *y, const float *b, int64_t N, int64_t C);
void yf_bias_bwd(float *db, const float *dy, int64_t N, int64_t C);

/* ---- rotary tables: cos/sin [P, hd/2] of p * theta^(-2i/hd) ------------- */
void yf_rope_tables(float *cos_t, float *sin_t, int64_t P, int64_t hd, double theta);

/* ---- query/key interleave + RoPE ------------------------------------------
 * qp, kp [B*T, D] are q_proj's and k_proj's outputs. Their concatenation per
 * row, viewed as [H, 2*hd], gives head j's query (first hd) and key (last hd).
 * Both are rotated (rotate-half) at position pos0 + t and written to
 * q, k [B, H, T, hd]. */
void yf_qk_rope_fwd(float *q, float *k, const float *qp, const float *kp, const float *cos_t, const float *sin_t,
                    int64_t B, int64_t T, int64_t H, int64_t hd, int64_t pos0, const int64_t *posb);
/* Overwrites dqp, dkp [B*T, D] from dq, dk [B, H, T, hd]. */
void yf_qk_rope_bwd(float *dqp, float *dkp, const float *dq, const float *dk, const float *cos_t,
                    const float *sin_t, int64_t B, int64_t T, int64_t H, int64_t hd, int64_t pos0);
/* [B*T, H*hd] <-> [B, H, T, hd] (overwrite). */
void yf_heads_split(float *xh, const float *x, int64_t B, int64_t T, int64_t H, int64_t hd);
void yf_heads_merge(float *x, const float *xh, int64_t B, int64_t T, int64_t H, int64_t hd);

/* ---- attention ------------------------------------------------------------
 * start [B*T]: the first key position row t may see (document reset): the
 * position after the last <eod> strictly before t, else 0. reset=false gives 0. */
void yf_doc_starts(int64_t *start, const int64_t *ids, int64_t B, int64_t T, int64_t eod, bool reset);
/* Causal softmax attention per (b, head), fp32. q, out [B,H,Tq,hd];
 * k, v [B,H,ld,hd] hold keys/values of positions 0..pos0+Tq-1 (ld >= pos0+Tq:
 * a key/value cache uses ld = its capacity). Query t (position pos0+t) sees
 * keys start[b*Tq+t] .. pos0+t. lse [B,H,Tq] gets the log-sum-exp of the
 * scaled scores (may be NULL), used by the backward to rebuild the weights. */
void yf_attention_fwd(float *out, float *lse, const float *q, const float *k, const float *v, const int64_t *start,
                      int64_t B, int64_t H, int64_t Tq, int64_t ld, int64_t hd, int64_t pos0, const int64_t *posb);
/* Training shape (pos0 = 0, ld = T). Overwrites dq, dk, dv [B,H,T,hd].
 * Blocked on the matmul kernels (attention.c); _ref: the scalar reference.
 * Both are yf_attention_bwd_kv with pos0 = 0. */
void yf_attention_bwd(float *dq, float *dk, float *dv, const float *dout, const float *lse,
                      const float *q, const float *k, const float *v, const int64_t *start, int64_t B, int64_t H,
                      int64_t T, int64_t hd);
void yf_attention_bwd_ref(float *dq, float *dk, float *dv, const float *dout, const float *lse,
                          const float *q, const float *k, const float *v, const int64_t *start, int64_t B,
                          int64_t H, int64_t T, int64_t hd);
/* yf_attention_fwd for the training shape (pos0 = 0, ld = T), blocked on the
 * matmul kernels (attention.c); the same results up to rounding. */
void yf_attention_fwd_train(float *out, float *lse, const float *q, const float *k, const float *v,
                            const int64_t *start, int64_t B, int64_t H, int64_t T, int64_t hd);
/* Attention of rows that continue earlier positions, and its backward: the
 * forward is yf_attention_fwd's (q, out [B,H,Tq,hd] at positions
 * pos0..pos0+Tq-1; k, v [B,H,ld,hd] hold positions 0..pos0+Tq-1, the
 * queries' own last) without posb, blocked on the matmul kernels
 * (attention.c). The backward overwrites dq [B,H,Tq,hd] and rows
 * 0..pos0+Tq-1 of dk, dv [B,H,ld,hd]: the gradients of the earlier positions'
 * keys and values too, which a shared prefix sums over the rows that continue
 * it (model/prefix_train.c). _ref: the scalar reference of the backward (the
 * forward's is yf_attention_fwd). */
void yf_attention_fwd_kv(float *out, float *lse, const float *q, const float *k, const float *v, const int64_t *start,
                         int64_t B, int64_t H, int64_t Tq, int64_t ld, int64_t hd, int64_t pos0);
/* yf_attention_fwd for one query row per sequence (Tq = 1: a decode step),
 * vectorised along the head dimension (attention.c); the same results up to
 * rounding. Each (sequence, head) is computed alone, in one order, so a
 * sequence's result does not depend on the batch around it. */
void yf_attention_decode(float *out, float *lse, const float *q, const float *k, const float *v, const int64_t *start,
                         int64_t B, int64_t H, int64_t ld, int64_t hd, int64_t pos0, const int64_t *posb);
void yf_attention_bwd_kv(float *dq, float *dk, float *dv, const float *dout, const float *lse, const float *q,
                         const float *k, const float *v, const int64_t *start, int64_t B, int64_t H, int64_t Tq,
                         int64_t ld, int64_t hd, int64_t pos0);
void yf_attention_bwd_kv_ref(float *dq, float *dk, float *dv, const float *dout, const float *lse, const float *q,
                             const float *k, const float *v, const int64_t *start, int64_t B, int64_t H, int64_t Tq,
                             int64_t ld, int64_t hd, int64_t pos0);

/* y = a + b elementwise (y may be a or b), on the pool above a few 64K chunks */
void yf_add(float *y, const float *a, const float *b, int64_t n);

/* ---- SwiGLU with silu on the up projection: z = g * silu(u) --------------- */
void yf_swiglu_fwd(float *z, const float *g, const float *u, int64_t n);
/* Overwrites dg, du; dg may be g and du may be u (in place). */
void yf_swiglu_bwd(float *dg, float *du, const float *dz, const float *g, const float *u, int64_t n);

/* ---- cross-entropy over rows of logits ------------------------------------
 * logits [R,V]; target[r] < 0 means not scored. Returns the sum of
 * -log softmax(logits[r])[target[r]] over scored rows. If dlogits != NULL it
 * receives scale * (softmax - onehot) for scored rows and 0 for the others
 * (dlogits == logits is allowed). Targets must be in [0, V) (checked by the caller). */
double yf_xent(float *dlogits, const float *logits, const int64_t *target, int64_t R, int64_t V, float scale);

/* y[i] = exp(x[i] - shift) (y == x allowed); returns the sum of y, in double. */
double yf_exp_sum(float *y, const float *x, int64_t n, float shift);
/* The same sum (bit for bit), the values going to bf16 instead: 32 of them
 * (columns 32 s .. 32 s + 31, zeros past n) at dst + s * stride, as a row of
 * a packed left operand is laid out (yf_apk_row). */
double yf_exp_sum_bf16(uint16_t *dst, int64_t stride, const float *x, int64_t n, float shift);

/* The LM head's softmax on a block of its logits as the product hands it
 * out (yf_matmul_xwt_rows_blocks): blk has rows x cols logits (<= 32 x 32,
 * 32 floats a row). Row i, if bit i of live is set, gets dst[32 i + c] =
 * bf16(exp(blk[32 i + c] - shift[i])) for c < cols and 0 past cols, and its
 * exps (fp32) added to acc[16 i .. 16 i + 15] (in double: lane c % 16 gets
 * column c, then column c + 16); every other row of the 32 gets zeros. Returns
 * whether some logit of a live row exceeds its shift by more than lim.
 * The head's AMX kernel does this work itself, a half row at a time during
 * the next block's products (yf_exp_spec, with the same 16-lane step); this
 * whole-block form, with its plain reference, is what that is tested against. */
bool yf_exp_block_bf16(uint16_t *dst, const float *blk, int64_t rows, int64_t cols, uint32_t live,
                       const float *shift, double *acc, float lim);

/* ---- embedding: h[n] = W[ids[n]] (W [V, D] f32 or bf16, yf_dtype) -------- */
void yf_embed_fwd(float *h, const void *w, yf_dtype wdtype, const int64_t *ids, int64_t N, int64_t D);
/* dW[ids[n]] += dh[n] (serial in n so that repeated ids are safe) */
void yf_embed_bwd(float *dw, const float *dh, const int64_t *ids, int64_t N, int64_t D);

/* ---- LoRA dropout: a counter-based mask, so that a recomputation (gradient
 * checkpointing) or the backward regenerates exactly the forward's mask. ---
 * y[i] = keep(seed, i) ? x[i] / (1 - p) : 0 for i in [0, n). y == x allowed. */
void yf_dropout(float *y, const float *x, int64_t n, float p, uint64_t seed);
/* The part of such a mask from index base on (a multiple of 16): y[i] as
 * yf_dropout of a longer array gives its element base + i. */
void yf_dropout_at(float *y, const float *x, int64_t n, float p, uint64_t seed, int64_t base);
/* Its mask's constants (yf_drop, kernels.h), for the products that apply it
 * themselves (yf_matmul_xw_pk_drop). */
yf_drop yf_dropout_params(float p, uint64_t seed);

/* ---- implementation choice ------------------------------------------------
 * RMSNorm's sums, SwiGLU, cross-entropy and dropout have an AVX-512 form used
 * when the CPU has it; true forces the plain C loops (the reference the tests
 * compare the vector forms with). Not thread-safe: set it between calls. */
void yf_ops_set_reference(bool on);
/* Tests: false makes the AVX-512 forms step aside (the AVX2 forms of the
 * x86-64-v3 build, else the plain loops, run), as on a CPU without AVX-512. */
void yf_ops_set_avx512(bool on);

#endif
