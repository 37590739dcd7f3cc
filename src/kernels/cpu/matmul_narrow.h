/* matmul_narrow: the products with one dimension <= YF_NARROW_DIM (LoRA's
 * rank-r factors), written once for both vector widths. Not a normal header:
 * matmul_avx512.c and matmul_avx2.c each include it once after defining
 *   NW_TARGET         the function attribute enabling the ISA
 *   NW_L              floats per vector (16 or 8)
 *   NW_V              the vector type
 *   NW_NACC           accumulators a register tile may use (24 of 32 zmm, 12 of 16 ymm)
 *   NW_KRM, NW_KRV    the K form's register tile, rows x vectors
 *   NW_SMAX           small-side values per pass of the outer-product forms
 *   NW_ZERO() NW_LOAD(p) NW_LOADN(p, n) (first n lanes, the rest 0, no access
 *   beyond them) NW_STORE(p, v) NW_STOREN(p, n, v) NW_FMA(a, b, c) = a*b+c
 *   NW_ADD(a, b) NW_SET1(x) NW_STOREA(p, v) (aligned)
 *   NW_BCAST(p, g)    g consecutive floats at p repeated over the vector
 *   NW_ENTRY          the name of the entry point (yf_narrow_avx512, ...)
 * Every element of C is one fp32 sum whose order depends only on K (and, for
 * the N form, on N): never on which rows or columns the call covers, so a
 * row's result does not depend on how many rows the product has or how it is
 * split between threads. See yf_narrow_form (matmul_impl.h) for the forms. */

#define NW_INLINE NW_TARGET static inline __attribute__((always_inline))

static inline int64_t nw_min(int64_t a, int64_t b) { return a < b ? a : b; }

/* ---- K form: K <= 16; C = sum over few k of outer products ------------- */

/* rows x (vectors of) cols block of C at (m, j) from the K x nb panel B
 * (row stride ldb); A read as broadcast scalars in any layout. */
