/* quant_idot.h: the products of int8 and q4 weights with int8-rounded
 * activations (quant_impl.h's yf_qidot_*), written once for the vector
 * width of the file that includes it, as quant_gemv.h is (quant_avx512.c,
 * quant_avx2.c). Not a header to include elsewhere.
 *
 * int8: a chunk is IC weights of a row, their 4-byte lanes those of yf_qx's
 * bytes; IDOT8 gives each lane's exact dot product (vpdpbusd on W's bytes
 * read as q + 128, started from -128 x the lane's xq sum; or vpmaddubsw of
 * |q| with xq signed as q, then vpmaddwd), converted, scaled by sx and
 * summed in fp32; the row's scale multiplies the sum.
 *
 * q4: a chunk is IC bytes of a row of W (2 IC weights, whole groups): masked
 * or copied at the row's end, its low and high nibbles are two byte
 * vectors whose 4-byte lanes line up with yf_qx's lo and hi bytes. Per
 * lane, the integer dot product of 8 nibbles with 8 xq (IDOT: vpdpbusd,
 * or vpmaddubsw + vpmaddwd), started from -8 x their sum for a symmetric
 * W (so it is sum (q - 8) xq) or from 0 with a minimum, is exact; it is
 * converted, scaled by s_W sx and summed in fp32 (plus m_W xs with a
 * minimum): every lane is inside one group, so the result is
 *   sum over groups of sx (s sum q xq + m sum xq),
 * the product of the dequantized W and the dequantized x up to fp32
 * rounding.
 *
 * The includer defines:
 *   QTARGET; FV (float vector), IV (int vector), IC (bytes a chunk), IW
 *   (groups a scale window: one float vector of them)
 *   IZERO() FZERO() FFMA(a, b, c) FMUL(a, b) FHSUM(v) FLOAD(p) ILOAD(p)
 *   IWQ(p, nb)          IC bytes of W at p, nb <= IC valid (zeros after)
 *   INIB(w, lo, hi)     the low and the high nibbles of w as bytes
 *   IDOT(acc, lo, xl, hi, xh) acc + the lanes' dot products (u8 x s8)
 *   IDOT8(corr, w, x)   the lanes' dot products of int8 w and x (corr: the
 *                       lanes' -128 x sum of x, for a kernel that needs it)
 *   ICVT(v)             int lanes to float
 *   ISCALES(src, n)     n <= IW fp16 scales at src as one float vector
 *   ILANES(win, first, lpg) per lane the window's scale of group
 *                       first + lane / lpg (lpg: lanes a group)
 *   QR_IDOT(m)          rows of W a block takes against m rows of x
 *   QIDOT               the entry point's name */

#define IINLINE static inline __attribute__((always_inline))

IINLINE int64_t idot_min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* y[m * ldy + r] (+)= sc[r] x (a[r][m]'s lanes summed), sc NULL: 1; rows r
 * < nrows. Every accumulator is reduced in unrolled code, which keeps a[][]
 * in registers. */
QTARGET IINLINE void idot_store(FV a[8][4], const int M, const int R, float *y, int64_t ldy, int64_t nrows,
                                const float *sc, bool accumulate) {
    float sum[8][4];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int m = 0; m < M; m++) sum[r][m] = FHSUM(a[r][m]);
    for (int r = 0; r < R && r < nrows; r++)
        for (int m = 0; m < M; m++) {
            float s = sc ? sc[r] * sum[r][m] : sum[r][m], *d = y + m * ldy + r;
            *d = accumulate ? *d + s : s;
        }
}

QTARGET IINLINE void q_idot_block(const yf_qmat *qm, float *y, int64_t ldy, const yf_qx *qx, const int M,
                                  const int R, const bool with_min, int64_t n, int64_t nrows, bool accumulate) {
    const int64_t K = qm->K, G = qm->group, ng = K / G, rb = K / 2;
    const int64_t gpc = 2 * IC / G, lpg = G / 8, cpw = IW / gpc; /* groups a chunk, lanes a group, chunks a window */
    const uint8_t *qr[8];
    const uint16_t *sr[8], *mr[8];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        int64_t row = n + (r < nrows ? r : 0);
        qr[r] = (const uint8_t *)qm->q + row * rb;
        sr[r] = (const uint16_t *)qm->scale + row * ng;
        mr[r] = with_min ? qm->min + row * ng : NULL;
    }
    const uint8_t *next = (const uint8_t *)qm->q + (n + R) * rb; /* the next block */
    const bool l1 = R * rb <= YF_PREFETCH_L1;
    FV a[8][4];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int m = 0; m < M; m++) a[r][m] = FZERO();
    const int64_t xrow = qx->nch * qx->E, lrow = qx->nch * (IC / 4);
    for (int64_t g0 = 0; g0 < ng; g0 += IW) {
        int64_t gw = idot_min64(IW, ng - g0);
        FV sw[8], mw[8];
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            sw[r] = ISCALES(sr[r] + g0, gw);
            if (with_min) mw[r] = ISCALES(mr[r] + g0, gw);
            _mm_prefetch((const char *)(sr[r] + g0) + 256, _MM_HINT_T0);
        }
        for (int64_t cc = 0; cc < cpw && cc * gpc < gw; cc++) {
            int64_t c = g0 / gpc + cc, nb = idot_min64(IC, rb - c * IC);
            const int8_t *xq = qx->q + c * qx->E;
            int64_t li = c * (IC / 4);
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) {
                IV lo, hi;
                if (r * IC % 64 == 0) yf_prefetch_ahead(next, (c * R + r) * IC, l1); /* a line at a time */
                INIB(IWQ(qr[r] + c * IC, nb), &lo, &hi);
                FV sv = ILANES(sw[r], cc * gpc, lpg), mv = with_min ? ILANES(mw[r], cc * gpc, lpg) : FZERO();
#pragma GCC unroll 4
                for (int m = 0; m < M; m++) {
                    const int8_t *xm = xq + m * xrow;
                    IV d = IDOT(with_min ? IZERO() : ILOAD(qx->corr + m * lrow + li), lo, ILOAD(xm), hi, ILOAD(xm + IC));
                    a[r][m] = FFMA(ICVT(d), FMUL(sv, FLOAD(qx->sx + m * lrow + li)), a[r][m]);
                    if (with_min) a[r][m] = FFMA(mv, FLOAD(qx->xs + m * lrow + li), a[r][m]);
                }
            }
        }
    }
    idot_store(a, M, R, y, ldy, nrows, NULL, accumulate);
}

