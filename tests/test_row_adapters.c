/* Batched decoding with an adapter per sequence (what `yuanft serve` runs):
 * every sequence's logits, bit for bit, as when it runs alone with its own
 * adapter; and batches of up to YF_ROWSTABLE_M (32) in yf_generate give
 * the tokens of one prompt at a time. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "test_model_util.h"
#include "model/generate.h"
#include "model/model_internal.h"

enum { NSEQ = YF_ROWSTABLE_M, STEPS = 6 };

static bool load_adapters(yf_model *m, yf_lora lo[2]) {
    static const char *dirs[2] = {"golden/yuan-tiny/lora", "golden/yuan-tiny/dora"};
    for (int i = 0; i < 2; i++)
        if (yf_lora_load(yt_shared_path(dirs[i]), yf_model_config(m), &lo[i])) {
            CHECK(0, "%s: %s", dirs[i], yf_last_error());
            return false;
        }
    return true;
}

static int64_t plen_of(int64_t b) { return 1 + (b * 5) % 11; }
static int64_t tok(int64_t b, int64_t t, int64_t V) { return t == 4 && b % 4 == 1 ? 3 : (b * 37 + t * 11 + 7) % V; }

TEST(row_adapters_batch_equals_each_alone) {
    yf_model *m = yt_load_tiny();
    if (!m) return;
    yf_lora lo[2];
    if (!load_adapters(m, lo)) return;
    int64_t V = m->V, cap = 32;
    const yf_lora *los[2] = {&lo[0], &lo[1]};
    float **dn[2] = {yf_dora_norms_new(m, &lo[0]), yf_dora_norms_new(m, &lo[1])};
    CHECK(dn[0] == NULL && dn[1] != NULL, "LoRA has no DoRA norms, DoRA has");
    int32_t row[NSEQ];
    for (int b = 0; b < NSEQ; b++) row[b] = (int32_t)(b % 3) - 1; /* base, lora, dora, base, ... */

    /* alone: each sequence with its own adapter through the one-adapter path */
    float *alone = yf_malloc((size_t)(NSEQ * (STEPS + 1) * V) * sizeof(float));
    for (int64_t b = 0; b < NSEQ; b++) {
        const yf_lora *l = row[b] < 0 ? NULL : los[row[b]];
        yf_layer_state *st = yf_layer_states_alloc(m, 1, cap);
        int64_t ids[32], doc = 0, n = plen_of(b);
        for (int64_t t = 0; t < n + STEPS; t++) ids[t] = tok(b, t, V);
        CHECK(yf_model_forward_cached(m, l, st, 0, NULL, &doc, ids, 1, n, alone + b * (STEPS + 1) * V, true) == 0,
              "%s", yf_last_error());
        for (int64_t s = 0; s < STEPS; s++)
            CHECK(yf_model_forward_cached(m, l, st, n + s, NULL, &doc, ids + n + s, 1, 1,
                                          alone + (b * (STEPS + 1) + s + 1) * V, true) == 0,
                  "%s", yf_last_error());
        yf_layer_states_free(st, m);
    }

    /* together: prefills one sequence at a time through the per-row path,
     * then decode steps of all NSEQ with mixed adapters */
    yf_layer_state *st = yf_layer_states_alloc(m, NSEQ, cap), view[8];
    float *lg = yf_malloc((size_t)(NSEQ * V) * sizeof(float));
    int64_t posb[NSEQ], docb[NSEQ], ids[NSEQ];
    int bad_prefill = 0, bad_step = 0;
    for (int64_t b = 0; b < NSEQ; b++) {
        int64_t p[32], n = plen_of(b);
        for (int64_t t = 0; t < n; t++) p[t] = tok(b, t, V);
        yf_row_adapters one = {2, los, dn, &row[b]};
        yf_layer_states_slot(view, st, m, b);
        yf_layer_states_restart(view, m);
        docb[b] = 0;
        CHECK(yf_model_forward_cached_rows(m, &one, view, 0, NULL, &docb[b], p, 1, n, lg, true) == 0, "%s",
              yf_last_error());
        bad_prefill += memcmp(lg, alone + b * (STEPS + 1) * V, (size_t)V * sizeof(float)) != 0;
        posb[b] = n;
    }
    yf_row_adapters ra = {2, los, dn, row};
    for (int64_t s = 0; s < STEPS; s++) {
        for (int64_t b = 0; b < NSEQ; b++) ids[b] = tok(b, posb[b], V);
        CHECK(yf_model_forward_cached_rows(m, &ra, st, 0, posb, docb, ids, NSEQ, 1, lg, true) == 0, "%s",
              yf_last_error());
        for (int64_t b = 0; b < NSEQ; b++) {
            bad_step += memcmp(lg + b * V, alone + (b * (STEPS + 1) + s + 1) * V, (size_t)V * sizeof(float)) != 0;
            posb[b]++;
        }
    }
    CHECK(bad_prefill == 0, "%d of %d prefills differ from the one-adapter path", bad_prefill, NSEQ);
    CHECK(bad_step == 0, "%d of %d decoded rows (%d sequences x %d steps, base/LoRA/DoRA mixed) differ from the "
                         "sequence decoded alone", bad_step, NSEQ * STEPS, NSEQ, STEPS);
    /* a row naming no adapter given is an error, not a crash */
    int32_t badrow[1] = {2};
    yf_row_adapters bad = {2, los, dn, badrow};
    int64_t d0 = 0, one_id = 5;
    CHECK(yf_model_forward_cached_rows(m, &bad, view, 0, NULL, &d0, &one_id, 1, 1, lg, true) != 0);
    yf_layer_states_free(st, m);
    free(lg);
    free(alone);
    yf_dora_norms_free(dn[0], m);
    yf_dora_norms_free(dn[1], m);
    yf_lora_free(&lo[0]);
    yf_lora_free(&lo[1]);
    yf_model_free(m);
}

