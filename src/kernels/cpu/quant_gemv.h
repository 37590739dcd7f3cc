/* quant_gemv.h: the in-register quantized kernels of quant_impl.h (a few
 * rows of x against W, and W dequantized into fp32 blocks), written once
 * for the vector width of the file that includes it, as matmul_narrow.h is
 * (quant_avx512.c, quant_avx2.c). Not a header to include elsewhere.
 *
 * The includer defines:
 *   QTARGET         the functions' target attribute
 *   QV, QL          the float vector type and its lanes
 *   QZERO() QFMA(a, b, c) QMUL(a, b) QSET1(f) QLOAD(p) QHSUM(v)
 *   QLOADN(p, n)    QL floats at p, n < QL of them valid (zeros after)
 *   QSTORE(p, v), QSTOREN(p, n, v)
 *   QI8(p, n)       QL int8 at p (n valid, zeros after) as floats
 *   QT, QTMAKE(s, m) a q4 group's dequantization state from its scale and
 *                   offset (W = fma(s, q, m)); QTMAKE_SYM(s): with m = -8 s
 *   QNIB(p, t, lo, hi) the QL bytes at p as the weights of their low
 *                   nibbles (*lo) and of their high nibbles (*hi)
 *   QF16(dst, src, n) n <= 16 fp16 scales at src into floats at dst
 *   QR_I8(m), QR_Q4(m) the rows of W a block takes against m (1..4) rows of x
 *   QGEMV, QDEQUANT the entry points' names */

#define QINLINE static inline __attribute__((always_inline))

/* ---- int8: rows n.. (nrows <= R valid; the others read row n again and are
 * dropped) of W against M rows of x; the row's scale multiplies the sum ---- */
QTARGET QINLINE void q_i8_block(const yf_qmat *qm, float *y, int64_t ldy, const float *x, const int M, const int R,
                                int64_t n, int64_t nrows, bool accumulate) {
    int64_t K = qm->K;
    const int8_t *qr[8];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) qr[r] = (const int8_t *)qm->q + (n + (r < nrows ? r : 0)) * K;
    const int8_t *next = (const int8_t *)qm->q + (n + R) * K; /* the next block, R K bytes */
    const bool l1 = R * K <= YF_PREFETCH_L1;
    QV a[8][4];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int m = 0; m < M; m++) a[r][m] = QZERO();
    for (int64_t k = 0; k < K; k += QL) {
        if (k % 64 == 0)
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) yf_prefetch_ahead(next, k * R + r * 64, l1);
        int64_t kl = K - k < QL ? K - k : QL;
        QV xv[4];
#pragma GCC unroll 4
        for (int m = 0; m < M; m++) xv[m] = kl == QL ? QLOAD(x + m * K + k) : QLOADN(x + m * K + k, kl);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            QV w = QI8(qr[r] + k, kl);
#pragma GCC unroll 4
            for (int m = 0; m < M; m++) a[r][m] = QFMA(xv[m], w, a[r][m]);
        }
    }
    const float *sc = (const float *)qm->scale + n;
    /* unrolled (nrows is known at run time only): an accumulator indexed at
     * run time would keep a[][] in memory, stored to on every k step */
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        if (r >= nrows) break;
#pragma GCC unroll 4
        for (int m = 0; m < M; m++) {
            float s = sc[r] * QHSUM(a[r][m]), *d = y + m * ldy + r;
            *d = accumulate ? *d + s : s;
        }
    }
}

/* ---- q4: rows n.. of W against M rows of x; groups of G = 2 QL H values,
 * a group's x read once for every row ---- */
QTARGET QINLINE void q_q4_block(const yf_qmat *qm, float *y, int64_t ldy, const float *x, const int M, const int R,
                                const int H, int64_t n, int64_t nrows, bool accumulate) {
    int64_t K = qm->K, half = QL * H, G = 2 * half, ng = K / G;
    const uint8_t *qr[4];
    const uint16_t *sr[4], *mr[4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        int64_t row = n + (r < nrows ? r : 0);
        qr[r] = (const uint8_t *)qm->q + row * (K / 2);
        sr[r] = (const uint16_t *)qm->scale + row * ng;
        mr[r] = qm->min ? qm->min + row * ng : NULL;
    }
    const uint8_t *next = (const uint8_t *)qm->q + (n + R) * (K / 2); /* the next block */
    const bool l1 = R * (K / 2) <= YF_PREFETCH_L1;
    QV a[4][4][2];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int m = 0; m < M; m++) a[r][m][0] = a[r][m][1] = QZERO();
    float sf[4][16] __attribute__((aligned(64))), mf[4][16] __attribute__((aligned(64)));
    for (int64_t g0 = 0; g0 < ng; g0 += 16) { /* 16 groups' scales converted at a time */
        int64_t gc = ng - g0 < 16 ? ng - g0 : 16;
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            QF16(sf[r], sr[r] + g0, gc);
            if (mr[r]) QF16(mf[r], mr[r] + g0, gc);
            /* the next block's bytes as far in as this step reads of this one */
            for (int64_t l = 0; l < 16 * half; l += 64) yf_prefetch_ahead(next, (g0 * R + 16 * r) * half + l, l1);
        }
        for (int64_t j = 0; j < gc; j++) {
            const float *xg = x + (g0 + j) * G;
            QV xl[4][4], xh[4][4];
#pragma GCC unroll 4
            for (int m = 0; m < M; m++)
#pragma GCC unroll 4
                for (int h = 0; h < H; h++) {
                    xl[m][h] = QLOAD(xg + m * K + QL * h);
                    xh[m][h] = QLOAD(xg + m * K + half + QL * h);
                }
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                QT t = mr[r] ? QTMAKE(sf[r][j], mf[r][j]) : QTMAKE_SYM(sf[r][j]);
#pragma GCC unroll 4
                for (int h = 0; h < H; h++) {
                    QV lo, hi;
                    QNIB(qr[r] + (g0 + j) * half + QL * h, t, &lo, &hi);
#pragma GCC unroll 4
                    for (int m = 0; m < M; m++) {
                        a[r][m][0] = QFMA(xl[m][h], lo, a[r][m][0]);
                        a[r][m][1] = QFMA(xh[m][h], hi, a[r][m][1]);
                    }
                }
            }
        }
    }
