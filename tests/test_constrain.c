/* Constrained decoding (constrain.h): the answer grammar on hand-written
 * answers and on the dev split's training answers; the token front end
 * against a brute-force check of every vocabulary row (the real 135,040-row
 * Yuan vocabulary and the golden tiny model's 320 rows, whose Chinese text is
 * all byte pieces, so characters split across tokens); the greedy pick;
 * answers always complete within their budget; the golden tiny model
 * extracting (garbage a constraint must survive); batched = one at a time;
 * the same answers with the prefix cache on and off;
 * constrained = unconstrained greedy when the latter is valid. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/jsontext.h"
#include "harness.h"
#include "model/generate.h"
#include "model/model.h"
#include "model/prefix_cache.h"
#include "task/bmes.h"
#include "task/constrain.h"
#include "task/data.h"
#include "task/eval.h"
#include "task/extract.h"
#include "task/jsonschema.h"

static const char *k_input = "高勇：男，中国国籍，无境外居留权，";
/* invalid UTF-8 in an input: a stray byte and a character cut short */
static const char *k_broken = "高勇\xff中\xe9\xab";

static yf_constraint *grammar(bool spans) {
    yf_constraint *c = NULL;
    CHECK(yf_constraint_answer(yf_type_names, YF_N_TYPES, spans, &c) == 0, "%s", yf_last_error());
    return c;
}

static bool acc(const yf_constraint *c, const char *input, const char *text) {
    return yf_constraint_accepts(c, input, strlen(input), text, strlen(text));
}

static yf_tokenizer *tokenizer(void) {
    yf_tokenizer *t = NULL;
    CHECK(yf_tokenizer_load(yt_shared_path("yuan/tokenizer.model"), &t) == 0, "%s", yf_last_error());
    return t;
}

TEST(constrain_answer_accepts_and_rejects) {
    yf_constraint *c = grammar(true);
    if (!c) return;
    static const char *good[] = {
        "{}",
        "{\"姓名\": [\"高勇\"]}",
        "{\"姓名\": [\"高勇\"], \"国籍\": [\"中国国籍\"]}",
        "{\"姓名\": [\"高勇\", \"勇\"], \"地名\": [\"无境外\"]}",
        "{\"姓名\": [\"高勇\", \"高勇\"]}",       /* a repeat: allowed, the parser keeps one */
        "{\"职位\": [\"男，中国\"]}",            /* any span, punctuation included */
        "{\"组织名\": [\"高勇：男，中国国籍，无境外居留权，\"]}",
    };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        CHECK(acc(c, k_input, good[i]), "rejected %s", good[i]);
        yf_answer a;
        yf_answer_parse_strict(good[i], strlen(good[i]), &a);
        CHECK(a.status == YF_ANS_OK, "%s is not valid JSON", good[i]);
        yf_answer_free(&a);
    }
    static const char *bad[] = {
        "",                                           /* nothing */
        "{",                                          /* incomplete */
        "{\"姓名\": [\"高",                           /* incomplete */
        "{\"姓名\": [\"高勇\"]",                      /* incomplete */
        " {}",                                        /* whitespace the format has not */
        "{} ",
        "{\"姓名\":[\"高勇\"]}",                      /* separators */
        "{\"姓名\": [\"高勇\"],\"国籍\": [\"中国\"]}",
        "{\"姓名\": [\"高勇\",\"勇\"]}",
        "{\"国籍\": [\"中国\"], \"姓名\": [\"高勇\"]}", /* key order */
        "{\"姓名\": [\"高勇\"], \"姓名\": [\"勇\"]}",   /* a key twice */
        "{\"公司\": [\"高勇\"]}",                      /* not a type */
        "{\"姓名\": []}",                             /* empty array */
        "{\"姓名\": [\"\"]}",                         /* empty string */
        "{\"姓名\": [\"张三\"]}",                     /* not in the input */
        "{\"姓名\": [\"高勇男\"]}",                   /* not contiguous */
        "{\"姓名\": [\"\xe9\xab\x98\xe5\x8b\"]}",     /* a character cut in half */
        "{\"姓名\": \"高勇\"}",                       /* a string, not a list */
        "{\"姓名\": [\"高勇\"]}{}",
        "{\"姓名\": [\"\\u9ad8\"]}",                  /* an escape json.dumps does not write */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) CHECK(!acc(c, k_input, bad[i]), "accepted '%s'", bad[i]);
    yf_constraint_free(c);
    /* schema: the same shape, strings free but non-empty */
    c = grammar(false);
    if (!c) return;
    CHECK(acc(c, "", "{\"姓名\": [\"张三\"], \"组织名\": [\"某某公司\", \"x\"]}"));
    CHECK(acc(c, "", "{\"姓名\": [\"a\\\"b\\\\c\\n\\u0001\"]}"));
    CHECK(!acc(c, "", "{\"姓名\": [\"\"]}") && !acc(c, "", "{\"姓名\": [\"a\\/b\"]}") && !acc(c, "", "{\"姓名\": [\"\\u0041\"]}"));
    yf_constraint_free(c);
}

TEST(constrain_every_type_key) {
    yf_constraint *c = grammar(true);
    if (!c) return;
    char all[4096] = "{";
    for (int t = 0; t < YF_N_TYPES; t++) {
        char one[256];
        snprintf(one, sizeof one, "{\"%s\": [\"高勇\"]}", yf_type_names[t]);
        CHECK(acc(c, k_input, one), "rejected %s", one);
        size_t l = strlen(all);
        snprintf(all + l, sizeof all - l, "%s\"%s\": [\"中国\"]", t ? ", " : "", yf_type_names[t]);
    }
    strcat(all, "}");
    CHECK(acc(c, k_input, all), "rejected all eight in order: %s", all);
    yf_constraint_free(c);
    /* a subset of the types: the others are refused */
    const char *keys[] = {"姓名", "组织名"};
    CHECK(yf_constraint_answer(keys, 2, true, &c) == 0);
    CHECK(acc(c, k_input, "{\"姓名\": [\"高勇\"], \"组织名\": [\"中国\"]}") && !acc(c, k_input, "{\"国籍\": [\"中国\"]}"));
    yf_constraint_free(c);
}

/* The substring check is on the unescaped text: quotes, backslashes,
 * newlines and control characters of the input, written as json.dumps
 * writes them. */
