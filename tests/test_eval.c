/* Scoring and the lenient answer parser on hand-made cases. */
#include "harness.h"
#include "task/data.h"
#include "task/eval.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

/* Scores one prediction against one gold answer. */
static yf_eval_result score1(const char *pred, const char *gold) {
    yf_eval_result r;
    const char *p[1] = {pred}, *g[1] = {gold};
    int rc = yf_eval_score(p, g, 1, "gold", &r);
    CHECK(rc == 0, "%s", yf_last_error());
    return r;
}

static bool prf_is(const yf_prf *x, int64_t tp, int64_t fp, int64_t fn) { return x->tp == tp && x->fp == fp && x->fn == fn; }

#define NAME 0
#define TITLE 3
#define ORG 6

TEST(eval_exact_match) {
    const char *g = "{\"姓名\": [\"张三\"], \"职位\": [\"工程师\", \"经理\"]}";
    yf_eval_result r = score1(g, g);
    CHECK(prf_is(&r.micro, 3, 0, 0), "tp %lld fp %lld fn %lld", (long long)r.micro.tp, (long long)r.micro.fp, (long long)r.micro.fn);
    CHECK_NEAR("micro f1", 1.0 - r.micro.f1, 0);
    CHECK(r.n_unparsable == 0 && r.n_recovered == 0);
    /* order within a list and key order do not matter: sets */
    r = score1("{\"职位\": [\"经理\", \"工程师\"], \"姓名\": [\"张三\"]}", g);
    CHECK(prf_is(&r.micro, 3, 0, 0));
}

TEST(eval_partial_match) {
    yf_eval_result r = score1("{\"姓名\": [\"张三\"], \"职位\": [\"工程师\", \"总监\"]}",
                              "{\"姓名\": [\"张三\"], \"职位\": [\"工程师\", \"经理\", \"董事\"]}");
    CHECK(prf_is(&r.per_type[NAME], 1, 0, 0));
    CHECK(prf_is(&r.per_type[TITLE], 1, 1, 2));
    CHECK(prf_is(&r.micro, 2, 1, 2));
    CHECK_NEAR("micro precision 2/3", r.micro.precision - 2.0 / 3, 1e-12);
    CHECK_NEAR("micro recall 2/4", r.micro.recall - 0.5, 1e-12);
    CHECK_NEAR("micro f1 4/7", r.micro.f1 - 4.0 / 7, 1e-12);
    CHECK_NEAR("title f1 0.4", r.per_type[TITLE].f1 - 0.4, 1e-12);
    /* a near miss is a miss: exact strings only */
    r = score1("{\"组织名\": [\"北京大学 \"]}", "{\"组织名\": [\"北京大学\"]}");
    CHECK(prf_is(&r.per_type[ORG], 0, 1, 1));
}

TEST(eval_wrong_type) {
    yf_eval_result r = score1("{\"职位\": [\"张三\"]}", "{\"姓名\": [\"张三\"]}");
    CHECK(prf_is(&r.per_type[NAME], 0, 0, 1));
    CHECK(prf_is(&r.per_type[TITLE], 0, 1, 0));
    CHECK(prf_is(&r.micro, 0, 1, 1));
    CHECK(r.micro.f1 == 0 && r.per_type[NAME].precision == 0, "zero denominators give 0");
    /* keys outside the eight types: false positives of micro only */
    r = score1("{\"公司\": [\"华为\", \"腾讯\"], \"姓名\": [\"张三\", 7]}", "{\"姓名\": [\"张三\"]}");
    CHECK(prf_is(&r.per_type[NAME], 1, 0, 0));
    CHECK(r.n_other == 3 && prf_is(&r.micro, 1, 3, 0), "other %lld", (long long)r.n_other);
}

