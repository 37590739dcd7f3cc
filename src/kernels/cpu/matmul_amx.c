/* matmul_amx: C (+)= A·B on Intel AMX bf16 tiles.
 *
 * A tile register holds 16 rows x 64 bytes. TDPBF16PS multiplies a 16x32 bf16
 * tile of A by a 32x16 bf16 tile of B kept in "VNNI" order (row kp holds the
 * pairs B(2kp,n), B(2kp+1,n) side by side) and adds into a 16x16 fp32 tile.
 * The micro-kernel keeps a 32x32 block of C in 4 tiles and loads 2 A + 2 B
 * tiles per 32-wide step of K (8 tiles, all of them).
 *
 * Blocking (per thread; details and measurements at yf_gemm_amx): K in
 * blocks of up to 2048 (a kernel call runs the whole block, so C is read and
 * written once per block); per K block, a chunk of A rows (up to 12 MiB
 * packed) is converted once into tile layout, then B is packed ~1 MiB at a
 * time (the weights, converted/transposed on the fly into a per-thread buffer
 * that stays in L2: no packed copy of any weight is kept) and every 32-row
 * panel of the chunk is swept across that B block. Both operands of a call
 * come from L2; the measured rate is 25-30% of the register-resident peak
 * (AVX-512 FMA kernels reach 55-65% of theirs).
 *
 * A weight pre-packed once (yf_wpack, g->bpk) skips the B packing; its loops
 * (gemm_prepacked) keep a smaller A chunk in L2 and prefetch B ahead.
 *
 * Work in the shadow of the tile products: a tile product takes 16 cycles
 * and leaves the vector units idle, so a kernel call can also work through
 * a block of C other than its own, a row or half a row every step or two
 * of K, on data in L1/L2: the LM head's softmax step on the block before
 * (exp_pend, e->blocks), or a low-rank term added to the finished block before
 * (lr_pend: LoRA's up-projection, e->lr_l, or LoRA's input gradient with
 * its dropout mask, e->pro_l). Each gives the same bits as the separate
 * pass it replaces. Work that streams big cold operands does not hide this
 * way (SwiGLU in the MLP products: slower).
 *
 * Precision: A is f32. In bf16 mode it is rounded to bf16 (1 part). In exact
 * mode it is split x = p0 + p1 (+ p2), each part the bf16 rounding of what the
 * previous ones left, and every part is multiplied by the same B tile: with
 * bf16 B each product is exact in fp32, so with 3 parts the result carries
 * fp32 accumulation error only. Edges (M, N, K not multiples of 32) are zero
 * padded in the packed buffers; partial C blocks go through a small buffer. */
#include "kernels/cpu/matmul_impl.h"

#include <stdlib.h>
#include <string.h>

#if YF_CC_AMX
#include <immintrin.h>

#include "kernels/cpu/simd16.h"

#define AMX_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma,amx-tile,amx-bf16")))

enum { TILE_U16 = 512 }; /* one 16x64-byte tile, in bf16 elements */

