/* Generation through the cache: golden greedy ids, cached logits equal to the
 * full forward, batching, edge lengths, the CLI. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/generate.h"
#include "harness.h"
#include "model/model_internal.h"
#include "formats/safetensors.h"

static const int64_t golden_prompt[5] = {279, 71, 43, 4, 4};
static const int64_t golden_new[12] = {256, 256, 67, 67, 128, 158, 139, 232, 209, 209, 170, 289};

static yf_model *load(const char *rel) {
    yf_model *m = NULL;
    yf_model_opts o = {0};
    if (yf_model_load(yt_shared_path(rel), &o, &m)) {
        CHECK(0, "load %s: %s", rel, yf_last_error());
        return NULL;
    }
    return m;
}

/* Max |Δ| between the logits of each cached step (prefill of the first
 * token, then one token at a time) and a full forward over ids[0..n). */
static double cached_vs_full(yf_model *m, const yf_lora *lo, const int64_t *ids, int64_t n, int64_t prefill) {
    int64_t V = m->V;
    float *full = yf_malloc((size_t)(n * V) * sizeof(float)), *step = yf_malloc((size_t)(n * V) * sizeof(float));
    CHECK(yf_model_forward(m, lo, ids, NULL, 1, n, full, NULL, NULL) == 0, "%s", yf_last_error());
    yf_layer_state *st = yf_layer_states_alloc(m, 1, n);
    int64_t doc = 0;
    CHECK(yf_model_forward_chunk(m, lo, st, 0, &doc, ids, 1, prefill, step) == 0, "%s", yf_last_error());
    for (int64_t t = prefill; t < n; t++)
        CHECK(yf_model_forward_chunk(m, lo, st, t, &doc, ids + t, 1, 1, step + t * V) == 0, "%s", yf_last_error());
    double err = yt_max_abs_diff(full, step, (size_t)(n * V));
    yf_layer_states_free(st, m);
    free(full);
    free(step);
    return err;
}

TEST(generate_golden_greedy_ids) {
    yf_model *m = load("golden/yuan-tiny");
    if (!m) return;
    yf_gen_opts o;
    yf_gen_opts_default(&o);
    o.max_new_tokens = 12;
    const int64_t *p = golden_prompt;
    int64_t n = 5;
    yf_gen_out out;
    CHECK(yf_generate(m, NULL, &p, &n, 1, &o, &out, NULL) == 0, "%s", yf_last_error());
    CHECK(out.n == 12, "got %lld ids", (long long)out.n);
    int bad = 0;
    for (int64_t i = 0; i < out.n && i < 12; i++) bad += out.ids[i] != golden_new[i];
    CHECK(bad == 0, "%d of 12 ids differ from golden greedy_new_ids", bad);
    yf_gen_out_free(&out, 1);
    yf_model_free(m);
}

TEST(generate_cached_logits_equal_golden_full_forward) {
    yf_model *m = load("golden/yuan-tiny");
    if (!m) return;
    yf_table t;
    yf_table_init(&t);
    CHECK(yf_st_load(yt_shared_path("golden/yuan-tiny/generate.safetensors"), &t) == 0, "%s", yf_last_error());
    yf_tensor *ids = yf_table_find(&t, "ids"), *ref = yf_table_find(&t, "logits_full_forward");
    CHECK(ids && ref);
    if (!ids || !ref) return;
    int64_t n = ids->shape[1], V = m->V;
    const int64_t *id = ids->data;
    float *step = yf_malloc((size_t)(n * V) * sizeof(float));
    yf_layer_state *st = yf_layer_states_alloc(m, 1, n);
    int64_t doc = 0;
    CHECK(yf_model_forward_chunk(m, NULL, st, 0, &doc, id, 1, 5, step) == 0);
    for (int64_t k = 5; k < n; k++) CHECK(yf_model_forward_chunk(m, NULL, st, k, &doc, id + k, 1, 1, step + k * V) == 0);
    CHECK_NEAR("cached step logits vs golden full forward (max abs)", yt_max_abs_diff(step, ref->data, (size_t)(n * V)), 1e-4);
    yf_layer_states_free(st, m);
    free(step);
    yf_table_free(&t);
    yf_model_free(m);
}

TEST(generate_cached_equals_full_bf16_lora_dora) {
    static const char *models[] = {"golden/yuan-tiny/bf16", "golden/yuan-tiny", "golden/yuan-tiny"};
    static const char *adapters[] = {NULL, "golden/yuan-tiny/lora", "golden/yuan-tiny/dora"};
    int64_t ids[20] = {279, 71, 43, 4, 4, 256, 3, 67, 67, 128, 158, 139, 3, 232, 209, 209, 170, 289, 11, 12};
    for (int k = 0; k < 3; k++) {
        yf_model *m = load(models[k]);
        if (!m) return;
        yf_lora lo;
        bool has = adapters[k] != NULL;
        if (has) CHECK(yf_lora_load(yt_shared_path(adapters[k]), yf_model_config(m), &lo) == 0, "%s", yf_last_error());
        char what[128];
        snprintf(what, sizeof what, "%s%s%s: cached vs full forward, with <eod> resets (max abs)", models[k],
                 has ? " + " : "", has ? adapters[k] : "");
        CHECK_NEAR(what, cached_vs_full(m, has ? &lo : NULL, ids, 20, 3), 1e-4);
        if (has) yf_lora_free(&lo);
        yf_model_free(m);
    }
}

