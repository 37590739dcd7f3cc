/* Tokenizer tests: the golden Yuan cases, edge cases with ids from
 * python3-sentencepiece 0.1.97, a hand-built model for the paths Yuan's model
 * does not use (user-defined and unused pieces, no byte fallback), comparisons
 * with python3-sentencepiece when it is installed (Resume NER, random strings),
 * the CLI, and corrupt models (tests named *bad*, also run under ASan). */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tokenizer/tokenizer.h"

#define PY "/usr/bin/python3"

static yf_tokenizer *load_yuan(void) {
    const char *p = yt_shared_path("yuan/tokenizer.model");
    if (!yf_file_exists(p)) yt_skip("%s is absent", p);
    yf_tokenizer *t = NULL;
    if (yf_tokenizer_load(p, &t)) {
        CHECK(0, "loading %s: %s", p, yf_last_error());
        return NULL;
    }
    return t;
}

static bool have_sentencepiece(void) {
    return yt_sh(NULL, 0, PY " -c 'import sentencepiece'") == 0;
}

/* Checks that encoding text gives exactly want[0..nwant). */
static bool check_ids(const yf_tokenizer *t, const char *text, size_t len, const int64_t *want, size_t nwant,
                      const char *what) {
    int64_t *ids = NULL;
    size_t n = 0;
    if (yf_tokenizer_encode(t, text, len, &ids, &n)) {
        CHECK(0, "%s: encode failed: %s", what, yf_last_error());
        return false;
    }
    bool ok = n == nwant;
    for (size_t i = 0; ok && i < n; i++) ok = ids[i] == want[i];
    if (!ok) {
        char got[512] = "", exp[512] = "";
        for (size_t i = 0; i < n && strlen(got) < 480; i++) snprintf(got + strlen(got), 32, "%lld ", (long long)ids[i]);
        for (size_t i = 0; i < nwant && strlen(exp) < 480; i++)
            snprintf(exp + strlen(exp), 32, "%lld ", (long long)want[i]);
        CHECK(0, "%s: got [%s] want [%s]", what, got, exp);
    }
    free(ids);
    return ok;
}

#define IDS(...) ((const int64_t[]){__VA_ARGS__}), (sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t))
#define EXPECT(t, str, ...) check_ids(t, str, sizeof(str) - 1, IDS(__VA_ARGS__), "'" str "'")
#define EXPECT_EMPTY(t, str) check_ids(t, str, sizeof(str) - 1, NULL, 0, "'" str "'")

static bool json_ids_equal(const cJSON *arr, const int64_t *ids, size_t n) {
    if (!cJSON_IsArray(arr) || (size_t)cJSON_GetArraySize(arr) != n) return false;
    size_t i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        if (!cJSON_IsNumber(e) || (int64_t)e->valuedouble != ids[i]) return false;
        i++;
    }
    return true;
}

static char *decode(const yf_tokenizer *t, const int64_t *ids, size_t n, bool skip, size_t *len) {
    char *s = NULL;
    if (yf_tokenizer_decode_n(t, ids, n, skip, &s, len)) CHECK(0, "decode failed: %s", yf_last_error());
    return s;
}

/* ---- the golden cases ---------------------------------------------------- */

TEST(tok_yuan_golden_cases) {
    yf_tokenizer *t = load_yuan();
    if (!t) return;
    char *buf = NULL;
    const char *path = yt_shared_path("golden/tokenizer/yuan-cases.jsonl");
    if (yf_read_file(path, &buf, NULL)) yt_skip("%s: %s", path, yf_last_error());
    int cases = 0, bad_ids = 0, bad_plain = 0, bad_trip = 0;
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        cJSON *j = cJSON_Parse(line);
        CHECK(j != NULL, "%s: unparsable line", path);
        if (!j) continue;
        const cJSON *sp = cJSON_GetObjectItem(j, "special_tokens");
        if (sp) {
            const cJSON *e;
            int n = 0;
            cJSON_ArrayForEach(e, sp) {
                int64_t id = yf_tokenizer_piece_id(t, e->string);
                CHECK(id == (int64_t)e->valuedouble, "%s: id %lld, want %g", e->string, (long long)id, e->valuedouble);
                CHECK(yf_tokenizer_is_special(t, id), "%s not special", e->string);
                const char *back = yf_tokenizer_id_piece(t, id);
                CHECK(back && strcmp(back, e->string) == 0, "id_piece(%lld) = %s", (long long)id, back ? back : "NULL");
                n++;
            }
            CHECK(n == 18, "%d special tokens", n);
            CHECK(yf_tokenizer_n_pieces(t) == (int64_t)cJSON_GetObjectItem(j, "vocab_size_sp")->valuedouble);
            CHECK(yf_tokenizer_n_ids(t) == 134958, "n_ids %lld", (long long)yf_tokenizer_n_ids(t));
            cJSON_Delete(j);
            continue;
        }
        const char *text = cJSON_GetObjectItem(j, "text")->valuestring;
        const char *plain = cJSON_GetObjectItem(j, "decoded_plain")->valuestring;
        int64_t *ids = NULL;
        size_t n = 0;
        CHECK(yf_tokenizer_encode(t, text, strlen(text), &ids, &n) == 0);
        cases++;
        if (!json_ids_equal(cJSON_GetObjectItem(j, "ids"), ids, n)) {
            if (bad_ids++ < 3) CHECK(0, "ids differ for '%.200s'", text);
        }
        char *s = decode(t, ids, n, true, NULL);
        if (!s || strcmp(s, plain) != 0) {
            if (bad_plain++ < 3) CHECK(0, "decoded_plain: got '%.200s' want '%.200s'", s ? s : "", plain);
        }
        free(s);
        s = decode(t, ids, n, false, NULL);
        if (!s || strcmp(s, text) != 0) {
            if (bad_trip++ < 3) CHECK(0, "round trip: got '%.200s' want '%.200s'", s ? s : "", text);
        }
        free(s);
        free(ids);
        cJSON_Delete(j);
    }
    printf("  %d golden cases: %d ids differ, %d decoded_plain differ, %d round trips differ\n", cases, bad_ids,
           bad_plain, bad_trip);
    CHECK(cases >= 480, "only %d cases", cases);
    CHECK(bad_ids == 0 && bad_plain == 0 && bad_trip == 0);
    free(buf);
    yf_tokenizer_free(t);
}

