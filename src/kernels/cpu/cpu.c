/* cpu: feature detection. The compiler's __builtin_cpu_supports is not used
 * because gcc 12 does not know AMX and because "the CPU has it" is not enough:
 * the OS must save the wide registers (XCR0) and, for AMX, Linux hands out the
 * 8 KiB tile state only after arch_prctl(ARCH_REQ_XCOMP_PERM). */
#include "kernels/cpu/cpu.h"

#include <pthread.h>
#include <stdint.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#ifdef __linux__
#include <sys/syscall.h>
#include <unistd.h>
#endif

#define YF_ARCH_REQ_XCOMP_PERM 0x1023
#define YF_XFEATURE_XTILEDATA 18

static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static void detect(yf_cpu_features *f) {
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return;
    bool amd = b == 0x68747541u && d == 0x69746e65u && c == 0x444d4163u; /* "AuthenticAMD" */
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    /* the family: base 0xf plus the extended family field */
    unsigned family = (a >> 8) & 0xf;
    if (family == 0xf) family += (a >> 20) & 0xff;
    bool osxsave = c & (1u << 27), fma = c & (1u << 12);
    if (!osxsave) return;
    uint64_t xcr0 = xgetbv0();
    bool ymm_ok = (xcr0 & 0x6) == 0x6;             /* SSE + AVX state */
    bool zmm_ok = ymm_ok && (xcr0 & 0xe0) == 0xe0; /* opmask, ZMM_Hi256, Hi16_ZMM */
    bool tile_ok = (xcr0 & (3ull << 17)) == (3ull << 17); /* XTILECFG, XTILEDATA */
    unsigned max_leaf = __get_cpuid_max(0, 0);
    if (max_leaf < 7) return;
    __cpuid_count(7, 0, a, b, c, d);
    unsigned b7 = b, c7 = c, d7 = d;
    __cpuid_count(7, 1, a, b, c, d);
    unsigned a71 = a;
    bool avx2 = b7 & (1u << 5);
    bool avx512f = b7 & (1u << 16), avx512dq = b7 & (1u << 17), avx512bw = b7 & (1u << 30),
         avx512vl = b7 & (1u << 31);
    bool avx512bf16 = a71 & (1u << 5);
    bool amx_bf16 = d7 & (1u << 22), amx_tile = d7 & (1u << 24);

    f->avx2_fma = ymm_ok && avx2 && fma;
    f->avx512 = zmm_ok && f->avx2_fma && avx512f && avx512dq && avx512bw && avx512vl;
    f->avx512_vnni = f->avx512 && (c7 & (1u << 11));
    f->avx512_bf16 = f->avx512 && avx512bf16;
    f->bf16_dot_fast = f->avx512_bf16 && amd && family >= 0x19;
    if (f->avx512_bf16 && amx_tile && amx_bf16 && tile_ok) {
#ifdef __linux__
        /* 0 = granted (or already granted); otherwise the first tile instruction would fault */
        f->amx_bf16 = syscall(SYS_arch_prctl, YF_ARCH_REQ_XCOMP_PERM, YF_XFEATURE_XTILEDATA) == 0;
#endif
    }
}
#else
static void detect(yf_cpu_features *f) { (void)f; }
#endif

static yf_cpu_features g_features;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static void init_once(void) { detect(&g_features); }

const yf_cpu_features *yf_cpu(void) {
    pthread_once(&g_once, init_once);
    return &g_features;
}