TEST(generate_prompt_of_one_and_at_max_length) {
    yf_model *m = load("golden/yuan-tiny");
    if (!m) return;
    int64_t maxp = m->cfg.max_position_embeddings;
    int64_t *ids = yf_malloc((size_t)maxp * sizeof(int64_t));
    for (int64_t i = 0; i < maxp; i++) ids[i] = (i * 37 + 11) % m->V;
    /* length 1: the zero filtering state */
    CHECK_NEAR("prompt of length 1, 15 cached steps vs full (max abs)", cached_vs_full(m, NULL, ids, 16, 1), 1e-4);
    /* a prompt of max-1 tokens leaves room for exactly one new token */
    yf_gen_opts o;
    yf_gen_opts_default(&o);
    o.max_new_tokens = 8;
    const int64_t *p = ids;
    int64_t n = maxp - 1;
    yf_gen_out out;
    CHECK(yf_generate(m, NULL, &p, &n, 1, &o, &out, NULL) == 0, "%s", yf_last_error());
    CHECK(out.n == 1, "generated %lld tokens at the maximum length", (long long)out.n);
    yf_gen_out_free(&out, 1);
    /* and its cached logits at the last position equal the full forward */
    CHECK_NEAR("max-length sequence, cached vs full (max abs)", cached_vs_full(m, NULL, ids, maxp, maxp - 4), 1e-4);
    n = maxp;
    CHECK(yf_generate(m, NULL, &p, &n, 1, &o, &out, NULL) != 0, "a full-length prompt must be refused");
    free(ids);
    yf_model_free(m);
}

TEST(generate_batched_equals_sequential) {
    yf_model *m = load("golden/yuan-tiny");
    if (!m) return;
    yf_lora lo;
    CHECK(yf_lora_load(yt_shared_path("golden/yuan-tiny/lora"), yf_model_config(m), &lo) == 0, "%s", yf_last_error());
    enum { NP = 5 };
    int64_t lens[NP] = {1, 7, 3, 12, 5};
    int64_t *pr[NP];
    for (int i = 0; i < NP; i++) {
        pr[i] = yf_malloc((size_t)lens[i] * sizeof(int64_t));
        for (int64_t t = 0; t < lens[i]; t++) pr[i][t] = (i * 31 + t * 17 + 5) % m->V;
    }
    for (int mode = 0; mode < 2; mode++) {
        yf_gen_opts o;
        yf_gen_opts_default(&o);
        o.max_new_tokens = 10;
        o.stop_id = 3;
        if (mode == 1) { /* sampling too: per-sequence streams make it batch-independent */
            o.samp.temperature = 0.8f;
            o.samp.top_k = 20;
            o.samp.top_p = 0.9f;
            o.samp.repetition_penalty = 1.3f;
        }
        yf_gen_out seq[NP], bat[NP];
        o.batch = 1;
        CHECK(yf_generate(m, &lo, (const int64_t *const *)pr, lens, NP, &o, seq, NULL) == 0, "%s", yf_last_error());
        o.batch = 3;
        CHECK(yf_generate(m, &lo, (const int64_t *const *)pr, lens, NP, &o, bat, NULL) == 0, "%s", yf_last_error());
        int diff = 0;
        for (int i = 0; i < NP; i++) {
            diff += seq[i].n != bat[i].n;
            for (int64_t t = 0; t < seq[i].n && t < bat[i].n; t++) diff += seq[i].ids[t] != bat[i].ids[t];
        }
        CHECK(diff == 0, "%s: batched and sequential differ in %d places", mode ? "sampling" : "greedy", diff);
        yf_gen_out_free(seq, NP);
        yf_gen_out_free(bat, NP);
    }
    for (int i = 0; i < NP; i++) free(pr[i]);
    yf_lora_free(&lo);
    yf_model_free(m);
}

TEST(generate_cli_golden_ids) {
    char out[4096];
    int rc = yt_sh(out, sizeof out, "%s generate --model %s --prompt-ids 279,71,43,4,4 --max-new-tokens 12 --json 2>/dev/null",
                   yt_cli(), yt_shared_path("golden/yuan-tiny"));
    CHECK(rc == 0, "exit %d: %s", rc, out);
    CHECK(strstr(out, "[256,256,67,67,128,158,139,232,209,209,170,289]") != NULL, "got: %s", out);
}

TEST(generate_cli_bad_input) {
    char out[4096];
    const char *model = yt_shared_path("golden/yuan-tiny");
    int rc = yt_sh(out, sizeof out, "%s generate --model %s --prompt-ids 1,x,3", yt_cli(), model);
    CHECK(rc != 0 && strstr(out, "prompt-ids"), "exit %d: %s", rc, out);
    rc = yt_sh(out, sizeof out, "%s generate --model %s --prompt-ids 1,99999", yt_cli(), model);
    CHECK(rc != 0 && strstr(out, "vocabulary"), "exit %d: %s", rc, out);
    rc = yt_sh(out, sizeof out, "%s generate --model %s --prompt-ids 1 --top-p 0", yt_cli(), model);
    CHECK(rc != 0 && strstr(out, "top-p"), "exit %d: %s", rc, out);
    rc = yt_sh(out, sizeof out, "%s generate --model %s --prompt-ids 1 --max-new-tokens 0", yt_cli(), model);
    CHECK(rc == 2 && strstr(out, "max-new-tokens"), "zero new tokens: exit %d: %s", rc, out);
    rc = yt_sh(out, sizeof out, "%s generate --model %s --prompt hello", yt_cli(), model);
    CHECK(rc != 0 && strstr(out, "tokenizer"), "no tokenizer: exit %d: %s", rc, out);
    rc = yt_sh(out, sizeof out, "%s generate --model %s/nope --prompt-ids 1", yt_cli(), yt_tmpdir());
    CHECK(rc != 0 && strstr(out, "nope"), "missing model: exit %d: %s", rc, out);
}
