/* cpu: run-time detection of the x86 features the kernels can use.
 * Checked once (cpuid, xgetbv for the OS-enabled register state, and for AMX
 * the Linux permission request for the tile data state); every answer is
 * false on other architectures or compilers that cannot emit the code. */
#ifndef YF_CPU_H
#define YF_CPU_H

#include <stdbool.h>

typedef struct yf_cpu_features {
    bool avx2_fma;    /* AVX2 + FMA + OS saves ymm */
    bool avx512;      /* AVX-512 F/BW/VL/DQ + OS saves zmm */
    bool avx512_vnni; /* vpdpbusd: int8 dot products (the q4 products' int8-activation kernel) */
    bool avx512_bf16; /* vdpbf16ps, vcvtne2ps2bf16 */
    /* vdpbf16ps does twice the multiply-adds of an fp32 FMA per cycle here,
     * so bf16-mode products pay on it (kernels.h). Measured, not assumed per
     * ISA: AMD Zen 4 (family 0x19) 223 against 110 GFLOP/s a core in a
     * register loop; an Intel Sapphire Rapids core with AMX hidden 100
     * against 143 (on Intel cores it issues at half the FMA rate). So: AMD
     * family 0x19 and later with AVX512-BF16. */
    bool bf16_dot_fast;
    bool amx_bf16;    /* AMX tiles + bf16, and the kernel granted the tile state */
} yf_cpu_features;

/* The features of this CPU (computed on first call, thread-safe). */
const yf_cpu_features *yf_cpu(void);

#endif
