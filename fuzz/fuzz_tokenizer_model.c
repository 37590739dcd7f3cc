/* The tokenizer model loader: arbitrary bytes as tokenizer.model; a model
 * that loads then encodes a fixed text and the input itself and decodes the
 * ids back. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer.h"
#include "fuzz_util.h"

static void round_trip(const yf_tokenizer *tok, const char *s, size_t n) {
    int64_t *ids = NULL;
    size_t m = 0;
    char *text = NULL;
    size_t len = 0;
    if (yf_tokenizer_encode(tok, s, n, &ids, &m) == 0 && yf_tokenizer_decode_n(tok, ids, m, false, &text, &len) == 0)
        free(text);
    if (ids && yf_tokenizer_decode_n(tok, ids, m, true, &text, &len) == 0) free(text);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    yf_tokenizer *tok = NULL;
    if (yf_tokenizer_load(yz_file(0, data, n), &tok) != 0) return 0;
    static const char text[] = "张三，男，中国籍 <sep> hello  world\xff<eod>";
    round_trip(tok, text, sizeof text - 1);
    round_trip(tok, (const char *)data, n < 4096 ? n : 4096);
    for (int64_t id = 0; id < yf_tokenizer_n_ids(tok) && id < 4096; id++) {
        const char *p = yf_tokenizer_id_piece(tok, id);
        if (!p || yf_tokenizer_piece_id(tok, p) < 0) __builtin_trap();
    }
    yf_tokenizer_free(tok);
    return 0;
}