typedef struct tile_config {
    uint8_t palette, start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

static inline __mmask16 mask16(int64_t n) { return n >= 16 ? 0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }
static inline __mmask32 mask32(int64_t n) { return n >= 32 ? 0xffffffffu : n <= 0 ? 0 : (__mmask32)((1u << n) - 1); }

/* 16 floats -> 16 bf16 (round to nearest even) */
AMX_TARGET static inline __m256i to_bf16(__m512 x) { return (__m256i)_mm512_cvtneps_pbh(x); }
AMX_TARGET static inline __m512 from_bf16(__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* Writes the nparts bf16 parts of 16 values: part p to dst + p*pstride. */
AMX_TARGET static inline void emit_parts(__m512 x, uint16_t *dst, int64_t pstride, int nparts) {
    for (int p = 0; p < nparts; p++) {
        __m256i h = to_bf16(x);
        _mm256_storeu_si256((__m256i *)(dst + p * pstride), h);
        if (p + 1 < nparts) x = _mm512_sub_ps(x, from_bf16(h));
    }
}

/* ---- packing B ---------------------------------------------------------- */

/* Loads 32 consecutive elements of B along k (the brs == 1 case) starting at
 * element index i, the first nk valid, as 32 bf16. */
AMX_TARGET static inline __m512i load_b_k32(const yf_gemm *g, int64_t i, int64_t nk) {
    if (g->bt == YF_BF16)
        return _mm512_maskz_loadu_epi16(mask32(nk), (const uint16_t *)g->b + i);
    const float *f = (const float *)g->b + i;
    __m512 x0 = _mm512_maskz_loadu_ps(mask16(nk), f), x1 = _mm512_maskz_loadu_ps(mask16(nk - 16), f + 16);
    return (__m512i)_mm512_cvtne2ps_pbh(x1, x0);
}

/* Loads 16 consecutive elements of B along n (the bcs == 1 case) as bf16. */
AMX_TARGET static inline __m256i load_b_n16(const yf_gemm *g, int64_t i, int64_t nn) {
    if (g->bt == YF_BF16) return _mm256_maskz_loadu_epi16(mask16(nn), (const uint16_t *)g->b + i);
    return to_bf16(_mm512_maskz_loadu_ps(mask16(nn), (const float *)g->b + i));
}

/* One VNNI tile of B: rows k0..k0+31 (nk valid), columns n0..n0+15 (nn valid). */
AMX_TARGET static void pack_b_tile(const yf_gemm *g, int64_t k0, int64_t nk, int64_t n0, int64_t nn,
                                   uint16_t *dst, const yf_tr_tables *t) {
    if (g->brs == 1) {
        /* column n of B is contiguous along k: row c of r is column n0+c as 16
         * (k,k+1) pairs; transposing 32-bit words gives the VNNI rows */
        __m512i r[16];
        size_t esz = g->bt == YF_BF16 ? 2 : 4;
        for (int c = 0; c < 16; c++) {
            if (c < nn) /* the same rows 4 tiles further along k: the next calls' data */
                _mm_prefetch((const char *)g->b + (k0 + 128 + (n0 + c) * g->bcs) * esz, _MM_HINT_T0);
            r[c] = c < nn ? load_b_k32(g, k0 + (n0 + c) * g->bcs, nk) : _mm512_setzero_si512();
        }
        yf_transpose16(r, t);
        for (int kp = 0; kp < 16; kp++) _mm512_storeu_si512(dst + kp * 32, r[kp]);
    } else {
        /* rows of B are contiguous along n: interleave rows 2kp and 2kp+1 */
        const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7,
                                             22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
        for (int kp = 0; kp < 16; kp++) {
            int64_t ka = 2 * kp, kb = 2 * kp + 1;
            __m256i ra = ka < nk ? load_b_n16(g, (k0 + ka) * g->brs + n0, nn) : _mm256_setzero_si256();
            __m256i rb = kb < nk ? load_b_n16(g, (k0 + kb) * g->brs + n0, nn) : _mm256_setzero_si256();
            __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(ra), rb, 1);
            _mm512_storeu_si512(dst + kp * 32, _mm512_permutexvar_epi16(idx, both));
        }
    }
}

/* The whole B block, rows k0..k0+kb-1 (nks steps of 32) by columns
 * n0..n0+nb-1, when rows of B are contiguous along n (dy·W: the weight's
 * rows): packed row pair by row pair, so each row is read front to back and
 * the rows a step ahead are prefetched. Walking it tile by tile instead (32
 * rows, 64 bytes each, a page apart) left the loads waiting on memory: half
 * of the packing time on the LM head. Layout as pack_b_tile's, per pair j of
 * 16-column groups: [j][step][2 tiles]. */
AMX_TARGET static void pack_b_block_rows(const yf_gemm *g, int64_t k0, int64_t kb, int64_t n0, int64_t nb,
                                         int64_t nks, uint16_t *bp) {
    const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                                         21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    int64_t ngroups = (nb + 31) / 32 * 2; /* 16-column groups, a whole number of pairs */
    size_t esz = g->bt == YF_BF16 ? 2 : 4, row_bytes = (size_t)nb * esz;
    for (int64_t s = 0; s < nks; s++)
        for (int kp = 0; kp < 16; kp++) {
            int64_t ka = 32 * s + 2 * kp;
            for (int64_t r = ka + 32; r < ka + 34 && r < kb; r++) { /* a step ahead */
                const char *row = (const char *)g->b + ((k0 + r) * g->brs + n0) * esz;
                for (size_t o = 0; o < row_bytes; o += 64) _mm_prefetch(row + o, _MM_HINT_T0);
            }
            for (int64_t gi = 0; gi < ngroups; gi++) {
                int64_t nn = nb - 16 * gi, col = n0 + 16 * gi;
                __m256i ra = ka < kb && nn > 0 ? load_b_n16(g, (k0 + ka) * g->brs + col, nn) : _mm256_setzero_si256();
                __m256i rb = ka + 1 < kb && nn > 0 ? load_b_n16(g, (k0 + ka + 1) * g->brs + col, nn)
                                                   : _mm256_setzero_si256();
                __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(ra), rb, 1);
                uint16_t *dst = bp + (((gi / 2) * nks + s) * 2 + gi % 2) * TILE_U16 + kp * 32;
                _mm512_storeu_si512(dst, _mm512_permutexvar_epi16(idx, both));
            }
        }
}

/* ---- packing A ---------------------------------------------------------- */

/* The 32-row panel of A starting at row m0 (nm valid rows), k0..k0+nk:
 * layout [step s][part p][half h][row r][32 k], each [h] a 16-row tile. */
AMX_TARGET static void pack_a_panel(const yf_gemm *g, int64_t m0, int64_t nm, int64_t k0, int64_t nk, int nparts,
                                    uint16_t *dst, const yf_tr_tables *t) {
    int64_t nks = (nk + 31) / 32, pstride = 2 * TILE_U16;
    if (g->acs == 1) {
        /* row by row: each row of the panel is one contiguous read */
        for (int r = 0; r < 32; r++) {
            const float *src = g->a + (m0 + r) * g->ars + k0;
            uint16_t *d = dst + (r / 16) * TILE_U16 + (r % 16) * 32;
            for (int64_t s = 0; s < nks; s++, d += nparts * pstride) {
                int64_t kleft = nk - 32 * s;
                __m512 x0 = _mm512_setzero_ps(), x1 = _mm512_setzero_ps();
                if (r < nm) {
                    x0 = _mm512_maskz_loadu_ps(mask16(kleft), src + 32 * s);
                    x1 = _mm512_maskz_loadu_ps(mask16(kleft - 16), src + 32 * s + 16);
                }
                emit_parts(x0, d, pstride, nparts);
                emit_parts(x1, d + 16, pstride, nparts);
            }
        }
    } else {
        /* A is stored transposed (columns contiguous along m): load 16 k-columns
         * of 16 rows, transpose, then split each row */
        for (int64_t s = 0; s < nks; s++) {
            uint16_t *base = dst + s * nparts * pstride;
            for (int h = 0; h < 2; h++)
                for (int kh = 0; kh < 2; kh++) {
                    __m512i v[16];
                    int64_t kk = k0 + 32 * s + 16 * kh, kleft = nk - 32 * s - 16 * kh;
                    __mmask16 mm = mask16(nm - 16 * h);
                    for (int j = 0; j < 16; j++)
                        v[j] = j < kleft ? _mm512_castps_si512(_mm512_maskz_loadu_ps(
                                               mm, g->a + (m0 + 16 * h) * g->ars + (kk + j) * g->acs))
                                         : _mm512_setzero_si512();
                    yf_transpose16(v, t);
                    for (int r = 0; r < 16; r++)
                        emit_parts(_mm512_castsi512_ps(v[r]), base + h * TILE_U16 + r * 32 + 16 * kh, pstride,
                                   nparts);
                }
        }
    }
}

