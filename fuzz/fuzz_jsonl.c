/* Training records: yf_data_load on arbitrary bytes (a JSON array or JSON
 * Lines of {"input", "output"}); loaded records go through the template. */
#include <stdint.h>
#include <stdlib.h>

#include "task/data.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    yf_records r;
    if (yf_data_load(yz_file(0, data, n), &r) != 0) return 0;
    yf_template t;
    if (yf_template_load("resume", &t) != 0) __builtin_trap();
    for (size_t i = 0; i < r.n && i < 64; i++) free(yf_template_apply(&t, r.r[i].input));
    yf_template_free(&t);
    yf_records_free(&r);
    return 0;
}