NW_INLINE void nw_k_tile(const yf_gemm *g, const float *bp, int64_t ldb, int64_t m, int64_t rows, float *c,
                         int64_t cols) {
    enum { RM = NW_KRM, RV = NW_KRV };
    NW_V acc[RM][RV];
#pragma GCC unroll 8
    for (int r = 0; r < RM; r++)
#pragma GCC unroll 4
        for (int v = 0; v < RV; v++) acc[r][v] = NW_ZERO();
    const float *a = g->a + m * g->ars;
    for (int64_t k = 0; k < g->K; k++) {
        NW_V b[RV];
#pragma GCC unroll 4
        for (int v = 0; v < RV; v++)
            b[v] = cols >= (v + 1) * NW_L ? NW_LOAD(bp + k * ldb + v * NW_L)
                                          : NW_LOADN(bp + k * ldb + v * NW_L, cols - v * NW_L);
#pragma GCC unroll 8
        for (int r = 0; r < RM; r++) {
            if (r >= rows) break;
            NW_V x = NW_SET1(a[r * g->ars + k * g->acs]);
#pragma GCC unroll 4
            for (int v = 0; v < RV; v++) acc[r][v] = NW_FMA(x, b[v], acc[r][v]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < RM; r++) {
        if (r >= rows) break;
        float *cr = c + r * g->ldc;
#pragma GCC unroll 4
        for (int v = 0; v < RV; v++) {
            int64_t n = cols - v * NW_L;
            if (n >= NW_L) {
                if (g->accumulate) acc[r][v] = NW_ADD(acc[r][v], NW_LOAD(cr + v * NW_L));
                NW_STORE(cr + v * NW_L, acc[r][v]);
            } else if (n > 0) {
                if (g->accumulate) acc[r][v] = NW_ADD(acc[r][v], NW_LOADN(cr + v * NW_L, n));
                NW_STOREN(cr + v * NW_L, n, acc[r][v]);
            }
        }
    }
}

NW_TARGET static void nw_k(const yf_gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    /* All of B (K x N f32, packed unless f32 with contiguous rows) stays in L2
     * while row blocks of C pass over it, so C, the big operand here, is read
     * and written row after row; panels of 512 columns when B is larger. */
    enum { TW = NW_KRV * NW_L, RM = NW_KRM };
    int64_t NB = g->K * (n1 - n0) * 4 <= (1 << 20) ? n1 - n0 : 512;
    bool direct = g->bt == YF_F32 && g->bcs == 1;
    float *bp = direct ? NULL : yf_scratch(0, (size_t)(g->K * NB) * sizeof(float));
    for (int64_t jb = n0; jb < n1; jb += NB) {
        int64_t nb = nw_min(NB, n1 - jb), ldb = NB;
        const float *panel = bp;
        if (direct) {
            panel = (const float *)g->b + jb;
            ldb = g->brs;
        } else if (g->bt == YF_F32) { /* x·B^T: B(k, n) = W[n, k], rows of W contiguous */
            const float *b = (const float *)g->b + jb * g->bcs;
            for (int64_t j = 0; j < nb; j++)
                for (int64_t k = 0; k < g->K; k++) bp[k * NB + j] = b[j * g->bcs + k * g->brs];
        } else if (g->bcs == 1) {
            for (int64_t k = 0; k < g->K; k++)
                for (int64_t j = 0; j < nb; j++) bp[k * NB + j] = yf_gemm_bget(g, k, jb + j);
        } else {
            for (int64_t j = 0; j < nb; j++)
                for (int64_t k = 0; k < g->K; k++) bp[k * NB + j] = yf_gemm_bget(g, k, jb + j);
        }
        for (int64_t m = m0; m < m1; m += RM) {
            int64_t rows = nw_min(RM, m1 - m);
            float *cr = g->c + m * g->ldc + jb;
            int64_t j = 0;
            if (rows == RM)
                for (; j + TW <= nb; j += TW) nw_k_tile(g, panel + j, ldb, m, RM, cr + j, TW);
            for (; j < nb; j += TW) nw_k_tile(g, panel + j, ldb, m, rows, cr + j, nw_min(TW, nb - j));
        }
    }
}

/* ---- N form: N <= 16, A contiguous along k ------------------------------ *
 * B is packed so that one vector holds g = NW_L / npad consecutive k for each
 * of npad (>= N, a power of two) columns: lane c*g + t = B(q*g + t, c). A row's
 * g values at q*g, broadcast over the vector, times that vector add to the
 * row's accumulator, whose lanes c*g .. c*g+g-1 are summed at the end. So one
 * broadcast load of A and one FMA serve npad columns, RN rows share each B
 * vector, and B is read once per RN rows. (AVX2 with 9..16 columns: two
 * vectors of g = 1.) */

NW_INLINE NW_V nw_bcast_tail(const float *p, int64_t n, int g) {
    float t[NW_L] __attribute__((aligned(64))) = {0};
    for (int64_t i = 0; i < n; i++) t[i] = p[i];
    return NW_BCAST(t, g);
}

NW_INLINE void nw_n_rows(const yf_gemm *g, const float *bp, int64_t m, int64_t rows, int64_t n0, int64_t nc,
                         const int G, const int CV) {
    const int RN = NW_NACC / CV < 8 ? NW_NACC / CV : 8;
    NW_V acc[8][2];
#pragma GCC unroll 8
    for (int r = 0; r < RN; r++) acc[r][0] = acc[r][1] = NW_ZERO();
    const float *a = g->a + m * g->ars, *ar[8];
#pragma GCC unroll 8
    for (int r = 0; r < RN; r++) ar[r] = a + (r < rows ? r : 0) * g->ars;
    int64_t K = g->K, qfull = K / G;
    for (int64_t q = 0; q < qfull; q++) {
        NW_V b0 = NW_LOAD(bp + q * CV * NW_L), b1 = CV > 1 ? NW_LOAD(bp + q * CV * NW_L + NW_L) : NW_ZERO();
#pragma GCC unroll 8
        for (int r = 0; r < RN; r++) {
            if (r >= rows) break;
            NW_V x = NW_BCAST(ar[r] + q * G, G);
            acc[r][0] = NW_FMA(x, b0, acc[r][0]);
            if (CV > 1) acc[r][1] = NW_FMA(x, b1, acc[r][1]);
        }
    }
    if (qfull * G < K) { /* the last, partial group of k */
        int64_t q = qfull;
        NW_V b0 = NW_LOAD(bp + q * CV * NW_L), b1 = CV > 1 ? NW_LOAD(bp + q * CV * NW_L + NW_L) : NW_ZERO();
        for (int r = 0; r < RN; r++) {
            if (r >= rows) break;
            NW_V x = nw_bcast_tail(a + r * g->ars + q * G, K - q * G, G);
            acc[r][0] = NW_FMA(x, b0, acc[r][0]);
            if (CV > 1) acc[r][1] = NW_FMA(x, b1, acc[r][1]);
        }
    }
    float t[2 * NW_L] __attribute__((aligned(64)));
    for (int r = 0; r < RN; r++) {
        if (r >= rows) break;
        NW_STOREA(t, acc[r][0]);
        if (CV > 1) NW_STOREA(t + NW_L, acc[r][1]);
        float *cr = g->c + (m + r) * g->ldc + n0;
        for (int64_t c = 0; c < nc; c++) {
            float s = t[c * G];
            for (int u = 1; u < G; u++) s += t[c * G + u];
            cr[c] = g->accumulate ? cr[c] + s : s;
        }
    }
}

NW_INLINE void nw_n_run(const yf_gemm *g, float *bp, int64_t m0, int64_t m1, int64_t n0, int64_t nc, int64_t npad,
                        const int G, const int CV) {
    int64_t K = g->K, nq = (K + G - 1) / G;
    int lg = 0;
    while ((1 << lg) < G) lg++;
    /* element (k, c) goes to lane c*G + k%G of vector k/G; the loop order
     * follows B's contiguous direction */
#define NW_AT(k, c) bp[((k) >> lg) * CV * NW_L + (c) * G + ((k) & (G - 1))]
    if (nc < npad || K % G) memset(bp, 0, (size_t)nq * CV * NW_L * sizeof(float));
    if (g->bt == YF_F32 && g->brs == 1) { /* runs of G k of the rows of W, a vector at a time */
        const float *b = (const float *)g->b + n0 * g->bcs;
        for (int64_t q = 0; q < K >> lg; q++)
            for (int64_t c = 0; c < nc; c++)
                memcpy(bp + q * CV * NW_L + c * G, b + c * g->bcs + q * G, (size_t)G * sizeof(float));
        for (int64_t c = 0; c < nc; c++)
            for (int64_t k = (K >> lg) << lg; k < K; k++) NW_AT(k, c) = b[c * g->bcs + k];
    } else if (g->bt == YF_F32) {
        for (int64_t k = 0; k < K; k++) {
            const float *bk = (const float *)g->b + k * g->brs + n0 * g->bcs;
            for (int64_t c = 0; c < nc; c++) NW_AT(k, c) = bk[c * g->bcs];
        }
    } else {
        for (int64_t k = 0; k < K; k++)
            for (int64_t c = 0; c < nc; c++) NW_AT(k, c) = yf_gemm_bget(g, k, n0 + c);
    }
#undef NW_AT
    const int RN = NW_NACC / CV < 8 ? NW_NACC / CV : 8; /* rows per block in nw_n_rows */
    int64_t m = m0;
    for (; m + RN <= m1; m += RN) nw_n_rows(g, bp, m, RN, n0, nc, G, CV); /* constant row count: no guards */
    if (m < m1) nw_n_rows(g, bp, m, m1 - m, n0, nc, G, CV);
}

NW_TARGET static void nw_n(const yf_gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    int64_t nc = n1 - n0, npad = 1;
    YF_CHECK(nc <= YF_NARROW_DIM);
    while (npad < nc) npad *= 2;
    int G = npad >= NW_L ? 1 : (int)(NW_L / npad), CV = npad > NW_L ? 2 : 1;
    int64_t K = g->K, nq = (K + G - 1) / G;
    float *bp = yf_scratch(0, (size_t)nq * CV * NW_L * sizeof(float));
    switch (G * 4 + CV) {
    case 1 * 4 + 1: nw_n_run(g, bp, m0, m1, n0, nc, npad, 1, 1); break;
    case 1 * 4 + 2: nw_n_run(g, bp, m0, m1, n0, nc, npad, 1, 2); break;
    case 2 * 4 + 1: nw_n_run(g, bp, m0, m1, n0, nc, npad, 2, 1); break;
    case 4 * 4 + 1: nw_n_run(g, bp, m0, m1, n0, nc, npad, 4, 1); break;
    case 8 * 4 + 1: nw_n_run(g, bp, m0, m1, n0, nc, npad, 8, 1); break;
#if NW_L == 16
    case 16 * 4 + 1: nw_n_run(g, bp, m0, m1, n0, nc, npad, 16, 1); break;
#endif
    default: YF_CHECK(!"narrow: bad lane grouping");
    }
}

/* ---- outer-product forms over k: NT (N <= 16, A contiguous along m) and M
 * (M <= 16, B contiguous along n), the weight gradients dy^T·x -------------- *
 * Per k, R vectors of the big operand (contiguous: L*R rows of A, or columns
 * of B) times S broadcast scalars of the small one accumulate into an S x R
 * register tile, so the big operand is streamed once and the small one's row
 * of k is reused from L1. The NT form's tile is C transposed. */

/* Rows k0..k1 of the sum; the raw accumulators live in sp (S x R vectors)
 * between token blocks, so every element is still one sum in k order from 0
 * to which C is added at the end. */
NW_INLINE void nw_outer_tile(const yf_gemm *g, const float *big, int64_t big_k, int64_t valid, const float *small,
                             int64_t small_k, int64_t small_s, float *c, bool transposed, int64_t k0, int64_t k1,
                             float *sp, const int S, const int R) {
    NW_V acc[16][4]; /* S x R used */
#pragma GCC unroll 16
    for (int s = 0; s < S; s++)
#pragma GCC unroll 4
        for (int v = 0; v < R; v++) acc[s][v] = k0 == 0 ? NW_ZERO() : NW_LOAD(sp + (s * R + v) * NW_L);
    bool full = valid >= R * NW_L;
    /* the next tile reads the same rows next: fetch its lines meanwhile */
    int64_t nline = (R * NW_L * 4 + 63) / 64;
    for (int64_t k = k0; k < k1; k++) {
        for (int64_t l = 0; l < nline; l++) __builtin_prefetch(big + k * big_k + R * NW_L + l * 16);
        NW_V x[4];
#pragma GCC unroll 4
        for (int v = 0; v < R; v++)
            x[v] = full ? NW_LOAD(big + k * big_k + v * NW_L)
                        : NW_LOADN(big + k * big_k + v * NW_L, nw_min(NW_L, valid - v * NW_L > 0 ? valid - v * NW_L : 0));
#pragma GCC unroll 16
        for (int s = 0; s < S; s++) {
            NW_V y = NW_SET1(small[k * small_k + s * small_s]);
#pragma GCC unroll 4
            for (int v = 0; v < R; v++) acc[s][v] = NW_FMA(y, x[v], acc[s][v]);
        }
    }
    if (k1 < g->K) {
#pragma GCC unroll 16
        for (int s = 0; s < S; s++)
#pragma GCC unroll 4
            for (int v = 0; v < R; v++) NW_STORE(sp + (s * R + v) * NW_L, acc[s][v]);
        return;
    }
    int64_t nv = nw_min(valid, R * NW_L);
    if (!transposed) { /* C(s, v*L + i) */
#pragma GCC unroll 16
        for (int s = 0; s < S; s++) {
            float *cr = c + s * g->ldc;
#pragma GCC unroll 4
            for (int v = 0; v < R; v++) {
                int64_t n = nv - v * NW_L;
                if (n >= NW_L) {
                    if (g->accumulate) acc[s][v] = NW_ADD(acc[s][v], NW_LOAD(cr + v * NW_L));
                    NW_STORE(cr + v * NW_L, acc[s][v]);
                } else if (n > 0) {
                    if (g->accumulate) acc[s][v] = NW_ADD(acc[s][v], NW_LOADN(cr + v * NW_L, n));
                    NW_STOREN(cr + v * NW_L, n, acc[s][v]);
                }
            }
        }
        return;
    }
    float t[16][4 * NW_L] __attribute__((aligned(64))); /* C(v*L + i, s) */
#pragma GCC unroll 16
    for (int s = 0; s < S; s++)
#pragma GCC unroll 4
        for (int v = 0; v < R; v++) NW_STOREA(t[s] + v * NW_L, acc[s][v]);
    for (int64_t i = 0; i < nv; i++) {
        float *cr = c + i * g->ldc;
        for (int s = 0; s < S; s++) cr[s] = g->accumulate ? cr[s] + t[s][i] : t[s][i];
    }
}

/* Columns of the tile per pass and vectors per column: S*R <= NW_NACC. */
#define NW_OUTER_R(S) ((S) * 4 <= NW_NACC ? 4 : (S) * 3 <= NW_NACC ? 3 : (S) * 2 <= NW_NACC ? 2 : 1)

/* Blocks of KB rows of the big operand (tokens) outermost: a block's rows are
 * read tile after tile, line after line, which the hardware prefetchers and
 * the TLB follow, where one tile's pass over all rows (each a page or more
 * apart) they do not. */
NW_INLINE void nw_outer_run(const yf_gemm *g, bool tr, int64_t b0, int64_t b1, int64_t s0, const int S) {
    enum { KB = 32 };
    const int R = NW_OUTER_R(S);
    const int64_t tw = R * NW_L, K = g->K;
    float *sp = K > KB ? yf_scratch(0, (size_t)((b1 - b0 + tw - 1) / tw) * S * tw * sizeof(float)) : NULL;
    for (int64_t k0 = 0; k0 < K; k0 += KB) {
        int64_t k1 = nw_min(K, k0 + KB);
        for (int64_t i = b0, t = 0; i < b1; i += tw, t++) {
            float *st = sp ? sp + t * S * tw : NULL;
            if (tr) /* big = A(i.., k), small = B(k, s0..) */
                nw_outer_tile(g, g->a + i, g->acs, b1 - i, (const float *)g->b + s0 * g->bcs, g->brs, g->bcs,
                              g->c + i * g->ldc + s0, true, k0, k1, st, S, R);
            else /* big = B(k, i..), small = A(s0.., k) */
                nw_outer_tile(g, (const float *)g->b + i, g->brs, b1 - i, g->a + s0 * g->ars, g->acs, g->ars,
                              g->c + s0 * g->ldc + i, false, k0, k1, st, S, R);
        }
    }
}

NW_TARGET static void nw_outer(const yf_gemm *g, bool tr, int64_t b0, int64_t b1, int64_t s0, int64_t s1) {
    YF_CHECK(g->bt == YF_F32 && s1 - s0 <= YF_NARROW_DIM);
    /* more small-side values than a tile holds (AVX2): passes of at most
     * NW_SMAX over a stretch of the big side that stays in L2 meanwhile
     * (a multiple of every tile width, R * NW_L for R = 1..4) */
    int64_t stretch = ((int64_t)1 << 19) / (4 * g->K) / (12 * NW_L) * (12 * NW_L); /* ~512 KiB of it */
    if (stretch < 12 * NW_L) stretch = 12 * NW_L;
    if (s1 - s0 <= NW_SMAX) stretch = b1 - b0;
    for (int64_t i = b0; i < b1; i += stretch) {
        int64_t ie = nw_min(b1, i + stretch);
        for (int64_t s = s0; s < s1; s += NW_SMAX) {
            switch (nw_min(NW_SMAX, s1 - s)) {
#define NW_CASE(n)                                                                                            \
    case n: nw_outer_run(g, tr, i, ie, s, n); break;
                NW_CASE(1) NW_CASE(2) NW_CASE(3) NW_CASE(4)
#if NW_SMAX > 4
                NW_CASE(5) NW_CASE(6) NW_CASE(7) NW_CASE(8) NW_CASE(9) NW_CASE(10) NW_CASE(11) NW_CASE(12)
                NW_CASE(13) NW_CASE(14) NW_CASE(15) NW_CASE(16)
#endif
#undef NW_CASE
            default: YF_CHECK(!"narrow: bad tile width");
            }
        }
    }
}

void NW_ENTRY(const yf_gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    if (m1 <= m0 || n1 <= n0) return;
    switch (yf_narrow_form(g)) {
    case YF_NARROW_K: nw_k(g, m0, m1, n0, n1); break;
    case YF_NARROW_N: nw_n(g, m0, m1, n0, n1); break;
    case YF_NARROW_NT: nw_outer(g, true, m0, m1, n0, n1); break;
    case YF_NARROW_M: nw_outer(g, false, n0, n1, m0, m1); break;
    default: YF_CHECK(!"narrow: not a narrow product");
    }
}
