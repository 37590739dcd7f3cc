#include "model/generate.h"

#include <stdlib.h>
#include <string.h>

#include "model/model_internal.h"
#include "model/prefix_cache.h"

void yf_gen_opts_default(yf_gen_opts *o) {
    memset(o, 0, sizeof *o);
    o->max_new_tokens = 64;
    yf_sampling_default(&o->samp);
    o->seed = 42;
    o->stop_id = -1;
    o->batch = 8;
}

void yf_gen_out_free(yf_gen_out *out, int64_t n) {
    for (int64_t i = 0; i < n; i++) free(out[i].ids);
}

typedef struct seq {
    int64_t idx;        /* prompt index, -1 = free slot */
    int64_t pos;        /* positions cached */
    int64_t doc_start;
    int64_t limit;      /* positions allowed in total */
    int64_t *hist;      /* prompt + generated, for the repetition penalty */
    int64_t nhist;
    yf_rng rng;
} seq;

/* The next token of slot s under the hook (-1: the hook ends the sequence). */
static int64_t hooked(seq *s, float *logits, int64_t V, const yf_gen_opts *o, int64_t budget) {
    const yf_gen_hook *h = o->hook;
    if (o->samp.temperature == 0) {
        yf_sample_penalize(logits, V, &o->samp, s->hist, s->nhist);
        return h->pick(h->ctx, s->idx, logits, V, budget);
    }
    if (h->mask(h->ctx, s->idx, logits, V, budget) == 0) return -1;
    return yf_sample(logits, V, &o->samp, s->hist, s->nhist, &s->rng);
}

/* Appends a sampled token to slot s; returns true when the sequence ends. */
static bool emit(seq *s, float *logits, int64_t V, const yf_gen_opts *o, yf_gen_out *out) {
    int64_t budget = o->max_new_tokens - out->n < s->limit - s->nhist ? o->max_new_tokens - out->n : s->limit - s->nhist;
    int64_t id = o->hook ? hooked(s, logits, V, o, budget) : yf_sample(logits, V, &o->samp, s->hist, s->nhist, &s->rng);
    if (id < 0) return true;
    out->ids[out->n++] = id;
    s->hist[s->nhist++] = id;
    if (o->hook) o->hook->advance(o->hook->ctx, s->idx, id);
    if (o->on_token) o->on_token(o->ctx, s->idx, id);
    if (id == o->stop_id) out->stopped = true;
    if (o->hook && o->hook->done && o->hook->done(o->hook->ctx, s->idx)) return true;
    return out->stopped || out->n >= o->max_new_tokens || s->nhist >= s->limit;
}

/* Prefills the prompts just put into slots fill[0..nf) (zero filter state,
 * from the longest prefix the cache holds: at least the last token is
 * computed, for its logits) in one batched prefill, with the bits of each
 * alone; sequence j's last logits into logits + j V. */
static int prefill_new(yf_model *m, const yf_lora *lo, const yf_gen_opts *o, yf_layer_state *st, seq *sq,
                       const int64_t *fill, int64_t nf, const int64_t *const *prompts, const int64_t *plen,
                       float *logits, yf_gen_stats *stats) {
    int64_t L = m->L, V = m->cfg.vocab_size;
    yf_layer_state *views = yf_calloc((size_t)(nf * L), sizeof *views);
    yf_prefill *pf = yf_calloc((size_t)nf, sizeof *pf);
    for (int64_t j = 0; j < nf; j++) {
        seq *s = &sq[fill[j]];
        int64_t i = s->idx;
        yf_layer_state *view = views + j * L;
        yf_layer_states_slot(view, st, m, fill[j]);
        yf_layer_states_restart(view, m);
        int64_t k = o->prefix_cache ? yf_prefix_cache_load(o->prefix_cache, prompts[i], plen[i], plen[i] - 1, view,
                                                           &s->doc_start)
                                    : 0;
        if (stats) stats->prefill_tokens += plen[i], stats->prefill_reused += k;
        pf[j] = (yf_prefill){.st = view, .pos = k, .doc_start = s->doc_start, .ids = prompts[i] + k,
                             .len = plen[i] - k, .adapter = -1, .logits = logits + j * V};
    }
    int rc = yf_model_prefill_batch(m, lo, NULL, pf, nf);
    for (int64_t j = 0; j < nf; j++) sq[fill[j]].doc_start = pf[j].doc_start;
    free(views), free(pf);
    return rc;
}

/* Continuous batching: `batch` slots share one cache; a free slot takes the
 * next prompt (the prompts that take slots at the same time are prefilled
 * together), and every step decodes one token for all occupied slots
 * together, each at its own position. Every row's arithmetic is
 * independent of the others, so the tokens equal one-at-a-time generation. */
