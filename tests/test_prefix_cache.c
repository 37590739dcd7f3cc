/* The prefix cache (model/prefix_cache.c) and generation from it: prompts
 * that share a template generate the same ids with and without the cache
 * (greedy and sampled, batched), a sequence started from a held prefix (whole
 * or a part of an entry) has the logits of one prefilled whole, and the
 * cache keeps within its memory budget, dropping the least recently used. */
#include "harness.h"
#include "model/generate.h"
#include "model/model_internal.h"
#include "model/prefix_cache.h"
#include "test_model_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* n prompts: the same `common` ids (an <eod> inside), then 1..9 of their own */
static int64_t **template_prompts(int64_t n, int64_t common, int64_t V, uint64_t seed, int64_t *lens) {
    yf_rng g;
    yf_rng_seed(&g, seed);
    int64_t **p = malloc((size_t)n * sizeof *p);
    for (int64_t i = 0; i < n; i++) {
        lens[i] = common + 1 + (int64_t)(yf_rng_u64(&g) % 9);
        p[i] = malloc((size_t)lens[i] * sizeof(int64_t));
        yf_rng c;
        yf_rng_seed(&c, seed + 99);
        for (int64_t t = 0; t < lens[i]; t++) {
            uint64_t r = t < common ? yf_rng_u64(&c) : yf_rng_u64(&g);
            p[i][t] = t == common / 3 ? 3 : 4 + (int64_t)(r % (uint64_t)(V - 4));
        }
    }
    return p;
}

static int count_diff(const yf_gen_out *a, const yf_gen_out *b, int64_t n) {
    int d = 0;
    for (int64_t i = 0; i < n; i++) {
        d += a[i].n != b[i].n;
        for (int64_t t = 0; t < a[i].n && t < b[i].n; t++) d += a[i].ids[t] != b[i].ids[t];
    }
    return d;
}

static void generate_case(yf_model *m, const yf_lora *lo, const char *what) {
    enum { NP = 7 };
    int64_t lens[NP];
    int64_t **pr = template_prompts(NP, 40, m->V, 5, lens);
    for (int mode = 0; mode < 2; mode++) {
        yf_gen_opts o;
        yf_gen_opts_default(&o);
        o.max_new_tokens = 8;
        o.batch = 3;
        if (mode) o.samp.temperature = 0.9f, o.samp.top_k = 30;
        yf_gen_out whole[NP], cached[NP];
        yf_gen_stats s0, s1;
        CHECK_OK(yf_generate(m, lo, (const int64_t *const *)pr, lens, NP, &o, whole, &s0));
        o.prefix_cache = yf_prefix_cache_new(m, (size_t)64 << 20);
        CHECK_OK(yf_generate(m, lo, (const int64_t *const *)pr, lens, NP, &o, cached, &s1));
        yf_prefix_cache_stats st;
        yf_prefix_cache_get_stats(o.prefix_cache, &st);
        int d = count_diff(whole, cached, NP);
        CHECK(d == 0, "%s, %s: %d ids differ with the prefix cache", what, mode ? "sampled" : "greedy", d);
        CHECK(s1.prefill_reused == NP * 40 && st.tokens_computed == 40 && st.hits == NP,
              "%s: reused %lld tokens, computed %lld, %lld hits", what, (long long)s1.prefill_reused,
              (long long)st.tokens_computed, (long long)st.hits);
        CHECK(s0.prefill_tokens == s1.prefill_tokens && s0.prefill_reused == 0, "prefill tokens %lld vs %lld",
              (long long)s0.prefill_tokens, (long long)s1.prefill_tokens);
        yf_prefix_cache_free(o.prefix_cache);
        yf_gen_out_free(whole, NP);
        yf_gen_out_free(cached, NP);
    }
    for (int i = 0; i < NP; i++) free(pr[i]);
    free(pr);
}

TEST(prefix_cache_generate_identical_ids) {
    yf_config cfg = yt_config(61, 32, 4, 48, 3, 128, true);
    yf_model *m = yt_random_model(&cfg, 1, YF_F32, 4.0f, NULL);
    CHECK(m != NULL, "%s", yf_last_error());
    if (!m) return;
    generate_case(m, NULL, "f32");
    yf_lora lo;
    yf_lora_cfg lc = {.r = 4, .alpha = 8, .use_dora = true, .targets = (1u << YF_NPROJ) - 1};
    CHECK_OK(yf_lora_create(&lo, &cfg, &lc));
    yt_randomize_lora(&lo, 2, 0.2f);
    generate_case(m, &lo, "f32 + DoRA");
    yf_lora_free(&lo);
    yf_model_free(m);
    m = yt_random_model(&cfg, 3, YF_BF16, 4.0f, NULL);
    yf_kernels_set_precision(YF_PREC_BF16);
    generate_case(m, NULL, "bf16");
    yf_kernels_set_precision(YF_PREC_EXACT);
    yf_model_free(m);
}

/* last-position logits of ids[0..n) prefilled whole, or after k positions
 * loaded from the cache */
static void last_logits(yf_model *m, yf_prefix_cache *pc, const int64_t *ids, int64_t n, float *logits, int64_t *k) {
    yf_layer_state *st = yf_layer_states_alloc(m, 1, n);
    yf_layer_states_restart(st, m);
    int64_t doc = 0;
    *k = pc ? yf_prefix_cache_load(pc, ids, n, n - 1, st, &doc) : 0;
    CHECK_OK(yf_model_forward_cached(m, NULL, st, *k, NULL, &doc, ids + *k, 1, n - *k, logits, true));
    yf_layer_states_free(st, m);
}