TEST(eval_duplicates_count_once) {
    yf_eval_result r = score1("{\"姓名\": [\"张三\", \"张三\"], \"职位\": [\"经理\", \"经理\"]}", "{\"姓名\": [\"张三\"]}");
    CHECK(prf_is(&r.per_type[NAME], 1, 0, 0));
    CHECK(prf_is(&r.per_type[TITLE], 0, 1, 0));
    /* a string instead of a list is one entity */
    r = score1("{\"姓名\": \"张三\"}", "{\"姓名\": [\"张三\"]}");
    CHECK(prf_is(&r.micro, 1, 0, 0) && r.n_unparsable == 0);
}

TEST(eval_empty_answers) {
    yf_eval_result r = score1("{}", "{\"姓名\": [\"张三\"], \"职位\": [\"经理\"]}");
    CHECK(prf_is(&r.micro, 0, 0, 2) && r.n_unparsable == 0);
    r = score1("", "{\"姓名\": [\"张三\"]}");
    CHECK(prf_is(&r.micro, 0, 0, 1) && r.n_unparsable == 1);
    r = score1("   \n", "{}");
    CHECK(prf_is(&r.micro, 0, 0, 0) && r.n_unparsable == 1);
    r = score1("{}", "{}");
    CHECK(prf_is(&r.micro, 0, 0, 0) && r.micro.f1 == 0 && r.n_unparsable == 0);
}

static void parse_case(const char *text, yf_ans_status want, const char *name0, const char *title0, int64_t n_name) {
    yf_answer a;
    yf_answer_parse(text, strlen(text), &a);
    CHECK(a.status == want, "'%s': status %d, want %d", text, a.status, want);
    CHECK((int64_t)a.ent[NAME].n == n_name, "'%s': %zu names", text, a.ent[NAME].n);
    if (name0) CHECK(a.ent[NAME].n && !strcmp(a.ent[NAME].s[0], name0), "'%s': first name '%s'", text, a.ent[NAME].n ? a.ent[NAME].s[0] : "");
    if (title0) CHECK(a.ent[TITLE].n && !strcmp(a.ent[TITLE].s[0], title0), "'%s': first title '%s'", text, a.ent[TITLE].n ? a.ent[TITLE].s[0] : "");
    else CHECK(a.ent[TITLE].n == 0, "'%s': %zu titles", text, a.ent[TITLE].n);
    yf_answer_free(&a);
}

TEST(eval_bad_invalid_json) {
    parse_case("not json at all", YF_ANS_UNPARSABLE, NULL, NULL, 0);
    parse_case("姓名: 张三", YF_ANS_UNPARSABLE, NULL, NULL, 0);
    parse_case("[\"张三\"]", YF_ANS_UNPARSABLE, NULL, NULL, 0);
    parse_case("{张三}", YF_ANS_UNPARSABLE, NULL, NULL, 0);
    parse_case("null", YF_ANS_UNPARSABLE, NULL, NULL, 0);
    /* valid JSON with escapes */
    parse_case("{\"\\u59d3\\u540d\": [\"\\u5f20\\u4e09\", \"\\ud83d\\ude00\"]}", YF_ANS_OK, "张三", NULL, 2);
    /* text around the object, the answer quoted once more, a missing comma */
    parse_case("{\"姓名\": [\"张三\"]}<eod>", YF_ANS_RECOVERED, "张三", NULL, 1);
    parse_case("答案：{\"姓名\": [\"张三\"]} 完", YF_ANS_RECOVERED, "张三", NULL, 1);
    parse_case("\"{\\\"姓名\\\": [\\\"张三\\\"]}\"", YF_ANS_RECOVERED, "张三", NULL, 1);
    parse_case("{\"姓名\": [\"张三\" \"李四\"] \"职位\": [\"经理\"]}", YF_ANS_RECOVERED, "张三", "经理", 2);
    parse_case("{\"姓名\": [\"张三\",], \"职位\": [\"经理\"],}", YF_ANS_RECOVERED, "张三", "经理", 1);
    parse_case("{\"姓名\": [\"张三\"}", YF_ANS_RECOVERED, "张三", NULL, 1);
    parse_case("{{\"姓名\": [\"张三\"]}", YF_ANS_RECOVERED, "张三", NULL, 1);
}

