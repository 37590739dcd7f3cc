/* tokenizer: the Yuan 2.0 SentencePiece BPE tokenizer, set up as the
 * fine-tuning recipe does (shared/docs/yuan-architecture.md, Tokenizer).
 *
 * tokenizer.model is parsed from its protobuf wire format (no protobuf or
 * SentencePiece library); encoding and decoding follow SentencePiece's BPE
 * model byte for byte (identity normalisation only). Invalid UTF-8 in the text
 * is handled as SentencePiece does: each bad byte becomes U+FFFD. A loaded
 * tokenizer is read-only: encode and decode may run from many threads. */
#ifndef YF_TOKENIZER_H
#define YF_TOKENIZER_H

#include "base/util.h"

typedef struct yf_tokenizer yf_tokenizer;

/* Parses tokenizer.model and adds the recipe's 15 special tokens. */
int yf_tokenizer_load(const char *path, yf_tokenizer **out);
void yf_tokenizer_free(yf_tokenizer *tok);

/* Encodes UTF-8 text: split on special tokens first, each other piece encoded
 * on its own with its dummy prefix; no BOS/EOS added. *ids is malloc'd. */
int yf_tokenizer_encode(const yf_tokenizer *tok, const char *text, size_t len, int64_t **ids, size_t *n);
/* One SentencePiece encode of the whole text, no special-token split: what
 * sentencepiece's encode() gives. *ids is malloc'd. */
int yf_tokenizer_encode_sp(const yf_tokenizer *tok, const char *text, size_t len, int64_t **ids, size_t *n);
/* Decodes ids to UTF-8 (malloc'd). skip_special drops the special tokens. */
int yf_tokenizer_decode(const yf_tokenizer *tok, const int64_t *ids, size_t n, bool skip_special, char **text);
/* The same with the length of the text (it may hold NUL bytes, from <0x00>).
 * skip_special: the other ids decoded together, as SentencePiece decodes them
 * (the leading dummy space dropped once). Otherwise special tokens are written
 * as their text and each run between them is decoded on its own, the exact
 * inverse of yf_tokenizer_encode for valid UTF-8. */
int yf_tokenizer_decode_n(const yf_tokenizer *tok, const int64_t *ids, size_t n, bool skip_special, char **text,
                          size_t *len);
/* As yf_tokenizer_decode_n with skip_special, but a run of byte pieces gives
 * its bytes as they are, valid UTF-8 or not: the text a byte-level
 * constraint saw (an answer cut inside a character, to which the
 * constraint's completion then appends the rest of it). */
int yf_tokenizer_decode_bytes(const yf_tokenizer *tok, const int64_t *ids, size_t n, char **text, size_t *len);
/* Id of a piece or special token ("<eod>", "<sep>", "▁the"), -1 if none. */
int64_t yf_tokenizer_piece_id(const yf_tokenizer *tok, const char *piece);
/* The piece of an id (SentencePiece piece or added token), NULL when out of range. */
const char *yf_tokenizer_id_piece(const yf_tokenizer *tok, int64_t id);
/* Whether id is one of the recipe's special tokens (<unk>, <s>, <eod>, the 15 added). */
bool yf_tokenizer_is_special(const yf_tokenizer *tok, int64_t id);
/* The bytes id adds to a text decoded with skip_special (byte-level
 * constraints): a byte piece its byte, a text piece its text with each U+2581
 * as a space, control pieces and special tokens nothing. *dummy: the text
 * begins with the U+2581 that decoding drops when the piece comes first.
 * Returns the byte count; writes them to buf only when they fit in cap. */
size_t yf_tokenizer_id_bytes(const yf_tokenizer *tok, int64_t id, char *buf, size_t cap, bool *dummy);
/* Whether id is a byte piece (<0xNN>): runs of them decode together. */
bool yf_tokenizer_is_byte_piece(const yf_tokenizer *tok, int64_t id);
/* Number of ids (SentencePiece pieces + added tokens). */
int64_t yf_tokenizer_n_ids(const yf_tokenizer *tok);
/* Number of SentencePiece pieces (134,953 for Yuan 2.0). */
int64_t yf_tokenizer_n_pieces(const yf_tokenizer *tok);

/* Length (1..4) of the valid UTF-8 character at s, 0 when malformed (overlong,
 * surrogate, past U+10FFFF, truncated), as SentencePiece judges it. */
size_t yf_utf8_len(const char *s, size_t n);

#endif