TEST(constrain_escapes) {
    yf_constraint *c = grammar(true);
    if (!c) return;
    const char *in = "他说\"你好\\世界\"\n\t\x01 end/";
    CHECK(acc(c, in, "{\"姓名\": [\"\\\"你好\\\\世界\\\"\"]}"));
    CHECK(acc(c, in, "{\"姓名\": [\"\\n\\t\\u0001 end/\"]}"));
    CHECK(acc(c, in, "{\"姓名\": [\"\\u0001\"]}"));
    CHECK(!acc(c, in, "{\"姓名\": [\"\\u0002\"]}"), "a control character not in the input");
    CHECK(!acc(c, in, "{\"姓名\": [\"\\u000a\"]}"), "\\n has a short escape");
    CHECK(!acc(c, in, "{\"姓名\": [\"\\u000A\"]}") && !acc(c, in, "{\"姓名\": [\"\\u0001\\u0001\"]}"));
    CHECK(!acc(c, in, "{\"姓名\": [\"end\\/\"]}"), "json.dumps does not escape /");
    CHECK(!acc(c, in, "{\"姓名\": [\"他说\"你好\"]}"), "a raw quote ends the string");
    CHECK(!acc(c, in, "{\"姓名\": [\"\t\"]}"), "a raw tab");
    yf_answer a;
    yf_answer_init(&a);
    yf_answer_add(&a, 0, "\"你好\\世界\"\n\t\x01", strlen("\"你好\\世界\"\n\t\x01"));
    char *js = yf_answer_format(&a);
    CHECK(acc(c, in, js), "the converter's own escaping: %s", js);
    free(js);
    yf_answer_free(&a);
    yf_constraint_free(c);
}

TEST(constrain_empty_input_gives_empty_object) {
    yf_constraint *c = grammar(true);
    if (!c) return;
    CHECK(acc(c, "", "{}") && !acc(c, "", "{\"姓名\": [\"a\"]}"));
    /* invalid UTF-8 holds no span either: a character must be whole */
    CHECK(acc(c, "\xff\xe9\xab", "{}") && !acc(c, "\xff\xe9\xab", "{\"姓名\": [\"\xe9\xab\"]}"));
    yf_constraint_free(c);
}

/* Every training answer of the dev split is an answer of the span grammar
 * over its sentence: the same format, byte for byte, as the converter's. */
TEST(constrain_training_answers_of_dev_split) {
    yf_bmes_corpus corpus;
    CHECK(yf_bmes_read(yt_shared_path("data/resume-ner/dev.char.bmes"), &corpus) == 0, "%s", yf_last_error());
    yf_constraint *c = grammar(true);
    if (!c) return;
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < corpus.n; i++) {
        char *ans = yf_bmes_answer(&corpus.s[i]);
        if (!yf_constraint_accepts(c, corpus.s[i].text, corpus.s[i].len, ans, strlen(ans)) && !bad++) first = i;
        free(ans);
    }
    CHECK(bad == 0, "%zu of %zu answers rejected, the first of sentence %zu", bad, corpus.n, first + 1);
    CHECK(corpus.n > 400, "%zu sentences", corpus.n);
    yf_constraint_free(c);
    yf_bmes_free(&corpus);
}

/* ---- the token front end ---------------------------------------------- */

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) {
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return g_rng;
}

static bool bit(const uint64_t *b, int64_t r) { return b[r >> 6] >> (r & 63) & 1; }

/* The mask against yf_cstate_allows on every row; returns the rows allowed. */
static int64_t mask_vs_brute(yf_cstate *s, int64_t V, int64_t budget, uint64_t *bits, const char *what) {
    int64_t n = yf_cstate_mask(s, budget, bits), cnt = 0, bad = 0, first = -1;
    for (int64_t r = 0; r < V; r++) {
        bool b = yf_cstate_allows(s, r, budget);
        cnt += b;
        if (b != bit(bits, r) && bad++ == 0) first = r;
    }
    CHECK(bad == 0 && n == cnt, "%s, budget %lld: %lld rows differ (first %lld: mask %d), mask counts %lld, brute force %lld",
          what, (long long)budget, (long long)bad, (long long)first, first >= 0 && bit(bits, first), (long long)n,
          (long long)cnt);
    return cnt;
}

/* Random walks: at each state compare the mask with brute force (with no
 * budget and with a tight one), then take a random allowed row. */
static void random_walks(const yf_cvocab *v, const yf_constraint *c, const char *input, int states) {
    int64_t V = yf_cvocab_size(v);
    uint64_t *bits = yf_malloc((size_t)((V + 63) / 64) * sizeof *bits);
    yf_cstate *s = NULL;
    CHECK(yf_cstate_new(c, v, input, strlen(input), &s) == 0, "%s", yf_last_error());
    if (!s) return;
    int walks = 1;
    for (int k = 0; k < states; k++) {
        int64_t tight = yf_cstate_cost(s) + (int64_t)(rnd() % 3);
        mask_vs_brute(s, V, tight, bits, input);
        int64_t n = mask_vs_brute(s, V, INT64_MAX, bits, input);
        if (n == 0 || (yf_cstate_complete(s) && rnd() % 2)) { /* done: start again */
            yf_cstate_reset(s);
            walks++;
            continue;
        }
        int64_t want = (int64_t)(rnd() % (uint64_t)n), r = 0;
        for (;; r++)
            if (bit(bits, r) && want-- == 0) break;
        CHECK(yf_cstate_advance(s, r) == 0, "%s", yf_last_error());
        if (r == yf_cvocab_eod(v)) yf_cstate_reset(s), walks++;
    }
    yf_cstate_free(s);
    free(bits);
}

TEST(constrain_mask_equals_brute_force_yuan_vocab) {
    yf_tokenizer *tok = tokenizer();
    if (!tok) return;
    yf_cvocab *v = NULL;
    CHECK(yf_cvocab_build(tok, NULL, 135040, &v) == 0, "%s", yf_last_error());
    CHECK(yf_cvocab_byte_complete(v) && yf_cvocab_eod(v) == 77185, "byte pieces for every byte, <eod> at 77185");
    yf_constraint *c = grammar(true), *f = grammar(false);
    random_walks(v, c, k_input, 5);
    random_walks(v, c, "Dr. \"Li\" \\ MBA\t(1966), CEO", 4);
    random_walks(v, f, "", 3);
    yf_constraint_free(c);
    yf_constraint_free(f);
    yf_cvocab_free(v);
    yf_tokenizer_free(tok);
}

/* Inside free strings the plain rows come from precomputed masks (by their
 * characters, under a maxLength): the mask still equals brute force. The
 * text is fed as byte pieces (row 3 + byte in the Yuan vocabulary). */
