/* The training data pipeline: records, template, labels, truncation,
 * padding, the pre-tokenised file, malformed records; the real tokenizer
 * against the golden ids. */
#include "harness.h"
#include "task/data.h"
#include "tokenizer/tokenizer.h"

#include <stdlib.h>
#include <string.h>

/* A toy encoder: "<sep>" → 1000, "<eod>" → 1001, every other byte its value. */
#define SEP 1000
#define EOD 1001
static int toy_encode(const void *ctx, const char *text, size_t len, int64_t **ids, size_t *n) {
    (void)ctx;
    int64_t *v = malloc((len + 1) * sizeof *v);
    size_t k = 0;
    for (size_t i = 0; i < len;) {
        if (len - i >= 5 && !memcmp(text + i, "<sep>", 5)) v[k++] = SEP, i += 5;
        else if (len - i >= 5 && !memcmp(text + i, "<eod>", 5)) v[k++] = EOD, i += 5;
        else v[k++] = (unsigned char)text[i++];
    }
    *ids = v;
    *n = k;
    return 0;
}
static const yf_encoder toy = {toy_encode, NULL, EOD};

static const char *write_tmp(const char *name, const char *text) {
    static char path[700];
    snprintf(path, sizeof path, "%s/%s", yt_tmpdir(), name);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "cannot create %s", path);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
    return path;
}

static yf_records one(const char *input, const char *output) {
    yf_records r = {calloc(1, sizeof(yf_record)), 1};
    r.r[0] = (yf_record){strdup(input), strdup(output), 1};
    return r;
}

TEST(data_template_resume_and_none) {
    yf_template t;
    CHECK(yf_template_load("resume", &t) == 0);
    char *p = yf_template_apply(&t, "李四，汉族");
    CHECK(!strncmp(p, "# 任务描述\n假设你是一个AI简历助手", strlen("# 任务描述\n假设你是一个AI简历助手")), "start: %.40s", p);
    CHECK(strstr(p, "\n# 当前简历\n李四，汉族\n\n# 任务重述\n") != NULL, "%s", p);
    const char *end = "识别出当前简历中所有的命名实体，并以json格式返回结果。";
    CHECK(strlen(p) > strlen(end) && !strcmp(p + strlen(p) - strlen(end), end), "no trailing newline (the recipe strips)");
    CHECK(strstr(p, "query") == NULL && strstr(p, "{\"姓名\": [\"张三\"], \"国籍\": [\"中国\"], \"职位\": [\"工程师\"]}\n"));
    free(p);
    yf_template_free(&t);
    CHECK(yf_template_load("none", &t) == 0);
    p = yf_template_apply(&t, "  as is \n");
    CHECK(!strcmp(p, "  as is \n"), "none keeps the input: '%s'", p);
    free(p);
    yf_template_free(&t);
    const char *path = write_tmp("t.txt", "\nQ: {input}\nAgain: {input}\nA:\n");
    CHECK(yf_template_load(path, &t) == 0, "%s", yf_last_error());
    p = yf_template_apply(&t, "x{input}y");
    CHECK(!strcmp(p, "Q: x{input}y\nAgain: x{input}y\nA:"), "got '%s'", p);
    free(p);
    yf_template_free(&t);
}

TEST(data_bad_template_files) {
    yf_template t;
    const char *path = write_tmp("t.txt", "no placeholder here\n");
    CHECK(yf_template_load(path, &t) == -1 && strstr(yf_last_error(), "no {input} placeholder"), "%s", yf_last_error());
    CHECK(yf_template_load("/nonexistent/template.txt", &t) == -1 && strstr(yf_last_error(), "resume"), "%s", yf_last_error());
}