TEST(eval_bad_truncated_json) {
    parse_case("{\"姓名\": [\"张三\"], \"职位\": [\"工程师\", \"经", YF_ANS_RECOVERED, "张三", "工程师", 1);
    parse_case("{\"姓名\": [\"张三\"], \"职位\": [\"工程", YF_ANS_RECOVERED, "张三", NULL, 1); /* a cut string is no entity */
    parse_case("{\"姓名\": [\"张三\"], \"职位\": [", YF_ANS_RECOVERED, "张三", NULL, 1);
    parse_case("{\"姓名\": [\"张三\"], \"职位\":", YF_ANS_RECOVERED, "张三", NULL, 1);
    parse_case("{\"姓名\": [\"张三\"], \"职", YF_ANS_RECOVERED, "张三", NULL, 1);
    parse_case("{\"姓名\": [\"张三\"]", YF_ANS_RECOVERED, "张三", NULL, 1);
    parse_case("{\"姓名\": [\"张三\"", YF_ANS_RECOVERED, "张三", NULL, 1);
    parse_case("{\"姓名\": [\"张\\", YF_ANS_RECOVERED, NULL, NULL, 0);
    parse_case("{\"姓名\": [\"张\\u4e", YF_ANS_RECOVERED, NULL, NULL, 0);
    parse_case("{\"姓名\": [\"a\\ud83d\"]", YF_ANS_RECOVERED, "a\xef\xbf\xbd", NULL, 1); /* a lone high surrogate: U+FFFD */
    parse_case("{\"姓名\": \"张三", YF_ANS_RECOVERED, NULL, NULL, 0); /* the recipe's complaint: {"姓名": [" */
    parse_case("{\"姓名\": [\"", YF_ANS_RECOVERED, NULL, NULL, 0);
    parse_case("{", YF_ANS_RECOVERED, NULL, NULL, 0);
    /* the scores of a truncated answer: strict, nothing; lenient, what was complete */
    const char *p[1] = {"{\"姓名\": [\"张三\"], \"职位\": [\"工程"}, *g[1] = {"{\"姓名\": [\"张三\"], \"职位\": [\"工程师\"]}"};
    yf_eval_result r = score1(p[0], g[0]);
    CHECK(prf_is(&r.micro, 0, 0, 2) && r.n_recovered == 0 && r.n_unparsable == 1 && !r.lenient);
    CHECK(yf_eval_score_lenient(p, g, 1, "gold", &r) == 0, "%s", yf_last_error());
    CHECK(prf_is(&r.micro, 1, 0, 1) && r.n_recovered == 1 && r.n_unparsable == 0 && r.lenient);
    CHECK(r.strict.tp == 0 && r.strict.fn == 2, "the strict scores beside the lenient ones");
    /* {"姓名": [" scored no false positive either way */
    p[0] = "{\"姓名\": [\"";
    g[0] = "{}";
    CHECK(yf_eval_score_lenient(p, g, 1, "gold", &r) == 0 && prf_is(&r.micro, 0, 0, 0), "fp %lld", (long long)r.micro.fp);
}

TEST(eval_empty_string_is_no_entity) {
    yf_eval_result r = score1("{\"姓名\": [\"\", \"张三\"], \"组织名\": [\"\"], \"职位\": \"\"}", "{\"姓名\": [\"张三\"]}");
    CHECK(prf_is(&r.micro, 1, 0, 0) && r.n_other == 0, "tp %lld fp %lld fn %lld other %lld", (long long)r.micro.tp,
          (long long)r.micro.fp, (long long)r.micro.fn, (long long)r.n_other);
}

