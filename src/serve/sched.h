/* sched: the continuous-batching scheduler of `yuanft serve`.
 *
 * One thread runs the model. It holds `parallel` slots, each one request's
 * key/value + localized-filter cache (max_length positions). Requests wait
 * in a bounded queue; between decode steps the scheduler moves queued
 * requests into free slots (up to YF_ROWSTABLE_M at a time) and prefills
 * them together (yf_model_prefill_batch: each with the bits it gets alone),
 * then a step decodes one token for every occupied slot together, each
 * sequence at its own position and with its own adapter
 * (yf_model_forward_cached_rows: the base products once, each adapter's
 * low-rank term on its rows), in batches of at most YF_ROWSTABLE_M rows.
 * The tokens of a sequence are those `yuanft generate` gives it alone.
 * A finished or cancelled request frees its slot before the next step:
 * occupied slots are kept at the front (the last one moves into the hole).
 *
 * Sampling follows yf_generate's sequence 0 exactly: yf_sample with the
 * request's settings over the prompt and its tokens, the stream seeded from
 * the request's seed, stop at stop_id, at max_new new tokens, or at limit
 * positions.
 *
 * Threads: yf_sched_submit and yf_sched_cancel from any thread; a request's
 * callbacks run on the scheduler thread, never under its lock. */
#ifndef YF_SCHED_H
#define YF_SCHED_H

#include "lora/lora.h"
#include "model/generate.h"
#include "model/model.h"
#include "model/model_internal.h"
#include "model/sample.h"

typedef enum yf_finish {
    YF_FINISH_STOP = 0,  /* stop id, a stop string (on_token), or the hook ended it */
    YF_FINISH_LENGTH,    /* max_new tokens or limit positions */
    YF_FINISH_CANCELLED, /* yf_sched_cancel, or the scheduler stopped */
    YF_FINISH_ERROR      /* the model failed (message given) */
} yf_finish;

/* A restriction of a request's tokens: the constrained decoder's hook
 * (task/constrain.h, yf_cstate_hook) plugs in as it does into yf_generate,
 * with seq always 0 and ctx the request's own states:
 *   pick   greedy: the token to emit given the logits (repetition penalty
 *          applied); -1 ends the request without a token.
 *   mask   sampling: sets the logits of tokens not allowed to -INFINITY;
 *          returns how many are allowed (0 ends the request).
 *   advance  the token emitted.  done  true when the request must end now.
 * budget: the tokens the request may still emit, this one included. */
typedef yf_gen_hook yf_sched_hook;

/* A store of computed prompt prefixes (the prefix cache plugs in here).
 * lookup: before a prefill, may fill positions 0..n-1 of the one-sequence
 * state `slot` (keys, values, and a_prev / c_prev as after position n-1)
 * for prompt[0..n) under that adapter, set *doc_start as after them, and
 * return n (0 <= n < plen: at least one token is left to prefill); 0 when it
 * has nothing (it may compute them; its time counts as the prefill's).
 * store (may be NULL): after a prefill, offered the slot's state of the
 * whole prompt (it may copy a prefix of it). prepare (may be NULL): before
 * the lookups of requests admitted together, all their prompts at once
 * (it may compute them together). All run on the scheduler thread.
 * serve/prefix.h plugs the prefix cache in through prepare and lookup. */
typedef struct yf_sched_prefix {
    void *ctx;
    int64_t (*lookup)(void *ctx, int32_t adapter, const int64_t *prompt, int64_t plen, yf_layer_state *slot,
                      int64_t *doc_start);
    void (*store)(void *ctx, int32_t adapter, const int64_t *prompt, int64_t plen, const yf_layer_state *slot,
                  int64_t doc_start);
    void (*prepare)(void *ctx, int64_t n, const int32_t *adapter, const int64_t *const *prompt, const int64_t *plen);
} yf_sched_prefix;

typedef struct yf_sched_req {
    /* set by the caller before yf_sched_submit, then read-only until on_done */
    int32_t adapter;            /* index into the scheduler's adapters, -1: the base model */
    const int64_t *prompt;      /* [plen] model ids, plen >= 1 */
    int64_t plen;
    int64_t max_new;            /* new tokens at most, >= 1 */
    int64_t limit;              /* prompt + new tokens at most, plen < limit <= max_length */
    yf_sampling samp;
    uint64_t seed;
    int64_t stop_id;            /* ends the request after it is emitted; -1: none */
    const yf_sched_hook *hook;  /* or NULL */
    /* Each new token (the stop id included); returning true ends the
     * request (YF_FINISH_STOP): the caller found a stop string. */
    bool (*on_token)(void *ctx, int64_t id);
    /* Exactly once per submitted request, last: the scheduler forgets it. */
    void (*on_done)(void *ctx, yf_finish why, const char *error);
    void *ctx;
    /* the scheduler's */
    bool cancel;                /* atomic */
    bool deferred;              /* waited for a slot */
    struct yf_sched_req *next;
} yf_sched_req;

typedef struct yf_sched_opts {
    int64_t parallel;                /* slots (>= 1) */
    int64_t max_queue;               /* requests waiting for a slot at most (>= 0) */
    int64_t max_length;              /* positions a slot holds (<= max_position_embeddings) */
    const yf_lora *const *adapters;  /* [nadapters], kept by the caller */
    float **const *dora_n;           /* [nadapters] their yf_dora_norms_new */
    int64_t nadapters;
    const yf_sched_prefix *prefix;   /* or NULL */
} yf_sched_opts;

typedef struct yf_sched_stats {
    int64_t parallel, active, queued;         /* now */
    int64_t processed, deferred, rejected;    /* requests: finished (stop/length), waited for a slot, refused */
    int64_t cancelled, failed;
    int64_t prompt_tokens, generated_tokens;  /* prefilled (prefix hits included), decoded */
    int64_t prompt_tokens_reused;             /* of prompt_tokens: from the prefix store (lookup) */
    int64_t steps, step_rows;                 /* decode steps, and their rows summed */
    int64_t prefills;                         /* prefill rounds (requests admitted together prefill in one) */
    double prefill_s, decode_s;               /* seconds in prefills, in decode steps */
} yf_sched_stats;

typedef struct yf_sched yf_sched;

/* Allocates the slots' caches and starts the thread. m (and the adapters)
 * must outlive the scheduler; only its thread runs the model from now on. */
int yf_sched_start(yf_model *m, const yf_sched_opts *o, yf_sched **out);
/* Stops the thread (requests still queued or running end CANCELLED) and
 * frees the scheduler. */
void yf_sched_stop(yf_sched *s);

/* Queues r. Returns 0, or -1 with nothing queued (on_done is not called)
 * when the queue is full (*full = true: answer 503) or the scheduler is
 * stopping. */
int yf_sched_submit(yf_sched *s, yf_sched_req *r, bool *full);
/* Ends r as soon as the scheduler sees it (before its next step). */
void yf_sched_cancel(yf_sched *s, yf_sched_req *r);
/* Cancels every request queued or running (shutdown past its grace time). */
void yf_sched_cancel_all(yf_sched *s);
/* Requests queued or running. */
int64_t yf_sched_inflight(yf_sched *s);
void yf_sched_get_stats(yf_sched *s, yf_sched_stats *out);

#endif
