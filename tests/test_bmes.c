/* The Resume NER converter against the corpus itself, and its errors. */
#include "harness.h"
#include "task/bmes.h"
#include "task/data.h"
#include "base/jsontext.h"

#include <stdlib.h>
#include <string.h>

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "cannot create %s", path);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

/* Sentences and entities (spans) per type, counted from the tags:
 * B- and S- lines of each type over the three files agree with these sums. */
TEST(bmes_corpus_counts) {
    static const struct {
        const char *file;
        size_t sentences;
        int64_t ent[YF_N_TYPES], cut;
    } want[] = {
        {"data/resume-ner/train.char.bmes", 3821, {952, 260, 115, 6308, 858, 287, 4609, 47}, 2},
        {"data/resume-ner/dev.char.bmes", 463, {110, 33, 15, 690, 106, 18, 523, 2}, 0},
        {"data/resume-ner/test.char.bmes", 477, {112, 28, 14, 772, 112, 33, 553, 6}, 0},
    };
    for (int f = 0; f < 3; f++) {
        yf_bmes_corpus c;
        int rc = yf_bmes_read(yt_shared_path(want[f].file), &c);
        CHECK(rc == 0, "%s", yf_last_error());
        if (rc) continue;
        CHECK(c.n == want[f].sentences, "%s: %zu sentences", want[f].file, c.n);
        CHECK(c.n_cut == want[f].cut, "%s: %lld cut entities", want[f].file, (long long)c.n_cut);
        for (int t = 0; t < YF_N_TYPES; t++)
            CHECK(c.n_entities[t] == want[f].ent[t], "%s %s: %lld entities, want %lld", want[f].file, yf_type_tags[t],
                  (long long)c.n_entities[t], (long long)want[f].ent[t]);
        yf_bmes_free(&c);
    }
}

/* Every entity of every sentence is in its answer under its type, in order of
 * first appearance, and the answer holds nothing else. */
TEST(bmes_every_entity_in_answer) {
    const char *files[] = {"data/resume-ner/train.char.bmes", "data/resume-ner/dev.char.bmes", "data/resume-ner/test.char.bmes"};
    int64_t checked = 0, failures = 0;
    for (int f = 0; f < 3; f++) {
        yf_bmes_corpus c;
        if (yf_bmes_read(yt_shared_path(files[f]), &c)) {
            CHECK(0, "%s", yf_last_error());
            continue;
        }
        for (size_t i = 0; i < c.n; i++) {
            const yf_bmes_sentence *s = &c.s[i];
            char *js = yf_bmes_answer(s);
            yf_answer a;
            yf_answer_parse(js, strlen(js), &a);
            bool ok = a.status == YF_ANS_OK;
            size_t next[YF_N_TYPES] = {0}; /* the next new string each type must show */
            for (size_t k = 0; k < s->n_spans && ok; k++) {
                const yf_span *sp = &s->spans[k];
                size_t n = sp->end - sp->start;
                const yf_strlist *l = &a.ent[sp->type];
                size_t j = 0;
                while (j < l->n && !(strlen(l->s[j]) == n && !memcmp(l->s[j], s->text + sp->start, n))) j++;
                if (j == l->n) ok = false;          /* missing */
                else if (j > next[sp->type]) ok = false; /* out of order */
                else if (j == next[sp->type]) next[sp->type]++;
            }
            for (int t = 0; t < YF_N_TYPES && ok; t++) ok = next[t] == a.ent[t].n; /* nothing extra */
            if (!ok && failures++ < 5) CHECK(0, "%s sentence at line %lld: answer %s", files[f], (long long)s->line, js);
            checked += s->n_spans;
            yf_answer_free(&a);
            free(js);
        }
        yf_bmes_free(&c);
    }
    CHECK(failures == 0, "%lld sentences wrong", (long long)failures);
    CHECK(checked == 13436 + 1497 + 1630, "%lld entities checked", (long long)checked);
}

/* From the answer back to tags: read dev.char.bmes independently (characters
 * and tags), rebuild the tags from each answer where every entity string occurs
 * once and none overlap, and compare with the file's tags. */