/* ---- micro-kernel ------------------------------------------------------- */

/* Lines the kernel prefetches into L2 while it runs (a pre-packed B's next
 * block: tile loads do not start the hardware prefetchers well, so without
 * this the first panel to touch a block waits on memory). */
static _Thread_local const char *t_pf, *t_pf_end;
/* lines per 32-step of K: 4 x 64 B per 4 tile products covers a pair's next
 * slice over the panels of a chunk (2 and 8 measured slower) */
enum { PF_LINES = 4 };
AMX_TARGET static void set_tiles(void);

/* A block of logits waiting for its softmax step (yf_exp_spec): 64 half
 * rows, which the next kernel call works through a few per 32-step of K. */
typedef struct exp_pend {
    const float *blk;
    yf_exp_spec x;
    __mmask16 cols[2]; /* each half's valid columns */
    __mmask16 over;
} exp_pend;

AMX_TARGET static inline __attribute__((always_inline)) void exp_half(exp_pend *p, int q) {
    int i = q >> 1, h = q & 1;
    uint16_t *d = p->x.dst + 32 * i + 16 * h;
    if (!(p->x.live >> i & 1))
        _mm256_storeu_si256((__m256i *)d, _mm256_setzero_si256());
    else
        p->over |= yf_exp16_bf16_acc(d, p->blk + 32 * i + 16 * h, p->cols[h], p->x.shift[i], p->x.acc + 16 * i,
                                     p->x.lim);
}

AMX_TARGET static void exp_finish(exp_pend *p, int q0) {
    for (int q = q0; q < 64; q++) exp_half(p, q);
    if (p->over) *p->x.over = true;
}

/* A finished block of C with a low-rank term to take, 32 rows, which the
 * next kernel call works through a row every other 32-step of K: e->lr_l's,
 * or e->pro_l's with its dropout mask. Each element's term is the sum over k
 * of L[i,k] R[k,n], fused multiply-adds from 0 in k order, as the narrow
 * kernels' K form computes it; then C + term, or C + drop(term) (simd16.h's
 * mask, yf_dropout's arithmetic). */
typedef struct lr_pend {
    float *c;
    int64_t ldc, rows, k;
    const float *l;  /* the block's first row of L, k floats a row */
    const float *rt; /* R: k rows of the block's 32 columns, rt_ld apart */
    int64_t rt_ld;
    __mmask16 cols[2];
    const float *src; /* C's value so far at src (32 floats a row), else at c itself */
    bool drop;       /* the mask of element (i, n) at index base + i mld + n */
    uint64_t base;
    int64_t mld;
    yf_drop d;
} lr_pend;

/* Row i of the term, its two 16-column halves as two independent chains
 * (each element's sum from 0 in k order, as the narrow kernels'): then the
 * mask, C's old value, the stores. */
AMX_TARGET static inline __attribute__((always_inline)) void lr_row_out(const lr_pend *p, int i, __m512 a0,
                                                                         __m512 a1) {
    __mmask16 m0 = p->cols[0], m1 = p->cols[1];
    float *c = p->c + i * p->ldc;
    if (p->drop) {
        uint64_t b = p->base + (uint64_t)(i * p->mld);
        __mmask16 k0 = m0 & yf_drop16_keep(b, p->d.thr, p->d.s0, p->d.s1);
        __mmask16 k1 = m1 & yf_drop16_keep(b + 16, p->d.thr, p->d.s0, p->d.s1);
        a0 = _mm512_maskz_mul_ps(k0, a0, _mm512_set1_ps(p->d.ks));
        a1 = _mm512_maskz_mul_ps(k1, a1, _mm512_set1_ps(p->d.ks));
    }
    const float *o = p->src ? p->src + 32 * i : c;
    a0 = _mm512_add_ps(a0, _mm512_maskz_loadu_ps(m0, o));
    a1 = _mm512_add_ps(a1, _mm512_maskz_loadu_ps(m1, o + 16));
    _mm512_mask_storeu_ps(c, m0, a0);
    _mm512_mask_storeu_ps(c + 16, m1, a1);
}

AMX_TARGET static inline __attribute__((always_inline)) void lr_row(const lr_pend *p, int i) {
    if (i >= p->rows) return;
    __mmask16 m0 = p->cols[0], m1 = p->cols[1];
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    const float *l = p->l + i * p->k, *rt = p->rt;
    int64_t kn = p->k, ld = p->rt_ld;
    for (int64_t k = 0; k < kn; k++) {
        __m512 lv = _mm512_set1_ps(l[k]);
        a0 = _mm512_fmadd_ps(lv, _mm512_maskz_loadu_ps(m0, rt + k * ld), a0);
        a1 = _mm512_fmadd_ps(lv, _mm512_maskz_loadu_ps(m1, rt + k * ld + 16), a1);
    }
    lr_row_out(p, i, a0, a1);
}

/* Rank 8 (LoRA's default) inside a kernel call: R's 8 x 32 slice stays in
 * 16 registers for the whole call (lr_load8), so a row is 16 FMAs on
 * broadcasts of L, not reloads of R (which made the terms cost several
 * times more). */
typedef struct lr_regs {
    __m512 r[2][8];
} lr_regs;

AMX_TARGET static inline __attribute__((always_inline)) void lr_load8(const lr_pend *p, lr_regs *rv) {
    for (int k = 0; k < 8; k++) {
        rv->r[0][k] = _mm512_maskz_loadu_ps(p->cols[0], p->rt + k * p->rt_ld);
        rv->r[1][k] = _mm512_maskz_loadu_ps(p->cols[1], p->rt + k * p->rt_ld + 16);
    }
}