TEST(eval_strict_parser) {
    const char *bad[] = {"{\"姓名\": [\"张三\"]}<eod>", "\"{\\\"姓名\\\": [\\\"张三\\\"]}\"", "{\"姓名\": [\"张三\"],}",
                         "{\"姓名\": [\"张三\"]", "[]", "", "答案：{}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        yf_answer a;
        yf_answer_parse_strict(bad[i], strlen(bad[i]), &a);
        CHECK(a.status == YF_ANS_UNPARSABLE && a.ent[NAME].n == 0, "'%s': status %d", bad[i], a.status);
        yf_answer_free(&a);
    }
    yf_answer a;
    const char *ok = " {\"姓名\": [\"张三\"]}\n";
    yf_answer_parse_strict(ok, strlen(ok), &a);
    CHECK(a.status == YF_ANS_OK && a.ent[NAME].n == 1);
    yf_answer_free(&a);
}

/* Every prefix and many byte-mangled copies of a valid answer parse without a
 * crash (run under ASan too); each comes back OK, RECOVERED or UNPARSABLE. */
TEST(eval_bad_never_crashes) {
    const char *base = "{\"姓名\": [\"张三\", \"李\\\"四\\u0041\"], \"国籍\": \"中国\", \"x\": {\"y\": [1, 2.5e3, null, true]}, "
                       "\"职位\": [\"\\ud83d\\ude00经理\", [\"nested\"]]}";
    size_t n = strlen(base);
    int64_t counts[3] = {0};
    for (size_t k = 0; k <= n; k++) {
        yf_answer a;
        yf_answer_parse(base, k, &a);
        counts[a.status]++;
        yf_answer_free(&a);
    }
    CHECK(counts[YF_ANS_OK] == 1, "only the whole text is valid (%lld)", (long long)counts[YF_ANS_OK]);
    char *m = malloc(n + 1);
    yf_rng rng;
    yf_rng_seed(&rng, 7);
    const char junk[] = "{}[]\",:\\u \x80\xff";
    for (int it = 0; it < 3000; it++) {
        memcpy(m, base, n + 1);
        for (int e = 0; e < 3; e++) m[yf_rng_u64(&rng) % n] = junk[yf_rng_u64(&rng) % (sizeof junk - 1)];
        size_t len = (size_t)(yf_rng_u64(&rng) % (n + 1));
        yf_answer a;
        yf_answer_parse(m, len, &a);
        CHECK(a.status <= YF_ANS_UNPARSABLE);
        char *f = yf_answer_format(&a);
        yf_answer_free(&a);
        free(f);
    }
    free(m);
}

TEST(eval_report_json) {
    yf_eval_result r = score1("{\"姓名\": [\"张三\"], \"职位\": [\"总监\"]}", "{\"姓名\": [\"张三\"], \"职位\": [\"经理\"]}");
    char path[700];
    snprintf(path, sizeof path, "%s/report.json", yt_tmpdir());
    CHECK(yf_eval_write_report(&r, path) == 0, "%s", yf_last_error());
    char *text = NULL;
    CHECK(yf_read_file(path, &text, NULL) == 0);
    cJSON *j = cJSON_Parse(text ? text : "");
    CHECK(j != NULL, "report is not JSON: %s", text ? text : "");
    const char *fields[] = {"precision", "recall", "f1", "tp", "fp", "fn"};
    cJSON *micro = cJSON_GetObjectItemCaseSensitive(j, "micro"), *pt = cJSON_GetObjectItemCaseSensitive(j, "per_type");
    for (int k = 0; k < 6; k++) CHECK(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(micro, fields[k])), "micro.%s", fields[k]);
    for (int t = 0; t < YF_N_TYPES; t++) {
        cJSON *o = cJSON_GetObjectItemCaseSensitive(pt, yf_type_names[t]);
        for (int k = 0; k < 6; k++) CHECK(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(o, fields[k])), "%s.%s", yf_type_tags[t], fields[k]);
    }
    CHECK_NEAR("micro.f1", cJSON_GetObjectItemCaseSensitive(micro, "f1")->valuedouble - 0.5, 1e-12);
    cJSON *name = cJSON_GetObjectItemCaseSensitive(pt, "姓名");
    CHECK(cJSON_GetObjectItemCaseSensitive(name, "tp")->valuedouble == 1);
    cJSON_Delete(j);
    free(text);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

