/* trainset: the training examples from records (through the real tokenizer)
 * or from a pre-tokenised safetensors file, and the checks on both. */
#include "harness.h"
#include "formats/safetensors.h"
#include "formats/vocab_map.h"
#include "task/data.h"
#include "task/trainset.h"

#include <string.h>
#include <sys/stat.h>

static const char *write_tmp(const char *name, const char *text) {
    static char path[700];
    snprintf(path, sizeof path, "%s/%s", yt_tmpdir(), name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) fputs(text, f), fclose(f);
    return path;
}

/* input_ids / labels [N, T] (and attention_mask when mask != NULL) to a file. */
static const char *write_st(const char *name, const int64_t *ids, const int64_t *lab, const int64_t *mask, int64_t N,
                            int64_t T) {
    static char path[700];
    snprintf(path, sizeof path, "%s/%s", yt_tmpdir(), name);
    size_t nb = (size_t)(N * T) * sizeof(int64_t);
    yf_tensor ts[3] = {{.name = "input_ids", .dtype = YF_I64, .ndim = 2, .shape = {N, T}, .data = (void *)ids, .nbytes = nb},
                       {.name = "labels", .dtype = YF_I64, .ndim = 2, .shape = {N, T}, .data = (void *)lab, .nbytes = nb},
                       {.name = "attention_mask", .dtype = YF_I64, .ndim = 2, .shape = {N, T}, .data = (void *)mask,
                        .nbytes = nb}};
    CHECK(yf_st_save(path, ts, mask ? 3 : 2, NULL) == 0, "%s", yf_last_error());
    return path;
}

/* The record of data_real_tokenizer_matches_golden ('王小明<sep>{"姓名":
 * ["王小明"]}<eod>', 12 ids, 4 of them the prompt) and a shorter one, padded
 * to the longest with <eod> and -100. */
TEST(trainset_records_tokenised_and_padded) {
    const char *data = write_tmp("r.jsonl", "{\"input\": \"王小明\", \"output\": \"{\\\"姓名\\\": [\\\"王小明\\\"]}\"}\n"
                                            "{\"input\": \"王\", \"output\": \"{}\"}\n");
    yf_config cfg = {.vocab_size = 135040, .max_position_embeddings = 512};
    yf_trainset_opts o = {.model_dir = yt_tmpdir(), .tokenizer = yt_shared_path("yuan/tokenizer.model"),
                          .template_spec = "none", .max_length = 384};
    yf_trainset ts;
    CHECK(yf_trainset_load(data, &cfg, &o, &ts) == 0, "%s", yf_last_error());
    const int64_t want[] = {29871, 30462, 71837, 77187, 8853, 37908, 1115, 6796, 30462, 71837, 121818, 77185};
    CHECK(ts.N == 2 && ts.T == 12 && ts.n_records == 2 && ts.n_truncated == 0 && !ts.vocab_mapped, "N %lld T %lld",
          (long long)ts.N, (long long)ts.T);
    if (ts.N == 2 && ts.T == 12) {
        for (int t = 0; t < 12; t++) {
            CHECK(ts.ids[t] == want[t], "ids[0, %d] = %lld, want %lld", t, (long long)ts.ids[t], (long long)want[t]);
            CHECK(ts.labels[t] == (t < 4 ? -100 : want[t]), "labels[0, %d]", t);
        }
        CHECK(ts.len[0] == 12 && ts.len[1] < 12 && ts.len[1] > 2, "len %lld %lld", (long long)ts.len[0], (long long)ts.len[1]);
        for (int64_t t = ts.len[1]; t < 12; t++)
            CHECK(ts.ids[12 + t] == 77185 && ts.labels[12 + t] == -100, "padding at [1, %lld]", (long long)t);
    }
    yf_trainset_free(&ts);
    /* truncated to 6 tokens */
    o.max_length = 6;
    CHECK(yf_trainset_load(data, &cfg, &o, &ts) == 0, "%s", yf_last_error());
    CHECK(ts.T == 6 && ts.n_truncated >= 1 && ts.len[0] == 6, "T %lld, %lld truncated", (long long)ts.T,
          (long long)ts.n_truncated);
    yf_trainset_free(&ts);
}