TEST(data_labels_mask_the_prompt) {
    yf_records r = one("ab", "{}");
    yf_template t = {0}; /* none */
    yf_dataset ds;
    CHECK(yf_dataset_build(&r, &t, &toy, 384, &ds) == 0, "%s", yf_last_error());
    const int64_t ids[] = {'a', 'b', SEP, '{', '}', EOD}, lab[] = {-100, -100, -100, '{', '}', EOD};
    CHECK(ds.n == 1 && ds.ex[0].len == 6 && ds.ex[0].prompt_len == 3);
    for (int i = 0; i < 6 && ds.n == 1 && ds.ex[0].len == 6; i++)
        CHECK(ds.ex[0].ids[i] == ids[i] && ds.ex[0].labels[i] == lab[i], "position %d: %lld / %lld", i,
              (long long)ds.ex[0].ids[i], (long long)ds.ex[0].labels[i]);
    CHECK(ds.pad_id == EOD && ds.n_truncated == 0 && ds.n_no_answer == 0 && ds.longest == 6);
    yf_dataset_free(&ds);
    /* the resume template: prompt = template(input) + <sep> */
    yf_template_load("resume", &t);
    CHECK(yf_dataset_build(&r, &t, &toy, 0, &ds) == 0);
    char *p = yf_template_apply(&t, "ab");
    int64_t np = (int64_t)strlen(p) + 1;
    CHECK(ds.ex[0].prompt_len == np && ds.ex[0].len == np + 3 && ds.ex[0].ids[np - 1] == SEP && ds.ex[0].labels[np - 1] == -100 &&
          ds.ex[0].labels[np] == '{');
    int64_t *ids2;
    size_t n2;
    CHECK(yf_prompt_ids(&t, &toy, "ab", &ids2, &n2) == 0 && (int64_t)n2 == np && ids2[n2 - 1] == SEP && ids2[0] == '#',
          "inference prompt = the training prompt");
    free(ids2);
    free(p);
    yf_dataset_free(&ds);
    yf_template_free(&t);
    yf_records_free(&r);
}

TEST(data_truncation) {
    yf_records r = one("abc", "xyz");
    yf_template t = {0};
    yf_dataset ds;
    /* full: a b c SEP x y z EOD (8) */
    CHECK(yf_dataset_build(&r, &t, &toy, 5, &ds) == 0);
    CHECK(ds.ex[0].len == 5 && ds.ex[0].ids[4] == 'x' && ds.ex[0].labels[4] == 'x' && ds.ex[0].labels[3] == -100);
    CHECK(ds.n_truncated == 1 && ds.n_no_answer == 0 && ds.longest == 5);
    yf_dataset_free(&ds);
    CHECK(yf_dataset_build(&r, &t, &toy, 3, &ds) == 0);
    CHECK(ds.ex[0].len == 3 && ds.ex[0].prompt_len == 3 && ds.n_no_answer == 1, "the answer cut off entirely");
    yf_dataset_free(&ds);
    CHECK(yf_dataset_build(&r, &t, &toy, 8, &ds) == 0);
    CHECK(ds.ex[0].len == 8 && ds.n_truncated == 0 && ds.ex[0].ids[7] == EOD);
    yf_dataset_free(&ds);
    yf_records_free(&r);
}

TEST(data_batch_pads_right) {
    const char *path = write_tmp("d.jsonl", "{\"input\": \"a\", \"output\": \"b\"}\n\n{\"input\": \"long\", \"output\": \"answer\"}\n");
    yf_records r;
    CHECK(yf_data_load(path, &r) == 0, "%s", yf_last_error());
    yf_template t = {0};
    yf_dataset ds;
    CHECK(yf_dataset_build(&r, &t, &toy, 0, &ds) == 0);
    size_t idx[3] = {0, 1, 0};
    yf_batch b;
    yf_batch_make(&ds, idx, 3, &b);
    /* row lengths: a SEP b EOD = 4; l o n g SEP a n s w e r EOD = 12 */
    CHECK(b.B == 3 && b.T == 12 && b.lengths[0] == 4 && b.lengths[1] == 12 && b.lengths[2] == 4, "B %lld T %lld", (long long)b.B, (long long)b.T);
    if (b.T == 12) {
        const int64_t row0[] = {'a', SEP, 'b', EOD}, lab0[] = {-100, -100, 'b', EOD};
        for (int i = 0; i < 12; i++) {
            CHECK(b.input_ids[i] == (i < 4 ? row0[i] : EOD), "ids[0][%d] = %lld", i, (long long)b.input_ids[i]);
            CHECK(b.labels[i] == (i < 4 ? lab0[i] : -100), "labels[0][%d] = %lld", i, (long long)b.labels[i]);
            CHECK(b.input_ids[24 + i] == b.input_ids[i] && b.labels[24 + i] == b.labels[i]);
        }
        CHECK(b.input_ids[12 + 11] == EOD && b.labels[12 + 11] == EOD && b.labels[12 + 4] == -100 && b.labels[12 + 5] == 'a');
    }
    CHECK(b.n_scored == 2 + 7 + 2, "n_scored %lld", (long long)b.n_scored);
    yf_batch_free(&b);
    yf_batch_make(&ds, idx, 1, &b);
    CHECK(b.T == 4, "a batch is padded to its own longest row only");
    yf_batch_free(&b);
    yf_dataset_free(&ds);
    yf_records_free(&r);
}