TEST(constrain_mask_free_strings_yuan_vocab) {
    yf_tokenizer *tok = tokenizer();
    if (!tok) return;
    yf_cvocab *v = NULL;
    yf_cvocab_build(tok, NULL, 135040, &v);
    uint64_t *bits = yf_malloc((135040 / 64 + 1) * sizeof *bits);
    yf_constraint *free_answer = grammar(false), *short_str = NULL;
    const char *sch = "{\"type\": \"array\", \"items\": {\"type\": \"string\", \"maxLength\": 3}}";
    CHECK(yf_constraint_json_schema(sch, strlen(sch), "s", &short_str) == 0, "%s", yf_last_error());
    struct {
        const yf_constraint *c;
        const char *prefix;
    } cases[] = {{free_answer, "{\"姓名\": [\"ab"}, {free_answer, "{\"姓名\": [\""}, {short_str, "[\"a"},
                 {short_str, "[\"高高"}, {short_str, "[\"ab\", \"高高高"}, {short_str, "[\"\xe9"}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        yf_cstate *s = NULL;
        if (!cases[i].c || yf_cstate_new(cases[i].c, v, "", 0, &s)) continue;
        for (const char *p = cases[i].prefix; *p; p++) CHECK(yf_cstate_advance(s, 3 + (uint8_t)*p) == 0, "%s", yf_last_error());
        int64_t n = mask_vs_brute(s, 135040, INT64_MAX, bits, cases[i].prefix);
        mask_vs_brute(s, 135040, yf_cstate_cost(s), bits, cases[i].prefix);
        mask_vs_brute(s, 135040, yf_cstate_cost(s) + 1, bits, cases[i].prefix);
        if (i == 0) CHECK(n > 100000, "inside a free string most rows are allowed: %lld", (long long)n);
        yf_cstate_free(s);
    }
    free(bits);
    yf_constraint_free(free_answer);
    yf_constraint_free(short_str);
    yf_cvocab_free(v);
    yf_tokenizer_free(tok);
}

/* The golden tiny model's vocabulary: rows 0..319 = tokenizer ids 0..319,
 * the byte pieces and a few short pieces, no <eod>. Each Chinese character
 * takes three byte pieces. */
static void tiny_map(yf_vocab_map *vm) {
    int64_t ids[320];
    for (int i = 0; i < 320; i++) ids[i] = i;
    yf_vocab_map_build(vm, ids, 320);
}

TEST(constrain_mask_equals_brute_force_tiny_vocab) {
    yf_tokenizer *tok = tokenizer();
    if (!tok) return;
    yf_vocab_map vm;
    tiny_map(&vm);
    yf_cvocab *v = NULL;
    CHECK(yf_cvocab_build(tok, &vm, 320, &v) == 0, "%s", yf_last_error());
    CHECK(yf_cvocab_byte_complete(v) && yf_cvocab_eod(v) == -1);
    yf_constraint *c = grammar(true), *f = grammar(false);
    random_walks(v, c, k_input, 300);
    random_walks(v, c, "他说\"你好\\世界\"\n\t\x01 end/", 300);
    random_walks(v, c, k_broken, 300);
    random_walks(v, f, "", 200);
    yf_constraint_free(c);
    yf_constraint_free(f);
    yf_cvocab_free(v);
    yf_vocab_map_free(&vm);
    yf_tokenizer_free(tok);
}

/* Inside a character split across byte pieces only its continuation bytes
 * are allowed, and they must lead on to a span. */
TEST(constrain_utf8_split_across_tokens) {
    yf_tokenizer *tok = tokenizer();
    if (!tok) return;
    yf_vocab_map vm;
    tiny_map(&vm);
    yf_cvocab *v = NULL;
    yf_cvocab_build(tok, &vm, 320, &v);
    yf_constraint *c = grammar(true);
    yf_cstate *s = NULL;
    CHECK(yf_cstate_new(c, v, k_input, strlen(k_input), &s) == 0);
    if (!s) return;
    const char *prefix = "{\"姓名\": [\"高";
    for (const char *p = prefix; *p; p++) CHECK(yf_cstate_advance(s, 3 + (uint8_t)*p) == 0, "%s", yf_last_error());
    /* 勇 is E5 8B 87; after E5 only 8B may follow (no other character of the input starts E5 8x) */
    CHECK(yf_cstate_advance(s, 3 + 0xe5) == 0);
    uint64_t bits[5];
    int64_t n = yf_cstate_mask(s, INT64_MAX, bits);
    CHECK(n == 1 && bit(bits, 3 + 0x8b), "%lld rows allowed mid-character", (long long)n);
    CHECK(!yf_cstate_allows(s, 3 + '"', INT64_MAX), "a string cannot close mid-character");
    CHECK(yf_cstate_advance(s, 3 + 0x8b) == 0 && yf_cstate_advance(s, 3 + 0x87) == 0);
    CHECK(yf_cstate_allows(s, 3 + '"', INT64_MAX), "高勇 is a span");
    CHECK(!yf_cstate_allows(s, 3 + 0xe7, INT64_MAX), "高勇 is followed by ：, not by 男's lead byte");
    yf_cstate_free(s);
    /* a byte that leads only into a character the input cuts short is refused */
    CHECK(yf_cstate_new(c, v, k_broken, strlen(k_broken), &s) == 0);
    if (!s) return;
    prefix = "{\"姓名\": [\"中";
    for (const char *p = prefix; *p; p++) CHECK(yf_cstate_advance(s, 3 + (uint8_t)*p) == 0, "%s", yf_last_error());
    CHECK(!yf_cstate_allows(s, 3 + 0xe9, INT64_MAX) && !yf_cstate_allows(s, 3 + 0xff, INT64_MAX), "a dead end allowed");
    CHECK(yf_cstate_allows(s, 3 + '"', INT64_MAX));
    yf_cstate_free(s);
    yf_constraint_free(c);
    yf_cvocab_free(v);
    yf_vocab_map_free(&vm);
    yf_tokenizer_free(tok);
}

/* The greedy pick is the best allowed row (argmax over the mask), whether
 * the model agrees (the best row is allowed) or not. */