TEST(bmes_answer_back_to_tags) {
    const char *path = yt_shared_path("data/resume-ner/dev.char.bmes");
    yf_bmes_corpus c;
    if (yf_bmes_read(path, &c)) {
        CHECK(0, "%s", yf_last_error());
        return;
    }
    char *buf;
    size_t len;
    CHECK(yf_read_file(path, &buf, &len) == 0);
    char *save = NULL, *line = strtok_r(buf, "\n", &save);
    size_t compared = 0, mismatched = 0;
    for (size_t si = 0; si < c.n; si++) {
        const yf_bmes_sentence *s = &c.s[si];
        /* the file's characters and tags for this sentence (strtok skips blank lines) */
        size_t *off = malloc((size_t)(s->n_chars + 1) * sizeof *off);
        char (*tag)[12] = calloc((size_t)s->n_chars, sizeof *tag);
        char (*got)[12] = calloc((size_t)s->n_chars, sizeof *got);
        size_t pos = 0;
        for (int64_t k = 0; k < s->n_chars; k++, line = strtok_r(NULL, "\n", &save)) {
            char *sp = strrchr(line, ' ');
            off[k] = pos;
            pos += (size_t)(sp - line);
            snprintf(tag[k], sizeof tag[k], "%s", sp + 1);
            snprintf(got[k], sizeof got[k], "O");
        }
        off[s->n_chars] = pos;
        CHECK(pos == s->len, "sentence at line %lld: %zu bytes, reader has %zu", (long long)s->line, pos, s->len);
        char *js = yf_bmes_answer(s);
        yf_answer a;
        yf_answer_parse(js, strlen(js), &a);
        bool unambiguous = true;
        for (int t = 0; t < YF_N_TYPES; t++)
            for (size_t j = 0; j < a.ent[t].n; j++) {
                const char *e = a.ent[t].s[j], *hit = strstr(s->text, e);
                if (!hit || strstr(hit + 1, e)) {
                    unambiguous = false;
                    continue;
                }
                size_t b = (size_t)(hit - s->text), eb = b + strlen(e);
                int64_t k0 = 0, k1;
                while (off[k0] < b) k0++;
                for (k1 = k0; off[k1 + 1] < eb; k1++) {}
                for (int64_t k = k0; k <= k1; k++) {
                    if (strcmp(got[k], "O")) unambiguous = false; /* overlap */
                    const char *kind = k0 == k1 ? "S" : k == k0 ? "B" : k == k1 ? "E" : "M";
                    snprintf(got[k], sizeof got[k], "%s-%s", kind, yf_type_tags[t]);
                }
            }
        if (unambiguous) {
            compared++;
            for (int64_t k = 0; k < s->n_chars; k++)
                if (strcmp(got[k], tag[k])) {
                    if (mismatched++ < 5) CHECK(0, "sentence at line %lld, character %lld: rebuilt %s, file %s", (long long)s->line, (long long)k, got[k], tag[k]);
                    break;
                }
        }
        yf_answer_free(&a);
        free(js);
        free(off);
        free(tag);
        free(got);
    }
    fprintf(stderr, "    %zu of %zu dev sentences unambiguous and compared tag by tag\n", compared, c.n);
    CHECK(compared >= 350, "only %zu sentences compared", compared); /* 396 when written */
    CHECK(mismatched == 0);
    free(buf);
    yf_bmes_free(&c);
}

TEST(bmes_json_matches_python) {
    yf_sbuf b = {0};
    const char s[] = "a\"b\\c\n\t\r\b\f\x01\x1f/é中😀\x7f";
    yf_sbuf_json_string(&b, s, sizeof s - 1);
    /* json.dumps(s, ensure_ascii=False) */
    const char *want = "\"a\\\"b\\\\c\\n\\t\\r\\b\\f\\u0001\\u001f/é中😀\x7f\"";
    CHECK(!strcmp(b.s, want), "got %s", b.s);
    yf_sbuf_free(&b);
    yf_answer a;
    yf_answer_init(&a);
    char *empty = yf_bmes_answer(&(yf_bmes_sentence){.text = "x"});
    CHECK(!strcmp(empty, "{}"));
    free(empty);
    yf_answer_add(&a, 6, "公司", 6);
    yf_answer_add(&a, 0, "张三", 6);
    yf_answer_add(&a, 0, "李\"四", 7);
    yf_answer_add(&a, 0, "张三", 6);
    char *j = yf_answer_format(&a);
    CHECK(!strcmp(j, "{\"姓名\": [\"张三\", \"李\\\"四\"], \"组织名\": [\"公司\"]}"), "got %s", j);
    free(j);
    yf_answer_free(&a);
}

