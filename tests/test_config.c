#include "formats/config.h"
#include "harness.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

TEST(config_load_golden_tiny) {
    yf_config c;
    int rc = yf_config_load(yt_shared_path("golden/yuan-tiny/config.json"), &c);
    CHECK(rc == 0, "%s", yf_last_error());
    CHECK(c.vocab_size == 320 && c.hidden_size == 64 && c.intermediate_size == 96);
    CHECK(c.num_hidden_layers == 2 && c.num_attention_heads == 4);
    CHECK(c.max_position_embeddings == 256);
    CHECK(c.eod_token == 3 && c.sep_token == 4 && c.pad_token_id == 3);
    CHECK(c.tie_word_embeddings && c.reset_attention_mask && !c.use_loss_mask);
    CHECK(c.rms_norm_eps == 1e-6f && c.rope_theta == 10000.0f);
    CHECK(strcmp(c.torch_dtype, "float32") == 0, "torch_dtype %s", c.torch_dtype);
}

TEST(config_load_yuan2_2b) {
    yf_config c;
    int rc = yf_config_load(yt_shared_path("yuan/config-2b.json"), &c);
    CHECK(rc == 0, "%s", yf_last_error());
    CHECK(c.vocab_size == 135040 && c.hidden_size == 2048 && c.intermediate_size == 8192);
    CHECK(c.num_hidden_layers == 24 && c.num_attention_heads == 32);
    CHECK(c.eod_token == 77185 && c.sep_token == 77187);
    CHECK(strcmp(c.torch_dtype, "bfloat16") == 0);
}

TEST(config_defaults_when_absent) {
    yf_config c;
    int rc = yf_config_parse("{\"vocab_size\": 135040, \"hidden_size\": 2048, \"intermediate_size\": 8192,"
                             " \"num_hidden_layers\": 24, \"num_attention_heads\": 32}",
                             "mem.json", &c);
    CHECK(rc == 0, "%s", yf_last_error());
    CHECK(c.rms_norm_eps == 1e-6f && c.rope_theta == 10000.0f);
    CHECK(c.tie_word_embeddings && c.reset_attention_mask && !c.use_loss_mask);
    CHECK(c.eod_token == 77185 && c.sep_token == 77187 && c.pad_token_id == 77185);
    CHECK(c.max_position_embeddings == 8192);
    CHECK(strcmp(c.torch_dtype, "float32") == 0);
    /* null ids are what HF writes for unset ones: treated as absent */
    rc = yf_config_parse("{\"vocab_size\": 320, \"hidden_size\": 64, \"intermediate_size\": 96, \"num_hidden_layers\": 1,"
                         " \"num_attention_heads\": 4, \"eod_token\": 3, \"sep_token\": 4, \"pad_token_id\": null,"
                         " \"rope_theta\": 500000.0, \"tie_word_embeddings\": false}",
                         "mem.json", &c);
    CHECK(rc == 0, "%s", yf_last_error());
    CHECK(c.pad_token_id == 3 && c.rope_theta == 500000.0f && !c.tie_word_embeddings);
}

TEST(config_save_round_trip) {
    yf_config a, b;
    CHECK(yf_config_load(yt_shared_path("golden/yuan-tiny/config.json"), &a) == 0, "%s", yf_last_error());
    a.rope_theta = 20000.0f;
    a.use_loss_mask = true;
    char path[600];
    snprintf(path, sizeof path, "%s/config.json", yt_tmpdir());
    CHECK(yf_config_save(path, &a) == 0, "%s", yf_last_error());
    CHECK(yf_config_load(path, &b) == 0, "%s", yf_last_error());
    CHECK(memcmp(&a, &b, sizeof a) == 0, "reloaded config differs");
    /* what HF's AutoConfig needs to pick the Yuan class */
    char *text = NULL;
    CHECK(yf_read_file(path, &text, NULL) == 0);
    if (text) {
        CHECK(strstr(text, "\"model_type\": \"yuan\"") != NULL, "%s", text);
        CHECK(strstr(text, "YuanForCausalLM") != NULL);
        CHECK(strstr(text, "\"rms_norm_eps\": 1e-06") != NULL, "eps written as %s", strstr(text, "rms_norm_eps"));
    }
    free(text);
}