TEST(constrain_pick_is_best_allowed) {
    yf_tokenizer *tok = tokenizer();
    if (!tok) return;
    yf_cvocab *v = NULL;
    yf_cvocab_build(tok, NULL, 135040, &v);
    yf_constraint *c = grammar(true);
    yf_cstate *s = NULL;
    yf_cstate_new(c, v, k_input, strlen(k_input), &s);
    if (!s) return;
    int64_t V = 135040;
    float *logits = yf_malloc((size_t)V * sizeof *logits);
    uint64_t *bits = yf_malloc((size_t)((V + 63) / 64) * sizeof *bits);
    int bad = 0;
    for (int step = 0; step < 40; step++) {
        for (int64_t i = 0; i < V; i++) logits[i] = (float)(rnd() % 1000) / 100.0f; /* ties on purpose */
        if (step % 3 == 0) { /* make the model agree: an allowed row on top */
            yf_cstate_mask(s, INT64_MAX, bits);
            for (int64_t i = V - 1; i >= 0; i--)
                if (bit(bits, i)) {
                    logits[i] = 100;
                    break;
                }
        }
        int64_t budget = step % 2 ? INT64_MAX : yf_cstate_cost(s) + 1;
        int64_t p = yf_cstate_pick(s, logits, budget);
        yf_cstate_mask(s, budget, bits);
        int64_t want = -1;
        for (int64_t i = 0; i < V; i++)
            if (bit(bits, i) && (want < 0 || logits[i] > logits[want])) want = i;
        bad += p != want;
        if (p < 0 || p == yf_cvocab_eod(v)) {
            yf_cstate_reset(s);
            continue;
        }
        CHECK(yf_cstate_advance(s, p) == 0, "%s", yf_last_error());
    }
    CHECK(bad == 0, "%d of 40 picks were not the best allowed row", bad);
    free(logits);
    free(bits);
    yf_cstate_free(s);
    yf_constraint_free(c);
    yf_cvocab_free(v);
    yf_tokenizer_free(tok);
}

/* With random logits (a model that never agrees) and every budget from the
 * shortest answer's up, the answer decodes to text the grammar accepts. */
static void budgets_complete(const yf_tokenizer *tok, const yf_vocab_map *vm, int64_t V, const yf_constraint *c,
                             const char *input, int64_t lo, int64_t hi) {
    yf_cvocab *v = NULL;
    CHECK(yf_cvocab_build(tok, vm, V, &v) == 0);
    yf_cstate *s = NULL;
    CHECK(yf_cstate_new(c, v, input, strlen(input), &s) == 0);
    if (!s) return;
    float *logits = yf_malloc((size_t)V * sizeof *logits);
    int64_t *ids = yf_malloc((size_t)hi * sizeof *ids);
    int bad = 0;
    for (int64_t N = lo; N <= hi; N++) {
        yf_cstate_reset(s);
        int64_t n = 0;
        while (n < N) {
            for (int64_t i = 0; i < V; i++) logits[i] = (float)(rnd() % 100000);
            int64_t r = yf_cstate_pick(s, logits, N - n);
            if (r < 0 || r == yf_cvocab_eod(v)) break;
            yf_cstate_advance(s, r);
            ids[n++] = yf_vocab_to_orig(vm, r);
        }
        char *text = NULL;
        size_t len = 0;
        yf_tokenizer_decode_n(tok, ids, (size_t)n, true, &text, &len);
        bool ok = yf_cstate_complete(s) && yf_constraint_accepts(c, input, strlen(input), text, len);
        if (!ok && bad++ < 3) CHECK(0, "budget %lld: %lld tokens decode to '%s' (not a complete answer)", (long long)N, (long long)n, text);
        free(text);
    }
    CHECK(bad == 0, "%d of %lld budgets gave an incomplete answer", bad, (long long)(hi - lo + 1));
    free(logits);
    free(ids);
    yf_cstate_free(s);
    yf_cvocab_free(v);
}

TEST(constrain_budget_always_completes) {
    yf_tokenizer *tok = tokenizer();
    if (!tok) return;
    yf_constraint *c = grammar(true), *f = grammar(false);
    yf_vocab_map vm;
    tiny_map(&vm);
    /* the tiny vocabulary: "{}" takes 2 tokens; a span answer dozens of byte pieces */
    budgets_complete(tok, &vm, 320, c, k_input, 2, 60);
    budgets_complete(tok, &vm, 320, c, "他说\"你好\\世界\"\n\t\x01 end/", 2, 40);
    budgets_complete(tok, &vm, 320, c, k_broken, 2, 30);
    budgets_complete(tok, &vm, 320, f, "", 2, 40);
    /* the real vocabulary: "{}" is one token */
    budgets_complete(tok, NULL, 135040, c, k_input, 1, 16);
    yf_vocab_map_free(&vm);
    yf_constraint_free(c);
    yf_constraint_free(f);
    yf_tokenizer_free(tok);
}

/* ---- decoding with models ------------------------------------------------ */

static const char *const k_inputs[] = {
    "高勇：男，中国国籍，无境外居留权，",
    "",
    "2007年10月至今任\"人和投资\"董事；",
    "Dr. Li, CEO",
    "汉族，本科学历，工程师。",
};
#define N_INPUTS (sizeof k_inputs / sizeof *k_inputs)

/* The golden tiny model, the real tokenizer and the identity map of the
 * model's 320 rows; false (a failed check) when one cannot be loaded. */
static bool tiny_setup(yf_model **m, yf_tokenizer **tok, yf_vocab_map *vm) {
    yf_model_opts mo = {0};
    *m = NULL;
    CHECK(yf_model_load(yt_shared_path("golden/yuan-tiny"), &mo, m) == 0, "%s", yf_last_error());
    *tok = tokenizer();
    if (!*m || !*tok) {
        yf_model_free(*m);
        yf_tokenizer_free(*tok);
        return false;
    }
    tiny_map(vm);
    return true;
}

/* The golden tiny model (random weights: garbage text) with the real
 * tokenizer, through the pruned-vocabulary path: every answer is complete,
 * of the format, and made of spans; the empty input gives {}; batches of 3
 * give what one at a time gives. */