/* Rows end after their last scored label, or their last attention_mask
 * position, and are at least one position long. */
TEST(trainset_safetensors_row_lengths) {
    const int64_t ids[] = {1, 2, 3, 4, 5, /**/ 6, 7, 8, 9, 9};
    const int64_t lab[] = {-100, 2, 3, -100, -100, /**/ -100, -100, -100, -100, -100};
    const int64_t mask[] = {1, 1, 0, 0, 0, /**/ 1, 1, 1, 1, 0};
    yf_config cfg = {.vocab_size = 10, .max_position_embeddings = 256};
    yf_trainset_opts o = {0};
    yf_trainset ts;
    CHECK(yf_trainset_load(write_st("a.safetensors", ids, lab, NULL, 2, 5), &cfg, &o, &ts) == 0, "%s", yf_last_error());
    CHECK(ts.N == 2 && ts.T == 5 && ts.len[0] == 3 && ts.len[1] == 1 && ts.n_records == 0, "len %lld %lld",
          (long long)ts.len[0], (long long)ts.len[1]);
    yf_trainset_free(&ts);
    CHECK(yf_trainset_load(write_st("m.safetensors", ids, lab, mask, 2, 5), &cfg, &o, &ts) == 0, "%s", yf_last_error());
    CHECK(ts.len[0] == 3 && ts.len[1] == 4, "len %lld %lld", (long long)ts.len[0], (long long)ts.len[1]);
    yf_trainset_free(&ts);
}

static void expect_load_error(const char *path, const yf_config *cfg, const yf_trainset_opts *o, const char *needle) {
    yf_trainset ts;
    int rc = yf_trainset_load(path, cfg, o, &ts);
    CHECK(rc != 0 && strstr(yf_last_error(), needle), "want an error with '%s', got %d: %s", needle, rc,
          rc ? yf_last_error() : "");
    yf_trainset_free(&ts);
}

/* --train-on-inputs: the prompt's ids are labels too, the padding stays -100. */
TEST(trainset_records_train_on_inputs) {
    const char *data = write_tmp("ti.jsonl", "{\"input\": \"王小明\", \"output\": \"{\\\"姓名\\\": [\\\"王小明\\\"]}\"}\n"
                                             "{\"input\": \"王\", \"output\": \"{}\"}\n");
    yf_config cfg = {.vocab_size = 135040, .max_position_embeddings = 512};
    yf_trainset_opts o = {.model_dir = yt_tmpdir(), .tokenizer = yt_shared_path("yuan/tokenizer.model"),
                          .template_spec = "none", .max_length = 384, .train_on_inputs = true};
    yf_trainset ts;
    CHECK(yf_trainset_load(data, &cfg, &o, &ts) == 0, "%s", yf_last_error());
    CHECK(ts.N == 2 && ts.T == 12, "N %lld T %lld", (long long)ts.N, (long long)ts.T);
    if (ts.N == 2 && ts.T == 12) {
        for (int t = 0; t < 12; t++) CHECK(ts.labels[t] == ts.ids[t], "labels[0, %d] = %lld", t, (long long)ts.labels[t]);
        for (int64_t t = 0; t < 12; t++)
            CHECK(ts.labels[12 + t] == (t < ts.len[1] ? ts.ids[12 + t] : -100), "labels[1, %lld]", (long long)t);
    }
    yf_trainset_free(&ts);
}

/* A file of `yuanft data tokenize` holds tokenizer ids: a model with a
 * vocab_map takes them through it (ids outside the map: row 0); a file that
 * does not say it is one is taken as it is. */
