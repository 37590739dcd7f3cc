#include "generate.h"

#include <stdlib.h>
#include <string.h>

#include "model_internal.h"

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

/* The cache of sequence slot b of a batched state, as a one-sequence state:
 * the layout [B, H, cap, hd] keeps a slot's keys and values contiguous. */
static void slot_view(yf_layer_state *view, const yf_layer_state *s, const yf_model *m, int64_t L, int64_t b) {
    for (int64_t l = 0; l < L; l++) {
        view[l].cap = s[l].cap;
        view[l].k = s[l].k + b * m->H * s[l].cap * m->hd;
        view[l].v = s[l].v + b * m->H * s[l].cap * m->hd;
        view[l].a_prev = s[l].a_prev + b * m->D;
        view[l].c_prev = s[l].c_prev + b * m->D / 2;
    }
}

typedef struct seq {
    int64_t idx;        /* prompt index */
    int64_t pos;        /* positions cached */
    int64_t doc_start;
    int64_t limit;      /* positions allowed in total */
    int64_t *hist;      /* prompt + generated, for the repetition penalty */
    int64_t nhist;
    yf_rng rng;
    bool done;
} seq;

int yf_generate(yf_model *m, const yf_lora *lo, const int64_t *const *prompts, const int64_t *plen, int64_t n,
                const yf_gen_opts *o, yf_gen_out *out, yf_gen_stats *stats) {
    const yf_config *c = &m->cfg;
    if (o->max_new_tokens < 1) return yf_errorf("generate: --max-new-tokens must be at least 1");
    if (yf_sampling_check(&o->samp)) return -1;
    int64_t maxlen = o->max_length > 0 ? o->max_length : c->max_position_embeddings;
    if (maxlen > c->max_position_embeddings) maxlen = c->max_position_embeddings;
    for (int64_t i = 0; i < n; i++) {
        if (plen[i] < 1) return yf_errorf("generate: prompt %lld is empty (a prompt needs at least one token)", (long long)i + 1);
        if (plen[i] >= maxlen)
            return yf_errorf("generate: prompt %lld has %lld tokens, no room to generate within max length %lld",
                             (long long)i + 1, (long long)plen[i], (long long)maxlen);
        for (int64_t t = 0; t < plen[i]; t++)
            if (prompts[i][t] < 0 || prompts[i][t] >= c->vocab_size)
                return yf_errorf("generate: prompt %lld: token id %lld is outside the vocabulary [0, %lld)",
                                 (long long)i + 1, (long long)prompts[i][t], (long long)c->vocab_size);
    }
    memset(out, 0, (size_t)n * sizeof *out);
    if (stats) memset(stats, 0, sizeof *stats);
    int64_t Bmax = o->batch > 0 ? o->batch : 1, V = c->vocab_size, L = m->L;
    float *logits = yf_malloc((size_t)V * sizeof(float));
    yf_layer_state *view = yf_calloc((size_t)L, sizeof *view);
    seq *sq = yf_calloc((size_t)Bmax, sizeof *sq);

    for (int64_t g0 = 0; g0 < n; g0 += Bmax) {
        int64_t B = n - g0 < Bmax ? n - g0 : Bmax, cap = 0;
        for (int64_t b = 0; b < B; b++) {
            int64_t i = g0 + b, lim = plen[i] + o->max_new_tokens;
            if (lim > maxlen) lim = maxlen;
            if (lim > cap) cap = lim;
        }
        yf_layer_state *st = yf_layer_states_alloc(m, B, cap);
        /* prefill: each prompt in one pass into its slot */
        for (int64_t b = 0; b < B; b++) {
            int64_t i = g0 + b;
            seq *s = &sq[b];
            memset(s, 0, sizeof *s);
            s->idx = i;
            s->limit = plen[i] + o->max_new_tokens < maxlen ? plen[i] + o->max_new_tokens : maxlen;
            s->hist = yf_malloc((size_t)s->limit * sizeof(int64_t));
            memcpy(s->hist, prompts[i], (size_t)plen[i] * sizeof(int64_t));
            s->nhist = plen[i];
            yf_rng_seed(&s->rng, o->seed * 1000003ull + (uint64_t)i);
            out[i].ids = yf_malloc((size_t)o->max_new_tokens * sizeof(int64_t));
            slot_view(view, st, m, L, b);
            float *pl = yf_malloc((size_t)(plen[i] * V) * sizeof(float));
            double t0 = yf_time();
            int rc = yf_model_forward_chunk(m, lo, view, 0, &s->doc_start, prompts[i], 1, plen[i], pl);
            if (stats) stats->prefill_s += yf_time() - t0, stats->prefill_tokens += plen[i];
            if (rc) {
                free(pl);
                yf_layer_states_free(st, m);
                for (int64_t k = 0; k <= b; k++) free(sq[k].hist);
                yf_gen_out_free(out, n);
                free(logits), free(view), free(sq);
                return -1;
            }
            memcpy(logits, pl + (plen[i] - 1) * V, (size_t)V * sizeof(float));
            free(pl);
            s->pos = plen[i];
            int64_t id = yf_sample(logits, V, &o->samp, s->hist, s->nhist, &s->rng);
            out[i].ids[out[i].n++] = id;
            s->hist[s->nhist++] = id;
            if (o->on_token) o->on_token(o->ctx, i, id);
            if (id == o->stop_id) out[i].stopped = s->done = true;
            if (out[i].n >= o->max_new_tokens || s->nhist >= s->limit) s->done = true;
        }
        /* decode: one token per live sequence per step */
        for (;;) {
            int64_t live = 0;
            for (int64_t b = 0; b < B; b++) live += !sq[b].done;
            if (!live) break;
            double t0 = yf_time();
            for (int64_t b = 0; b < B; b++) {
                seq *s = &sq[b];
                if (s->done) continue;
                int64_t i = s->idx, last = s->hist[s->nhist - 1];
                slot_view(view, st, m, L, b);
                if (yf_model_forward_chunk(m, lo, view, s->pos, &s->doc_start, &last, 1, 1, logits)) {
                    yf_layer_states_free(st, m);
                    for (int64_t k = 0; k < B; k++) free(sq[k].hist);
                    yf_gen_out_free(out, n);
                    free(logits), free(view), free(sq);
                    return -1;
                }
                s->pos++;
                int64_t id = yf_sample(logits, V, &o->samp, s->hist, s->nhist, &s->rng);
                out[i].ids[out[i].n++] = id;
                s->hist[s->nhist++] = id;
                if (o->on_token) o->on_token(o->ctx, i, id);
                if (id == o->stop_id) out[i].stopped = s->done = true;
                if (out[i].n >= o->max_new_tokens || s->nhist >= s->limit) s->done = true;
            }
            if (stats) stats->decode_s += yf_time() - t0, stats->decode_tokens += live;
        }
        for (int64_t b = 0; b < B; b++) free(sq[b].hist);
        yf_layer_states_free(st, m);
    }
    free(logits);
    free(view);
    free(sq);
    return 0;
}
