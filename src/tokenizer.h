/* tokenizer: the Yuan 2.0 SentencePiece BPE tokenizer, set up as the
 * fine-tuning recipe does (shared/docs/yuan-architecture.md, Tokenizer). */
#ifndef YF_TOKENIZER_H
#define YF_TOKENIZER_H

#include "util.h"

typedef struct yf_tokenizer yf_tokenizer;

/* Parses tokenizer.model and adds the recipe's 15 special tokens. */
int yf_tokenizer_load(const char *path, yf_tokenizer **out);
void yf_tokenizer_free(yf_tokenizer *tok);

/* Encodes UTF-8 text: split on special tokens first, each other piece encoded
 * on its own with its dummy prefix; no BOS/EOS added. *ids is malloc'd. */
int yf_tokenizer_encode(const yf_tokenizer *tok, const char *text, size_t len, int64_t **ids, size_t *n);
/* Decodes ids to UTF-8 (malloc'd). skip_special drops the special tokens. */
int yf_tokenizer_decode(const yf_tokenizer *tok, const int64_t *ids, size_t n, bool skip_special, char **text);
/* Id of a piece or special token ("<eod>", "<sep>", "▁the"), -1 if none. */
int64_t yf_tokenizer_piece_id(const yf_tokenizer *tok, const char *piece);
/* Number of ids (SentencePiece pieces + added tokens). */
int64_t yf_tokenizer_n_ids(const yf_tokenizer *tok);

#endif