TEST(prefix_cache_partial_entry_and_lru) {
    yf_config cfg = yt_config(61, 32, 4, 48, 2, 160, true);
    yf_model *m = yt_random_model(&cfg, 10, YF_F32, 4.0f, NULL);
    CHECK(m != NULL);
    if (!m) return;
    int64_t lens[3];
    int64_t **pr = template_prompts(3, 70, m->V, 11, lens); /* 70: over attention's 64-row block */
    yf_prefix_cache *pc = yf_prefix_cache_new(m, (size_t)1 << 30);
    size_t e50 = yf_prefix_cache_entry_bytes(pc, 50);
    CHECK(e50 == (size_t)(50 * 2 * (2 * 32 + 32 + 16)) * 4 + 50 * 8, "entry bytes %zu", e50);
    /* an entry of a whole prompt; another prompt uses its first 70 positions */
    CHECK_OK(yf_prefix_cache_add(pc, m, NULL, pr[0], lens[0]));
    CHECK(yf_prefix_cache_match(pc, pr[1], lens[1]) == 70, "match %lld", (long long)yf_prefix_cache_match(pc, pr[1], lens[1]));
    float *a = malloc((size_t)m->V * sizeof(float)), *b = malloc((size_t)m->V * sizeof(float));
    int64_t k;
    last_logits(m, NULL, pr[1], lens[1], a, &k);
    last_logits(m, pc, pr[1], lens[1], b, &k);
    CHECK(k == 70, "loaded %lld positions", (long long)k);
    CHECK_NEAR("logits after a partial entry vs prefilled whole (max abs)", yt_max_abs_diff(a, b, (size_t)m->V), 1e-5);
    /* the same prompt as the entry: at most n - 1 positions come from it */
    last_logits(m, NULL, pr[0], lens[0], a, &k);
    last_logits(m, pc, pr[0], lens[0], b, &k);
    CHECK(k == lens[0] - 1, "loaded %lld of %lld", (long long)k, (long long)lens[0]);
    CHECK_NEAR("logits after a whole entry vs prefilled whole (max abs)", yt_max_abs_diff(a, b, (size_t)m->V), 1e-5);
    /* extending a held prefix computes only the new positions */
    yf_prefix_cache_stats st;
    yf_prefix_cache_get_stats(pc, &st);
    int64_t before = st.tokens_computed;
    CHECK_OK(yf_prefix_cache_add(pc, m, NULL, pr[1], 72));
    CHECK_OK(yf_prefix_cache_add(pc, m, NULL, pr[1], 60)); /* held: nothing */
    yf_prefix_cache_get_stats(pc, &st);
    CHECK(st.tokens_computed - before == 2 && st.entries == 2, "extension computed %lld, %lld entries",
          (long long)(st.tokens_computed - before), (long long)st.entries);
    yf_prefix_cache_free(pc);

    /* a budget of two 50-position entries: the least recently used goes */
    pc = yf_prefix_cache_new(m, 2 * e50 + 100);
    int64_t other[3][50];
    for (int i = 0; i < 3; i++)
        for (int t = 0; t < 50; t++) other[i][t] = 4 + (i * 13 + t * 7) % 50;
    CHECK_OK(yf_prefix_cache_add(pc, m, NULL, other[0], 50));
    CHECK_OK(yf_prefix_cache_add(pc, m, NULL, other[1], 50));
    CHECK_OK(yf_prefix_cache_add(pc, m, NULL, other[0], 50)); /* used again: now [1] is the oldest */
    CHECK_OK(yf_prefix_cache_add(pc, m, NULL, other[2], 50));
    yf_prefix_cache_get_stats(pc, &st);
    CHECK(st.entries == 2 && st.evicted == 1 && st.bytes <= st.budget, "%lld entries, %lld evicted, %zu of %zu bytes",
          (long long)st.entries, (long long)st.evicted, st.bytes, st.budget);
    CHECK(yf_prefix_cache_match(pc, other[0], 50) == 50 && yf_prefix_cache_match(pc, other[2], 50) == 50,
          "the recently used entries stay");
    CHECK(yf_prefix_cache_match(pc, other[1], 50) < 50, "the least recently used entry was dropped");
    /* bigger than the whole budget: not kept, not an error */
    int64_t big[120];
    for (int t = 0; t < 120; t++) big[t] = 5 + (t * 11) % 50;
    CHECK_OK(yf_prefix_cache_add(pc, m, NULL, big, 120));
    yf_prefix_cache_stats st2;
    yf_prefix_cache_get_stats(pc, &st2);
    CHECK(st2.entries == 2 && st2.tokens_computed == st.tokens_computed && yf_prefix_cache_match(pc, big, 120) < 2,
          "an entry over the budget was kept");
    yf_prefix_cache_clear(pc);
    yf_prefix_cache_get_stats(pc, &st);
    CHECK(st.entries == 0 && st.bytes == 0);
    yf_prefix_cache_free(pc);
    for (int i = 0; i < 3; i++) free(pr[i]);
    free(pr), free(a), free(b);
    yf_model_free(m);
}
