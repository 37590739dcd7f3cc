/* safetensors header + tensors: yf_st_load on arbitrary bytes, then every
 * tensor's bytes read (what the model would touch). */
#include <stdint.h>

#include "formats/safetensors.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    yf_table tab;
    yf_table_init(&tab);
    if (yf_st_load(yz_file(0, data, n), &tab) == 0) {
        volatile uint8_t sink = 0;
        for (int i = 0; i < tab.n; i++) {
            const uint8_t *p = tab.t[i].data;
            for (size_t k = 0; k < tab.t[i].nbytes; k++) sink ^= p[k];
            if (!yf_table_find(&tab, tab.t[i].name)) __builtin_trap();
        }
    }
    yf_table_free(&tab);
    return 0;
}