TEST(data_load_array_and_lines) {
    const char *arr = write_tmp("a.json", "\xef\xbb\xbf[\n  {\"instruction\": \"ignored\", \"input\": \"甲\", \"output\": \"{}\"},\n"
                                          "  {\"output\": \"{\\\"姓名\\\": [\\\"乙\\\"]}\", \"input\": \"乙\\n\"}\n]\n");
    yf_records r;
    CHECK(yf_data_load(arr, &r) == 0, "%s", yf_last_error());
    CHECK(r.n == 2 && !strcmp(r.r[0].input, "甲") && !strcmp(r.r[1].input, "乙\n") && !strcmp(r.r[1].output, "{\"姓名\": [\"乙\"]}") &&
          r.r[0].line == 2 && r.r[1].line == 3);
    yf_records_free(&r);
    const char *jl = write_tmp("a.jsonl", "{\"input\": \"甲\", \"output\": \"{}\"}\r\n   \n{\"input\": \"乙\", \"output\": \"x\"}");
    CHECK(yf_data_load(jl, &r) == 0, "%s", yf_last_error());
    CHECK(r.n == 2 && r.r[1].line == 3 && !strcmp(r.r[1].output, "x"));
    yf_records_free(&r);
    CHECK(yf_data_load(write_tmp("e.json", "[]"), &r) == -1 && strstr(yf_last_error(), "no records"));
}

/* Loading fails with file:line and what is wrong; nothing is returned. */
static void expect_load_error(const char *name, const char *text, int line, const char *what) {
    const char *path = write_tmp(name, text);
    char want[800];
    if (line) snprintf(want, sizeof want, "%s:%d: ", path, line);
    else snprintf(want, sizeof want, "%s: ", path);
    yf_records r = {(yf_record *)1, 99};
    int rc = yf_data_load(path, &r);
    CHECK(rc == -1 && r.n == 0 && r.r == NULL, "%s: accepted", name);
    CHECK(strstr(yf_last_error(), want) && strstr(yf_last_error(), what), "%s: '%s', want '%s' and '%s'", name, yf_last_error(),
          want, what);
}

TEST(data_bad_malformed_json_line) {
    expect_load_error("m1.jsonl", "{\"input\": \"a\", \"output\": \"{}\"}\n\n{\"input\": \"b\", \"output\": \"{}\"\n", 3, "invalid JSON");
    expect_load_error("m2.jsonl", "{\"input\": \"a\", \"output\": \"{}\"} {\"input\": \"b\"}\n", 1, "text after the record");
    expect_load_error("m3.json", "[\n{\"input\": \"a\", \"output\": \"{}\"},\n{\"input\": \"b\", \"output\": }\n]", 3, "invalid JSON");
    expect_load_error("m4.json", "[\n{\"input\": \"a\", \"output\": \"{}\"}\n{\"input\": \"b\", \"output\": \"{}\"}\n]", 3, "expected ',' or ']'");
    expect_load_error("m5.json", "[\n{\"input\": \"a\", \"output\": \"{}\"},\n", 3, "not closed");
    expect_load_error("m6.json", "[{\"input\": \"a\", \"output\": \"{}\"}]\n]", 2, "text after the JSON array");
    expect_load_error("m7.jsonl", "{\"input\": \"\xff\", \"output\": \"{}\"}\n", 1, "not UTF-8");
    expect_load_error("m8.jsonl", "", 0, "no records");
}