TEST(trainset_pretokenised_ids_through_vocab_map) {
    char dir[700];
    snprintf(dir, sizeof dir, "%s/vm-model", yt_tmpdir());
    mkdir(dir, 0755);
    const int64_t keep[] = {0, 500, 77185, 30462};
    yf_vocab_map vm = {0};
    yf_vocab_map_build(&vm, keep, 4);
    CHECK(yf_vocab_map_save(&vm, dir) == 0, "%s", yf_last_error());
    int64_t ids[2] = {30462, 77185}, lab[2] = {-100, 77185}, want_ids[2], want_lab[2] = {-100, 0};
    want_ids[0] = yf_vocab_to_model(&vm, 30462), want_ids[1] = want_lab[1] = yf_vocab_to_model(&vm, 77185);
    yf_example ex = {.ids = ids, .labels = lab, .len = 2, .prompt_len = 1};
    yf_dataset ds = {.ex = &ex, .n = 1, .pad_id = 77185, .max_length = 384, .longest = 2};
    char path[760];
    snprintf(path, sizeof path, "%s/tok.safetensors", yt_tmpdir());
    CHECK(yf_dataset_save(&ds, path) == 0, "%s", yf_last_error());
    yf_config cfg = {.vocab_size = 4, .max_position_embeddings = 512};
    yf_trainset_opts o = {.model_dir = dir};
    yf_trainset ts;
    CHECK(yf_trainset_load(path, &cfg, &o, &ts) == 0, "%s", yf_last_error());
    CHECK(ts.vocab_mapped && ts.N == 1 && ts.T == 2, "mapped %d", ts.vocab_mapped);
    if (ts.N == 1 && ts.T == 2)
        for (int t = 0; t < 2; t++)
            CHECK(ts.ids[t] == want_ids[t] && ts.labels[t] == want_lab[t], "[%d]: id %lld label %lld, want %lld %lld", t,
                  (long long)ts.ids[t], (long long)ts.labels[t], (long long)want_ids[t], (long long)want_lab[t]);
    yf_trainset_free(&ts);
    /* the same tensors without the format metadata: tokenizer ids against a 4-row model */
    const int64_t lab2[2] = {-100, 77185};
    expect_load_error(write_st("raw.safetensors", ids, lab2, NULL, 1, 2), &cfg, &o, "outside the vocabulary");
    yf_vocab_map_free(&vm);
}

TEST(trainset_bad_ids_lengths_and_files) {
    yf_config cfg = {.vocab_size = 10, .max_position_embeddings = 4};
    yf_trainset_opts o = {.model_dir = yt_tmpdir(), .template_spec = "none", .max_length = 384};
    const int64_t ok[] = {1, 2, 3}, big[] = {1, 12, 3}, lab[] = {-100, 2, 3}, badlab[] = {-100, -5, 3};
    expect_load_error(write_st("v.safetensors", big, lab, NULL, 1, 3), &cfg, &o, "outside the vocabulary");
    expect_load_error(write_st("l.safetensors", ok, badlab, NULL, 1, 3), &cfg, &o, "neither -100 nor a token id");
    cfg.max_position_embeddings = 2;
    expect_load_error(write_st("p.safetensors", ok, lab, NULL, 1, 3), &cfg, &o, "max_position_embeddings 2");
    expect_load_error("/nonexistent/train.safetensors", &cfg, &o, "data file not found");
    const char *recs = write_tmp("r.jsonl", "{\"input\": \"王\", \"output\": \"{}\"}\n");
    expect_load_error(recs, &cfg, &o, "tokenizer not found");
    /* the real tokenizer's ids do not fit a 10-id vocabulary; what
     * tokenising did is still reported */
    o.tokenizer = yt_shared_path("yuan/tokenizer.model");
    yf_trainset ts;
    CHECK(yf_trainset_load(recs, &cfg, &o, &ts) != 0 && strstr(yf_last_error(), "outside the vocabulary"));
    CHECK(ts.n_records == 1, "n_records %lld", (long long)ts.n_records);
    yf_trainset_free(&ts);
}