/* yf_generate in one batch of NSEQ against one prompt at a time: the same
 * tokens (greedy), on a model wide enough that an NSEQ-row product would take
 * the packed kernels. */
TEST(row_adapters_generate_batch_equals_one_at_a_time) {
    const char *dir = yt_tmpdir();
    char cj[1024];
    snprintf(cj, sizeof cj, "%s/config.json", dir);
    const char *text = "{\"vocab_size\": 512, \"hidden_size\": 256, \"intermediate_size\": 512, \"num_hidden_layers\": 2, "
                       "\"num_attention_heads\": 4, \"max_position_embeddings\": 64, \"eod_token\": 3, \"sep_token\": 4, "
                       "\"torch_dtype\": \"bfloat16\"}";
    CHECK(yf_write_file_atomic(cj, text, strlen(text)) == 0, "%s", yf_last_error());
    char out[4096];
    int rc = yt_sh(out, sizeof out, "%s init --config %s --out %s/m --dtype bf16 --seed 3", yt_cli(), cj, dir);
    CHECK(rc == 0, "init: %s", out);
    yf_model *m = NULL;
    yf_model_opts mo = {0};
    char md[1024];
    snprintf(md, sizeof md, "%s/m", dir);
    if (rc || yf_model_load(md, &mo, &m)) {
        CHECK(0, "load: %s", yf_last_error());
        return;
    }
    int64_t *pr[NSEQ], lens[NSEQ];
    for (int i = 0; i < NSEQ; i++) {
        lens[i] = plen_of(i);
        pr[i] = yf_malloc((size_t)lens[i] * sizeof(int64_t));
        for (int64_t t = 0; t < lens[i]; t++) pr[i][t] = (i * 31 + t * 17 + 5) % m->V;
    }
    yf_gen_opts o;
    yf_gen_opts_default(&o);
    o.max_new_tokens = 12;
    yf_gen_out one[NSEQ], all[NSEQ];
    o.batch = 1;
    CHECK(yf_generate(m, NULL, (const int64_t *const *)pr, lens, NSEQ, &o, one, NULL) == 0, "%s", yf_last_error());
    o.batch = NSEQ;
    CHECK(yf_generate(m, NULL, (const int64_t *const *)pr, lens, NSEQ, &o, all, NULL) == 0, "%s", yf_last_error());
    int diff = 0;
    for (int i = 0; i < NSEQ; i++) {
        diff += one[i].n != all[i].n;
        for (int64_t t = 0; t < one[i].n && t < all[i].n; t++) diff += one[i].ids[t] != all[i].ids[t];
    }
    CHECK(diff == 0, "a batch of %d and one prompt at a time differ in %d places", NSEQ, diff);
    yf_gen_out_free(one, NSEQ);
    yf_gen_out_free(all, NSEQ);
    for (int i = 0; i < NSEQ; i++) free(pr[i]);
    yf_model_free(m);
}
