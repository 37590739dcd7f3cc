/* gemm_fma: the packed fp32 product of the AVX-512 and AVX2 paths, one
 * driver for both; what differs (the micro-kernel and its MR x NR register
 * tile, the vector forms of packing B) is in yf_fma_isa (matmul_impl.h).
 * The bf16-pair form (bf16 mode with vdpbf16ps) runs on the same loops: its
 * panels hold words of two bf16 of consecutive k, so a K block of kb is
 * ceil(kb / 2) rows of words (kpair 2) where the fp32 panels have kb rows
 * of floats; its packing of A is its own (yf_fma_isa's pack_a).
 *
 * Loops. A (M x K) is packed once per product into MR-row panels for all of
 * K (a K range when M x K floats would not fit in A_MAX bytes, rows too
 * when M x KC would not), the threads sharing the packing and the result;
 * then each thread takes pieces of C's columns, and in a piece, for each
 * NC-wide block of columns,
 * each KC block of K, each NR-wide panel of B: the panel (packed from B, or
 * widened from a bf16 pre-packed weight, or read where an fp32 pre-packed
 * weight has it) meets every panel of A in a kernel call. The B panel (KC x
 * NR floats, 32 KiB) stays in L1 for those calls and the A panels of the K
 * block come from L2; the next B panel's source lines are prefetched during
 * them, so a weight streamed from memory does not stall the first call on
 * each panel. C is loaded and stored once per K block (its lines are
 * prefetched a tile ahead).
 *
 * Every tile of C gets the same kernel calls over the same K blocks however
 * the product is split, whether B was pre-packed and whatever the thread
 * count: the same bits either way. The fused terms (yf_gemm_epi's lr and
 * pro) go on in the kernel call of the last K block. */
#include "kernels/cpu/matmul_impl.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/pool.h"

/* KC: the B panel (KC x NR words: KC k of floats, or 2 KC k of bf16 pairs;
 * the K block of a product is KC x kpair k) in L1, and C loaded and stored
 * K / (KC x kpair) times. (On Zen 4 the pair kernel at 256 words a panel
 * row ran 15-25% faster than at 128; the fp32 kernel keeps 256 floats.) NC: the columns of C a thread walks before the next K block, so
 * that its block of C (M x NC floats) is still in L2/L3 when it comes back.
 * A_MAX: packed A of a row block, kept in L3. */
static int64_t g_kc = 256, g_nc = 512;
#define A_MAX ((int64_t)16 << 20)

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* ---- packing A ---------------------------------------------------------- */

/* Rows m0.. (nm valid of MR) of A, K block pc.. (kb columns) as kb rows of
 * MR floats at d: the fp32 kernels' packing of A (an ISA with pack_a packs
 * its own form). */
static void pack_a_f32(const yf_gemm *g, int64_t m0, int64_t nm, int MR, int64_t pc, int64_t kb, float *d) {
    if (g->acs == 1) { /* rows of A contiguous: each row read front to back */
        for (int64_t r = 0; r < nm; r++) {
            const float *s = g->a + (m0 + r) * g->ars + pc;
            for (int64_t k = 0; k < kb; k++) d[k * MR + r] = s[k];
        }
        for (int64_t r = nm; r < MR; r++)
            for (int64_t k = 0; k < kb; k++) d[k * MR + r] = 0;
    } else if (g->ars == 1) { /* columns of A contiguous: runs of rows */
        for (int64_t k = 0; k < kb; k++) {
            memcpy(d + k * MR, g->a + m0 + (pc + k) * g->acs, (size_t)nm * sizeof(float));
            for (int64_t r = nm; r < MR; r++) d[k * MR + r] = 0;
        }
    } else {
        for (int64_t k = 0; k < kb; k++)
            for (int64_t r = 0; r < MR; r++)
                d[k * MR + r] = r < nm ? g->a[(m0 + r) * g->ars + (pc + k) * g->acs] : 0.0f;
    }
}