/* Writes a tiny BMES file and expects the reader to fail naming file:line and what. */
static void expect_error(const char *name, const char *text, int line, const char *what) {
    char path[700], want[800];
    snprintf(path, sizeof path, "%s/%s.bmes", yt_tmpdir(), name);
    write_text(path, text);
    yf_bmes_corpus c;
    int rc = yf_bmes_read(path, &c);
    CHECK(rc == -1, "%s: accepted", name);
    if (rc == 0) {
        yf_bmes_free(&c);
        return;
    }
    if (line) snprintf(want, sizeof want, "%s:%d: ", path, line);
    else snprintf(want, sizeof want, "%s: ", path);
    CHECK(strstr(yf_last_error(), want) && strstr(yf_last_error(), what), "%s: message '%s', want '%s' and '%s'", name,
          yf_last_error(), want, what);
}

TEST(bmes_bad_input_errors) {
    expect_error("unknown_tag", "张 B-NAME\n三 E-NAME\n\n是 B-FOO\n", 4, "unknown tag 'B-FOO'");
    expect_error("lower_tag", "张 b-NAME\n", 1, "unknown tag");
    expect_error("no_tag", "张 B-NAME\n三\n", 2, "expected 'CHARACTER TAG'");
    expect_error("m_without_b", "在 O\n北 M-LOC\n京 E-LOC\n", 2, "M-LOC without a B-LOC");
    expect_error("e_without_b", "在 O\n京 E-LOC\n", 2, "E-LOC without a B-LOC");
    expect_error("type_change", "北 B-LOC\n京 E-ORG\n", 2, "E-ORG inside the LOC entity begun at line 1");
    expect_error("b_inside", "北 B-LOC\n京 B-LOC\n", 2, "missing E-LOC");
    expect_error("o_inside", "北 B-LOC\n， O\n", 2, "missing E-LOC");
    expect_error("open_at_end", "北 B-LOC\n京 M-LOC", 2, "file ends inside the LOC entity");
    expect_error("not_utf8", "\xff\xfe B-LOC\n", 1, "not UTF-8");
    expect_error("start_with_m", "A O\n\n北 M-LOC\n京 E-LOC\n", 3, "M-LOC without a B-LOC");
    expect_error("empty", "\n\n", 0, "no sentences");
}

TEST(bmes_bad_cut_entity_left_out) {
    char path[700];
    snprintf(path, sizeof path, "%s/cut.bmes", yt_tmpdir());
    /* the corpus defect: a blank line inside an ORG; CRLF line ends too */
    write_text(path, "在 O\r\n北 B-ORG\r\n。 M-ORG\r\n\r\n大 M-ORG\r\n学 E-ORG\r\n张 S-NAME\r\n");
    yf_bmes_corpus c;
    int rc = yf_bmes_read(path, &c);
    CHECK(rc == 0, "%s", yf_last_error());
    if (rc) return;
    CHECK(c.n == 2 && c.n_cut == 1 && c.cut_lines[0] == 4, "n %zu cut %lld", c.n, (long long)c.n_cut);
    CHECK(c.n == 2 && !strcmp(c.s[0].text, "在北。") && !strcmp(c.s[1].text, "大学张"));
    char *a0 = yf_bmes_answer(&c.s[0]), *a1 = yf_bmes_answer(&c.s[1]);
    CHECK(!strcmp(a0, "{}") && !strcmp(a1, "{\"姓名\": [\"张\"]}"), "answers %s %s", a0, a1);
    free(a0);
    free(a1);
    yf_bmes_free(&c);
}