TEST(constrain_extract_golden_tiny_model) {
    yf_model *m;
    yf_tokenizer *tok;
    yf_vocab_map vm;
    if (!tiny_setup(&m, &tok, &vm)) return;
    yf_constraint *c = grammar(true);
    char **ans[2] = {NULL, NULL};
    for (int b = 0; b < 2; b++) {
        yf_extractor x = {.model = m, .tok = tok, .vmap = &vm, .max_new_tokens = 48, .batch = b ? 3 : 1};
        CHECK(yf_template_load("none", &x.tpl) == 0);
        CHECK(yf_extract_run(&x, k_inputs, N_INPUTS, &ans[b]) == 0, "%s", yf_last_error());
        yf_template_free(&x.tpl);
    }
    for (size_t i = 0; ans[0] && ans[1] && i < N_INPUTS; i++) {
        CHECK(acc(c, k_inputs[i], ans[0][i]), "input %zu: '%s' is not an answer of the grammar", i + 1, ans[0][i]);
        CHECK(!strcmp(ans[0][i], ans[1][i]), "input %zu: one at a time '%s', batched '%s'", i + 1, ans[0][i], ans[1][i]);
    }
    if (ans[0]) CHECK(!strcmp(ans[0][1], "{}"), "the empty input gave '%s'", ans[0][1]);
    if (ans[0]) CHECK(strcmp(ans[0][0], "{}") != 0, "the model wrote nothing for input 1 (the test would prove little)");
    for (int b = 0; b < 2; b++)
        if (ans[b]) yf_strv_free(ans[b], N_INPUTS);
    yf_constraint_free(c);
    yf_vocab_map_free(&vm);
    yf_tokenizer_free(tok);
    yf_model_free(m);
}

/* Constrained extraction with the prefix cache (model/prefix_cache.h) on
 * and off: a template shared by every prompt is prefilled once with the
 * cache, and the constrained answers (and the number of tokens decoded)
 * are the same, batched and one at a time. */
TEST(constrain_extract_prefix_cache_same_answers) {
    yf_model *m;
    yf_tokenizer *tok;
    yf_vocab_map vm;
    if (!tiny_setup(&m, &tok, &vm)) return;
    char tp[1024];
    snprintf(tp, sizeof tp, "%s/tpl.txt", yt_tmpdir());
    FILE *f = fopen(tp, "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs("以下是一段简历文本。请从中抽取人名、国籍、种族、职位、教育背景、专业、组织名和地名，"
          "按 JSON 输出，键为实体类型，值为实体列表。\n文本：{input}\n答案：", f);
    fclose(f);
    for (int b = 1; b <= 3; b += 2) {
        char **ans[2] = {NULL, NULL};
        yf_gen_stats st[2];
        for (int off = 0; off < 2; off++) {
            yf_extractor x = {.model = m, .tok = tok, .vmap = &vm, .max_new_tokens = 40, .batch = b,
                              .no_prefix_cache = off};
            CHECK(yf_template_load(tp, &x.tpl) == 0, "%s", yf_last_error());
            CHECK(yf_extract_run(&x, k_inputs, N_INPUTS, &ans[off]) == 0, "%s", yf_last_error());
            st[off] = x.stats;
            yf_template_free(&x.tpl);
        }
        CHECK(st[0].prefill_reused >= (int64_t)N_INPUTS * YF_PREFIX_CACHE_MIN && st[1].prefill_reused == 0,
              "batch %d: %lld prompt tokens from the cache (on), %lld (off)", b, (long long)st[0].prefill_reused,
              (long long)st[1].prefill_reused);
        CHECK(st[0].decode_tokens == st[1].decode_tokens && st[0].prefill_tokens == st[1].prefill_tokens,
              "batch %d: decoded %lld tokens with the cache, %lld without", b, (long long)st[0].decode_tokens,
              (long long)st[1].decode_tokens);
        for (size_t i = 0; ans[0] && ans[1] && i < N_INPUTS; i++)
            CHECK(!strcmp(ans[0][i], ans[1][i]), "batch %d, input %zu: cache on '%s', off '%s'", b, i + 1, ans[0][i],
                  ans[1][i]);
        if (ans[0]) CHECK(strcmp(ans[0][0], "{}") != 0, "the model wrote nothing for input 1 (the test would prove little)");
        for (int k = 0; k < 2; k++)
            if (ans[k]) yf_strv_free(ans[k], N_INPUTS);
    }
    yf_vocab_map_free(&vm);
    yf_tokenizer_free(tok);
    yf_model_free(m);
}

/* A pruned vocabulary without the rows that spell "{" or "}": no answer can
 * be spelled, and extract still gives a complete one (the completion text). */
TEST(constrain_extract_pruned_vocab_completes) {
    yf_model *m = NULL;
    yf_model_opts mo = {0};
    CHECK(yf_model_load(yt_shared_path("golden/yuan-tiny"), &mo, &m) == 0, "%s", yf_last_error());
    yf_tokenizer *tok = tokenizer();
    if (!m || !tok) return;
    int64_t ids[320], n = 0;
    for (int64_t id = 0; n < 320; id++)
        if (id != 3 + '{' && id != 3 + '}') ids[n++] = id;
    yf_vocab_map vm;
    yf_vocab_map_build(&vm, ids, 320);
    yf_extractor x = {.model = m, .tok = tok, .vmap = &vm, .max_new_tokens = 16, .batch = 2};
    CHECK(yf_template_load("none", &x.tpl) == 0);
    char **ans = NULL;
    CHECK(yf_extract_run(&x, k_inputs, N_INPUTS, &ans) == 0, "%s", yf_last_error());
    for (size_t i = 0; ans && i < N_INPUTS; i++) CHECK(!strcmp(ans[i], "{}"), "input %zu: '%s'", i + 1, ans[i]);
    if (ans) yf_strv_free(ans, N_INPUTS);
    yf_template_free(&x.tpl);
    yf_vocab_map_free(&vm);
    yf_tokenizer_free(tok);
    yf_model_free(m);
}

/* A model trained to answer the records exactly: its unconstrained greedy
 * answers are valid, so constrained greedy decoding gives the same ids. */