typedef struct fma_job {
    const yf_gemm *g;
    const yf_gemm_epi *e;
    const yf_fma_isa *isa;
    float *ap;              /* packed A of rows i0..i1, columns k0..k1 */
    int64_t i0, i1, mp;     /* mp: i1 - i0 rounded up to MR */
    int64_t k0, k1;
    const float *rt;        /* e->lr_l's term: R^T [rank, rt_ld], zero padded */
    int64_t rt_ld;
    bool split_n;
    int64_t chunk;          /* columns (split_n) or rows of a piece */
    int64_t kc;             /* the K block: g_kc x kpair k */
} fma_job;

/* The panel of rows i0 + ip MR.. for all K blocks k0..k1: K block pc at ap
 * + (pc - k0) / kpair mp words, these rows' panel at + (m0 - i0) kw, kw
 * rows of MR words. */
static void pack_a_piece(void *ctx, int64_t ip) {
    const fma_job *j = ctx;
    const yf_fma_isa *isa = j->isa;
    int MR = isa->mr, kp = isa->kpair;
    int64_t m0 = j->i0 + ip * MR, nm = min64(MR, j->i1 - m0);
    for (int64_t pc = j->k0; pc < j->k1; pc += j->kc) {
        int64_t kb = min64(j->kc, j->k1 - pc);
        float *d = j->ap + (pc - j->k0) / kp * j->mp + (m0 - j->i0) * ceil_div(kb, kp);
        if (isa->pack_a)
            isa->pack_a(j->g, m0, nm, pc, kb, d);
        else
            pack_a_f32(j->g, m0, nm, MR, pc, kb, d);
    }
}

/* ---- B panels ------------------------------------------------------------ */

/* Panel of B at columns n0.. (nn valid), K block pc.. (kb rows): a pointer
 * into an fp32 or bf16-pair pre-pack, or buf filled. */
static const float *b_panel(const yf_gemm *g, const yf_fma_isa *isa, int64_t pc, int64_t kb, int64_t n0, int64_t nn,
                            float *buf) {
    int NR = isa->nr;
    if (g->bpf) {
        int64_t i = (n0 / NR) * g->bpf_ld + pc / isa->kpair * NR;
        if (yf_panel_esz(isa->kpair, g->bt) == 4) return (const float *)g->bpf + i;
        isa->widen(buf, (const uint16_t *)g->bpf + i, kb * NR);
        return buf;
    }
    if (g->brs == 1)
        isa->pack_b_cols(g, pc, kb, n0, nn, buf);
    else if (g->bcs == 1)
        isa->pack_b_rows(g, pc, kb, n0, nn, buf);
    else
        for (int64_t k = 0; k < kb; k++)
            for (int64_t c = 0; c < NR; c++) buf[k * NR + c] = c < nn ? yf_gemm_bget(g, pc + k, n0 + c) : 0.0f;
    return buf;
}

/* The source lines of a B panel, to prefetch while the panel before it is
 * in use: nrange runs of bytes each, stride apart. */
typedef struct pf_plan {
    const char *p;
    int64_t nrange, stride, lines; /* lines a run */
    int64_t next, total;
} pf_plan;

static pf_plan pf_panel(const yf_gemm *g, const yf_fma_isa *isa, int64_t pc, int64_t kb, int64_t n0, int64_t nn) {
    size_t esz = g->bt == YF_BF16 ? 2 : 4;
    int NR = isa->nr, kp = isa->kpair;
    pf_plan f = {0};
    if (g->bpf) {
        size_t pesz = yf_panel_esz(kp, g->bt);
        f = (pf_plan){(const char *)g->bpf + ((n0 / NR) * g->bpf_ld + pc / kp * NR) * pesz, 1, 0,
                      ceil_div(ceil_div(kb, kp) * NR * (int64_t)pesz, 64), 0, 0};
    } else if (g->brs == 1) { /* nn columns of kb values */
        f = (pf_plan){(const char *)g->b + (n0 * g->bcs + pc) * esz, nn, g->bcs * (int64_t)esz,
                      ceil_div(kb * (int64_t)esz, 64) + 1, 0, 0};
    } else if (g->bcs == 1) { /* kb rows of nn values */
        f = (pf_plan){(const char *)g->b + (pc * g->brs + n0) * esz, kb, g->brs * (int64_t)esz,
                      ceil_div(nn * (int64_t)esz, 64) + 1, 0, 0};
    }
    f.total = f.nrange * f.lines;
    return f;
}