/* ---- edge cases (ids from python3-sentencepiece 0.1.97 + the special split) -- */

TEST(tok_yuan_edge_cases) {
    yf_tokenizer *t = load_yuan();
    if (!t) return;
    EXPECT_EMPTY(t, "");
    EXPECT(t, "a", 263);
    EXPECT(t, " ", 259);            /* dummy prefix + the space: "▁▁" */
    EXPECT(t, "   ", 268);          /* "▁▁▁▁" */
    EXPECT(t, " a ", 29871, 263, 29871);
    EXPECT(t, "hello  ", 22172, 259);
    EXPECT(t, "                    x", 462, 268, 921);
    EXPECT(t, "\n", 29871, 13);     /* byte fallback <0x0A> */
    EXPECT(t, "\x7f", 29871, 130);
    EXPECT(t, "\xc3\xa9", 904);     /* é is a piece */
    EXPECT(t, "\xc3\xbf", 29871, 30370);
    EXPECT(t, "\xc2\x80", 29871, 30751);
    EXPECT(t, "好好好好好好好好", 29871, 33373, 33373, 33373, 33373);
    /* special tokens are split out first; sentencepiece alone does not know them */
    EXPECT(t, "<sep>", 77187);
    EXPECT(t, "x<eod>y", 921, 77185, 343); /* "y" gets its own dummy prefix: "▁y" */
    EXPECT(t, "<sep><sep>", 77187, 77187);
    EXPECT(t, "<se<sep>p>", 529, 344, 77187, 282, 29958);
    int64_t *ids;
    size_t n;
    CHECK(yf_tokenizer_encode_sp(t, "<sep>", 5, &ids, &n) == 0);
    CHECK(n == 3 && ids[0] == 529 && ids[1] == 19570 && ids[2] == 29958);
    free(ids);
    CHECK(yf_tokenizer_encode_sp(t, "x<eod>y", 7, &ids, &n) == 0);
    CHECK(n == 6 && ids[0] == 921 && ids[1] == 29966 && ids[2] == 80687 && ids[5] == 29891);
    free(ids);
    /* a long run of one character: 121 'a' = "▁a" + 40 "aaa" */
    char run[122];
    memset(run, 'a', 121);
    run[121] = 0;
    CHECK(yf_tokenizer_encode(t, run, 121, &ids, &n) == 0);
    bool ok = n == 41 && ids[0] == 263;
    for (size_t i = 1; ok && i < n; i++) ok = ids[i] == 89944;
    CHECK(ok, "121 x 'a': %zu ids", n);
    free(ids);
    /* NUL is a character like any other: byte fallback <0x00> */
    EXPECT(t, "\0", 29871, 3);
    EXPECT(t, "x\0y", 921, 3, 29891);
    /* Invalid UTF-8: as SentencePiece does, each malformed byte becomes U+FFFD
     * (30140 "�", 26308 "��") rather than an error. */
    EXPECT(t, "\xff", 29871, 30140);
    EXPECT(t, "a\xff" "b", 263, 30140, 29890);
    EXPECT(t, "\xc3", 29871, 30140);           /* truncated sequence */
    EXPECT(t, "\xed\xa0\x80", 29871, 26308, 30140); /* encoded surrogate */
    EXPECT(t, "\xc0\x80", 29871, 26308);       /* overlong NUL */
    EXPECT(t, "\xef\xbf\xbd", 29871, 30140);   /* a real U+FFFD */
    yf_tokenizer_free(t);
}