TEST(constrain_greedy_equals_unconstrained_when_valid) {
    const char *d = yt_tmpdir(), *tokp = yt_shared_path("yuan/tokenizer.model");
    char p[1024], out[8192];
    snprintf(p, sizeof p, "%s/data.jsonl", d);
    FILE *f = fopen(p, "w");
    const char *outputs[] = {"{\\\"姓名\\\": [\\\"高勇\\\"], \\\"国籍\\\": [\\\"中国国籍\\\"]}", "{}",
                             "{\\\"职位\\\": [\\\"董事\\\"], \\\"组织名\\\": [\\\"人和投资\\\"]}", "{\\\"姓名\\\": [\\\"Li\\\"]}",
                             "{\\\"种族\\\": [\\\"汉族\\\"], \\\"职位\\\": [\\\"工程师\\\"], \\\"教育背景\\\": [\\\"本科学历\\\"]}"};
    for (size_t i = 0; f && i < N_INPUTS; i++) {
        yf_sbuf b = {0};
        yf_sbuf_json_string(&b, k_inputs[i], strlen(k_inputs[i]));
        fprintf(f, "{\"input\": %s, \"output\": \"%s\"}\n", b.s, outputs[i]);
        yf_sbuf_free(&b);
    }
    if (f) fclose(f);
    int rc = yt_train_small_yuan(out, sizeof out, d, p, tokp, 128, 150, -1, "full");
    CHECK(rc == 0, "init/train: exit %d: %s", rc, out);
    snprintf(p, sizeof p, "%s/full", d);
    yf_model *m = NULL;
    yf_model_opts mo = {0};
    yf_tokenizer *tok = tokenizer();
    yf_vocab_map vm;
    CHECK(tok && yf_model_load(p, &mo, &m) == 0 && yf_vocab_map_load(p, yf_tokenizer_n_ids(tok), &vm) == 0, "%s",
          yf_last_error());
    if (!m || !tok) return;
    yf_cvocab *v = NULL;
    yf_cvocab_build(tok, &vm, yf_model_config(m)->vocab_size, &v);
    yf_constraint *c = grammar(true);
    yf_template tpl;
    yf_encoder enc;
    yf_template_load("none", &tpl);
    yf_encoder_from_tokenizer(tok, &enc);
    int64_t *prompts[N_INPUTS], plen[N_INPUTS];
    yf_cstate *st[N_INPUTS];
    for (size_t i = 0; i < N_INPUTS; i++) {
        size_t np = 0;
        yf_prompt_ids(&tpl, &enc, k_inputs[i], &prompts[i], &np);
        plen[i] = (int64_t)np;
        yf_vocab_map_ids(&vm, prompts[i], plen[i]);
        yf_cstate_new(c, v, k_inputs[i], strlen(k_inputs[i]), &st[i]);
    }
    yf_gen_hook hook;
    yf_cstate_hook(st, &hook);
    yf_gen_opts go;
    yf_gen_opts_default(&go);
    go.max_new_tokens = 40;
    go.stop_id = yf_cvocab_eod(v);
    go.batch = 2;
    yf_gen_out free_out[N_INPUTS], con_out[N_INPUTS];
    CHECK(yf_generate(m, NULL, (const int64_t *const *)prompts, plen, N_INPUTS, &go, free_out, NULL) == 0);
    go.hook = &hook;
    CHECK(yf_generate(m, NULL, (const int64_t *const *)prompts, plen, N_INPUTS, &go, con_out, NULL) == 0);
    for (size_t i = 0; i < N_INPUTS; i++) {
        int64_t ids[64];
        for (int64_t k = 0; k < free_out[i].n; k++) ids[k] = yf_vocab_to_orig(&vm, free_out[i].ids[k]);
        char *text = NULL;
        size_t len = 0;
        yf_tokenizer_decode_n(tok, ids, (size_t)free_out[i].n, true, &text, &len);
        CHECK(acc(c, k_inputs[i], text), "premise: the trained model's answer %zu '%s' is valid", i + 1, text);
        bool same = free_out[i].n == con_out[i].n;
        for (int64_t k = 0; same && k < free_out[i].n; k++) same = free_out[i].ids[k] == con_out[i].ids[k];
        CHECK(same, "input %zu: constrained ids differ from the unconstrained ones ('%s')", i + 1, text);
        free(text);
        yf_cstate_free(st[i]);
        free(prompts[i]);
    }
    yf_gen_out_free(free_out, N_INPUTS);
    yf_gen_out_free(con_out, N_INPUTS);
    yf_template_free(&tpl);
    yf_constraint_free(c);
    yf_cvocab_free(v);
    yf_vocab_map_free(&vm);
    yf_tokenizer_free(tok);
    yf_model_free(m);
}

/* ---- bad input ------------------------------------------------------------ */

TEST(constrain_bad_grammar_arguments) {
    yf_constraint *c = NULL;
    const char *two[] = {"姓名", "姓名"}, *empty[] = {""};
    CHECK(yf_constraint_answer(two, 0, true, &c) != 0 && strstr(yf_last_error(), "empty"), "%s", yf_last_error());
    CHECK(yf_constraint_answer(two, 2, true, &c) != 0 && strstr(yf_last_error(), "twice"), "%s", yf_last_error());
    CHECK(yf_constraint_answer(empty, 1, true, &c) != 0 && c == NULL, "%s", yf_last_error());
    uint32_t mask;
    CHECK(yf_types_parse("姓名, ORG", &mask) == 0 && mask == (1u | 1u << 6), "%s", yf_last_error());
    CHECK(yf_types_parse("", &mask) != 0 && strstr(yf_last_error(), "empty"), "%s", yf_last_error());
    CHECK(yf_types_parse("姓名,公司", &mask) != 0 && strstr(yf_last_error(), "公司"), "%s", yf_last_error());
    CHECK(yf_types_parse("NAME,姓名", &mask) != 0 && strstr(yf_last_error(), "twice"), "%s", yf_last_error());
    /* an input too long for the span index is an error, not an allocation of gigabytes */
    c = grammar(true);
    yf_tokenizer *tok = tokenizer();
    if (!c || !tok) return;
    yf_vocab_map vm;
    tiny_map(&vm);
    yf_cvocab *v = NULL;
    yf_cvocab_build(tok, &vm, 320, &v);
    size_t big = (size_t)1 << 20;
    char *text = yf_malloc(big);
    memset(text, 'a', big);
    yf_cstate *s = NULL;
    CHECK(yf_cstate_new(c, v, text, big, &s) != 0 && s == NULL && strstr(yf_last_error(), "too long"), "%s", yf_last_error());
    free(text);
    yf_cvocab_free(v);
    yf_vocab_map_free(&vm);
    yf_tokenizer_free(tok);
    yf_constraint_free(c);
}

TEST(constrain_bad_cli_flags) {
    char out[4096];
    const char *model = yt_shared_path("golden/yuan-tiny");
    int rc = yt_sh(out, sizeof out, "%s extract --model %s --types 姓名,公司 --input /dev/null", yt_cli(), model);
    CHECK(rc == 2 && strstr(out, "unknown type '公司'") && !strchr(strchr(out, '\n') + 1, '\n'), "exit %d: %s", rc, out);
    rc = yt_sh(out, sizeof out, "%s extract --model %s --types '' --input /dev/null", yt_cli(), model);
    CHECK(rc == 2 && strstr(out, "--types: the list is empty"), "exit %d: %s", rc, out);
    rc = yt_sh(out, sizeof out, "%s eval --model %s --data x.jsonl --constrain maybe", yt_cli(), model);
    CHECK(rc == 2 && strstr(out, "--constrain takes spans, schema or none"), "exit %d: %s", rc, out);
    rc = yt_sh(out, sizeof out, "%s eval --model %s --data x.jsonl --types NAME,NAME", yt_cli(), model);
    CHECK(rc == 2 && strstr(out, "twice"), "exit %d: %s", rc, out);
}

