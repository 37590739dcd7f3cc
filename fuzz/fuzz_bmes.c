/* The Resume NER corpus reader: yf_bmes_read on arbitrary bytes; every
 * sentence of a corpus that loads is turned into its answer JSON. */
#include <stdint.h>
#include <stdlib.h>

#include "task/bmes.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    yf_bmes_corpus c;
    if (yf_bmes_read(yz_file(0, data, n), &c) != 0) return 0;
    for (size_t i = 0; i < c.n; i++) free(yf_bmes_answer(&c.s[i]));
    yf_bmes_free(&c);
    return 0;
}