TEST(tok_yuan_every_byte_value) {
    yf_tokenizer *t = load_yuan();
    if (!t) return;
    int bad = 0;
    for (int b = 0; b < 256; b++) {
        /* decoding each byte piece: ASCII as itself, a lone high byte as U+FFFD */
        int64_t id = 3 + b;
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        CHECK(yf_tokenizer_piece_id(t, name) == id, "%s", name);
        size_t len;
        char *s = decode(t, &id, 1, false, &len);
        bool ok = b < 0x80 ? len == 1 && (uint8_t)s[0] == b : len == 3 && memcmp(s, "\xEF\xBF\xBD", 3) == 0;
        free(s);
        /* the code point U+00bb (1 or 2 bytes of UTF-8) round-trips */
        char c[3];
        size_t cl = b < 0x80 ? 1 : 2;
        if (b < 0x80) c[0] = (char)b;
        else c[0] = (char)(0xC0 | b >> 6), c[1] = (char)(0x80 | (b & 0x3F));
        int64_t *ids;
        size_t n;
        ok = ok && yf_tokenizer_encode(t, c, cl, &ids, &n) == 0;
        char *back = ok ? decode(t, ids, n, false, &len) : NULL;
        ok = ok && back && len == cl && memcmp(back, c, cl) == 0;
        free(back);
        free(ids);
        /* the raw byte alone: valid ASCII, or malformed -> the U+FFFD piece */
        ok = ok && yf_tokenizer_encode(t, c, 1, &ids, &n) == 0;
        if (ok && b >= 0x80) ok = n == 2 && ids[0] == 29871 && ids[1] == 30140;
        if (ok && b < 0x80) ok = n >= 1;
        free(ids);
        if (!ok && bad++ < 5) CHECK(0, "byte 0x%02X", b);
    }
    CHECK(bad == 0, "%d byte values wrong", bad);
    /* byte pieces are reassembled into UTF-8 across pieces */
    int64_t e[] = {3 + 0xC3, 3 + 0xA9, 3 + 0xC3, 3 + 0x41};
    size_t len;
    char *s = decode(t, e, 4, false, &len);
    CHECK(s && len == 6 && memcmp(s, "\xc3\xa9\xEF\xBF\xBD" "A", 6) == 0);
    free(s);
    yf_tokenizer_free(t);
}

TEST(tok_yuan_decode) {
    yf_tokenizer *t = load_yuan();
    if (!t) return;
    /* SentencePiece's rules: control pieces vanish without ending the leading
     * dummy space; <unk> (with skipping off it is the special token's text) */
    int64_t a[] = {1, 16333}; /* <s> ▁literal */
    char *s = decode(t, a, 2, true, NULL);
    CHECK(s && strcmp(s, "literal") == 0, "'%s'", s);
    free(s);
    s = decode(t, a, 2, false, NULL);
    CHECK(s && strcmp(s, "<s>literal") == 0, "'%s'", s);
    free(s);
    int64_t b[] = {29871, 16333, 2, 259}; /* ▁ ▁literal </s> ▁▁ */
    s = decode(t, b, 4, false, NULL);
    CHECK(s && strcmp(s, " literal  ") == 0, "'%s'", s);
    free(s);
    int64_t c[] = {13, 16333, 134953, 775}; /* <0x0A> ▁literal <mask> ▁code */
    s = decode(t, c, 4, false, NULL);
    CHECK(s && strcmp(s, "\n literal<mask>code") == 0, "'%s'", s);
    free(s);
    s = decode(t, c, 4, true, NULL);
    CHECK(s && strcmp(s, "\n literal code") == 0, "'%s'", s);
    free(s);
    int64_t bad[] = {5, 134958};
    char *x = NULL;
    CHECK(yf_tokenizer_decode(t, bad, 2, false, &x) == -1 && x == NULL);
    CHECK(strstr(yf_last_error(), "134958") != NULL, "%s", yf_last_error());
    CHECK(yf_tokenizer_piece_id(t, "no such piece") == -1);
    CHECK(yf_tokenizer_id_piece(t, -1) == NULL && yf_tokenizer_id_piece(t, 134958) == NULL);
    CHECK(strcmp(yf_tokenizer_id_piece(t, 134957), "<FIM_MIDDLE>") == 0);
    CHECK(!yf_tokenizer_is_special(t, 263) && yf_tokenizer_is_special(t, 77185));
    yf_tokenizer_free(t);
}

/* ---- a hand-built model --------------------------------------------------- */

typedef struct {
    uint8_t *b;
    size_t n, cap;
} pbw;