/* ---- a reference in Python ------------------------------------------------ */

/* An answer with 1-3 random edits: cuts, repeats, and insertions of bytes
 * that matter to the grammar (quotes, brackets, separators, escapes, a key,
 * text of the input). Often invalid UTF-8; sometimes still a valid answer. */
static size_t mutate(const char *ans, const char *input, char *out, size_t cap) {
    static const char *const bits[] = {"{", "}", "[", "]", "\"", ", ", ",", ": ", ":", " ", "\\", "\\n", "\\\"",
                                       "\\u0001", "\\u000a", "\\/", "\"\"", "[]", "{}", "\"姓名\": [\"", "\"]}", "\", \"",
                                       "\"], \"组织名\": [\"", "\xe4", "\xb8\xad"};
    size_t n = strlen(ans);
    if (n >= cap) return 0;
    memcpy(out, ans, n);
    int edits = 1 + (int)(rnd() % 3);
    for (int e = 0; e < edits; e++) {
        size_t at = n ? (size_t)(rnd() % (n + 1)) : 0, len = 1 + (size_t)(rnd() % 6);
        const char *ins = NULL;
        size_t il = 0;
        switch (rnd() % 4) {
        case 0: /* cut */
            if (at + len > n) len = n - at;
            memmove(out + at, out + at + len, n - at - len);
            n -= len;
            continue;
        case 1: ins = bits[rnd() % (sizeof bits / sizeof *bits)], il = strlen(ins); break;
        case 2: { /* a piece of the input (any bytes, maybe half a character) */
            size_t l = strlen(input), a = l ? (size_t)(rnd() % l) : 0;
            ins = input + a, il = l - a < len ? l - a : len;
            break;
        }
        default: /* a piece of the answer again */
            ins = ans + (at < strlen(ans) ? at : 0), il = len;
            if (ins + il > ans + strlen(ans)) il = (size_t)(ans + strlen(ans) - ins);
        }
        if (n + il >= cap) break;
        char tmp[64];
        memcpy(tmp, ins, il < sizeof tmp ? il : sizeof tmp);
        il = il < sizeof tmp ? il : sizeof tmp;
        memmove(out + at + il, out + at, n - at);
        memcpy(out + at, tmp, il);
        n += il;
    }
    return n;
}

static void hex(FILE *f, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) fprintf(f, "%02x", (uint8_t)s[i]);
}

/* The span grammar against a reference written from its definition:
 * json.loads gives an object, json.dumps(ensure_ascii=False) gives the text
 * back (the format and the escapes), keys are types in the template's order,
 * lists non-empty, strings non-empty substrings of the input. */
TEST(constrain_accepts_equals_python_reference) {
    if (yt_sh(NULL, 0, "python3 -c 'import json' 2>/dev/null") != 0) yt_skip("python3 is not installed");
    yf_bmes_corpus corpus;
    CHECK(yf_bmes_read(yt_shared_path("data/resume-ner/dev.char.bmes"), &corpus) == 0, "%s", yf_last_error());
    yf_constraint *c = grammar(true);
    if (!c) return;
    char path[1024], out[8192];
    snprintf(path, sizeof path, "%s/cases.txt", yt_tmpdir());
    FILE *f = fopen(path, "w");
    if (!f) return;
    int n = 0, accepted = 0;
    char buf[4096];
    for (size_t i = 0; i < corpus.n && n < 6000; i++) {
        char *ans = yf_bmes_answer(&corpus.s[i]);
        for (int k = 0; k < 15; k++, n++) {
            size_t len = k == 0 ? strlen(ans) : mutate(ans, corpus.s[i].text, buf, sizeof buf);
            const char *text = k == 0 ? ans : buf;
            bool a = yf_constraint_accepts(c, corpus.s[i].text, corpus.s[i].len, text, len);
            accepted += a;
            fprintf(f, "%d ", a);
            hex(f, corpus.s[i].text, corpus.s[i].len);
            fputc(' ', f);
            hex(f, text, len);
            fputc('\n', f);
        }
        free(ans);
    }
    fclose(f);
    int rc = yt_sh(out, sizeof out,
                   "python3 -c '\n"
                   "import json, sys\n"
                   "keys = [\"姓名\", \"国籍\", \"种族\", \"职位\", \"教育背景\", \"专业\", \"组织名\", \"地名\"]\n"
                   "def ref(inp, raw):\n"
                   "    try:\n"
                   "        text = raw.decode(\"utf-8\")\n"
                   "        obj = json.loads(text)\n"
                   "    except Exception:\n"
                   "        return False\n"
                   "    if not isinstance(obj, dict) or json.dumps(obj, ensure_ascii=False) != text:\n"
                   "        return False\n"
                   "    idx = [keys.index(k) if k in keys else -1 for k in obj]\n"
                   "    if -1 in idx or idx != sorted(set(idx)):\n"
                   "        return False\n"
                   "    return all(isinstance(v, list) and v and all(isinstance(s, str) and s and s in inp for s in v) for v in obj.values())\n"
                   "bad = 0\n"
                   "for line in open(sys.argv[1]):\n"
                   "    a, inp, raw = line.rstrip(\"\\n\").split(\" \")\n"
                   "    r = ref(bytes.fromhex(inp).decode(\"utf-8\"), bytes.fromhex(raw))\n"
                   "    if r != (a == \"1\"):\n"
                   "        bad += 1\n"
                   "        if bad <= 5: print(\"DIFF c=%%s python=%%s %%r\" %% (a, r, bytes.fromhex(raw)))\n"
                   "print(\"differ\", bad)\n"
                   "' %s 2>&1",
                   path);
    CHECK(rc == 0 && strstr(out, "differ 0"), "%d cases, %d accepted by the grammar; python3 reference: %s", n, accepted, out);
    CHECK(accepted > n / 20 && accepted < n, "%d of %d accepted: the cases should mix valid and invalid answers", accepted, n);
    yf_constraint_free(c);
    yf_bmes_free(&corpus);
}

/* The schema grammar against json.loads + json.dumps + python3-jsonschema,
 * with keys in the schema's order and none outside it (what the grammar
 * writes, stricter than the schema). Numbers are left out: json.dumps would
 * rewrite them (1e2 -> 100.0). */