int yf_generate(yf_model *m, const yf_lora *lo, const int64_t *const *prompts, const int64_t *plen, int64_t n,
                const yf_gen_opts *o, yf_gen_out *out, yf_gen_stats *stats) {
    const yf_config *c = &m->cfg;
    if (o->max_new_tokens < 1) return yf_errorf("generate: --max-new-tokens must be at least 1");
    if (yf_sampling_check(&o->samp)) return -1;
    int64_t maxlen = o->max_length > 0 ? o->max_length : c->max_position_embeddings;
    if (maxlen > c->max_position_embeddings) maxlen = c->max_position_embeddings;
    int64_t cap = 1;
    for (int64_t i = 0; i < n; i++) {
        if (plen[i] < 1) return yf_errorf("generate: prompt %lld is empty (a prompt needs at least one token)", (long long)i + 1);
        if (plen[i] >= maxlen)
            return yf_errorf("generate: prompt %lld has %lld tokens, no room to generate within max length %lld",
                             (long long)i + 1, (long long)plen[i], (long long)maxlen);
        for (int64_t t = 0; t < plen[i]; t++)
            if (prompts[i][t] < 0 || prompts[i][t] >= c->vocab_size)
                return yf_errorf("generate: prompt %lld: token id %lld is outside the vocabulary [0, %lld)",
                                 (long long)i + 1, (long long)prompts[i][t], (long long)c->vocab_size);
        int64_t lim = plen[i] + o->max_new_tokens < maxlen ? plen[i] + o->max_new_tokens : maxlen;
        if (lim > cap) cap = lim;
    }
    memset(out, 0, (size_t)n * sizeof *out);
    if (stats) memset(stats, 0, sizeof *stats);
    if (n == 0) return 0;
    int64_t B = o->batch > 0 ? o->batch : 1, V = c->vocab_size, L = m->L;
    if (B > n) B = n;
    float *logits = yf_malloc((size_t)(B * V) * sizeof(float));
    yf_layer_state *view = yf_calloc((size_t)L, sizeof *view);
    yf_layer_state *st = yf_layer_states_alloc(m, B, cap);
    seq *sq = yf_calloc((size_t)B, sizeof *sq);
    int64_t *posb = yf_calloc((size_t)B, sizeof *posb), *docb = yf_calloc((size_t)B, sizeof *docb);
    int64_t *step_ids = yf_calloc((size_t)B, sizeof *step_ids), *fill = yf_calloc((size_t)B, sizeof *fill);
    int rc = 0, next = 0, live = 0;
    for (int64_t b = 0; b < B; b++) sq[b].idx = -1;
    if (o->prefix_cache) {
        double t0 = yf_time();
        rc = yf_prefix_cache_add_common(o->prefix_cache, m, lo, prompts, plen, n);
        if (stats) stats->prefill_s += yf_time() - t0;
    }
    for (;;) {
        /* fill free slots: each free slot takes the next prompt, their
         * prefills run together (prefill_new), until every slot decodes */
        while (rc == 0 && next < n) {
            int64_t nf = 0;
            for (int64_t b = 0; b < B && next < n; b++) {
                if (sq[b].idx >= 0) continue;
                seq *s = &sq[b];
                int64_t i = next++;
                free(s->hist);
                memset(s, 0, sizeof *s);
                s->idx = i;
                s->limit = plen[i] + o->max_new_tokens < maxlen ? plen[i] + o->max_new_tokens : maxlen;
                s->hist = yf_malloc((size_t)s->limit * sizeof(int64_t));
                memcpy(s->hist, prompts[i], (size_t)plen[i] * sizeof(int64_t));
                s->nhist = plen[i];
                yf_rng_seed(&s->rng, o->seed * 1000003ull + (uint64_t)i);
                out[i].ids = yf_malloc((size_t)o->max_new_tokens * sizeof(int64_t));
                fill[nf++] = b;
            }
            if (nf == 0) break;
            double t0 = yf_time();
            rc = prefill_new(m, lo, o, st, sq, fill, nf, prompts, plen, logits, stats);
            if (stats) stats->prefill_s += yf_time() - t0;
            for (int64_t j = 0; j < nf && rc == 0; j++) {
                seq *s = &sq[fill[j]];
                s->pos = plen[s->idx];
                live++;
                if (emit(s, logits + j * V, V, o, &out[s->idx])) s->idx = -1, live--;
            }
        }
        if (rc || live == 0) break;
        /* one decoding step for every occupied slot; free slots idle at position 0 */
        for (int64_t b = 0; b < B; b++) {
            seq *s = &sq[b];
            step_ids[b] = s->idx >= 0 ? s->hist[s->nhist - 1] : 0;
            posb[b] = s->idx >= 0 ? s->pos : 0;
            docb[b] = s->idx >= 0 ? s->doc_start : 0;
        }
        double t0 = yf_time();
        rc = yf_model_forward_cached(m, lo, st, 0, posb, docb, step_ids, B, 1, logits, true);
        if (stats) stats->decode_s += yf_time() - t0, stats->decode_tokens += live;
        if (rc) break;
        for (int64_t b = 0; b < B; b++) {
            seq *s = &sq[b];
            if (s->idx < 0) continue;
            s->pos++;
            s->doc_start = docb[b];
            if (emit(s, logits + b * V, V, o, &out[s->idx])) s->idx = -1, live--;
        }
    }
    for (int64_t b = 0; b < B; b++) free(sq[b].hist);
    if (rc) yf_gen_out_free(out, n);
    yf_layer_states_free(st, m);
    free(logits), free(view), free(sq), free(posb), free(docb), free(step_ids), free(fill);
    return rc;
}