AMX_TARGET static inline __attribute__((always_inline)) void lr_row8(const lr_pend *p, int i, const lr_regs *rv) {
    if (i >= p->rows) return;
    const float *l = p->l + i * 8;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) {
        __m512 lv = _mm512_set1_ps(l[k]);
        a0 = _mm512_fmadd_ps(lv, rv->r[0][k], a0);
        a1 = _mm512_fmadd_ps(lv, rv->r[1][k], a1);
    }
    lr_row_out(p, i, a0, a1);
}

AMX_TARGET static void lr_finish(const lr_pend *p, int i0) {
    for (int i = i0; i < 32; i++) lr_row(p, i);
}

/* e->pro_l's term for the finished block of C at rows ic.., column pair j */
static lr_pend pro_block(const yf_gemm *g, const yf_gemm_epi *e, int64_t ic, int64_t rows, int64_t j, int64_t n1) {
    int64_t cols = n1 - 32 * j < 32 ? n1 - 32 * j : 32;
    return (lr_pend){.c = g->c + ic * g->ldc + 32 * j, .ldc = g->ldc, .rows = rows, .k = e->pro_k,
                     .l = e->pro_l + ic * e->pro_k, .rt = e->pro_r + 32 * j, .rt_ld = g->N,
                     .cols = {mask16(cols), mask16(cols - 16)}, .drop = true,
                     .base = (uint64_t)(ic * g->ldc + 32 * j), .mld = g->ldc, .d = e->pro_drop};
}

/* C[32x32] (ldc floats apart) (+)= packed A panel · a packed pair of B column
 * groups, over nks steps of 32 along K. Tiles: 0-3 C, 4-5 A, 6-7 B. Tiles are
 * not renamed, so each load waits until the products reading the old value
 * have started: loading the next operands right after their last use (not all
 * at the top of the step) hides most of the load latency (~6% measured). */
AMX_TARGET static inline __attribute__((always_inline)) void kernel_body(const uint16_t *ap, const uint16_t *bp,
                                                                          int64_t nks, int np, float *c,
                                                                          int64_t ldc, bool loadc, exp_pend *pe,
                                                                          const lr_pend *pl) {
    size_t cs = (size_t)ldc * sizeof(float);
    if (loadc) {
        _tile_loadd(0, c, cs);
        _tile_loadd(1, c + 16, cs);
        _tile_loadd(2, c + 16 * ldc, cs);
        _tile_loadd(3, c + 16 * ldc + 16, cs);
    } else {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
    }
    /* A is [step][part][2 tiles], B is [step][2 tiles]: walk both as (step,
     * part) pairs, the A pointer advancing one part at a time */
    const uint16_t *a = ap, *b = bp, *a_end = ap + (nks * np - 1) * 2 * TILE_U16;
    const uint16_t *b_end = bp + (nks - 1) * 2 * TILE_U16;
    _tile_loadd(4, a, 64);
    _tile_loadd(6, b, 64);
    _tile_loadd(7, b + TILE_U16, 64);
    _tile_loadd(5, a + TILE_U16, 64);
    const char *pf = t_pf, *pf_end = t_pf_end;
    int per = pe ? (int)((64 + nks - 1) / nks) : 0, q = 0; /* half rows of pe per step */
    int lrow = 0;                                              /* pl: a row every other step */
    bool r8 = pl && pl->k == 8;
    lr_regs rv;
    if (r8) lr_load8(pl, &rv);
    for (int64_t s = 0; s < nks; s++) {
        for (int q = 0; q < PF_LINES && pf < pf_end; q++, pf += 64) _mm_prefetch(pf, _MM_HINT_T1);
        for (int k = 0; pe && k < per && q < 64; k++, q++) exp_half(pe, q);
        if (pl && (s & 1) == 0 && lrow < 32) {
            if (r8)
                lr_row8(pl, lrow++, &rv);
            else
                lr_row(pl, lrow++);
        }
        for (int p = 0; p < np; p++) {
            bool last_part = p == np - 1;
            const uint16_t *an = a < a_end ? a + 2 * TILE_U16 : a; /* past the end: reload (harmless) */
            const uint16_t *bn = last_part && b < b_end ? b + 2 * TILE_U16 : b;
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(1, 4, 7);
            _tile_loadd(4, an, 64);
            _tile_dpbf16ps(2, 5, 6);
            if (last_part) _tile_loadd(6, bn, 64);
            _tile_dpbf16ps(3, 5, 7);
            _tile_loadd(5, an + TILE_U16, 64);
            if (last_part) _tile_loadd(7, bn + TILE_U16, 64);
            a = an;
            b = bn;
        }
    }
    _tile_stored(0, c, cs);
    _tile_stored(1, c + 16, cs);
    _tile_stored(2, c + 16 * ldc, cs);
    _tile_stored(3, c + 16 * ldc + 16, cs);
    if (pe) exp_finish(pe, q);
    if (pl) lr_finish(pl, lrow);
}

AMX_TARGET static void kernel(const uint16_t *ap, const uint16_t *bp, int64_t nks, int np, float *c, int64_t ldc,
                              bool loadc) {
    switch (np) { /* constant part counts let the compiler unroll the part loop */
    case 1: kernel_body(ap, bp, nks, 1, c, ldc, loadc, NULL, NULL); break;
    case 2: kernel_body(ap, bp, nks, 2, c, ldc, loadc, NULL, NULL); break;
    default: kernel_body(ap, bp, nks, 3, c, ldc, loadc, NULL, NULL); break;
    }
}

/* kernel that also works through pl's low-rank term (pl != NULL: kernel's
 * code is left as it was for every other product) */