static void pf_issue(pf_plan *f, int64_t n) {
    for (; n > 0 && f->next < f->total; n--, f->next++) {
        int64_t r = f->next / f->lines, l = f->next % f->lines;
        __builtin_prefetch(f->p + r * f->stride + l * 64, 0, 2);
    }
}

/* ---- the tiles ----------------------------------------------------------- */

/* C[r0:r1, c0:c1] of the row block (c0 a multiple of NR). */
static void fma_block(const fma_job *j, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    const yf_gemm *g = j->g;
    const yf_gemm_epi *e = j->e;
    const yf_fma_isa *isa = j->isa;
    const int MR = isa->mr, NR = isa->nr, kp = isa->kpair;
    float *buf = yf_scratch(2, (size_t)(g_kc * NR) * sizeof(float));
    int64_t calls = ceil_div(r1 - r0, MR);
    for (int64_t jc = c0; jc < c1; jc += g_nc) {
        int64_t je = min64(c1, jc + g_nc);
        for (int64_t pc = j->k0; pc < j->k1; pc += j->kc) {
            int64_t kb = min64(j->kc, j->k1 - pc), kw = ceil_div(kb, kp); /* kw: rows of words */
            bool loadc = g->accumulate || pc > 0, last = pc + kb >= g->K;
            for (int64_t jr = jc; jr < je; jr += NR) {
                int64_t nn = min64(NR, je - jr);
                const float *bp = b_panel(g, isa, pc, kb, jr, nn, buf);
                /* the panel after this one, in loop order */
                int64_t njr = jr + NR, npc = pc, nkb = kb;
                if (njr >= je) {
                    njr = jc, npc = pc + j->kc;
                    if (npc >= j->k1) njr = je, npc = j->k0;
                    nkb = min64(j->kc, j->k1 - npc);
                }
                pf_plan pf = {0};
                if (njr < c1) pf = pf_panel(g, isa, npc, nkb, njr, min64(NR, c1 - njr));
                int64_t per = ceil_div(pf.total, calls);
                for (int64_t ir = r0; ir < r1; ir += MR) {
                    int64_t rows = min64(MR, r1 - ir);
                    float *c = g->c + ir * g->ldc + jr;
                    pf_issue(&pf, per);
                    if (loadc) /* C's tile: its lines on their way during the products */
                        for (int64_t r = 0; r < rows; r++) {
                            __builtin_prefetch(c + r * g->ldc, 0, 3);
                            if (nn * 4 > 64 - (int64_t)((uintptr_t)(c + r * g->ldc) & 63))
                                __builtin_prefetch(c + r * g->ldc + 16, 0, 3);
                        }
                    yf_tile_term t, *tp = NULL;
                    if (last && e && e->lr_l) {
                        t = (yf_tile_term){.l = e->lr_l + ir * e->lr_k, .l_ld = e->lr_k, .rt = j->rt + jr,
                                           .rt_ld = j->rt_ld, .rank = e->lr_k};
                        tp = &t;
                    } else if (last && e && e->pro_l) {
                        t = (yf_tile_term){.l = e->pro_l + ir * e->pro_k, .l_ld = e->pro_k, .rt = e->pro_r + jr,
                                           .rt_ld = g->N, .rank = e->pro_k, .drop = true,
                                           .base = (uint64_t)(ir * g->ldc + jr), .mld = g->ldc, .d = e->pro_drop};
                        tp = &t;
                    }
                    isa->kernel(kw, j->ap + (pc - j->k0) / kp * j->mp + (ir - j->i0) * kw, bp, c, g->ldc, loadc,
                                rows, nn, tp);
                }
            }
        }
    }
}

