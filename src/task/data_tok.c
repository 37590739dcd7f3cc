/* data_tok: the data pipeline's encoder over the real tokenizer (kept apart
 * from data.c so that the pipeline itself depends on no tokenizer). */
#include "task/data.h"
#include "tokenizer/tokenizer.h"

static int tok_encode(const void *ctx, const char *text, size_t len, int64_t **ids, size_t *n) {
    return yf_tokenizer_encode((const yf_tokenizer *)ctx, text, len, ids, n);
}

int yf_encoder_from_tokenizer(const yf_tokenizer *tok, yf_encoder *out) {
    int64_t eod = yf_tokenizer_piece_id(tok, "<eod>"), sep = yf_tokenizer_piece_id(tok, "<sep>");
    if (eod < 0 || sep < 0) return yf_errorf("the tokenizer has no <eod> or <sep> token (is it the Yuan 2.0 tokenizer?)");
    out->encode = tok_encode;
    out->ctx = tok;
    out->eod_id = eod;
    return 0;
}