AMX_TARGET static void kernel_lr(const uint16_t *ap, const uint16_t *bp, int64_t nks, int np, float *c, int64_t ldc,
                                 bool loadc, const lr_pend *pl) {
    switch (np) {
    case 1: kernel_body(ap, bp, nks, 1, c, ldc, loadc, NULL, pl); break;
    case 2: kernel_body(ap, bp, nks, 2, c, ldc, loadc, NULL, pl); break;
    default: kernel_body(ap, bp, nks, 3, c, ldc, loadc, NULL, pl); break;
    }
}

/* kernel (one part, C only written) that also does pe's softmax step */
AMX_TARGET static void kernel_exp(const uint16_t *ap, const uint16_t *bp, int64_t nks, float *c, int64_t ldc,
                                  exp_pend *pe) {
    kernel_body(ap, bp, nks, 1, c, ldc, false, pe, NULL);
}

/* A whole 32x32 block of C that is only written (no accumulation), through
 * a local buffer and streaming stores: for a C far bigger than the caches
 * (the LM head's logits, 207 MB) a plain store reads each line first and
 * leaves it in L2, where it evicts the A chunk (measured on that loop alone:
 * +10%). c and ldc must keep every row 64-byte aligned. */
AMX_TARGET static void kernel_stream(const uint16_t *ap, const uint16_t *bp, int64_t nks, int np, float *c,
                                     int64_t ldc, lr_pend *pl) {
    float tmp[32 * 32] __attribute__((aligned(64)));
    kernel(ap, bp, nks, np, tmp, 32, false);
    if (pl) { /* the low-rank term on the block before it leaves */
        pl->c = tmp, pl->ldc = 32;
        lr_finish(pl, 0);
    }
    for (int r = 0; r < 32; r++) {
        _mm512_stream_ps(c + r * ldc, _mm512_load_ps(tmp + r * 32));
        _mm512_stream_ps(c + r * ldc + 16, _mm512_load_ps(tmp + r * 32 + 16));
    }
}

/* A partial 32x32 block of C: through a local buffer. */
AMX_TARGET static void kernel_edge(const uint16_t *ap, const uint16_t *bp, int64_t nks, int np, float *c,
                                   int64_t ldc, bool loadc, int64_t rows, int64_t cols) {
    float tmp[32 * 32] __attribute__((aligned(64)));
    memset(tmp, 0, sizeof tmp);
    if (loadc)
        for (int64_t r = 0; r < rows; r++) memcpy(tmp + r * 32, c + r * ldc, (size_t)cols * sizeof(float));
    kernel(ap, bp, nks, np, tmp, 32, true);
    for (int64_t r = 0; r < rows; r++) memcpy(c + r * ldc, tmp + r * 32, (size_t)cols * sizeof(float));
}

/* A product's low-rank terms (e->lr_l, e->pro_l) around its blocks'
 * kernels: R^T of lr over the call's columns, and the finished block whose
 * term is pending. Both drivers (pre-packed B or not) go through here. */
typedef struct terms {
    const yf_gemm *g;
    const yf_gemm_epi *e;
    float *rt;
    int64_t rt_ld, n0, n1;
    lr_pend post;
    int nblk;
    float blk[2][32 * 32] __attribute__((aligned(64))); /* finished blocks waiting for their lr term */
} terms;

static void terms_init(terms *t, const yf_gemm *g, const yf_gemm_epi *e, int64_t n0, int64_t n1) {
    YF_CHECK(!e->lr_l || (e->lr_k >= 1 && e->lr_k <= 16 && !e->blocks && !e->pro_l));
    YF_CHECK(!e->pro_l || (e->pro_k >= 1 && e->pro_k <= 16 && !e->blocks && g->ldc % 16 == 0));
    *t = (terms){.g = g, .e = e, .n0 = n0, .n1 = n1, .rt_ld = (n1 - n0 + 31) / 32 * 32};
    t->rt = e->lr_l ? yf_scratch(2, (size_t)(e->lr_k * t->rt_ld) * sizeof(float)) : NULL;
    if (!t->rt) return;
    /* R^T: R's rows read in order, k rows of R^T written side by side */
    int64_t kn = e->lr_k, ld = t->rt_ld;
    for (int64_t n = 0; n < n1 - n0; n++) {
        const float *r = e->lr_r + (n0 + n) * kn;
        for (int64_t k = 0; k < kn; k++) t->rt[k * ld + n] = r[k];
    }
    for (int64_t k = 0; k < kn; k++)
        for (int64_t n = n1 - n0; n < ld; n++) t->rt[k * ld + n] = 0;
}

AMX_TARGET static void terms_flush(terms *t) {
    if (t->post.c) lr_finish(&t->post, 0);
    t->post.c = NULL;
}

/* Block (rows ic.., column pair j; rows x cols valid) of g's C through its
 * kernel with the terms. last_k: C is complete after this K block; its term
 * (lr_l's, or pro_l's with the mask) goes on during the next block's
 * products. */