TEST(eval_cli_scores_predictions) {
    char data[700], pred[700], rep[700], out[8192];
    snprintf(data, sizeof data, "%s/gold.jsonl", yt_tmpdir());
    snprintf(pred, sizeof pred, "%s/pred.jsonl", yt_tmpdir());
    snprintf(rep, sizeof rep, "%s/rep.json", yt_tmpdir());
    write_text(data, "{\"input\": \"张三，经理\", \"output\": \"{\\\"姓名\\\": [\\\"张三\\\"], \\\"职位\\\": [\\\"经理\\\"]}\"}\n"
                     "{\"input\": \"李四\", \"output\": \"{\\\"姓名\\\": [\\\"李四\\\"]}\"}\n"
                     "{\"input\": \"无\", \"output\": \"{}\"}\n");
    /* a JSON string (model text, truncated), an object written directly, garbage */
    write_text(pred, "\"{\\\"姓名\\\": [\\\"张三\\\"], \\\"职位\\\": [\\\"经\"\n{\"姓名\": [\"李四\"]}\r\nno answer\n");
    /* strict (the default): the truncated answer counts as empty */
    int rc = yt_sh(out, sizeof out, "%s eval --predictions %s --data %s", yt_cli(), pred, data);
    CHECK(rc == 0 && strstr(out, "unparsable answers 2, recovered answers 0") && strstr(out, "scoring: strict"), "exit %d: %s",
          rc, out);
    rc = yt_sh(out, sizeof out, "%s eval --predictions %s --data %s --report %s --lenient", yt_cli(), pred, data, rep);
    CHECK(rc == 0, "exit %d: %s", rc, out);
    CHECK(strstr(out, "micro") && strstr(out, "unparsable answers 1, recovered answers 1") && strstr(out, "scoring: lenient"),
          "%s", out);
    char *text = NULL;
    CHECK(yf_read_file(rep, &text, NULL) == 0);
    cJSON *j = cJSON_Parse(text ? text : "");
    cJSON *micro = cJSON_GetObjectItemCaseSensitive(j, "micro");
    double tp = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(micro, "tp"));
    double fp = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(micro, "fp"));
    double fn = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(micro, "fn"));
    CHECK(tp == 2 && fp == 0 && fn == 1, "tp %g fp %g fn %g (the cut \"经\" is no entity)", tp, fp, fn);
    cJSON *sm = cJSON_GetObjectItemCaseSensitive(j, "strict_micro");
    CHECK(sm && cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(sm, "tp")) == 1, "strict_micro in the lenient report");
    CHECK(!strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "scoring")) ? cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "scoring")) : "", "lenient"));
    cJSON_Delete(j);
    free(text);
}

TEST(eval_bad_line_count_mismatch) {
    char data[700], pred[700], out[4096];
    snprintf(data, sizeof data, "%s/gold.jsonl", yt_tmpdir());
    snprintf(pred, sizeof pred, "%s/pred.jsonl", yt_tmpdir());
    write_text(data, "{\"input\": \"a\", \"output\": \"{}\"}\n{\"input\": \"b\", \"output\": \"{}\"}\n");
    write_text(pred, "{}\n");
    int rc = yt_sh(out, sizeof out, "%s eval --predictions %s --data %s", yt_cli(), pred, data);
    CHECK(rc == 1 && strstr(out, "has 1 lines but") && strstr(out, "has 2 records"), "exit %d: %s", rc, out);
    /* a gold answer that is not JSON is an error naming its record */
    write_text(data, "{\"input\": \"a\", \"output\": \"{}\"}\n{\"input\": \"b\", \"output\": \"oops\"}\n");
    write_text(pred, "{}\n{}\n");
    rc = yt_sh(out, sizeof out, "%s eval --predictions %s --data %s", yt_cli(), pred, data);
    CHECK(rc == 1 && strstr(out, "record 2"), "exit %d: %s", rc, out);
}

