#include "task/extract.h"

#include <stdlib.h>
#include <string.h>

#include "base/progress.h"
#include "model/prefix_cache.h"
#include "task/eval.h"

typedef struct tick {
    yf_progress *p;
    int64_t stop;
} tick;

static void on_token(void *ctx, int64_t seq, int64_t id) {
    tick *t = ctx;
    if (id == t->stop && t->p) yf_progress_add(t->p, 1);
}

int yf_constrain_mode_parse(const char *s, yf_constrain_mode *out) {
    if (!strcmp(s, "spans")) *out = YF_CONSTRAIN_SPANS;
    else if (!strcmp(s, "schema")) *out = YF_CONSTRAIN_SCHEMA;
    else if (!strcmp(s, "none")) *out = YF_CONSTRAIN_NONE;
    else return yf_errorf("--constrain takes spans, schema or none, not '%s'", s);
    return 0;
}

/* The constraint of each prompt of a batch (constrain.h), and the hook that
 * hands them to yf_generate. */
typedef struct constrained {
    yf_constraint *grammar;
    yf_cvocab *own;
    const yf_cvocab *cv;
    yf_cstate **st;     /* [batch] */
    char **tail;        /* [n] the completion an unfinished answer gets, or NULL */
    yf_gen_hook hook;
} constrained;

static int constrained_init(constrained *k, const yf_extractor *x, int64_t batch, size_t n) {
    memset(k, 0, sizeof *k);
    if (x->constrain == YF_CONSTRAIN_NONE) return 0;
    const char *keys[YF_N_TYPES];
    size_t nk = 0;
    for (int t = 0; t < YF_N_TYPES; t++)
        if (!x->types || (x->types >> t & 1)) keys[nk++] = yf_type_names[t];
    if (yf_constraint_answer(keys, nk, x->constrain == YF_CONSTRAIN_SPANS, &k->grammar)) return -1;
    int64_t V = yf_model_config(x->model)->vocab_size;
    k->cv = x->cvocab;
    if (!k->cv && yf_cvocab_build(x->tok, x->vmap, V, &k->own)) return -1;
    if (!k->cv) k->cv = k->own;
    if (yf_cvocab_size(k->cv) != V)
        return yf_errorf("extract: the constraint's vocabulary has %lld rows, the model %lld",
                         (long long)yf_cvocab_size(k->cv), (long long)V);
    k->st = yf_calloc((size_t)batch, sizeof *k->st);
    k->tail = yf_calloc(n ? n : 1, sizeof *k->tail);
    yf_cstate_hook(k->st, &k->hook);
    return 0;
}

/* States for inputs[0..n) (n <= batch), reusing the slots. */
static int constrained_batch(constrained *k, const char *const *inputs, size_t n) {
    for (size_t i = 0; i < n; i++) {
        yf_cstate_free(k->st[i]);
        k->st[i] = NULL;
        if (yf_cstate_new(k->grammar, k->cv, inputs[i], strlen(inputs[i]), &k->st[i]))
            return yf_errorf("extract: input %zu: %s", i + 1, yf_last_error());
    }
    return 0;
}

static void constrained_free(constrained *k, int64_t batch, size_t n) {
    for (int64_t i = 0; k->st && i < batch; i++) yf_cstate_free(k->st[i]);
    for (size_t i = 0; k->tail && i < n; i++) free(k->tail[i]);
    free(k->tail);
    free(k->st);
    yf_cvocab_free(k->own);
    yf_constraint_free(k->grammar);
}

int yf_extract_run(yf_extractor *x, const char *const *inputs, size_t n, char ***answers) {
    yf_encoder enc;
    if (yf_encoder_from_tokenizer(x->tok, &enc)) return -1;
    int64_t **prompts = yf_calloc(n ? n : 1, sizeof *prompts), *plen = yf_calloc(n ? n : 1, sizeof *plen);
    int rc = -1;
    yf_gen_out *out = NULL;
    yf_prefix_cache *pc = NULL;
    constrained cons = {0};
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
    if (pc) { /* over every prompt, not only a chunk's: a batch of 1 shares it too */
        double t0 = yf_time();
        if (yf_prefix_cache_add_common(pc, x->model, x->lora, (const int64_t *const *)prompts, plen, (int64_t)n)) goto done;
        x->stats.prefill_s += yf_time() - t0;
    }
    if (constrained_init(&cons, x, go.batch, n)) goto done;
    if (cons.grammar) go.hook = &cons.hook;
    /* in chunks, so that the bar also moves for answers that never reach <eod> */
    for (size_t c0 = 0; c0 < n; c0 += (size_t)go.batch) {
        size_t cn = n - c0 < (size_t)go.batch ? n - c0 : (size_t)go.batch;
        yf_gen_stats gs;
        if (cons.grammar && constrained_batch(&cons, inputs + c0, cn)) goto done;
        if (yf_generate(x->model, x->lora, (const int64_t *const *)prompts + c0, plen + c0, (int64_t)cn, &go, out + c0,
                        &gs))
            goto done;
        x->stats.prefill_tokens += gs.prefill_tokens, x->stats.prefill_s += gs.prefill_s;
        x->stats.decode_tokens += gs.decode_tokens, x->stats.decode_s += gs.decode_s;
        x->stats.prefill_reused += gs.prefill_reused;
        if (x->progress)
            for (size_t i = c0; i < c0 + cn; i++)
                if (!out[i].stopped) yf_progress_add(&p, 1);
        /* an answer a pruned vocabulary could not finish: its shortest completion */
        for (size_t i = c0; cons.grammar && i < c0 + cn; i++)
            if (!yf_cstate_complete(cons.st[i - c0])) cons.tail[i] = yf_cstate_completion(cons.st[i - c0], NULL);
    }
    if (x->progress) yf_progress_end(&p);
    *answers = yf_calloc(n ? n : 1, sizeof **answers);
    for (size_t i = 0; i < n; i++) {
        for (int64_t t = 0; t < out[i].n; t++) out[i].ids[t] = yf_vocab_to_orig(x->vmap, out[i].ids[t]);
        if (yf_answer_text(x->tok, out[i].ids, (size_t)out[i].n, cons.tail ? cons.tail[i] : NULL, &(*answers)[i],
                           NULL)) {
            for (size_t k = 0; k < i; k++) free((*answers)[k]);
            free(*answers);
            goto done;
        }
    }
    rc = 0;
done:
    yf_prefix_cache_free(pc);
    constrained_free(&cons, x->batch > 0 ? x->batch : 16, n);
    if (out) yf_gen_out_free(out, (int64_t)n);
    free(out);
    for (size_t i = 0; i < n; i++) free(prompts[i]);
    free(prompts);
    free(plen);
    return rc;
}

int yf_answer_text(const yf_tokenizer *tok, const int64_t *ids, size_t n, const char *tail, char **text, size_t *len) {
    size_t l = 0;
    int rc = tail ? yf_tokenizer_decode_bytes(tok, ids, n, text, &l) : yf_tokenizer_decode_n(tok, ids, n, true, text, &l);
    if (rc) return rc;
    if (tail) {
        size_t tl = strlen(tail);
        *text = yf_realloc(*text, l + tl + 1);
        memcpy(*text + l, tail, tl + 1);
        l += tl;
    }
    if (len) *len = l;
    return 0;
}
