/* Parameter counts and PEFT's print_trainable_parameters line. */
#include "harness.h"
#include "lora/params.h"

#include <string.h>

TEST(params_yuan2b_lora_r8_seven_projections) {
    yf_config c;
    CHECK(yf_config_load(yt_shared_path("yuan/config-2b.json"), &c) == 0, "%s", yf_last_error());
    yf_lora_cfg lc = {.r = 8, .alpha = 32, .targets = (1u << YF_NPROJ) - 1};
    yf_param_counts n;
    CHECK(yf_count_params(&c, &lc, &n) == 0, "%s", yf_last_error());
    CHECK(n.base == 2088724480LL, "base %lld", (long long)n.base);
    CHECK(n.adapter == 9043968LL, "adapter %lld", (long long)n.adapter);
    char line[160];
    yf_format_trainable(line, sizeof line, n.adapter, n.base + n.adapter);
    CHECK(!strcmp(line, "trainable params: 9,043,968 || all params: 2,097,768,448 || trainable%: 0.4311"), "%s", line);
}

TEST(params_dora_adds_magnitudes) {
    yf_config c = {.vocab_size = 320, .hidden_size = 64, .intermediate_size = 96, .num_hidden_layers = 2,
                   .num_attention_heads = 4, .tie_word_embeddings = true};
    /* q and down only: q 4*(64+64), down 4*(96+64), DoRA + 64 + 64 per layer */
    yf_lora_cfg lc = {.r = 4, .alpha = 8, .targets = (1u << YF_Q) | (1u << YF_DOWN)};
    yf_param_counts n;
    CHECK(yf_count_params(&c, &lc, &n) == 0);
    CHECK(n.adapter == 2 * (4 * 128 + 4 * 160), "lora %lld", (long long)n.adapter);
    lc.use_dora = true;
    CHECK(yf_count_params(&c, &lc, &n) == 0);
    CHECK(n.adapter == 2 * (4 * 128 + 4 * 160 + 128), "dora %lld", (long long)n.adapter);
    /* tiny base: embed 320*64, per layer 2 norms + lf_gate + 4 DxD + 3 DxI, final norm */
    int64_t layer = 2 * 64 + (32 * 64 * 2 + 32) + (64 * 32 * 2 + 64) + 64 + 4 * 64 * 64 + 3 * 64 * 96;
    CHECK(n.base == 320 * 64 + 2 * layer + 64, "base %lld", (long long)n.base);
}

TEST(params_bad_rank) {
    yf_config c = {.vocab_size = 320, .hidden_size = 64, .intermediate_size = 96, .num_hidden_layers = 2,
                   .num_attention_heads = 4, .tie_word_embeddings = true};
    yf_lora_cfg lc = {.r = 0, .targets = 1};
    yf_param_counts n;
    CHECK(yf_count_params(&c, &lc, &n) == -1 && strstr(yf_last_error(), "rank"), "%s", yf_last_error());
}

TEST(params_cli_prints_peft_line) {
    char out[512];
    int st = yt_sh(out, sizeof out, "%s params --config %s", yt_cli(), yt_shared_path("yuan/config-2b.json"));
    CHECK(st == 0, "exit %d: %s", st, out);
    CHECK(!strcmp(out, "trainable params: 9,043,968 || all params: 2,097,768,448 || trainable%: 0.4311\n"), "got: %s", out);
}

TEST(params_cli_bad_target_module) {
    char out[512];
    int st = yt_sh(out, sizeof out, "%s params --config %s --target-modules q_proj,qkv_proj 2>&1", yt_cli(),
                   yt_shared_path("yuan/config-2b.json"));
    CHECK(st != 0 && strstr(out, "qkv_proj"), "exit %d: %s", st, out);
    st = yt_sh(out, sizeof out, "%s params --config %s --lora-r 0 2>&1", yt_cli(), yt_shared_path("yuan/config-2b.json"));
    CHECK(st != 0 && strstr(out, "rank"), "exit %d: %s", st, out);
    st = yt_sh(out, sizeof out, "%s params --config /nonexistent/config.json 2>&1", yt_cli());
    CHECK(st != 0 && strstr(out, "/nonexistent/config.json"), "exit %d: %s", st, out);
}