TEST(data_bad_missing_output) {
    expect_load_error("o1.jsonl", "{\"input\": \"a\", \"output\": \"{}\"}\n{\"input\": \"b\", \"answer\": \"{}\"}\n", 2,
                      "no \"output\" key");
    expect_load_error("o2.json", "[\n  {\"input\": \"a\", \"output\": \"{}\"},\n  {\"output\": \"{}\"}\n]", 3, "no \"input\" key");
}

TEST(data_bad_wrong_types) {
    expect_load_error("w1.jsonl", "{\"input\": \"a\", \"output\": 5}\n", 1, "\"output\" must be a UTF-8 string, got a number");
    expect_load_error("w2.jsonl", "{\"input\": \"a\", \"output\": {\"姓名\": []}}\n", 1, "got an object");
    expect_load_error("w3.jsonl", "{\"input\": null, \"output\": \"{}\"}\n", 1, "\"input\" must be a UTF-8 string, got null");
    expect_load_error("w4.jsonl", "[\"input\", \"output\"]\n", 1, "must be a JSON object");
    expect_load_error("w5.json", "[\n\"just a string\"\n]", 2, "must be a JSON object with \"input\" and \"output\", got a string");
}

TEST(data_save_and_load_pretokenised) {
    const char *path = write_tmp("d.jsonl", "{\"input\": \"a\", \"output\": \"b\"}\n{\"input\": \"long\", \"output\": \"answer\"}\n");
    yf_records r;
    CHECK(yf_data_load(path, &r) == 0);
    yf_template t = {0};
    yf_dataset ds, back;
    CHECK(yf_dataset_build(&r, &t, &toy, 10, &ds) == 0);
    char st[700];
    snprintf(st, sizeof st, "%s/d.safetensors", yt_tmpdir());
    CHECK(yf_dataset_save(&ds, st) == 0, "%s", yf_last_error());
    CHECK(yf_dataset_load(st, -1, &back) == 0, "%s", yf_last_error());
    CHECK(back.n == 2 && back.pad_id == EOD && back.longest == 10 && back.n_no_answer == 0);
    for (size_t i = 0; i < back.n && back.n == 2; i++) {
        CHECK(back.ex[i].len == ds.ex[i].len && back.ex[i].prompt_len == ds.ex[i].prompt_len);
        CHECK(!memcmp(back.ex[i].ids, ds.ex[i].ids, (size_t)ds.ex[i].len * 8) &&
              !memcmp(back.ex[i].labels, ds.ex[i].labels, (size_t)ds.ex[i].len * 8));
    }
    yf_dataset_free(&back);
    yf_dataset_free(&ds);
    yf_records_free(&r);
}

/* ---- with the real tokenizer ---------------------------------------------- */

static yf_tokenizer *real_tokenizer(void) {
    const char *path = yt_shared_path("yuan/tokenizer.model");
    yf_tokenizer *tok = NULL;
    if (yf_tokenizer_load(path, &tok)) yt_skip("tokenizer does not load: %s", yf_last_error());
    return tok;
}

/* golden/tokenizer/yuan-cases.jsonl: '王小明<sep>{"姓名": ["王小明"]}<eod>' —
 * the template-free record gives exactly those ids, labels from the '{'. */