TEST(constrain_schema_accepts_equals_python_reference) {
    if (yt_sh(NULL, 0, "python3 -c 'import jsonschema' 2>/dev/null") != 0)
        yt_skip("python3-jsonschema is not installed (apt-get install python3-jsonschema)");
    const char *sch = "{\"type\": \"object\", \"properties\": {\"name\": {\"type\": \"string\", \"minLength\": 1, \"maxLength\": 4}, "
                      "\"tags\": {\"type\": \"array\", \"items\": {\"enum\": [\"a\", \"b\\\"\", \"中文\"]}, \"minItems\": 1, "
                      "\"maxItems\": 3}, \"ok\": {\"type\": \"boolean\"}, \"x\": {\"type\": \"null\"}, \"sub\": {\"type\": "
                      "\"object\", \"properties\": {\"k\": {\"type\": \"string\"}}, \"required\": [\"k\"]}}, \"required\": "
                      "[\"name\"]}";
    static const char *const seeds[] = {
        "{\"name\": \"ab\"}",
        "{\"name\": \"高\\n\\\"\", \"tags\": [\"a\", \"b\\\"\"], \"ok\": true, \"x\": null, \"sub\": {\"k\": \"\"}}",
        "{\"name\": \"\\u0001x\", \"tags\": [\"中文\"], \"sub\": {\"k\": \"中文 \\\\\"}}",
        "{\"name\": \"abcd\", \"ok\": false}",
    };
    yf_constraint *c = NULL;
    CHECK(yf_constraint_json_schema(sch, strlen(sch), "s", &c) == 0, "%s", yf_last_error());
    if (!c) return;
    char path[1024], spath[1024], out[8192], buf[4096];
    snprintf(path, sizeof path, "%s/cases.txt", yt_tmpdir());
    snprintf(spath, sizeof spath, "%s/s.json", yt_tmpdir());
    CHECK(yf_write_file_atomic(spath, sch, strlen(sch)) == 0);
    FILE *f = fopen(path, "w");
    if (!f) return;
    int n = 0, accepted = 0;
    for (int k = 0; k < 4000; k++, n++) {
        const char *seed = seeds[k % 4];
        size_t len = k < 4 ? strlen(seed) : mutate(seed, "高ab中文\"\\\n", buf, sizeof buf);
        const char *text = k < 4 ? seed : buf;
        bool a = yf_constraint_accepts(c, "", 0, text, len);
        accepted += a;
        fprintf(f, "%d ", a);
        hex(f, text, len);
        fputc('\n', f);
    }
    fclose(f);
    int rc = yt_sh(out, sizeof out,
                   "python3 -c '\n"
                   "import json, sys, jsonschema\n"
                   "schema = json.load(open(sys.argv[2]))\n"
                   "def order_ok(v, s):\n"
                   "    if s.get(\"type\") == \"object\":\n"
                   "        names = list(s.get(\"properties\", {}))\n"
                   "        idx = [names.index(k) if k in names else -1 for k in v]\n"
                   "        return -1 not in idx and idx == sorted(set(idx)) and all(order_ok(v[k], s[\"properties\"][k]) for k in v)\n"
                   "    if s.get(\"type\") == \"array\":\n"
                   "        return all(order_ok(e, s[\"items\"]) for e in v)\n"
                   "    return True\n"
                   "def ref(raw):\n"
                   "    try:\n"
                   "        text = raw.decode(\"utf-8\")\n"
                   "        v = json.loads(text)\n"
                   "        jsonschema.validate(v, schema)\n"
                   "    except Exception:\n"
                   "        return False\n"
                   "    return json.dumps(v, ensure_ascii=False) == text and order_ok(v, schema)\n"
                   "bad = 0\n"
                   "for line in open(sys.argv[1]):\n"
                   "    a, raw = line.rstrip(\"\\n\").split(\" \")\n"
                   "    r = ref(bytes.fromhex(raw))\n"
                   "    if r != (a == \"1\"):\n"
                   "        bad += 1\n"
                   "        if bad <= 5: print(\"DIFF c=%%s python=%%s %%r\" %% (a, r, bytes.fromhex(raw)))\n"
                   "print(\"differ\", bad)\n"
                   "' %s %s 2>&1",
                   path, spath);
    CHECK(rc == 0 && strstr(out, "differ 0"), "%d cases, %d accepted by the grammar; python3 reference: %s", n, accepted, out);
    CHECK(accepted >= 20 && accepted < n, "%d of %d accepted: the cases should mix valid and invalid texts", accepted, n);
    yf_constraint_free(c);
}

/* An answer cut inside a character: the model spelled its first byte as a
 * byte piece, and the pruned vocabulary had no piece for the rest, so the
 * constraint's completion supplies it. The answer is the character, as the
 * input has it, not U+FFFD and stray bytes (the demo's extraction of
 * "蒋艺，女，硕士。" once wrote "蒋\ufffd\x89\xba"); without a tail the
 * text is the ordinary decode. */
TEST(constrain_answer_text_joins_a_split_character) {
    yf_tokenizer *tok = tokenizer();
    if (!tok) return;
    int64_t jiang = yf_tokenizer_piece_id(tok, "蒋"), e8 = yf_tokenizer_piece_id(tok, "<0xE8>");
    CHECK(jiang >= 0 && e8 >= 0, "pieces: 蒋 %lld, <0xE8> %lld", (long long)jiang, (long long)e8);
    int64_t ids[] = {jiang, e8};
    char *t = NULL;
    size_t len = 0;
    CHECK(yf_answer_text(tok, ids, 2, "\x89\xba\"]}", &t, &len) == 0, "%s", yf_last_error());
    CHECK(t && len == strlen("蒋艺\"]}") && memcmp(t, "蒋艺\"]}", len) == 0, "'%s' (%zu bytes)", t ? t : "", len);
    free(t);
    CHECK(yf_answer_text(tok, ids, 2, NULL, &t, &len) == 0);
    CHECK(t && strcmp(t, "蒋\xef\xbf\xbd") == 0, "without a tail: '%s'", t ? t : "");
    free(t);
    int64_t eod = yf_tokenizer_piece_id(tok, "<eod>"), ids2[] = {jiang, eod};
    CHECK(yf_answer_text(tok, ids2, 2, "\"]}", &t, &len) == 0 && t && strcmp(t, "蒋\"]}") == 0,
          "special tokens dropped with a tail: '%s'", t ? t : "");
    free(t);
    yf_tokenizer_free(tok);
}