/* Each malformed config must fail with a message naming the file and the problem. */
static void expect_bad(const char *json, const char *needle) {
    yf_config c;
    yf_clear_error();
    int rc = yf_config_parse(json, "bad-config.json", &c);
    CHECK(rc == -1, "accepted: %s", json);
    const char *e = yf_last_error();
    CHECK(strstr(e, "bad-config.json") != NULL, "error does not name the file: %s", e);
    CHECK(strstr(e, needle) != NULL, "error '%s' does not mention '%s'", e, needle);
    CHECK(strchr(e, '\n') == NULL, "error is not one line: %s", e);
}

TEST(config_bad_missing_fields) {
    const char *fields[] = {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                            "num_attention_heads"};
    for (int skip = 0; skip < 5; skip++) {
        char json[512] = "{";
        long vals[] = {320, 64, 96, 2, 4};
        for (int i = 0; i < 5; i++) {
            if (i == skip) continue;
            size_t n = strlen(json);
            snprintf(json + n, sizeof json - n, "%s\"%s\": %ld", n > 1 ? ", " : "", fields[i], vals[i]);
        }
        strcat(json, ", \"eod_token\": 3, \"sep_token\": 4}");
        expect_bad(json, fields[skip]);
    }
}

#define TINY_FIELDS "\"vocab_size\": 320, \"intermediate_size\": 96, \"num_hidden_layers\": 2, \"eod_token\": 3, \"sep_token\": 4"

TEST(config_bad_inconsistent_fields) {
    expect_bad("{" TINY_FIELDS ", \"hidden_size\": 64, \"num_attention_heads\": 5}", "not divisible");
    expect_bad("{" TINY_FIELDS ", \"hidden_size\": 60, \"num_attention_heads\": 4}", "even");
    expect_bad("{" TINY_FIELDS ", \"hidden_size\": -64, \"num_attention_heads\": 4}", "hidden_size");
    expect_bad("{" TINY_FIELDS ", \"hidden_size\": \"64\", \"num_attention_heads\": 4}", "hidden_size");
    expect_bad("{" TINY_FIELDS ", \"hidden_size\": 64.5, \"num_attention_heads\": 4}", "hidden_size");
    expect_bad("{" TINY_FIELDS ", \"hidden_size\": 64, \"num_attention_heads\": 4, \"rms_norm_eps\": 0}",
               "rms_norm_eps");
    expect_bad("{" TINY_FIELDS ", \"hidden_size\": 64, \"num_attention_heads\": 4, \"tie_word_embeddings\": 1}",
               "tie_word_embeddings");
    expect_bad("{" TINY_FIELDS ", \"hidden_size\": 64, \"num_attention_heads\": 4, \"model_type\": \"llama\"}",
               "model_type");
    expect_bad("{" TINY_FIELDS ", \"hidden_size\": 64, \"num_attention_heads\": 4, \"torch_dtype\": \"int8\"}",
               "torch_dtype");
    /* the default <eod> id 77185 does not fit a 320-token vocabulary */
    expect_bad("{\"vocab_size\": 320, \"hidden_size\": 64, \"intermediate_size\": 96, \"num_hidden_layers\": 2,"
               " \"num_attention_heads\": 4}",
               "eod_token");
    expect_bad("{\"vocab_size\": 320, ", "not valid JSON");
    expect_bad("[1, 2]", "object");
}

TEST(config_bad_unreadable_file) {
    yf_config c;
    char path[600];
    snprintf(path, sizeof path, "%s/no-such-config.json", yt_tmpdir());
    CHECK(yf_config_load(path, &c) == -1);
    CHECK(strstr(yf_last_error(), "no-such-config.json") != NULL, "%s", yf_last_error());
}
