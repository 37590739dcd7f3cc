/* The zip reader: the central directory of arbitrary bytes, then every
 * entry's data (stored: checked CRC; deflated: inflated, CRC checked). */
#include <stdint.h>
#include <stdlib.h>

#include "formats/zip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    yf_zip z;
    if (yf_zip_open(&z, "fuzz.zip", data, n) != 0) return 0;
    for (int i = 0; i < z.n; i++) {
        if (yf_zip_find(&z, z.e[i].name) == NULL) __builtin_trap();
        const uint8_t *d;
        void *owned;
        if (yf_zip_data(&z, &z.e[i], true, &d, &owned) == 0) {
            volatile uint8_t sink = 0;
            for (uint64_t k = 0; k < z.e[i].usize; k++) sink ^= d[k];
            free(owned);
        }
    }
    yf_zip_close(&z);
    return 0;
}
