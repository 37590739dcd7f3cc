/* vocab_map: a pruned output vocabulary for small models. A model directory
 * may hold vocab_map.safetensors with `orig_ids` (I64 [V']): row i of the
 * model's embedding is tokenizer id orig_ids[i]. Commands that take text or
 * tokenizer ids map them through it transparently; ids outside the map become
 * the map's <unk> row (row 0 must be tokenizer id 0). */
#ifndef YF_VOCAB_MAP_H
#define YF_VOCAB_MAP_H

#include "base/util.h"

typedef struct yf_vocab_map {
    int64_t n;          /* V' (0 = identity: no map) */
    int64_t *orig;      /* [V'] model row -> tokenizer id */
    int64_t *sorted;    /* [V'] the ids ascending, and their rows: */
    int64_t *sorted_row;/* [V'] tokenizer id -> row by binary search (memory
                         * in V', never in the largest id a file names) */
} yf_vocab_map;

#define YF_VOCAB_MAP_FILE "vocab_map.safetensors"

/* Loads DIR/vocab_map.safetensors if present (else an identity map, n = 0).
 * Checks: orig_ids an I64 [V'] with row 0 = id 0, no id twice, every id in
 * [0, n_tok_ids) (the tokenizer's size; <= 0 when no tokenizer is loaded:
 * then ids below 2^31). */
int yf_vocab_map_load(const char *dir, int64_t n_tok_ids, yf_vocab_map *vm);
/* Builds a map from a set of tokenizer ids (duplicates ignored; id 0 first). */
void yf_vocab_map_build(yf_vocab_map *vm, const int64_t *ids, int64_t n);
int yf_vocab_map_save(const yf_vocab_map *vm, const char *dir);
void yf_vocab_map_free(yf_vocab_map *vm);
/* Tokenizer id -> model row: ids outside the map become row 0 (<unk>);
 * identity without a map (and for negative ids). */
int64_t yf_vocab_to_model(const yf_vocab_map *vm, int64_t id);
static inline int64_t yf_vocab_to_orig(const yf_vocab_map *vm, int64_t row) {
    if (!vm || vm->n == 0) return row;
    return row >= 0 && row < vm->n ? vm->orig[row] : 0;
}
/* Maps an array in place; labels of -100 stay -100. */
void yf_vocab_map_ids(const yf_vocab_map *vm, int64_t *ids, int64_t n);

#endif
