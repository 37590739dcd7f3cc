/* Encode and decode of arbitrary bytes with the real Yuan 2.0 tokenizer
 * ($YF_FUZZ_TOKENIZER, default ../shared/yuan/tokenizer.model). Properties:
 * decode(encode(text)) == text for valid UTF-8 without spaces (which the
 * normaliser folds) or U+2581 (which decodes to a space), every id in range;
 * and decoding
 * the input read as little-endian ids never fails on in-range ids. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/jsontext.h"
#include "tokenizer/tokenizer.h"

static yf_tokenizer *g_tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    const char *p = getenv("YF_FUZZ_TOKENIZER");
    if (!p || !p[0]) p = "../shared/yuan/tokenizer.model";
    if (yf_tokenizer_load(p, &g_tok) != 0) {
        fprintf(stderr, "fuzz_tokenizer_text: %s (set YF_FUZZ_TOKENIZER)\n", yf_last_error());
        exit(2);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    const char *s = (const char *)data;
    int64_t *ids = NULL;
    size_t m = 0;
    if (yf_tokenizer_encode(g_tok, s, n, &ids, &m) != 0) __builtin_trap();
    for (size_t i = 0; i < m; i++)
        if (ids[i] < 0 || ids[i] >= yf_tokenizer_n_ids(g_tok)) __builtin_trap();
    char *text = NULL;
    size_t len = 0;
    if (yf_tokenizer_decode_n(g_tok, ids, m, false, &text, &len) != 0) __builtin_trap();
    /* identity normalisation: valid UTF-8 without spaces (which the dummy
     * prefix and the extra-whitespace rule change) comes back byte for byte */
    bool plain = yf_utf8_valid(s, n) && !memchr(s, ' ', n) && !memmem(s, n, "\xE2\x96\x81", 3) && n > 0;
    if (plain && (len != n || memcmp(text, s, n) != 0)) __builtin_trap();
    free(text);
    free(ids);
    /* the bytes as ids, folded into range */
    size_t k = n / 4;
    int64_t *x = malloc((k ? k : 1) * sizeof *x);
    for (size_t i = 0; i < k; i++) {
        uint32_t v;
        memcpy(&v, data + 4 * i, 4);
        x[i] = (int64_t)(v % (uint32_t)yf_tokenizer_n_ids(g_tok));
    }
    if (yf_tokenizer_decode_n(g_tok, x, k, true, &text, &len) != 0) __builtin_trap();
    free(text);
    free(x);
    return 0;
}