TEST(bmes_cli_converts_dev) {
    char out[8192];
    const char *bmes = yt_shared_path("data/resume-ner/dev.char.bmes");
    int rc = yt_sh(out, sizeof out, "%s data resume-ner --bmes %s --output-file %s/dev.jsonl", yt_cli(), bmes, yt_tmpdir());
    CHECK(rc == 0, "exit %d: %s", rc, out);
    CHECK(strstr(out, "463 sentences") != NULL, "%s", out);
    rc = yt_sh(out, sizeof out, "head -n 2 %s/dev.jsonl | tail -n 1; wc -l < %s/dev.jsonl", yt_tmpdir(), yt_tmpdir());
    const char *want = "{\"input\": \"历任公司副总经理、总工程师，\", \"output\": \"{\\\"职位\\\": [\\\"副总经理\\\", "
                       "\\\"总工程师\\\"], \\\"组织名\\\": [\\\"公司\\\"]}\"}\n463\n";
    CHECK(rc == 0 && !strcmp(out, want), "got:\n%s", out);
    rc = yt_sh(out, sizeof out,
               "printf 'a O\\nb M-ORG\\n' > %s/bad.bmes; %s data resume-ner --bmes %s/bad.bmes --output-file %s/x.jsonl",
               yt_tmpdir(), yt_cli(), yt_tmpdir(), yt_tmpdir());
    CHECK(rc == 1 && strstr(out, "bad.bmes:2:"), "exit %d: %s", rc, out);
    CHECK(yt_sh(NULL, 0, "test ! -e %s/x.jsonl", yt_tmpdir()) == 0, "an output file was left behind");
}

/* ---- augmentation (mention replacement) ------------------------------------------ */

/* Whether s[0..n) is an entity of type t somewhere in c. */
static bool is_entity_of(const yf_bmes_corpus *c, int t, const char *s, size_t n) {
    for (size_t i = 0; i < c->n; i++)
        for (size_t j = 0; j < c->s[i].n_spans; j++) {
            const yf_span *sp = &c->s[i].spans[j];
            if (sp->type == t && sp->end - sp->start == n && !memcmp(c->s[i].text + sp->start, s, n)) return true;
        }
    return false;
}

TEST(bmes_augment_variants_keep_context_and_types) {
    yf_bmes_corpus c, a, b;
    CHECK(yf_bmes_read(yt_shared_path("data/resume-ner/train.char.bmes"), &c) == 0, "%s", yf_last_error());
    CHECK(yf_bmes_augment(&c, 2, 7, &a) == 0, "%s", yf_last_error());
    size_t with = 0;
    for (size_t i = 0; i < c.n; i++) with += c.s[i].n_spans > 0;
    CHECK(a.n == c.n + 2 * with, "%zu sentences, want %zu + 2 x %zu", a.n, c.n, with);
    size_t k = 0, changed = 0, variants = 0, bad_ctx = 0, bad_pool = 0, bad_type = 0, bad_orig = 0;
    for (size_t i = 0; i < c.n && k < a.n; i++) {
        const yf_bmes_sentence *o = &c.s[i];
        bad_orig += a.s[k].len != o->len || memcmp(a.s[k].text, o->text, o->len) != 0;
        k++;
        for (int v = 0; o->n_spans && v < 2 && k < a.n; v++, k++) {
            const yf_bmes_sentence *s = &a.s[k];
            variants++;
            changed += s->len != o->len || memcmp(s->text, o->text, o->len) != 0;
            if (s->n_spans != o->n_spans) {
                bad_type++;
                continue;
            }
            /* the text between entities is the original's; each entity, in
             * order, has the original's type and is an entity of the corpus */
            size_t at_s = 0, at_o = 0;
            for (size_t j = 0; j < o->n_spans; j++) {
                const yf_span *ss = &s->spans[j], *os = &o->spans[j];
                bad_ctx += ss->start - at_s != os->start - at_o || memcmp(s->text + at_s, o->text + at_o, os->start - at_o);
                bad_type += ss->type != os->type;
                bad_pool += !is_entity_of(&c, ss->type, s->text + ss->start, ss->end - ss->start);
                at_s = ss->end, at_o = os->end;
            }
            bad_ctx += s->len - at_s != o->len - at_o || memcmp(s->text + at_s, o->text + at_o, o->len - at_o);
        }
    }
    CHECK(k == a.n && bad_orig == 0, "originals out of place or changed (%zu)", bad_orig);
    CHECK(bad_ctx == 0 && bad_type == 0 && bad_pool == 0, "%zu contexts changed, %zu types changed, %zu strings not entities",
          bad_ctx, bad_type, bad_pool);
    CHECK(changed > variants * 9 / 10, "only %zu of %zu variants differ from their original", changed, variants);
    /* deterministic for a seed, another seed another draw; k = 0 is the corpus */
    CHECK(yf_bmes_augment(&c, 2, 7, &b) == 0);
    bool same = a.n == b.n;
    for (size_t i = 0; same && i < a.n; i++) same = a.s[i].len == b.s[i].len && !memcmp(a.s[i].text, b.s[i].text, a.s[i].len);
    CHECK(same, "the same seed gave another corpus");
    yf_bmes_free(&b);
    CHECK(yf_bmes_augment(&c, 2, 8, &b) == 0);
    size_t diff = 0;
    for (size_t i = 0; i < a.n && i < b.n; i++) diff += a.s[i].len != b.s[i].len || memcmp(a.s[i].text, b.s[i].text, a.s[i].len);
    CHECK(diff > variants / 2, "seeds 7 and 8 differ in only %zu sentences", diff);
    yf_bmes_free(&b);
    CHECK(yf_bmes_augment(&c, 0, 7, &b) == 0 && b.n == c.n);
    yf_bmes_free(&b);
    CHECK(yf_bmes_augment(&c, -1, 7, &b) == -1 && strstr(yf_last_error(), "-1"), "%s", yf_last_error());
    yf_bmes_free(&a);
    yf_bmes_free(&c);
}

