#include "task/extract.h"

#include <stdlib.h>
#include <string.h>

#include "base/progress.h"
#include "model/prefix_cache.h"

typedef struct tick {
    yf_progress *p;
    int64_t stop;
} tick;

static void on_token(void *ctx, int64_t seq, int64_t id) {
    tick *t = ctx;
    if (id == t->stop && t->p) yf_progress_add(t->p, 1);
}

int yf_extract_run(yf_extractor *x, const char *const *inputs, size_t n, char ***answers) {
    yf_encoder enc;
    if (yf_encoder_from_tokenizer(x->tok, &enc)) return -1;
    int64_t **prompts = yf_calloc(n ? n : 1, sizeof *prompts), *plen = yf_calloc(n ? n : 1, sizeof *plen);
    int rc = -1;
    yf_gen_out *out = NULL;
    yf_prefix_cache *pc = NULL;
    const yf_config *cfg = yf_model_config(x->model);
    int64_t limit = x->max_length > 0 ? x->max_length : 384;
    if (limit > cfg->max_position_embeddings - 1) limit = cfg->max_position_embeddings - 1;
    for (size_t i = 0; i < n; i++) {
        size_t np = 0;
        if (yf_prompt_ids(&x->tpl, &enc, inputs[i], &prompts[i], &np)) goto done;
        /* keep the end of an over-long prompt: the "<sep>" that asks for the answer */
        if ((int64_t)np > limit) {
            memmove(prompts[i], prompts[i] + np - limit, (size_t)limit * sizeof(int64_t));
            np = (size_t)limit;
        }
        plen[i] = (int64_t)np;
        yf_vocab_map_ids(x->vmap, prompts[i], plen[i]);
    }
    yf_gen_opts go;
    yf_gen_opts_default(&go);
    go.max_new_tokens = x->max_new_tokens > 0 ? x->max_new_tokens : 128;
    go.batch = x->batch > 0 ? x->batch : 16;
    go.stop_id = yf_vocab_to_model(x->vmap, enc.eod_id);
    yf_progress p;
    tick tk = {x->progress ? &p : NULL, go.stop_id};
    go.on_token = on_token;
    go.ctx = &tk;
    if (x->progress) yf_progress_start(&p, "extract", (int64_t)n);
    out = yf_calloc(n ? n : 1, sizeof *out);
    /* the template's part of the prompts computed once, kept across the chunks */
    if (!x->no_prefix_cache)
        go.prefix_cache = pc = yf_prefix_cache_new(x->model, x->prefix_cache_bytes ? x->prefix_cache_bytes : (size_t)512 << 20);
    memset(&x->stats, 0, sizeof x->stats);
    /* in chunks, so that the bar also moves for answers that never reach <eod> */
    for (size_t c0 = 0; c0 < n; c0 += (size_t)go.batch) {
        size_t cn = n - c0 < (size_t)go.batch ? n - c0 : (size_t)go.batch;
        yf_gen_stats gs;
        if (yf_generate(x->model, x->lora, (const int64_t *const *)prompts + c0, plen + c0, (int64_t)cn, &go, out + c0,
                        &gs))
            goto done;
        x->stats.prefill_tokens += gs.prefill_tokens, x->stats.prefill_s += gs.prefill_s;
        x->stats.decode_tokens += gs.decode_tokens, x->stats.decode_s += gs.decode_s;
        x->stats.prefill_reused += gs.prefill_reused;
        if (x->progress)
            for (size_t i = c0; i < c0 + cn; i++)
                if (!out[i].stopped) yf_progress_add(&p, 1);
    }
    if (x->progress) yf_progress_end(&p);
    *answers = yf_calloc(n ? n : 1, sizeof **answers);
    for (size_t i = 0; i < n; i++) {
        for (int64_t t = 0; t < out[i].n; t++) out[i].ids[t] = yf_vocab_to_orig(x->vmap, out[i].ids[t]);
        size_t len = 0;
        if (yf_tokenizer_decode_n(x->tok, out[i].ids, (size_t)out[i].n, true, &(*answers)[i], &len)) {
            for (size_t k = 0; k < i; k++) free((*answers)[k]);
            free(*answers);
            goto done;
        }
    }
    rc = 0;
done:
    yf_prefix_cache_free(pc);
    if (out) yf_gen_out_free(out, (int64_t)n);
    free(out);
    for (size_t i = 0; i < n; i++) free(prompts[i]);
    free(prompts);
    free(plen);
    return rc;
}