/* int8 W: rows n.. (nrows <= R valid) against M rows of x */
QTARGET IINLINE void q_idot8_block(const yf_qmat *qm, float *y, int64_t ldy, const yf_qx *qx, const int M,
                                   const int R, int64_t n, int64_t nrows, bool accumulate) {
    const int64_t K = qm->K;
    const int8_t *qr[8];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) qr[r] = (const int8_t *)qm->q + (n + (r < nrows ? r : 0)) * K;
    const int8_t *next = (const int8_t *)qm->q + (n + R) * K; /* the next block */
    const bool l1 = R * K <= YF_PREFETCH_L1;
    FV a[8][4];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int m = 0; m < M; m++) a[r][m] = FZERO();
    const int64_t xrow = qx->nch * qx->E, lrow = qx->nch * (IC / 4);
    for (int64_t c = 0; c < qx->nch; c++) {
        int64_t nb = idot_min64(IC, K - c * IC), li = c * (IC / 4);
        const int8_t *xq = qx->q + c * qx->E;
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            if (r * IC % 64 == 0) yf_prefetch_ahead(next, (c * R + r) * IC, l1);
            IV w = IWQ((const uint8_t *)qr[r] + c * IC, nb);
#pragma GCC unroll 4
            for (int m = 0; m < M; m++) {
                IV d = IDOT8(qx->corr + m * lrow + li, w, ILOAD(xq + m * xrow));
                a[r][m] = FFMA(ICVT(d), FLOAD(qx->sx + m * lrow + li), a[r][m]);
            }
        }
    }
    idot_store(a, M, R, y, ldy, nrows, (const float *)qm->scale + n, accumulate);
}

QTARGET void QIDOT(const yf_qmat *qm, float *y, int64_t ldy, const yf_qx *qx, int64_t M, int64_t n0, int64_t n1,
                   bool accumulate) {
    YF_CHECK(M >= 1 && M <= YF_QGEMV_MAX_M && qx->C == IC && qx->K == qm->K && qx->split == (qm->type == YF_QT_Q4));
    if (qm->type == YF_QT_INT8) {
        switch (M) {
#define IDOT8_CASE(m_)                                                                                             \
    case (m_): {                                                                                                   \
        enum { M_ = (m_), R_ = QR_IDOT8(m_) };                                                                     \
        for (int64_t n = n0; n < n1; n += R_)                                                                      \
            q_idot8_block(qm, y + (n - n0), ldy, qx, M_, R_, n, n1 - n < R_ ? n1 - n : R_, accumulate);            \
        break;                                                                                                     \
    }
            IDOT8_CASE(1) IDOT8_CASE(2) IDOT8_CASE(3) IDOT8_CASE(4)
#undef IDOT8_CASE
        default: YF_CHECK(!"unreachable");
        }
        return;
    }
    YF_CHECK(qm->type == YF_QT_Q4 && qx->G == qm->group && (qm->group == 32 || qm->group == 64));
    switch (M * 2 + (qm->min != NULL)) {
#define IDOT_CASE(m_, min_)                                                                                        \
    case (m_) * 2 + (min_): {                                                                                      \
        enum { M_ = (m_), R_ = QR_IDOT(m_) };                                                                      \
        for (int64_t n = n0; n < n1; n += R_)                                                                      \
            q_idot_block(qm, y + (n - n0), ldy, qx, M_, R_, (min_), n, n1 - n < R_ ? n1 - n : R_, accumulate);     \
        break;                                                                                                     \
    }
        IDOT_CASE(1, 0) IDOT_CASE(1, 1) IDOT_CASE(2, 0) IDOT_CASE(2, 1)
        IDOT_CASE(3, 0) IDOT_CASE(3, 1) IDOT_CASE(4, 0) IDOT_CASE(4, 1)
#undef IDOT_CASE
    default: YF_CHECK(!"unreachable");
    }
}

#undef IINLINE