static void fma_piece(void *ctx, int64_t i) {
    const fma_job *j = ctx;
    if (j->split_n) {
        int64_t c0 = i * j->chunk, c1 = min64(j->g->N, c0 + j->chunk);
        if (c0 < c1) fma_block(j, j->i0, j->i1, c0, c1);
    } else {
        int64_t r0 = j->i0 + i * j->chunk, r1 = min64(j->i1, r0 + j->chunk);
        if (r0 < r1) fma_block(j, r0, r1, 0, j->g->N);
    }
}

static void read_tuning(void) {
    const char *s = getenv("YF_FMA_KC");
    if (s && atoi(s) >= 16) g_kc = atoi(s) / 16 * 16;
    s = getenv("YF_FMA_NC");
    if (s && atoi(s) >= 32) g_nc = atoi(s) / 32 * 32;
}

void yf_gemm_fma(const yf_gemm *g, const yf_gemm_epi *e, const yf_fma_isa *isa, int nt) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, read_tuning);
    const int MR = isa->mr, NR = isa->nr;
    YF_CHECK(!e || !e->blocks);
    YF_CHECK(!g->bpf || g->bpf_ld % NR == 0);
    fma_job j = {.g = g, .e = e, .isa = isa};
    if (e && e->lr_l) { /* R^T: R's rows read in order, rank rows written side by side */
        int64_t kn = e->lr_k, ld = ceil_div(g->N, NR) * NR;
        float *rt = yf_scratch(3, (size_t)(kn * ld) * sizeof(float));
        for (int64_t n = 0; n < g->N; n++)
            for (int64_t k = 0; k < kn; k++) rt[k * ld + n] = e->lr_r[n * kn + k];
        for (int64_t k = 0; k < kn; k++)
            for (int64_t n = g->N; n < ld; n++) rt[k * ld + n] = 0;
        j.rt = rt, j.rt_ld = ld;
    }
    /* A block: all rows and as many K blocks as A_MAX bytes of packed A
     * hold (B is then streamed once), else rows enough for A_MAX at one K
     * block; equal row blocks */
    const int64_t kc = g_kc * isa->kpair;
    j.kc = kc;
    int64_t mb = g->M, kc_a = A_MAX / (ceil_div(g->M, MR) * MR * (int64_t)sizeof(float)) / kc * kc;
    if (kc_a < kc) {
        kc_a = kc;
        mb = A_MAX / (kc * (int64_t)sizeof(float)) / MR * MR;
        int64_t nblocks = ceil_div(g->M, mb);
        mb = ceil_div(ceil_div(g->M, nblocks), MR) * MR;
    }
    float *ap = yf_scratch(4, (size_t)(ceil_div(mb, MR) * MR * min64(kc_a, g->K)) * sizeof(float));
    for (int64_t i0 = 0; i0 < g->M; i0 += mb)
        for (int64_t k0 = 0; k0 < g->K; k0 += kc_a) {
            j.i0 = i0, j.i1 = min64(g->M, i0 + mb), j.k0 = k0, j.k1 = min64(g->K, k0 + kc_a);
            int64_t npanels = ceil_div(j.i1 - i0, MR);
            j.mp = npanels * MR, j.ap = ap;
            if (nt > 1 && npanels > 1)
                yf_par_for(npanels, pack_a_piece, &j);
            else
                for (int64_t ip = 0; ip < npanels; ip++) pack_a_piece(&j, ip);
            /* pieces: along N in whole panels, 2 a thread when there are many
             * (a late thread then leaves less behind); along M when N has too
             * few panels for the threads */
            int64_t npan = ceil_div(g->N, NR), pieces = 1;
            j.split_n = true, j.chunk = g->N;
            if (nt > 1 && npan >= 2 * nt) {
                pieces = npan >= 16 * nt ? 2 * nt : nt;
                j.chunk = ceil_div(npan, pieces) * NR;
            } else if (nt > 1 && npanels >= 2) {
                pieces = min64(nt, npanels);
                j.split_n = false, j.chunk = ceil_div(npanels, pieces) * MR;
            }
            if (pieces > 1)
                yf_par_for(pieces, fma_piece, &j);
            else
                fma_piece(&j, 0);
        }
}