#pragma GCC unroll 8 /* as in q_i8_block */
    for (int r = 0; r < R; r++) {
        if (r >= nrows) break;
#pragma GCC unroll 4
        for (int m = 0; m < M; m++) {
            float s = QHSUM(a[r][m][0]) + QHSUM(a[r][m][1]), *d = y + m * ldy + r;
            *d = accumulate ? *d + s : s;
        }
    }
}

/* each (M, rows a block, H) instance, its loops unrolled */
#define Q_BLOCKS(call, R_)                                                                                         \
    for (int64_t n = n0; n < n1; n += R_) call(n, n1 - n < R_ ? n1 - n : R_);
#define Q_I8(n_, nr_) q_i8_block(qm, y + ((n_) - n0), ldy, x, M_, R_, n_, nr_, accumulate)
#define Q_Q4(n_, nr_) q_q4_block(qm, y + ((n_) - n0), ldy, x, M_, R_, H_, n_, nr_, accumulate)

QTARGET void QGEMV(const yf_qmat *qm, float *y, int64_t ldy, const float *x, int64_t M, int64_t n0, int64_t n1,
                   bool accumulate) {
    YF_CHECK(M >= 1 && M <= YF_QGEMV_MAX_M);
    if (qm->type == YF_QT_INT8) {
        switch (M) {
#define I8_CASE(m_)                                                                                                \
    case (m_): {                                                                                                   \
        enum { M_ = (m_), R_ = QR_I8(m_) };                                                                        \
        Q_BLOCKS(Q_I8, R_)                                                                                         \
        break;                                                                                                     \
    }
            I8_CASE(1) I8_CASE(2) I8_CASE(3) I8_CASE(4)
#undef I8_CASE
        default: YF_CHECK(!"unreachable");
        }
        return;
    }
    YF_CHECK(qm->group == 32 || qm->group == 64);
    switch (M * 8 + (int)(qm->group / (2 * QL))) { /* H: QL-wide runs in half a group */
#define Q4_CASE(m_, h_)                                                                                            \
    case (m_) * 8 + (h_): {                                                                                        \
        enum { M_ = (m_), R_ = QR_Q4(m_), H_ = (h_) };                                                             \
        Q_BLOCKS(Q_Q4, R_)                                                                                         \
        break;                                                                                                     \
    }
        Q4_CASE(1, 16 / QL) Q4_CASE(1, 32 / QL) Q4_CASE(2, 16 / QL) Q4_CASE(2, 32 / QL)
        Q4_CASE(3, 16 / QL) Q4_CASE(3, 32 / QL) Q4_CASE(4, 16 / QL) Q4_CASE(4, 32 / QL)
#undef Q4_CASE
    default: YF_CHECK(!"unreachable");
    }
}

/* ---- W dequantized into fp32 blocks ---- */
QTARGET void QDEQUANT(const yf_qmat *qm, int64_t n0, int64_t n1, int64_t k0, int64_t k1, float *out, int64_t ldo) {
    int64_t K = qm->K;
    for (int64_t n = n0; n < n1; n++) {
        float *o = out + (n - n0) * ldo - k0;
        if (qm->type == YF_QT_INT8) {
            const int8_t *q = (const int8_t *)qm->q + n * K;
            QV s = QSET1(((const float *)qm->scale)[n]);
            for (int64_t k = k0; k < k1; k += QL) {
                int64_t kl = k1 - k < QL ? k1 - k : QL;
                QV w = QMUL(s, QI8(q + k, kl));
                if (kl == QL) QSTORE(o + k, w);
                else QSTOREN(o + k, kl, w);
            }
            continue;
        }
        int64_t G = qm->group, half = G / 2;
        for (int64_t g = k0 / G; g * G < k1; g++) {
            float s, m;
            yf_q4_group(qm, n, g, &s, &m);
            QT t = QTMAKE(s, m);
            const uint8_t *b = (const uint8_t *)qm->q + n * (K / 2) + g * half;
            for (int64_t h = 0; h < half; h += QL) {
                QV lo, hi;
                QNIB(b + h, t, &lo, &hi);
                QSTORE(o + g * G + h, lo);
                QSTORE(o + g * G + half + h, hi);
            }
        }
    }
}

#undef QINLINE
#undef Q_BLOCKS
#undef Q_I8
#undef Q_Q4