AMX_TARGET static void block_terms(terms *t, const uint16_t *ap, const uint16_t *bp, int64_t nks, int np, int64_t ic,
                                   int64_t rows, int64_t j, int64_t cols, bool loadc, bool stream, bool last_k) {
    const yf_gemm *g = t->g;
    const yf_gemm_epi *e = t->e;
    float *c = g->c + ic * g->ldc + 32 * j;
    bool post = last_k;
    /* this block's term once finished: lr_l's (R^T from rt), or pro_l's */
    lr_pend cur = e->pro_l ? pro_block(g, e, ic, rows, j, t->n1)
                           : (lr_pend){.c = c, .ldc = g->ldc, .rows = rows, .k = e->lr_k,
                                       .l = e->lr_l + ic * e->lr_k, .rt = t->rt + 32 * j - t->n0,
                                       .rt_ld = t->rt_ld, .cols = {mask16(cols), mask16(cols - 16)}};
    bool full = rows == 32 && cols == 32;
    if (full && stream) {
        kernel_stream(ap, bp, nks, np, c, g->ldc, post ? &cur : NULL);
        post = false;
    } else if (full && post) {
        /* the block to a buffer of 32-float rows; its rows then go to C once,
         * with the term, during the next block's products. C's rows are a
         * multiple of 4 KiB apart, so a block's 32 rows fall in one L1 set:
         * the term's loads and stores on C itself would miss L1. (The same
         * holds for the dropout term, which is why it too is added after the
         * product rather than written as C's first value.) */
        float *b = t->blk[t->nblk++ & 1];
        if (loadc)
            for (int r = 0; r < 32; r++) memcpy(b + 32 * r, c + r * g->ldc, 32 * sizeof(float));
        kernel_lr(ap, bp, nks, np, b, 32, loadc, t->post.c ? &t->post : NULL);
        cur.src = b;
    } else if (full) {
        kernel(ap, bp, nks, np, c, g->ldc, loadc);
    } else {
        terms_flush(t);
        kernel_edge(ap, bp, nks, np, c, g->ldc, loadc, rows, cols);
    }
    if (post) t->post = cur;
}

AMX_TARGET static void set_tiles(void) {
    tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int i = 0; i < 8; i++) {
        cfg.colsb[i] = 64;
        cfg.rows[i] = 16;
    }
    /* GCC 12 does not see ldtilecfg read cfg: inlined into a new caller it
     * once dropped the stores above (a SIGILL at the first tile instruction) */
    __asm__ volatile("" : : "r"(&cfg) : "memory");
    _tile_loadconfig(&cfg);
}

/* yf_gemm_amx with B pre-packed (g->bpk). No B block to pack, so the loops
 * are arranged for the memory system instead: A in chunks of rows small
 * enough (<= 768 KiB packed) to stay in L2 next to the B tiles in flight;
 * per chunk, B is walked one column pair at a time and every panel of the
 * chunk multiplies it while it is in L2, the kernel calls prefetching the
 * next pair (tile loads alone leave the first panel waiting on memory). B is
 * read once per chunk; a few hundred rows make one or two chunks. The kernel
 * calls per C block, hence the results, are the same as yf_gemm_amx's. */
AMX_TARGET static void gemm_prepacked(const yf_gemm *g, const yf_gemm_epi *e, int64_t m0, int64_t m1, int64_t n0,
                                      int64_t n1, int nparts,
                                      int64_t KC) {
    /* A chunk: B is read from memory once per chunk. 768 KiB leaves L2 room
     * for B's pairs in flight and was fastest for the layers' products; for
     * a B of hundreds of MB (the LM head: 553 MB) halving its reads matters
     * more: 1.5 MiB */
    double b_bytes = (double)g->N * (double)g->K * 2;
    const int64_t amax = b_bytes >= 256.0 * 1048576 ? (3 << 19) : (768 << 10);
    const int64_t nks_all = (g->K + 31) / 32, pair_u16 = g->bpk_ld ? g->bpk_ld : nks_all * 2 * TILE_U16;
    YF_CHECK(!g->apk || g->K <= KC);
    YF_CHECK(!e->blocks || (g->K <= KC && !g->accumulate));
    int64_t mc_max = amax / (KC * 2 * nparts) / 32 * 32;
    if (mc_max < 32) mc_max = 32;
    int64_t nchunks = (m1 - m0 + mc_max - 1) / mc_max;
    const int64_t MC = ((m1 - m0 + nchunks - 1) / nchunks + 31) / 32 * 32;
    yf_tr_tables tt;
    yf_tr_tables_init(&tt);
    uint16_t *ap = g->apk ? NULL
                          : yf_scratch(1, (size_t)(((m1 - m0 < MC ? m1 - m0 : MC) + 31) / 32) * (KC / 32) * nparts *
                                              2 * TILE_U16 * 2);
    float epi_blk[2][32 * 32] __attribute__((aligned(64))); /* e->blocks: this block, the one whose exps are pending */
    exp_pend pend = {0};
    int64_t nblk = 0;
    terms tm;
    terms_init(&tm, g, e, n0, n1);
    bool with_terms = e->lr_l || e->pro_l;
    set_tiles();
    int64_t j0 = n0 / 32, j1 = (n1 + 31) / 32;
    for (int64_t pc = 0; pc < g->K; pc += KC) {
        int64_t kb = g->K - pc < KC ? g->K - pc : KC, nks = (kb + 31) / 32;
        int64_t pstride = nks * nparts * 2 * TILE_U16;
        bool loadc = g->accumulate || pc > 0;
        /* C of 64 MiB and more is not read again from the caches anyway */
        bool stream = !loadc && (double)g->M * (double)g->N * 4 >= 64.0 * 1048576 && g->ldc % 16 == 0 &&
                      ((uintptr_t)g->c & 63) == 0;
        int64_t pf_bytes = nks * 2 * TILE_U16 * 2; /* one pair's slice of this K block */
        for (int64_t ic0 = m0; ic0 < m1; ic0 += MC) {
            int64_t mc = m1 - ic0 < MC ? m1 - ic0 : MC, npanels = (mc + 31) / 32;
            int64_t pf_share = (pf_bytes / 64 + npanels - 1) / npanels * 64;
            const int64_t apstride = g->apk && g->apk_ld ? g->apk_ld : pstride;
            const uint16_t *achunk = g->apk ? g->apk + (ic0 / 32) * apstride : ap; /* panel ic0 / 32 on */
            for (int64_t ip = 0; !g->apk && ip < npanels; ip++) {
                int64_t ic = ic0 + 32 * ip;
                pack_a_panel(g, ic, m1 - ic < 32 ? m1 - ic : 32, pc, kb, nparts, ap + ip * pstride, &tt);
            }
            for (int64_t j = j0; j < j1; j++) {
                const uint16_t *bpair = g->bpk + j * pair_u16 + (pc / 32) * 2 * TILE_U16;
                const char *next = j + 1 < j1 ? (const char *)(bpair + pair_u16) : NULL;
                int64_t cols = n1 - 32 * j < 32 ? n1 - 32 * j : 32;
                for (int64_t ip = 0; ip < npanels; ip++) {
                    int64_t ic = ic0 + 32 * ip, rows = m1 - ic < 32 ? m1 - ic : 32;
                    if (next) {
                        int64_t lo = ip * pf_share, hi = lo + pf_share < pf_bytes ? lo + pf_share : pf_bytes;
                        t_pf = next + lo;
                        t_pf_end = next + (hi > lo ? hi : lo);
                    }
                    if (e->blocks) { /* the block to the caller, from L1; its exps during the next one */
                        float *blk = epi_blk[nblk++ & 1];
                        if (rows == 32 && cols == 32 && nparts == 1) {
                            kernel_exp(achunk + ip * apstride, bpair, nks, blk, 32, pend.x.dst ? &pend : NULL);
                        } else {
                            if (pend.x.dst) exp_finish(&pend, 0);
                            kernel_edge(achunk + ip * apstride, bpair, nks, nparts, blk, 32, false, rows, cols);
                        }
                        t_pf = t_pf_end = NULL;
                        pend = (exp_pend){.blk = blk, .cols = {mask16(cols), mask16(cols - 16)}};
                        e->blocks(e->blocks_ctx, ic, 32 * j, blk, rows, cols, &pend.x);
                        if (rows < 32) pend.x.live &= (1u << rows) - 1; /* rows past the block: zeros */
                        continue;
                    }
                    const uint16_t *a = achunk + ip * apstride;
                    float *c = g->c + ic * g->ldc + 32 * j;
                    if (with_terms)
                        block_terms(&tm, a, bpair, nks, nparts, ic, rows, j, cols, loadc, stream, pc + kb >= g->K);
                    else if (rows == 32 && cols == 32 && stream)
                        kernel_stream(a, bpair, nks, nparts, c, g->ldc, NULL);
                    else if (rows == 32 && cols == 32)
                        kernel(a, bpair, nks, nparts, c, g->ldc, loadc);
                    else
                        kernel_edge(a, bpair, nks, nparts, c, g->ldc, loadc, rows, cols);
                    t_pf = t_pf_end = NULL;
                }
            }
        }
    }
    if (pend.x.dst) exp_finish(&pend, 0);
    terms_flush(&tm);
    _mm_sfence(); /* streamed C lines visible before the caller goes on */
    _tile_release();
}