static void pw_raw(pbw *w, const void *d, size_t n) {
    if (w->n + n > w->cap) {
        while (w->n + n > w->cap) w->cap = w->cap ? w->cap * 2 : 256;
        w->b = realloc(w->b, w->cap);
    }
    memcpy(w->b + w->n, d, n);
    w->n += n;
}
static void pw_varint(pbw *w, uint64_t v) {
    do {
        uint8_t c = (uint8_t)(v & 0x7F);
        v >>= 7;
        if (v) c |= 0x80;
        pw_raw(w, &c, 1);
    } while (v);
}
static void pw_uint(pbw *w, int field, uint64_t v) {
    pw_varint(w, (uint64_t)field << 3);
    pw_varint(w, v);
}
static void pw_bytes(pbw *w, int field, const void *d, size_t n) {
    pw_varint(w, (uint64_t)field << 3 | 2);
    pw_varint(w, n);
    pw_raw(w, d, n);
}
static void pw_float(pbw *w, int field, float f) {
    pw_varint(w, (uint64_t)field << 3 | 5);
    uint32_t u;
    memcpy(&u, &f, 4);
    uint8_t le[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
    pw_raw(w, le, 4);
}

typedef struct {
    const char *text;
    float score;
    int type;
} toy_piece;

/* ids: 0 <unk> 1 <s> 2 </s> 3 ▁ 4 a 5 b 6 c 7 ab 8 bc 9 ▁a 10 xy(user) 11 cc(unused) 12 cca 13 ▁▁ 14 x */
static const toy_piece k_toy[] = {
    {"<unk>", 0, 2}, {"<s>", 0, 3},   {"</s>", 0, 3},   {"\xE2\x96\x81", -100, 1}, {"a", -100, 1},
    {"b", -100, 1},  {"c", -100, 1},  {"ab", -1, 1},    {"bc", -1, 1},             {"\xE2\x96\x81" "a", -2, 1},
    {"xy", 0, 4},    {"cc", 5, 5},    {"cca", 4, 1},    {"\xE2\x96\x81\xE2\x96\x81", -3, 1}, {"x", -100, 1},
};

/* The toy's pieces as ModelProto field 1 entries into m (sub: scratch). */
static void put_toy_pieces(pbw *m, pbw *sub) {
    for (size_t i = 0; i < sizeof k_toy / sizeof *k_toy; i++) {
        sub->n = 0;
        pw_bytes(sub, 1, k_toy[i].text, strlen(k_toy[i].text));
        pw_float(sub, 2, k_toy[i].score);
        if (k_toy[i].type != 1) pw_uint(sub, 3, (uint64_t)k_toy[i].type);
        pw_bytes(m, 1, sub->b, sub->n);
    }
}

/* The toy model with extra pieces (texts[i] of type types[i], score 5 for
 * UNUSED ones, else -100) after its own. */
static void write_toy_model_plus(const char *path, bool remove_extra_ws, const char *const *texts, const int *types,
                                 int n) {
    pbw m = {0}, sub = {0};
    put_toy_pieces(&m, &sub);
    for (int i = 0; i < n; i++) {
        sub.n = 0;
        pw_bytes(&sub, 1, texts[i], strlen(texts[i]));
        pw_float(&sub, 2, types[i] == 5 ? 5.0f : -100.0f);
        pw_uint(&sub, 3, (uint64_t)types[i]);
        pw_bytes(&m, 1, sub.b, sub.n);
    }
    sub.n = 0;
    pw_uint(&sub, 3, 2);   /* BPE */
    pw_uint(&sub, 4, 15);  /* vocab_size */
    pw_uint(&sub, 43, (uint64_t)-1); /* pad_id -1: a 10-byte varint */
    pw_bytes(&m, 2, sub.b, sub.n);
    sub.n = 0;
    pw_bytes(&sub, 1, "identity", 8);
    pw_uint(&sub, 3, 1);
    pw_uint(&sub, 4, remove_extra_ws);
    pw_uint(&sub, 5, 1);
    pw_bytes(&m, 3, sub.b, sub.n);
    CHECK(yf_write_file_atomic(path, m.b, m.n) == 0);
    free(m.b);
    free(sub.b);
}

static void write_toy_model(const char *path, bool remove_extra_ws) { write_toy_model_plus(path, remove_extra_ws, NULL, NULL, 0); }

TEST(tok_toy_model_paths) {
    char path[600];
    snprintf(path, sizeof path, "%s/toy.model", yt_tmpdir());
    write_toy_model(path, false);
    yf_tokenizer *t = NULL;
    if (yf_tokenizer_load(path, &t)) {
        CHECK(0, "%s", yf_last_error());
        return;
    }
    EXPECT(t, "abc", 3, 7, 6);     /* "ab" and "bc" tie: the leftmost merges */
    EXPECT(t, "axyb", 9, 10, 5);   /* user-defined "xy" is matched whole and never merged */
    EXPECT(t, "cca", 3, 12);       /* through the unused "cc" */
    EXPECT(t, "cc", 3, 6, 6);      /* unused "cc" is split back */
    EXPECT(t, "yy", 3, 0);         /* no byte fallback: a run of unknowns is one <unk> */
    EXPECT(t, "ayyb", 9, 0, 5);
    EXPECT(t, "  a", 13, 9);
    EXPECT(t, "x y", 3, 14, 3, 0);
    EXPECT_EMPTY(t, "");
    int64_t ids[] = {9, 0, 5, 1, 13, 7};
    char *s = decode(t, ids, 6, true, NULL);
    CHECK(s && strcmp(s, "ab  ab") == 0, "'%s'", s);
    free(s);
    s = decode(t, ids, 6, false, NULL);
    CHECK(s && strcmp(s, "a<unk>b<s> ab") == 0, "'%s'", s);
    free(s);
    CHECK(yf_tokenizer_n_ids(t) == 15 + 16, "the 16 special tokens not in the model get new ids");
    CHECK(yf_tokenizer_piece_id(t, "<eod>") == 15 && yf_tokenizer_piece_id(t, "<empty_output>") == 30);
    yf_tokenizer_free(t);

    write_toy_model(path, true);
    if (yf_tokenizer_load(path, &t)) {
        CHECK(0, "%s", yf_last_error());
        return;
    }
    EXPECT(t, "  a  b  ", 9, 3, 5); /* remove_extra_whitespaces: "▁a▁b" */
    EXPECT_EMPTY(t, "   ");
    yf_tokenizer_free(t);
}

/* ---- comparisons with python3-sentencepiece -------------------------------- */

/* Encodes texts with bench/tok_sp.py and with yuanft; returns the mismatches. */
static int compare_with_sp(const yf_tokenizer *t, const char *model, char **texts, size_t n) {
    char in[600], out[600], msg[2048];
    snprintf(in, sizeof in, "%s/in.jsonl", yt_tmpdir());
    snprintf(out, sizeof out, "%s/out.jsonl", yt_tmpdir());
    FILE *f = fopen(in, "w");
    for (size_t i = 0; i < n; i++) {
        cJSON *s = cJSON_CreateString(texts[i]);
        char *js = cJSON_PrintUnformatted(s);
        fprintf(f, "%s\n", js);
        free(js);
        cJSON_Delete(s);
    }
    fclose(f);
    int rc = yt_sh(msg, sizeof msg, PY " bench/tok_sp.py '%s' encode < '%s' > '%s'", model, in, out);
    CHECK(rc == 0, "tok_sp.py failed: %s", msg);
    if (rc) return -1;
    char *buf = NULL;
    CHECK(yf_read_file(out, &buf, NULL) == 0);
    int bad = 0;
    size_t i = 0;
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line && i < n; line = strtok_r(NULL, "\n", &save), i++) {
        cJSON *j = cJSON_Parse(line);
        int64_t *ids = NULL;
        size_t m = 0;
        CHECK(yf_tokenizer_encode(t, texts[i], strlen(texts[i]), &ids, &m) == 0);
        if (!json_ids_equal(j, ids, m) && bad++ < 3) CHECK(0, "differs from sentencepiece: '%.200s' -> %.300s", texts[i], line);
        free(ids);
        cJSON_Delete(j);
    }
    CHECK(i == n, "sentencepiece gave %zu lines for %zu texts", i, n);
    free(buf);
    return bad;
}