TEST(bmes_augment_cli_answers_occur_in_inputs) {
    char out[8192];
    const char *bmes = yt_shared_path("data/resume-ner/train.char.bmes");
    char a[700], b[700];
    snprintf(a, sizeof a, "%s/a.jsonl", yt_tmpdir());
    snprintf(b, sizeof b, "%s/b.jsonl", yt_tmpdir());
    int rc = yt_sh(out, sizeof out, "%s data resume-ner --bmes %s --output-file %s --augment 1 --seed 3 && "
                                    "%s data resume-ner --bmes %s --output-file %s --augment 1 --seed 3 && cmp %s %s",
                   yt_cli(), bmes, a, yt_cli(), bmes, b, a, b);
    CHECK(rc == 0, "exit %d (the same seed must write the same file): %s", rc, out);
    yf_records r;
    CHECK(yf_data_load(a, &r) == 0, "%s", yf_last_error());
    size_t strings = 0, missing = 0, bad = 0;
    for (size_t i = 0; i < r.n; i++) {
        yf_answer ans;
        yf_answer_parse(r.r[i].output, strlen(r.r[i].output), &ans);
        bad += ans.status != YF_ANS_OK;
        for (int t = 0; t < YF_N_TYPES; t++)
            for (size_t j = 0; j < ans.ent[t].n; j++) strings++, missing += !strstr(r.r[i].input, ans.ent[t].s[j]);
        yf_answer_free(&ans);
    }
    CHECK(r.n == 3821 + 3718 && bad == 0 && missing == 0 && strings > 20000,
          "%zu records, %zu answers not JSON objects, %zu of %zu answer strings not in the input", r.n, bad, missing, strings);
    yf_records_free(&r);
    /* never dev or test */
    const char *dev = yt_shared_path("data/resume-ner/dev.char.bmes");
    rc = yt_sh(out, sizeof out, "%s data resume-ner --bmes %s --output-file %s/d.jsonl --augment 2", yt_cli(), dev, yt_tmpdir());
    CHECK(rc == 2 && strstr(out, "training split only"), "exit %d: %s", rc, out);
    CHECK(yt_sh(NULL, 0, "test ! -e %s/d.jsonl", yt_tmpdir()) == 0, "an output file was written for dev");
}