/* The dev set's own answers score 1.0 (converter + reader + scorer agree). */
TEST(eval_cli_gold_against_itself) {
    const char *bmes = yt_shared_path("data/resume-ner/dev.char.bmes");
    char data[700], pred[700], out[8192];
    snprintf(data, sizeof data, "%s/dev.jsonl", yt_tmpdir());
    snprintf(pred, sizeof pred, "%s/pred.jsonl", yt_tmpdir());
    int rc = yt_sh(out, sizeof out, "%s data resume-ner --bmes %s --output-file %s", yt_cli(), bmes, data);
    CHECK(rc == 0, "exit %d: %s", rc, out);
    yf_records recs;
    CHECK(yf_data_load(data, &recs) == 0, "%s", yf_last_error());
    FILE *f = fopen(pred, "wb");
    for (size_t i = 0; f && i < recs.n; i++) fprintf(f, "%s\n", recs.r[i].output); /* the answers written directly */
    if (f) fclose(f);
    yf_records_free(&recs);
    rc = yt_sh(out, sizeof out, "%s eval --predictions %s --data %s", yt_cli(), pred, data);
    CHECK(rc == 0, "exit %d: %s", rc, out);
    CHECK(strstr(out, "micro               1.0000    1.0000    1.0000") && strstr(out, "unparsable answers 0, recovered answers 0"),
          "%s", out);
}

/* Found by fuzz_answer: an entity holding "\u0000" was deduplicated on its
 * whole length but kept cut at the NUL, so one answer could list the same
 * string twice (and format -> parse did not give the answer back). */
TEST(eval_bad_fuzz_nul_in_entity) {
    const char *text = "{\"地名\": [\"杭州\\u0000a\", \"杭州\\u0000b\", \"杭州\"]}";
    yf_answer a, b;
    yf_answer_parse(text, strlen(text), &a);
    CHECK(a.status == YF_ANS_OK && a.ent[7].n == 1 && !strcmp(a.ent[7].s[0], "杭州"), "status %d, %zu entities",
          (int)a.status, a.ent[7].n);
    char *f = yf_answer_format(&a);
    yf_answer_parse(f, strlen(f), &b);
    CHECK(b.status == YF_ANS_OK && b.ent[7].n == a.ent[7].n, "%s", f);
    free(f);
    yf_answer_free(&a);
    yf_answer_free(&b);
    /* fuzz_answer, 2026-12-07: a recovered string that starts with a NUL was
     * an empty entity that the formatted answer then dropped */
    static const char broken[] = "{\"姓名\": [\"\0\0\xa2卫东\"], \"教育背景\": [\"硕";
    yf_answer_parse(broken, sizeof broken - 1, &a);
    CHECK(a.status == YF_ANS_RECOVERED && a.ent[0].n == 0, "status %d, %zu names", (int)a.status, a.ent[0].n);
    yf_answer_free(&a);
}

/* An answer of 200,000 distinct entities (a 2.6 MB line of a predictions
 * file): deduplication is a hash set, so this parses and scores in well
 * under a second (0.14 s here); comparing each entity with all before it
 * is 2 x 10^10 comparisons, past the 10 s limit. */
TEST(eval_bad_many_entities) {
    yt_limit(512, 10);
    size_t n = 200000, cap = 16 * n + 64, k = 0;
    char *t = malloc(cap);
    k += (size_t)snprintf(t + k, cap - k, "{\"地名\": [");
    for (size_t i = 0; i < n; i++) k += (size_t)snprintf(t + k, cap - k, "%s\"e%zu\"", i ? ", " : "", i);
    k += (size_t)snprintf(t + k, cap - k, ", \"e7\"]}");
    yf_answer a;
    double t0 = yf_time();
    yf_answer_parse(t, k, &a);
    yf_eval_result r;
    yf_eval_init(&r);
    yf_eval_add(&r, &a, &a);
    fprintf(stderr, "    %zu entities parsed and scored in %.3f s\n", a.ent[7].n, yf_time() - t0);
    CHECK(a.status == YF_ANS_OK && a.ent[7].n == n && r.per_type[7].tp == (int64_t)n);
    yf_answer_free(&a);
    free(t);
}