TEST(tok_yuan_matches_sentencepiece_resume_ner) {
    yf_tokenizer *t = load_yuan();
    if (!t) return;
    if (!have_sentencepiece()) {
        yf_tokenizer_free(t);
        yt_skip("python3-sentencepiece is not installed for " PY " (apt-get install python3-sentencepiece)");
    }
    char model[512], dir[512], out[700], msg[2048];
    snprintf(model, sizeof model, "%s", yt_shared_path("yuan/tokenizer.model"));
    snprintf(dir, sizeof dir, "%s", yt_shared_path("data/resume-ner"));
    snprintf(out, sizeof out, "%s/sp.jsonl", yt_tmpdir());
    int rc = yt_sh(msg, sizeof msg, PY " bench/tok_sp.py '%s' bmes '%s/train.char.bmes' '%s/dev.char.bmes' "
                   "'%s/test.char.bmes' > '%s'", model, dir, dir, dir, out);
    CHECK(rc == 0, "tok_sp.py: %s", msg);
    char *buf = NULL;
    if (rc || yf_read_file(out, &buf, NULL)) {
        yf_tokenizer_free(t);
        return;
    }
    int n = 0, bad = 0;
    size_t nids = 0;
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        cJSON *j = cJSON_Parse(line);
        const char *text = cJSON_GetObjectItem(j, "text")->valuestring;
        int64_t *ids = NULL;
        size_t m = 0;
        CHECK(yf_tokenizer_encode(t, text, strlen(text), &ids, &m) == 0);
        if (!json_ids_equal(cJSON_GetObjectItem(j, "ids"), ids, m) && bad++ < 3)
            CHECK(0, "sentence %d differs from sentencepiece: '%.200s'", n, text);
        nids += m;
        n++;
        free(ids);
        cJSON_Delete(j);
    }
    printf("  %d Resume NER sentences (train+dev+test), %zu ids: %d differ from sentencepiece\n", n, nids, bad);
    CHECK(n == 4761, "%d sentences", n);
    CHECK(bad == 0);
    free(buf);
    yf_tokenizer_free(t);
}

TEST(tok_matches_sentencepiece_random_strings) {
    yf_tokenizer *t = load_yuan();
    if (!t) return;
    if (!have_sentencepiece()) {
        yf_tokenizer_free(t);
        yt_skip("python3-sentencepiece is not installed for " PY " (apt-get install python3-sentencepiece)");
    }
    /* fragments chosen to hit merges across scripts, spaces, specials, bytes */
    static const char *frag[] = {
        "a", "b", "e", "the", " ", "  ", "\t", "\n", "\r\n", "好", "的", "中国", "公司", "工程师", "😀", "𠀋",
        "<sep>", "<eod>", "<s>", "</s>", "<unk>", "<", ">", "<se", "p>", "1", "23", "2009", ".", ",", "，", "。",
        "é", "ー", "한", "Z", "\xC2\xA0", "\xE2\x96\x81", "<0x41>", "\xE2\x81\x87", "\x7f", "{\"", "\"}", "MBA",
        "ing", "-", "_", "日本語", "Ω", "\xEF\xBF\xBD",
    };
    const size_t nf = sizeof frag / sizeof *frag;
    yf_rng r;
    yf_rng_seed(&r, 1234);
    enum { N = 1500 };
    char **texts = malloc(N * sizeof *texts);
    for (int i = 0; i < N; i++) {
        size_t parts = yf_rng_u64(&r) % 24, len = 0;
        texts[i] = calloc(1, 24 * 16 + 1);
        for (size_t k = 0; k < parts; k++) {
            const char *s = frag[yf_rng_u64(&r) % nf];
            memcpy(texts[i] + len, s, strlen(s));
            len += strlen(s);
        }
    }
    /* and long runs */
    free(texts[0]);
    texts[0] = calloc(1, 5001);
    memset(texts[0], 'a', 5000);
    free(texts[1]);
    texts[1] = calloc(1, 3001);
    memset(texts[1], ' ', 3000);
    free(texts[2]);
    texts[2] = calloc(1, 3 * 1000 + 1);
    for (int k = 0; k < 1000; k++) memcpy(texts[2] + 3 * k, "好", 3);
    int bad = compare_with_sp(t, yt_shared_path("yuan/tokenizer.model"), texts, N);
    printf("  %d random strings: %d differ from sentencepiece\n", N, bad);
    CHECK(bad == 0);
    for (int i = 0; i < N; i++) free(texts[i]);
    free(texts);
    yf_tokenizer_free(t);
}