int64_t yf_amx_kc(int64_t K) {
    int64_t nkb = (K + 2047) / 2048;
    return ((K + nkb - 1) / nkb + 31) / 32 * 32;
}

AMX_TARGET void yf_amx_pack_a_panel(const yf_gemm *g, int64_t m0, int64_t nm, int nparts, uint16_t *dst) {
    yf_tr_tables tt;
    yf_tr_tables_init(&tt);
    pack_a_panel(g, m0, nm, 0, g->K, nparts, dst, &tt);
}

/* One row of n floats, as bf16, in the layout pack_a_panel writes (one
 * part): its 32-column steps are 64-byte lines at d, d + stride, ... (where,
 * yf_apk_row says). Plain stores: the LM head's blocked loss rewrites the
 * same 1.5 MB of packed rows for every vocabulary block and its product
 * reads them right away, from L2 (streaming stores sent them to memory and
 * back: measured slower). */
AMX_TARGET void yf_amx_put_a_row(uint16_t *d, int64_t stride, int64_t n, const float *row) {
    for (int64_t k = 0; k < n; k += 32, d += stride) {
        __m512 x0 = _mm512_setzero_ps(), x1 = _mm512_setzero_ps();
        if (row) {
            x0 = _mm512_maskz_loadu_ps(mask16(n - k), row + k);
            x1 = _mm512_maskz_loadu_ps(mask16(n - k - 16), row + k + 16);
        }
        _mm512_storeu_si512(d, (__m512i)_mm512_cvtne2ps_pbh(x1, x0));
    }
}

