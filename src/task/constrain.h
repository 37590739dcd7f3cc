/* constrain: decoding that can only produce valid answers (issue 18;
 * docs/constrained-decoding.md). The constraint sees bytes, the model sees
 * tokens; three objects connect them, each reusable on its own:
 *
 *   yf_constraint  a compiled grammar over the bytes of the answer: the
 *                  training answer format (yf_constraint_answer) or a JSON
 *                  Schema subset (yf_constraint_json_schema, jsonschema.h).
 *                  Immutable: share one among threads and sequences.
 *   yf_cvocab      the model's vocabulary as bytes (each row's text as the
 *                  tokenizer decodes it: byte pieces as their byte, U+2581 as
 *                  a space, special tokens as nothing) and a byte trie over
 *                  it. Built once per model (tokenizer + vocab map); immutable,
 *                  shareable.
 *   yf_cstate      one sequence's position in the grammar, with an index of
 *                  its input text when strings must be spans of it. One per
 *                  sequence (never shared between threads); reset to reuse.
 *
 * Typical use (extract.c does this for every prompt of a batch):
 *   yf_constraint *c;  yf_constraint_answer(yf_type_names, 8, true, &c);
 *   yf_cvocab *v;      yf_cvocab_build(tok, vmap, V, &v);
 *   yf_cstate *s[n];   yf_cstate_new(c, v, input_i, strlen(input_i), &s[i]);
 *   yf_gen_hook h;     yf_cstate_hook(s, &h);  go.hook = &h;  yf_generate(...);
 *   ... yf_cstate_free(s[i]); yf_cvocab_free(v); yf_constraint_free(c);
 *
 * What "allowed" means. A row is allowed when all of its bytes are accepted
 * from the current state, the state it leads to can still reach a complete
 * answer, and that answer fits the budget: `budget` is the number of tokens
 * the sequence may still emit, this one included (INT64_MAX: no limit). The
 * cost of a state is the fewest tokens that spell the shortest completion of
 * it (close the open string, array and object), so when the budget reaches
 * it the only tokens allowed are those that close. With a vocabulary that
 * has every byte as a token (Yuan's: the byte pieces) the answer is always
 * complete within the budget; a pruned vocabulary may lack the tokens a
 * completion needs (cvocab.c). <eod> is allowed exactly when the answer is
 * complete. The first token of an answer loses a leading U+2581 (the dummy
 * prefix), as the tokenizer's decode drops it.
 *
 * Every answer the constraint lets through decodes (yf_tokenizer_decode_n,
 * skip_special) to text that yf_constraint_accepts. */
#ifndef YF_CONSTRAIN_H
#define YF_CONSTRAIN_H

#include "base/util.h"
#include "formats/vocab_map.h"
#include "model/generate.h"
#include "tokenizer/tokenizer.h"

typedef struct yf_constraint yf_constraint;
typedef struct yf_cvocab yf_cvocab;
typedef struct yf_cstate yf_cstate;

/* ---- grammars ----------------------------------------------------------- */

/* The training answer format, byte for byte as yf_answer_format writes it:
 *   {}  or  {"KEY": ["text", ...], "KEY": [...]}
 * with separators ", " and ": ", keys from keys[0..n) in that order (each at
 * most once, any subset), every array non-empty, every string non-empty and
 * JSON-escaped as Python's json.dumps(ensure_ascii=False) escapes it. With
 * spans, every string is a verbatim substring of the sequence's input (the
 * unescaped text, whole UTF-8 characters); without, any text. Strings in one
 * array may repeat (the answer parser keeps distinct ones). keys: distinct,
 * non-empty UTF-8; n in [1, 64]. */
int yf_constraint_answer(const char *const *keys, size_t n, bool spans, yf_constraint **out);
void yf_constraint_free(yf_constraint *c);

/* Whether text[0..len) is a complete answer the constraint accepts, with
 * input[0..input_len) the text span strings must come from. For tests and
 * for checking answers that were produced elsewhere. */
bool yf_constraint_accepts(const yf_constraint *c, const char *input, size_t input_len, const char *text, size_t len);

/* ---- the vocabulary ------------------------------------------------------ */

/* The bytes of each of the model's V rows: row r is tokenizer id
 * yf_vocab_to_orig(vmap, r) (vmap may be NULL: identity); rows without a
 * tokenizer id, control and special tokens have no bytes and are never
 * allowed, except <eod> when the answer is complete. */
int yf_cvocab_build(const yf_tokenizer *tok, const yf_vocab_map *vmap, int64_t V, yf_cvocab **out);
void yf_cvocab_free(yf_cvocab *v);
int64_t yf_cvocab_size(const yf_cvocab *v);  /* V */
int64_t yf_cvocab_eod(const yf_cvocab *v);   /* the row of <eod>, -1 when the model has none */
/* Every byte is some row's whole text (then every answer completes within its budget). */
bool yf_cvocab_byte_complete(const yf_cvocab *v);

/* ---- one sequence -------------------------------------------------------- */

/* A state at the start of an answer. input[0..len): the text span strings
 * come from (copied; may be empty, then no span is possible and the answer
 * format gives {}). Fails (one-line error) when the grammar has no answer
 * at all for this input, e.g. a required span property and an empty input. */
int yf_cstate_new(const yf_constraint *c, const yf_cvocab *v, const char *input, size_t len, yf_cstate **out);
void yf_cstate_free(yf_cstate *s);
/* Back to the start of the answer (same grammar, vocabulary and input). */
void yf_cstate_reset(yf_cstate *s);

/* Whether row may come next. */
bool yf_cstate_allows(yf_cstate *s, int64_t row, int64_t budget);
/* The full mask: bit r of bits[(V + 63) / 64] set when row r is allowed
 * (one walk of the byte trie). Returns the number of rows allowed. */
int64_t yf_cstate_mask(yf_cstate *s, int64_t budget, uint64_t *bits);
/* Greedy decoding: the allowed row with the highest logit (ties: the lowest
 * row), found by testing rows in descending logit order, so it costs one
 * test when the model already agrees; the same row as argmax over the full
 * mask. -1 when no row is allowed (only with a vocabulary that cannot spell
 * any completion, e.g. a pruned one; the answer then stays incomplete). */
int64_t yf_cstate_pick(yf_cstate *s, const float *logits, int64_t budget);
/* Appends row (its bytes; <eod> ends the sequence). Returns 0, or -1 with an
 * error when the row's bytes are not accepted. */
int yf_cstate_advance(yf_cstate *s, int64_t row);
/* The answer so far is complete (only <eod> may follow, or more digits of a
 * top-level number). */
bool yf_cstate_complete(const yf_cstate *s);
/* Tokens the shortest completion takes (0 when complete; its bytes when the
 * vocabulary cannot spell it). */
int64_t yf_cstate_cost(yf_cstate *s);
/* The text of the shortest completion (malloc'd, "" when complete): what
 * closes an answer a pruned vocabulary could not finish (extract appends it). */
char *yf_cstate_completion(yf_cstate *s, size_t *len);

/* A generation hook over states[0..n): sequence i of yf_generate uses
 * states[i] (greedy: yf_cstate_pick; sampling: the mask; a sequence whose
 * answer is complete stops at <eod>, or at once when the model has none). */
void yf_cstate_hook(yf_cstate **states, yf_gen_hook *hook);

#endif
