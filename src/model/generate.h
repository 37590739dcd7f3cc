/* generate: autoregressive decoding through the key/value and localized-
 * filtering cache: the prompts that start together are prefilled in one
 * batched pass, then tokens are decoded one at a time for a batch of
 * sequences together. Ids here are
 * the model's ids (map tokenizer ids with vocab_map first). */
#ifndef YF_GENERATE_H
#define YF_GENERATE_H

#include "model/model.h"
#include "model/sample.h"

/* A per-sequence restriction of the tokens generated (task/constrain.h
 * implements one). seq: the prompt's index in the yf_generate call; budget:
 * the tokens the sequence may still emit, this one included. The model
 * layer knows nothing of what it restricts. */
typedef struct yf_gen_hook {
    void *ctx;
    /* Greedy decoding: the token to emit given the logits (repetition penalty
     * applied); -1 ends the sequence without a token. */
    int64_t (*pick)(void *ctx, int64_t seq, const float *logits, int64_t V, int64_t budget);
    /* Sampling: sets the logits of the tokens not allowed to -INFINITY;
     * returns how many are allowed (0 ends the sequence without a token). */
    int64_t (*mask)(void *ctx, int64_t seq, float *logits, int64_t V, int64_t budget);
    /* The token emitted (every token, after pick or sampling). */
    void (*advance)(void *ctx, int64_t seq, int64_t id);
    /* True when the sequence must stop now (may be NULL). */
    bool (*done)(void *ctx, int64_t seq);
} yf_gen_hook;

typedef struct yf_gen_opts {
    int64_t max_new_tokens; /* new tokens at most (> 0) */
    int64_t max_length;     /* prompt + new tokens at most; 0 = the model's max_position_embeddings */
    yf_sampling samp;
    uint64_t seed;
    int64_t stop_id;        /* stop after emitting this id (<eod>); -1 = none */
    int64_t batch;          /* sequences decoded together (>= 1) */
    /* Called for every new token of sequence seq (may be NULL). */
    void (*on_token)(void *ctx, int64_t seq, int64_t id);
    void *ctx;
    /* NULL, or a prefix cache (model/prefix_cache.h): the prompts' common
     * prefix is added to it once, and each prompt's prefill starts after the
     * longest prefix of it the cache holds. Same ids as without. */
    struct yf_prefix_cache *prefix_cache;
    const yf_gen_hook *hook; /* restricts the tokens (NULL: none) */
} yf_gen_opts;

void yf_gen_opts_default(yf_gen_opts *o);

typedef struct yf_gen_out {
    int64_t *ids;      /* [n] new ids (the stop id included when reached) */
    int64_t n;
    bool stopped;      /* reached stop_id */
} yf_gen_out;

typedef struct yf_gen_stats {
    int64_t prefill_tokens, decode_tokens; /* prefill: every prompt token, computed or taken from the prefix cache */
    double prefill_s, decode_s;            /* prefill: the cache's additions included */
    int64_t prefill_reused;                /* prompt tokens taken from the prefix cache */
} yf_gen_stats;

/* Generates for n prompts (prompts[i] of plen[i] >= 1 ids). out[n] receives
 * the new ids of each (free with yf_gen_out_free). Sequence i's sampling
 * stream is seeded from (seed, i), so results do not depend on batching. */
int yf_generate(yf_model *m, const yf_lora *lo, const int64_t *const *prompts, const int64_t *plen, int64_t n,
                const yf_gen_opts *o, yf_gen_out *out, yf_gen_stats *stats);
void yf_gen_out_free(yf_gen_out *out, int64_t n);

#endif