TEST(tok_toy_model_matches_sentencepiece) {
    if (!have_sentencepiece()) yt_skip("python3-sentencepiece is not installed for " PY);
    static const char *texts[] = {"abc", "axyb", "cca", "cc", "yy", "ayyb", "  a", "x y", "abcabc cc ccc cca",
                                  "bcab", "xyxy", " xy ", "zz yy", "aaa bbb ccc", ""};
    char path[600];
    for (int rm = 0; rm < 2; rm++) {
        snprintf(path, sizeof path, "%s/toy%d.model", yt_tmpdir(), rm);
        write_toy_model(path, rm);
        yf_tokenizer *t = NULL;
        if (yf_tokenizer_load(path, &t)) {
            CHECK(0, "%s", yf_last_error());
            return;
        }
        int bad = compare_with_sp(t, path, (char **)texts, sizeof texts / sizeof *texts);
        CHECK(bad == 0, "remove_extra_whitespaces=%d: %d differ", rm, bad);
        yf_tokenizer_free(t);
    }
}

/* ---- the CLI -------------------------------------------------------------- */

TEST(tok_cli_encode_decode) {
    const char *model = yt_shared_path("yuan/tokenizer.model");
    char in[600], ids[600], out[8192];
    snprintf(in, sizeof in, "%s/in.jsonl", yt_tmpdir());
    snprintf(ids, sizeof ids, "%s/ids.jsonl", yt_tmpdir());
    const char *lines = "\"Hello world\"\n"
                        "  \"王小明<sep>{\\\"姓名\\\": [\\\"王小明\\\"]}<eod>\"  \n"
                        "\"tab\\there\\u0000\\ud83d\\ude00 \\/\"\n"
                        "\"\"\n";
    CHECK(yf_write_file_atomic(in, lines, strlen(lines)) == 0);
    int rc = yt_sh(out, sizeof out, "%s tokenize --tokenizer '%s' < '%s' > '%s'", yt_cli(), model, in, ids);
    CHECK(rc == 0, "%s", out);
    rc = yt_sh(out, sizeof out, "cat '%s'", ids);
    CHECK(strncmp(out, "[15043,3186]\n[29871,30462,71837,77187,8853,37908,1115,6796,30462,71837,121818,77185]\n", 83) == 0,
          "%s", out);
    CHECK(strstr(out, "\n[]\n") != NULL, "empty string -> []: %s", out);
    rc = yt_sh(out, sizeof out, "%s tokenize --tokenizer '%s' --decode < '%s'", yt_cli(), model, ids);
    CHECK(rc == 0);
    CHECK(strcmp(out, "\"Hello world\"\n\"王小明<sep>{\\\"姓名\\\": [\\\"王小明\\\"]}<eod>\"\n"
                      "\"tab\\there\\u0000😀 /\"\n\"\"\n") == 0,
          "%s", out);
    rc = yt_sh(out, sizeof out, "%s tokenize --tokenizer '%s' --decode --skip-special-tokens < '%s'", yt_cli(), model,
               ids);
    CHECK(rc == 0);
    CHECK(strstr(out, "\"王小明 {\\\"姓名\\\": [\\\"王小明\\\"]}\"\n") != NULL, "%s", out);
}

TEST(tok_cli_bad_input) {
    const char *model = yt_shared_path("yuan/tokenizer.model");
    char out[4096];
    struct {
        const char *input, *want;
        bool decode;
    } cases[] = {
        {"\"ok\"\n\"not closed\n", "line 2", false},
        {"\"ok\"\n\"ok\"\n[1,2]\n", "line 3", false},
        {"\"\\ud800 lone\"\n", "surrogate", false},
        {"\"\xff\"\n", "UTF-8", false},
        {"\"a\" x\n", "after", false},
        {"\n", "empty line", false},
        {"[1,2]\n[1,\"x\"]\n", "line 2", true},
        {"[1,2]\n[1.5]\n", "line 2", true},
        {"[134958]\n", "out of range", true},
        {"[-1]\n", "line 1", true},
        {"\"text\"\n", "line 1", true},
        {"[1,2\n", "line 1", true},
    };
    char in[600];
    snprintf(in, sizeof in, "%s/bad.jsonl", yt_tmpdir());
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        CHECK(yf_write_file_atomic(in, cases[i].input, strlen(cases[i].input)) == 0);
        int rc = yt_sh(out, sizeof out, "%s tokenize --tokenizer '%s' %s < '%s'", yt_cli(), model,
                       cases[i].decode ? "--decode" : "", in);
        CHECK(rc == 1, "case %zu: exit %d: %s", i, rc, out);
        CHECK(strstr(out, cases[i].want) != NULL, "case %zu: want '%s' in: %s", i, cases[i].want, out);
    }
    int rc = yt_sh(out, sizeof out, "%s tokenize < /dev/null", yt_cli());
    CHECK(rc == 2 && strstr(out, "--tokenizer"), "%d %s", rc, out);
    rc = yt_sh(out, sizeof out, "%s tokenize --tokenizer /nonexistent/tokenizer.model < /dev/null", yt_cli());
    CHECK(rc == 1 && strstr(out, "/nonexistent/tokenizer.model"), "%d %s", rc, out);
}