AMX_TARGET void yf_gemm_amx(const yf_gemm *g, const yf_gemm_epi *e, int64_t m0, int64_t m1, int64_t n0, int64_t n1,
                            int nparts) {
    if (m1 <= m0 || n1 <= n0) return;
    static const yf_gemm_epi none;
    if (!e) e = &none;
    YF_CHECK(nparts >= 1 && nparts <= 3);
    /* KC: as long as possible (C is read and written once per KC; a kernel
     * call runs KC/32 steps), K split evenly into blocks of <= 2048.
     * NC: the packed B block (KC x NC bf16) is ~1 MiB of the 2 MiB L2.
     * MC: the packed A chunk (MC x KC x nparts bf16, <= 12 MiB, in L3) is packed
     * once per K block, so each element of A is read from memory once; B is
     * packed once per chunk, i.e. its cost is spread over MC rows.
     * (Measured on 2304x2048x2048: KC 2048 / NC 256 beat KC 1024, 512, 256
     * with NC 512-2048 by 10-40%; a 768 KiB or 1.5 MiB B block was no better.) */
    const int64_t KC = yf_amx_kc(g->K);
    YF_CHECK(g->bpk || !e->blocks); /* that needs a pre-packed B */
    if (g->bpk) {
        YF_CHECK(n0 % 32 == 0);
        gemm_prepacked(g, e, m0, m1, n0, n1, nparts, KC);
        return;
    }
    int64_t nc = (((int64_t)1 << 20) / (KC * 2)) / 32 * 32;
    const int64_t NC = nc < 32 ? 32 : nc;
    int64_t mc_max = ((int64_t)12 << 20) / (KC * 2 * nparts) / 32 * 32, nchunks;
    if (mc_max < 32) mc_max = 32;
    nchunks = (m1 - m0 + mc_max - 1) / mc_max; /* equal chunks: no short last one */
    const int64_t MC = ((m1 - m0 + nchunks - 1) / nchunks + 31) / 32 * 32;
    const int64_t panel_u16 = (KC / 32) * nparts * 2 * TILE_U16; /* one 32-row panel at full KC */
    yf_tr_tables tt;
    yf_tr_tables_init(&tt);
    uint16_t *bp = yf_scratch(0, (size_t)NC * KC * 2);
    uint16_t *ap = yf_scratch(1, (size_t)(((m1 - m0 < MC ? m1 - m0 : MC) + 31) / 32) * panel_u16 * 2);

    terms tm;
    terms_init(&tm, g, e, n0, n1);
    bool with_terms = e->lr_l || e->pro_l;
    YF_CHECK(!with_terms || n0 % 32 == 0);
    set_tiles();
    for (int64_t pc = 0; pc < g->K; pc += KC) {
        int64_t kb = g->K - pc < KC ? g->K - pc : KC, nks = (kb + 31) / 32;
        int64_t pstride = nks * nparts * 2 * TILE_U16; /* panels of this K block */
        bool loadc = g->accumulate || pc > 0;
        for (int64_t ic0 = m0; ic0 < m1; ic0 += MC) {
            int64_t mc = m1 - ic0 < MC ? m1 - ic0 : MC, npanels = (mc + 31) / 32;
            for (int64_t ip = 0; ip < npanels; ip++) {
                int64_t ic = ic0 + 32 * ip;
                pack_a_panel(g, ic, m1 - ic < 32 ? m1 - ic : 32, pc, kb, nparts, ap + ip * pstride, &tt);
            }
            for (int64_t jc = n0; jc < n1; jc += NC) {
                int64_t nb = n1 - jc < NC ? n1 - jc : NC, npairs = (nb + 31) / 32;
                /* B block: [pair of 16-column groups][step][2 tiles]; both groups of
                 * a pair together, so each row of B is read a whole line at a time
                 * (the layout of a pre-packed B too, there over all of K and N) */
                if (g->bcs == 1)
                    pack_b_block_rows(g, pc, kb, jc, nb, nks, bp);
                else
                    for (int64_t j = 0; j < npairs; j++)
                        for (int64_t s = 0; s < nks; s++)
                            for (int h = 0; h < 2; h++)
                                pack_b_tile(g, pc + 32 * s, kb - 32 * s, jc + 32 * j + 16 * h, nb - 32 * j - 16 * h,
                                            bp + ((j * nks + s) * 2 + h) * TILE_U16, &tt);
                for (int64_t ip = 0; ip < npanels; ip++) {
                    int64_t ic = ic0 + 32 * ip, rows = m1 - ic < 32 ? m1 - ic : 32;
                    for (int64_t j = 0; j < npairs; j++) {
                        int64_t cols = nb - 32 * j < 32 ? nb - 32 * j : 32;
                        const uint16_t *bpair = bp + j * nks * 2 * TILE_U16;
                        float *c = g->c + ic * g->ldc + jc + 32 * j;
                        if (with_terms) /* jc is a multiple of 32: pairs jc / 32 + j */
                            block_terms(&tm, ap + ip * pstride, bpair, nks, nparts, ic, rows, jc / 32 + j, cols, loadc,
                                        false, pc + kb >= g->K);
                        else if (rows == 32 && cols == 32)
                            kernel(ap + ip * pstride, bpair, nks, nparts, c, g->ldc, loadc);
                        else
                            kernel_edge(ap + ip * pstride, bpair, nks, nparts, c, g->ldc, loadc, rows, cols);
                    }
                }
            }
        }
    }
    terms_flush(&tm);
    _tile_release();
}

AMX_TARGET void yf_amx_pack_b(const yf_gemm *g, int64_t j0, int64_t j1, uint16_t *dst) {
    int64_t nks = (g->K + 31) / 32;
    if (g->bcs == 1) {
        int64_t n0 = 32 * j0, nb = (32 * j1 < g->N ? 32 * j1 : g->N) - n0;
        if (nb > 0) pack_b_block_rows(g, 0, g->K, n0, nb, nks, dst);
        return;
    }
    yf_tr_tables tt;
    yf_tr_tables_init(&tt);
    for (int64_t j = j0; j < j1; j++)
        for (int64_t s = 0; s < nks; s++)
            for (int h = 0; h < 2; h++) {
                int64_t n = 32 * j + 16 * h;
                pack_b_tile(g, 32 * s, g->K - 32 * s, n, g->N - n, dst + (((j - j0) * nks + s) * 2 + h) * TILE_U16, &tt);
            }
}

#else
int64_t yf_amx_kc(int64_t K) { return K; }
void yf_amx_put_a_row(uint16_t *d, int64_t stride, int64_t n, const float *row) {
    (void)d, (void)stride, (void)n, (void)row;
    YF_CHECK(!"AMX path not compiled in");
}
void yf_amx_pack_a_panel(const yf_gemm *g, int64_t m0, int64_t nm, int nparts, uint16_t *dst) {
    (void)g, (void)m0, (void)nm, (void)nparts, (void)dst;
    YF_CHECK(!"AMX path not compiled in");
}
void yf_amx_pack_b(const yf_gemm *g, int64_t j0, int64_t j1, uint16_t *dst) {
    (void)g, (void)j0, (void)j1, (void)dst;
    YF_CHECK(!"AMX path not compiled in");
}

void yf_gemm_amx(const yf_gemm *g, const yf_gemm_epi *e, int64_t m0, int64_t m1, int64_t n0, int64_t n1,
                 int nparts) {
    (void)g, (void)e, (void)m0, (void)m1, (void)n0, (void)n1, (void)nparts;
    YF_CHECK(!"AMX path not compiled in");
}
#endif
