/* prefix_cache: the key/value and localized-filter caches of token
 * prefixes, computed once and copied into the decoding state of every
 * sequence that starts with them (docs/shared-prefix.md). Extraction
 * prompts all open with the same ~130-token template: yf_generate
 * (yf_gen_opts.prefix_cache) adds the common prefix of its prompts and
 * starts each prompt's prefill after the longest held prefix of it.
 *
 * An entry holds, per layer and position, the key (after RoPE), the value
 * and the filter's input_layernorm and conv1 rows, so that any prefix of
 * an entry serves (the part a new prompt shares with it), not only the
 * whole: a server can keep the prompts it was sent and reuse their common
 * part. Entries are dropped least recently used first to stay within a
 * memory budget (a new entry is built before older ones are dropped, so
 * the budget can be passed by one entry meanwhile; an entry bigger than the
 * budget is not kept).
 *
 * Entries are valid for the model, adapter and compute precision they were
 * computed with: clear the cache when one of those changes, or give each
 * adapter its own tag (a server's adapters share one budget). Not
 * thread-safe: one user at a time. */
#ifndef YF_PREFIX_CACHE_H
#define YF_PREFIX_CACHE_H

#include "lora/lora.h"
#include "model/model.h"

/* yf_generate adds its prompts' common prefix when it has at least this many tokens */
#define YF_PREFIX_CACHE_MIN 16

typedef struct yf_prefix_cache yf_prefix_cache;
struct yf_layer_state;

typedef struct yf_prefix_cache_stats {
    int64_t entries;
    size_t bytes, budget;
    int64_t hits, misses;     /* loads that found a held prefix, and that did not */
    int64_t tokens_reused;    /* positions copied into sequences instead of computed */
    int64_t tokens_computed;  /* positions the entries' prefills computed */
    int64_t evicted;          /* entries dropped for the budget */
} yf_prefix_cache_stats;

/* A cache for model m's shape within budget_bytes. */
yf_prefix_cache *yf_prefix_cache_new(const yf_model *m, size_t budget_bytes);
void yf_prefix_cache_free(yf_prefix_cache *c);
/* Drops every entry (the model or adapter changed). */
void yf_prefix_cache_clear(yf_prefix_cache *c);

/* Entries made, matched and loaded from now on are those of tag (0 at the
 * start); the others stay, counted in the budget, until dropped. */
void yf_prefix_cache_set_tag(yf_prefix_cache *c, int64_t tag);

/* Bytes an entry of n positions takes. */
size_t yf_prefix_cache_entry_bytes(const yf_prefix_cache *c, int64_t n);

/* The longest prefix of ids[0..n) some entry holds (0: none). */
int64_t yf_prefix_cache_match(const yf_prefix_cache *c, const int64_t *ids, int64_t n);

/* Makes ids[0..n) held: the positions past the longest prefix of it already
 * held are computed through m and lo (starting from a copy of that prefix)
 * into a new entry, then least recently used entries are dropped to fit the
 * budget. 0 also when the entry would exceed the budget on its own (nothing
 * kept); -1 when the model fails (yf_last_error). */
int yf_prefix_cache_add(yf_prefix_cache *c, yf_model *m, const yf_lora *lo, const int64_t *ids, int64_t n);

/* yf_prefix_cache_add for ids[i][0..n[i]), i < count, in one batched
 * prefill (yf_model_prefill_batch: each entry gets the bits it gets added
 * alone), after their common part (when it has at least
 * YF_PREFIX_CACHE_MIN tokens) is added, so that each computes only its
 * rest. Entries that would pass the budget together are left out (a later
 * add computes them). 0, or -1 when the model fails (nothing added then
 * but their common part). */
int yf_prefix_cache_add_many(yf_prefix_cache *c, yf_model *m, const yf_lora *lo, const int64_t *const *ids,
                             const int64_t *n, int64_t count);

/* Adds the common prefix of prompts[0..n) (short of each one's last token,
 * whose logits a prefill computes) when it has at least
 * YF_PREFIX_CACHE_MIN tokens; 0 also when there is none, -1 when the model
 * fails. */
int yf_prefix_cache_add_common(yf_prefix_cache *c, yf_model *m, const yf_lora *lo, const int64_t *const *prompts,
                               const int64_t *plen, int64_t n);

/* Starts one sequence whose ids begin ids[0..n) from the longest held prefix
 * of at most max positions: copies its keys and values (positions 0..k-1)
 * into the one-sequence state st[L] (capacity >= k), sets st's filter rows
 * and *doc_start (the document start after position k-1), and returns k;
 * 0 when nothing is held (st and *doc_start untouched). */
int64_t yf_prefix_cache_load(yf_prefix_cache *c, const int64_t *ids, int64_t n, int64_t max,
                             struct yf_layer_state *st, int64_t *doc_start);

void yf_prefix_cache_get_stats(const yf_prefix_cache *c, yf_prefix_cache_stats *out);

#endif