TEST(data_real_tokenizer_matches_golden) {
    yf_tokenizer *tok = real_tokenizer();
    yf_encoder enc;
    CHECK(yf_encoder_from_tokenizer(tok, &enc) == 0 && enc.eod_id == 77185);
    const int64_t want[] = {29871, 30462, 71837, 77187, 8853, 37908, 1115, 6796, 30462, 71837, 121818, 77185};
    yf_records r = one("王小明", "{\"姓名\": [\"王小明\"]}");
    yf_template t = {0};
    yf_dataset ds;
    CHECK(yf_dataset_build(&r, &t, &enc, 384, &ds) == 0, "%s", yf_last_error());
    CHECK(ds.ex[0].len == 12 && ds.ex[0].prompt_len == 4, "len %lld prompt %lld", (long long)ds.ex[0].len, (long long)ds.ex[0].prompt_len);
    for (int i = 0; i < 12 && ds.ex[0].len == 12; i++) {
        CHECK(ds.ex[0].ids[i] == want[i], "ids[%d] = %lld, want %lld", i, (long long)ds.ex[0].ids[i], (long long)want[i]);
        CHECK(ds.ex[0].labels[i] == (i < 4 ? -100 : want[i]), "labels[%d]", i);
    }
    yf_dataset_free(&ds);
    yf_records_free(&r);
    yf_tokenizer_free(tok);
}

/* The dev set through the resume template: every record tokenises; none is
 * cut at 384 (the longest is 331 tokens, 463 records, 94,569 tokens, measured
 * and checked against Python sentencepiece when written). */
TEST(data_real_tokenizer_dev_set) {
    const char *bmes = yt_shared_path("data/resume-ner/dev.char.bmes");
    char data[700], out[4096];
    snprintf(data, sizeof data, "%s/dev.jsonl", yt_tmpdir());
    int rc = yt_sh(out, sizeof out, "%s data resume-ner --bmes %s --output-file %s", yt_cli(), bmes, data);
    CHECK(rc == 0, "%s", out);
    yf_tokenizer *tok = real_tokenizer();
    yf_encoder enc;
    yf_encoder_from_tokenizer(tok, &enc);
    yf_records r;
    yf_template t;
    yf_dataset ds;
    CHECK(yf_data_load(data, &r) == 0 && yf_template_load("resume", &t) == 0);
    CHECK(yf_dataset_build(&r, &t, &enc, YF_DEFAULT_MAX_LENGTH, &ds) == 0, "%s", yf_last_error());
    int64_t tokens = 0;
    for (size_t i = 0; i < ds.n; i++) tokens += ds.ex[i].len;
    CHECK(ds.n == 463 && ds.longest == 331 && ds.n_truncated == 0 && tokens == 94569, "n %zu longest %lld tokens %lld", ds.n,
          (long long)ds.longest, (long long)tokens);
    /* every prompt ends with <sep>, every example with <eod> */
    for (size_t i = 0; i < ds.n; i++)
        if (ds.ex[i].ids[ds.ex[i].prompt_len - 1] != 77187 || ds.ex[i].ids[ds.ex[i].len - 1] != 77185) {
            CHECK(0, "example %zu", i);
            break;
        }
    yf_dataset_free(&ds);
    yf_template_free(&t);
    yf_records_free(&r);
    yf_tokenizer_free(tok);
}

TEST(data_cli_check_and_tokenize) {
    char out[4096];
    const char *good = write_tmp("g.jsonl", "{\"input\": \"王小明\", \"output\": \"{\\\"姓名\\\": [\\\"王小明\\\"]}\"}\n");
    int rc = yt_sh(out, sizeof out, "%s data check --data %s", yt_cli(), good);
    CHECK(rc == 0 && strstr(out, "1 records"), "exit %d: %s", rc, out);
    rc = yt_sh(out, sizeof out,
               "%s data tokenize --data %s --tokenizer %s --prompt-template none --output-file %s/g.safetensors", yt_cli(),
               good, yt_shared_path("yuan/tokenizer.model"), yt_tmpdir());
    CHECK(rc == 0 && strstr(out, "1 examples, 12 tokens (8 answer tokens)"), "exit %d: %s", rc, out);
    const char *bad = write_tmp("b.jsonl", "{\"input\": \"a\", \"output\": \"{}\"}\n{\"input\": \"b\"}\n");
    rc = yt_sh(out, sizeof out, "%s data check --data %s", yt_cli(), bad);
    CHECK(rc == 1 && strstr(out, "b.jsonl:2: the record has no \"output\" key"), "exit %d: %s", rc, out);
}