/* ---- corrupt models ----------------------------------------------------------- */

static int load_bytes(const uint8_t *b, size_t n, const char *name) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", yt_tmpdir(), name);
    if (yf_write_file_atomic(path, b, n)) return -2;
    yf_tokenizer *t = NULL;
    int rc = yf_tokenizer_load(path, &t);
    if (rc == 0) {
        /* a load that succeeds must give a working tokenizer */
        int64_t *ids = NULL;
        size_t m = 0;
        const char *s = "王小明<sep>Hello 😀 world\xff";
        CHECK(yf_tokenizer_encode(t, s, strlen(s), &ids, &m) == 0);
        char *d = NULL;
        CHECK(yf_tokenizer_decode(t, ids, m, false, &d) == 0);
        free(d);
        free(ids);
        yf_tokenizer_free(t);
    } else {
        CHECK(strstr(yf_last_error(), name) != NULL, "the error names the file: %s", yf_last_error());
    }
    return rc;
}

static uint8_t *read_yuan(size_t *n) {
    char *b = NULL;
    const char *p = yt_shared_path("yuan/tokenizer.model");
    if (yf_read_file(p, &b, n)) yt_skip("%s: %s", p, yf_last_error());
    return (uint8_t *)b;
}

TEST(tok_bad_model_truncated) {
    size_t n;
    uint8_t *b = read_yuan(&n);
    size_t cuts[] = {0, 1, 2, 3, 10, 100, 1000, n / 3, n / 2, n - 300, n - 30, n - 20, n - 2, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        int rc = load_bytes(b, cuts[i], "truncated.model");
        CHECK(rc == -1, "cut at %zu of %zu bytes loaded", cuts[i], n);
        if (i == 8) printf("  e.g. %s\n", yf_last_error());
    }
    free(b);
}

TEST(tok_bad_model_corrupt) {
    size_t n;
    uint8_t *b = read_yuan(&n);
    uint8_t *c = malloc(n + 16);
    /* first piece is "<unk>": 0a LEN 0a 05 '<unk>' ... */
    CHECK(b[0] == 0x0A);
    /* a huge length on the first field */
    memcpy(c, b, n);
    c[1] = 0xFF, c[2] = 0xFF, c[3] = 0xFF, c[4] = 0x0F;
    CHECK(load_bytes(c, n, "huge-length.model") == -1);
    printf("  e.g. %s\n", yf_last_error());
    /* an endless varint */
    memset(c, 0xFF, 32);
    CHECK(load_bytes(c, 32, "varint.model") == -1);
    /* wrong wire type for the pieces field */
    memcpy(c, b, n);
    c[0] = 0x08;
    CHECK(load_bytes(c, n, "wire.model") == -1);
    /* not a model at all */
    const char *txt = "{\"this\": \"is json\"}\n";
    CHECK(load_bytes((const uint8_t *)txt, strlen(txt), "json.model") == -1);
    /* a duplicated piece: rename "<s>" to "<unk>" is the wrong type class, so
     * rename the 3rd byte piece "<0x02>" to "<0x01>" instead */
    memcpy(c, b, n);
    uint8_t *p = memmem(c, n, "<0x02>", 6);
    CHECK(p != NULL);
    if (p) p[4] = '1';
    CHECK(load_bytes(c, n, "duplicate.model") == -1);
    CHECK(strstr(yf_last_error(), "twice"), "%s", yf_last_error());
    /* a byte piece with a bad name */
    memcpy(c, b, n);
    p = memmem(c, n, "<0x02>", 6);
    if (p) p[3] = 'G';
    CHECK(load_bytes(c, n, "bytename.model") == -1);
    /* no unknown piece: <unk>'s type 2 -> control 3 (field 3 of the first piece) */
    memcpy(c, b, n);
    size_t plen = c[1];
    CHECK(c[2 + plen - 2] == 0x18 && c[2 + plen - 1] == 2, "first piece ends with type=2");
    c[2 + plen - 1] = 3;
    CHECK(load_bytes(c, n, "nounk.model") == -1);
    CHECK(strstr(yf_last_error(), "unknown piece"), "%s", yf_last_error());
    /* random byte changes: a clean error or a working tokenizer, never a crash */
    yf_rng r;
    yf_rng_seed(&r, 77);
    int failed = 0, loaded = 0;
    for (int k = 0; k < 24; k++) {
        memcpy(c, b, n);
        for (int j = 0; j < 4; j++) {
            /* half the hits in the small spec messages at the end */
            size_t at = (yf_rng_u64(&r) & 1) ? n - 1 - yf_rng_u64(&r) % 300 : yf_rng_u64(&r) % n;
            c[at] = (uint8_t)yf_rng_u64(&r);
        }
        if (load_bytes(c, n, "random.model") == 0) loaded++;
        else failed++;
    }
    printf("  24 randomly corrupted models: %d rejected, %d still loaded and worked\n", failed, loaded);
    free(c);
    free(b);
}

/* A model with 100,000 user-defined pieces (the toy's pieces plus
 * "u<number>" pieces): loading sorts them once and matching narrows by byte,
 * so it loads in well under a second (0.05 s here; the insertion sort before
 * took 4.5 s, and 1000 encodes of 11 bytes 4.7 s against 0.002 s now) and
 * still picks the longest piece at each place. */
TEST(tok_bad_many_user_pieces_load_fast) {
    yt_limit(1024, 30);
    pbw m = {0}, sub = {0};
    put_toy_pieces(&m, &sub);
    const int nuser = 100000;
    for (int i = 0; i < nuser; i++) {
        char s[32];
        int n = snprintf(s, sizeof s, "u%d", i * 7);
        sub.n = 0;
        pw_bytes(&sub, 1, s, (size_t)n);
        pw_uint(&sub, 3, 4);
        pw_bytes(&m, 1, sub.b, sub.n);
    }
    sub.n = 0;
    pw_uint(&sub, 3, 2);
    pw_bytes(&m, 2, sub.b, sub.n);
    sub.n = 0;
    pw_uint(&sub, 3, 1);
    pw_uint(&sub, 4, 1);
    pw_uint(&sub, 5, 1);
    pw_bytes(&m, 3, sub.b, sub.n);
    char path[600];
    snprintf(path, sizeof path, "%s/many-user.model", yt_tmpdir());
    CHECK(yf_write_file_atomic(path, m.b, m.n) == 0);
    free(m.b);
    free(sub.b);
    yf_tokenizer *tok = NULL;
    double t0 = yf_time();
    CHECK(yf_tokenizer_load(path, &tok) == 0, "%s", yf_last_error());
    double t_load = yf_time() - t0;
    if (!tok) return;
    /* "u7000" and "u70" are both pieces (7000 = 1000 x 7, 70 = 10 x 7): the longest wins */
    const char *text = "xu7000xu70x";
    int64_t *ids = NULL;
    size_t n = 0;
    t0 = yf_time();
    for (int rep = 0; rep < 1000; rep++) {
        free(ids);
        CHECK(yf_tokenizer_encode(tok, text, strlen(text), &ids, &n) == 0);
    }
    double t_enc = yf_time() - t0;
    const char *p1 = n > 2 ? yf_tokenizer_id_piece(tok, ids[2]) : NULL, *p2 = n > 4 ? yf_tokenizer_id_piece(tok, ids[4]) : NULL;
    CHECK(p1 && !strcmp(p1, "u7000") && p2 && !strcmp(p2, "u70"), "pieces %s %s", p1 ? p1 : "-", p2 ? p2 : "-");
    char *back = NULL;
    int drc = yf_tokenizer_decode(tok, ids, n, false, &back);
    CHECK(drc == 0 && back && !strcmp(back, text), "decoded %s (%s), %zu ids", back ? back : "-", drc ? yf_last_error() : "ok", n);
    fprintf(stderr, "    %d user pieces: load %.3f s, 1000 encodes %.3f s\n", nuser, t_load, t_enc);
    CHECK(t_load < 1.0, "load took %.2f s", t_load);
    free(back);
    free(ids);
    yf_tokenizer_free(tok);
}

/* Found by fuzz_tokenizer_text: encoding empty text gives no ids (ids =
 * NULL), and decoding those did pointer arithmetic on NULL (UBSan). */
TEST(tok_bad_fuzz_decode_no_ids) {
    char path[600];
    snprintf(path, sizeof path, "%s/toy.model", yt_tmpdir());
    write_toy_model(path, false);
    yf_tokenizer *t = NULL;
    CHECK(yf_tokenizer_load(path, &t) == 0, "%s", yf_last_error());
    if (!t) return;
    int64_t *ids = NULL;
    size_t n = 1;
    CHECK(yf_tokenizer_encode(t, "", 0, &ids, &n) == 0 && n == 0);
    char *s = NULL;
    size_t len = 1;
    CHECK(yf_tokenizer_decode_n(t, ids, n, false, &s, &len) == 0 && s && len == 0);
    free(s);
    CHECK(yf_tokenizer_decode_n(t, ids, n, true, &s, &len) == 0 && s && len == 0);
    free(s);
    free(ids);
    yf_tokenizer_free(t);
}

/* UNUSED pieces are split back into the pair that formed them, found by
 * their text among the merges recorded. "cc" x 40,000 then "dd" x 40,000
 * (both UNUSED in this model) records 80,000 merges; each "cc" emitted
 * scanned back over the 40,000 "dd" records first: quadratic (a hostile
 * model and a long text: a hang); indexed by text it is linear. */
TEST(tok_bad_many_unused_merges) {
    char path[600];
    snprintf(path, sizeof path, "%s/toy-dd.model", yt_tmpdir());
    static const char *const extra[] = {"d", "dd"};
    static const int types[] = {1, 5};
    write_toy_model_plus(path, false, extra, types, 2);
    yf_tokenizer *t = NULL;
    CHECK(yf_tokenizer_load(path, &t) == 0, "%s", yf_last_error());
    if (!t) return;
    yt_limit(512, 10);
    size_t n = 160000;
    char *text = malloc(n);
    memset(text, 'c', n / 2);
    memset(text + n / 2, 'd', n / 2);
    int64_t *ids = NULL;
    size_t m = 0;
    double t0 = yf_time();
    CHECK(yf_tokenizer_encode_sp(t, text, n, &ids, &m) == 0);
    fprintf(stderr, "    %zu bytes -> %zu ids in %.3f s\n", n, m, yf_time() - t0);
    /* "▁" then every "cc" and "dd" split back into single letters */
    CHECK(m == n + 1 && ids[0] == 3 && ids[1] == 6 && ids[m - 1] == 15, "%zu ids", m);
    free(ids);
    free(text);
    yf_tokenizer_free(t);
}
