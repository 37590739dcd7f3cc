/* Greedy (and seeded) results through `yuanft serve` equal `yuanft
 * generate` and `yuanft extract` for the same input: one request at a
 * time, and 16 clients at once mixing the base model and two adapters,
 * free and constrained decoding (json_schema, extraction spans);
 * then a bounded load test in which no request is lost, duplicated or
 * mixed up. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "harness.h"
#include "test_serve_util.h"

enum { NAD = 3, NEW = 16 };
static const char *const k_names[NAD] = {"base", "lora", "dora"};

static const char *adapter_dir(int a) {
    static char p[NAD][1024];
    if (a == 0) return NULL;
    snprintf(p[a], sizeof p[a], "%s", yt_shared_path(a == 1 ? "golden/yuan-tiny/lora" : "golden/yuan-tiny/dora"));
    return p[a];
}

/* yuanft generate's new tokens for a prompt, as text (what the server
 * answers: the tokens decoded, special tokens dropped). */
static char *cli_text(const char *model, int a, const char *prompt, const char *extra) {
    char out[65536];
    char ad[1200] = "";
    if (a) snprintf(ad, sizeof ad, "--adapter %s", adapter_dir(a));
    int rc = yt_sh(out, sizeof out, "%s generate --model %s %s --prompt '%s' --max-new-tokens %d --json %s 2>/dev/null",
                   yt_cli(), model, ad, prompt, NEW, extra);
    CHECK(rc == 0, "generate: exit %d: %s", rc, out);
    return yt_decode_ids(out);
}

typedef struct call {
    int port;
    char body[2048];
    const char *path;
    int status;
    char *text;
    pthread_t th;
} call;

/* yuanft extract's raw answer for one line (the server's default template). */
static char *cli_raw(const char *model, int a, const char *line) {
    char out[65536], in[1024], ad[1200] = "";
    if (a) snprintf(ad, sizeof ad, "--adapter %s", adapter_dir(a));
    snprintf(in, sizeof in, "%s/raw-in-%d.txt", yt_tmpdir(), a);
    CHECK(yf_write_file_atomic(in, line, strlen(line)) == 0);
    int rc = yt_sh(out, sizeof out, "%s extract --model %s %s --input %s --raw %s.raw >/dev/null 2>&1 && cat %s.raw", yt_cli(),
                   model, ad, in, in, in);
    CHECK(rc == 0, "extract: exit %d: %s", rc, out);
    cJSON *r = cJSON_Parse(out);
    char *t = cJSON_IsString(r) ? strdup(r->valuestring) : NULL;
    cJSON_Delete(r);
    return t;
}

/* The schema of the constrained requests (response_format json_schema and
 * yuanft generate --json-schema): its shortest answer fits NEW tokens. */
static const char k_schema[] = "{\"type\": \"object\", \"properties\": {\"tag\": {\"enum\": [\"NAME\", \"ORG\", \"LOC\"]}, "
                               "\"ok\": {\"type\": \"boolean\"}}, \"required\": [\"tag\"]}";

static void *run_call(void *arg) {
    call *c = arg;
    cJSON *j;
    c->status = yt_post_json(c->port, c->path, c->body, NULL, &j);
    const cJSON *raw = cJSON_GetObjectItem(j, "raw"); /* /v1/extract */
    const char *t = cJSON_IsString(raw) ? raw->valuestring : yt_choice_text(j);
    c->text = t ? strdup(t) : NULL;
    cJSON_Delete(j);
    return NULL;
}

TEST(serve_greedy_equals_generate_alone_and_16_at_once) {
    const char *model = yt_serve_golden_model();
    char args[4096];
    snprintf(args, sizeof args, "--parallel 16 --adapter lora=%s --adapter dora=%s", adapter_dir(1), adapter_dir(2));
    /* what yuanft generate says for each line and adapter; line 2 goes to
     * /v1/extract (span-constrained, as yuanft extract), line 3 with
     * response_format json_schema (as yuanft generate --json-schema) */
    char schema_file[1024], gen_schema[1200];
    snprintf(schema_file, sizeof schema_file, "%s/schema.json", yt_tmpdir());
    CHECK(yf_write_file_atomic(schema_file, k_schema, strlen(k_schema)) == 0);
    snprintf(gen_schema, sizeof gen_schema, "--json-schema %s", schema_file);
    char *want[4][NAD];
    for (int i = 0; i < 4; i++)
        for (int a = 0; a < NAD; a++)
            want[i][a] = i == 2 ? cli_raw(model, a, yt_serve_lines[i]) : cli_text(model, a, yt_serve_lines[i], i == 3 ? gen_schema : "");
    for (int a = 0; a < NAD; a++) { /* the constrained answers are what their constraint allows */
        cJSON *v = want[3][a] ? cJSON_Parse(want[3][a]) : NULL;
        CHECK(cJSON_IsString(cJSON_GetObjectItem(v, "tag")), "generate --json-schema (%s): '%s'", k_names[a],
              want[3][a] ? want[3][a] : "");
        cJSON_Delete(v);
        CHECK(want[2][a] && want[2][a][0] == '{', "extract (%s): '%s'", k_names[a], want[2][a] ? want[2][a] : "");
    }
    yt_server s;
    if (yt_serve_up(&s, model, args)) return;
    enum { N = 16 };
    call c[N];
    int bad_alone = 0, bad_together = 0;
    for (int round = 0; round < 2; round++) {
        for (int k = 0; k < N; k++) {
            int i = k % 4, a = (k / 4 + k) % NAD;
            c[k] = (call){.port = s.port, .path = i == 2 ? "/v1/extract" : "/v1/completions"};
            if (i == 2)
                snprintf(c[k].body, sizeof c[k].body, "{\"adapter\": \"%s\", \"text\": \"%s\"}", k_names[a], yt_serve_lines[i]);
            else
                snprintf(c[k].body, sizeof c[k].body, "{\"model\": \"%s\", \"prompt\": \"%s\", \"max_tokens\": %d%s%s%s}",
                         k_names[a], yt_serve_lines[i], NEW, i == 3 ? ", \"response_format\": {\"type\": \"json_schema\", "
                                                                      "\"json_schema\": {\"name\": \"t\", \"schema\": " : "",
                         i == 3 ? k_schema : "", i == 3 ? "}}" : "");
            if (round == 0) run_call(&c[k]); /* alone */
            else pthread_create(&c[k].th, NULL, run_call, &c[k]);
        }
        for (int k = 0; k < N; k++) {
            if (round == 1) pthread_join(c[k].th, NULL);
            int i = k % 4, a = (k / 4 + k) % NAD;
            bool ok = c[k].status == 200 && c[k].text && want[i][a] && !strcmp(c[k].text, want[i][a]);
            if (!ok)
                fprintf(stderr, "    %s, line %d, %s: '%s', yuanft generate: '%s'\n", round ? "together" : "alone", i,
                        k_names[a], c[k].text ? c[k].text : "(none)", want[i][a] ? want[i][a] : "");
            *(round ? &bad_together : &bad_alone) += !ok;
            free(c[k].text);
        }
    }
    CHECK(bad_alone == 0, "%d of %d requests one at a time differ from yuanft generate / extract", bad_alone, N);
    CHECK(bad_together == 0,
          "%d of %d requests sent together (base, lora, dora; free, json_schema, extract spans mixed) differ from the CLI",
          bad_together, N);
    /* chat: the messages joined, then <sep>; sampling with a seed */
    char prompt[512];
    snprintf(prompt, sizeof prompt, "%s<sep>", yt_serve_lines[1]);
    char *chat_want = cli_text(model, 2, prompt, "");
    call ch = {.port = s.port, .path = "/v1/chat/completions"};
    snprintf(ch.body, sizeof ch.body,
             "{\"model\": \"dora\", \"messages\": [{\"role\": \"user\", \"content\": \"%s\"}], \"max_tokens\": %d}",
             yt_serve_lines[1], NEW);
    run_call(&ch);
    CHECK(ch.status == 200 && ch.text && chat_want && !strcmp(ch.text, chat_want), "chat: '%s', yuanft generate: '%s'",
          ch.text ? ch.text : "", chat_want ? chat_want : "");
    free(ch.text);
    free(chat_want);
    char *samp_want = cli_text(model, 1, yt_serve_lines[2], "--temperature 0.9 --top-p 0.95 --seed 11");
    call sp = {.port = s.port, .path = "/v1/completions"};
    snprintf(sp.body, sizeof sp.body,
             "{\"model\": \"lora\", \"prompt\": \"%s\", \"max_tokens\": %d, \"temperature\": 0.9, \"top_p\": 0.95, \"seed\": 11}",
             yt_serve_lines[2], NEW);
    run_call(&sp);
    CHECK(sp.status == 200 && sp.text && samp_want && !strcmp(sp.text, samp_want),
          "sampled with seed 11: '%s', yuanft generate: '%s'", sp.text ? sp.text : "", samp_want ? samp_want : "");
    free(sp.text);
    free(samp_want);
    for (int i = 0; i < 4; i++)
        for (int a = 0; a < NAD; a++) free(want[i][a]);
    yt_serve_down(&s);
}

/* ---- extraction ----------------------------------------------------------------- */

/* Characters [start, end) of a UTF-8 text, malloc'd. */
/* serve --quantize q4 --int8-activations answers as yuanft generate does
 * with the same options, one request at a time and 8 at once (their steps
 * batched), and its answers are not the unquantized model's for every line */
TEST(serve_quantized_equals_generate) {
    const char *model = yt_serve_golden_model();
    const char *q = "--quantize q4 --quantize-head --int8-activations";
    char args[2048];
    snprintf(args, sizeof args, "%s --parallel 8 --adapter lora=%s", q, adapter_dir(1));
    char *want[4][2], *plain[4];
    for (int i = 0; i < 4; i++) {
        for (int a = 0; a < 2; a++) want[i][a] = cli_text(model, a, yt_serve_lines[i], q);
        plain[i] = cli_text(model, 0, yt_serve_lines[i], "");
    }
    yt_server s;
    if (yt_serve_up(&s, model, args)) return;
    int bad[2] = {0, 0}, same_plain = 0;
    for (int round = 0; round < 2; round++) { /* one at a time, then all 8 at once (batched steps) */
        call c[8];
        for (int k = 0; k < 8; k++) {
            int i = k / 2, a = k % 2;
            c[k] = (call){.port = s.port, .path = "/v1/completions"};
            snprintf(c[k].body, sizeof c[k].body, "{\"model\": \"%s\", \"prompt\": \"%s\", \"max_tokens\": %d}",
                     k_names[a], yt_serve_lines[i], NEW);
            if (round == 0) run_call(&c[k]);
            else pthread_create(&c[k].th, NULL, run_call, &c[k]);
        }
        for (int k = 0; k < 8; k++) {
            int i = k / 2, a = k % 2;
            if (round == 1) pthread_join(c[k].th, NULL);
            bool ok = c[k].status == 200 && c[k].text && want[i][a] && !strcmp(c[k].text, want[i][a]);
            if (!ok)
                fprintf(stderr, "    %s, line %d, %s: '%s', yuanft generate: '%s'\n", round ? "together" : "alone", i,
                        k_names[a], c[k].text ? c[k].text : "(none)", want[i][a] ? want[i][a] : "");
            bad[round] += !ok;
            same_plain += round == 0 && a == 0 && c[k].text && plain[i] && !strcmp(c[k].text, plain[i]);
            free(c[k].text);
        }
    }
    CHECK(bad[0] == 0, "%d of 8 quantized answers one at a time differ from yuanft generate's with %s", bad[0], q);
    CHECK(bad[1] == 0, "%d of 8 quantized answers sent together differ from yuanft generate's with %s", bad[1], q);
    CHECK(same_plain < 4, "every quantized answer equals the unquantized model's: was anything quantized?");
    yt_serve_down(&s);
    for (int i = 0; i < 4; i++) free(want[i][0]), free(want[i][1]), free(plain[i]);
}

static char *char_slice(const char *t, int64_t start, int64_t end) {
    int64_t c = 0;
    const char *b = NULL, *e = NULL;
    for (const char *p = t;; p++) {
        bool lead = (*p & 0xC0) != 0x80;
        if (lead || !*p) {
            if (c == start && !b) b = p;
            if (c == end) {
                e = p;
                break;
            }
            if (!*p) break;
            c++;
        }
    }
    return b && e ? strndup(b, (size_t)(e - b)) : strdup("");
}

TEST(serve_extract_equals_yuanft_extract) {
    const char *model = yt_serve_trained_model();
    char args[4096], in[1024], out[65536];
    snprintf(args, sizeof args, "--prompt-template none --adapter lora=%s", adapter_dir(1));
    snprintf(in, sizeof in, "%s/lines.txt", yt_tmpdir());
    char lines[4096] = "";
    for (int i = 0; i < 4; i++) strcat(strcat(lines, yt_serve_lines[i]), "\n");
    CHECK(yf_write_file_atomic(in, lines, strlen(lines)) == 0);
    /* yuanft extract: the base model and the adapter, the raw answers too */
    char want_ent[2][4][2048], want_raw[2][4][2048];
    for (int a = 0; a < 2; a++) {
        char ad[1200] = "";
        if (a) snprintf(ad, sizeof ad, "--adapter %s", adapter_dir(1));
        int rc = yt_sh(out, sizeof out,
                       "%s extract --model %s %s --prompt-template none --input %s --raw %s/raw%d.jsonl 2>/dev/null && "
                       "echo && cat %s/raw%d.jsonl",
                       yt_cli(), model, ad, in, yt_tmpdir(), a, yt_tmpdir(), a);
        CHECK(rc == 0, "extract: exit %d: %s", rc, out);
        char *save = NULL, *ln = strtok_r(out, "\n", &save);
        for (int i = 0; i < 8 && ln; i++, ln = strtok_r(NULL, "\n", &save)) {
            if (i < 4) snprintf(want_ent[a][i], sizeof want_ent[a][i], "%s", ln);
            else {
                cJSON *r = cJSON_Parse(ln);
                snprintf(want_raw[a][i - 4], sizeof want_raw[a][i - 4], "%s", cJSON_IsString(r) ? r->valuestring : "?");
                cJSON_Delete(r);
            }
        }
    }
    yt_server s;
    if (yt_serve_up(&s, model, args)) return;
    int found = 0;
    for (int a = 0; a < 2; a++)
        for (int i = 0; i < 4; i++) {
            char body[2048];
            snprintf(body, sizeof body, "{\"text\": \"%s\"%s}", yt_serve_lines[i], a ? "" : ", \"adapter\": \"base\"");
            cJSON *j;
            int st = yt_post_json(s.port, "/v1/extract", body, NULL, &j);
            CHECK(st == 200, "extract: %d", st);
            char *ent = cJSON_PrintUnformatted(cJSON_GetObjectItem(j, "entities"));
            cJSON *w = cJSON_Parse(want_ent[a][i]);
            char *went = cJSON_PrintUnformatted(w);
            const cJSON *raw = cJSON_GetObjectItem(j, "raw");
            CHECK(ent && went && !strcmp(ent, went), "%s line %d: entities %s, yuanft extract %s", a ? "lora" : "base", i,
                  ent ? ent : "", want_ent[a][i]);
            CHECK(cJSON_IsString(raw) && !strcmp(raw->valuestring, want_raw[a][i]), "%s line %d: raw answer differs",
                  a ? "lora" : "base", i);
            /* every span is the text of its entity at its character offsets */
            const cJSON *sp;
            cJSON_ArrayForEach(sp, cJSON_GetObjectItem(j, "spans")) {
                const cJSON *t = cJSON_GetObjectItem(sp, "text"), *ty = cJSON_GetObjectItem(sp, "type");
                int64_t b = (int64_t)cJSON_GetObjectItem(sp, "start")->valuedouble;
                int64_t e = (int64_t)cJSON_GetObjectItem(sp, "end")->valuedouble;
                char *sl = char_slice(yt_serve_lines[i], b, e);
                CHECK(cJSON_IsString(t) && !strcmp(sl, t->valuestring), "span [%lld, %lld) is '%s', not '%s'", (long long)b,
                      (long long)e, sl, cJSON_IsString(t) ? t->valuestring : "");
                const cJSON *list = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "entities"), ty->valuestring);
                bool listed = false;
                const cJSON *x;
                cJSON_ArrayForEach(x, list) listed |= !strcmp(x->valuestring, t->valuestring);
                CHECK(listed, "span '%s' (%s) is not among the entities", t->valuestring, ty->valuestring);
                found += a == 0;
                free(sl);
            }
            free(ent), free(went);
            cJSON_Delete(w);
            cJSON_Delete(j);
        }
    CHECK(found >= 8, "the memorised base model's answers gave %d spans on 4 lines", found);
    /* "types" and "constrain" as yuanft extract's --types and --constrain:
     * the same entities (the keys limited to the types, the spans of the
     * text; free strings; unconstrained) */
    static const char *const cases[][2] = {
        {", \"types\": [\"NAME\"]", "--types NAME"},
        {", \"types\": [\"ORG\", \"姓名\"], \"constrain\": \"schema\"", "--types 姓名,ORG --constrain schema"},
        {", \"constrain\": \"none\"", "--constrain none"},
        {", \"constrain\": \"spans\"", "--constrain spans"},
    };
    char line0[1024];
    snprintf(line0, sizeof line0, "%s/line0.txt", yt_tmpdir());
    CHECK(yf_write_file_atomic(line0, yt_serve_lines[0], strlen(yt_serve_lines[0])) == 0);
    for (int c = 0; c < 4; c++) {
        int rc = yt_sh(out, sizeof out, "%s extract --model %s --prompt-template none --input %s %s 2>/dev/null", yt_cli(),
                       model, line0, cases[c][1]);
        CHECK(rc == 0, "extract %s: exit %d: %s", cases[c][1], rc, out);
        out[strcspn(out, "\n")] = 0;
        cJSON *w = cJSON_Parse(out), *j;
        char body[1024];
        snprintf(body, sizeof body, "{\"text\": \"%s\", \"adapter\": \"base\"%s}", yt_serve_lines[0], cases[c][0]);
        int st = yt_post_json(s.port, "/v1/extract", body, NULL, &j);
        char *ent = cJSON_PrintUnformatted(cJSON_GetObjectItem(j, "entities")), *went = cJSON_PrintUnformatted(w);
        CHECK(st == 200 && ent && went && !strcmp(ent, went), "%s: status %d, entities %s; yuanft extract %s: %s", body, st,
              ent ? ent : "", cases[c][1], out);
        if (c == 0) CHECK(ent && strstr(ent, "张伟") && !strstr(ent, "国籍\":"), "types [NAME]: %s", ent ? ent : "");
        free(ent), free(went);
        cJSON_Delete(w);
        cJSON_Delete(j);
    }
    yt_serve_down(&s);
}

/* ---- load -------------------------------------------------------------------------- */

enum { CLIENTS = 8, PER = 6 };

typedef struct client {
    int port, id;
    const char *want[PER];
    int ok, bad;
    pthread_t th;
} client;

static void prompt_of(int c, int r, char *buf, size_t cap) {
    snprintf(buf, cap, "{\"model\": \"%s\", \"prompt\": [%d, %d, %d], \"max_tokens\": 8}", k_names[(c + r) % NAD],
             5 + c, 40 + r, 7 + (c * PER + r) % 200);
}

static void *run_client(void *arg) {
    client *cl = arg;
    for (int r = 0; r < PER; r++) {
        char body[256];
        prompt_of(cl->id, r, body, sizeof body);
        cJSON *j;
        int st = yt_post_json(cl->port, "/v1/completions", body, NULL, &j);
        const char *t = yt_choice_text(j);
        const cJSON *u = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "usage"), "prompt_tokens");
        bool ok = st == 200 && t && cl->want[r] && !strcmp(t, cl->want[r]) && cJSON_IsNumber(u) && u->valuedouble == 3;
        cl->ok += ok;
        cl->bad += !ok;
        cJSON_Delete(j);
    }
    return NULL;
}

TEST(serve_load_no_request_lost_or_mixed) {
    const char *model = yt_serve_golden_model();
    char args[4096];
    snprintf(args, sizeof args, "--parallel 4 --max-queue 64 --adapter lora=%s --adapter dora=%s", adapter_dir(1),
             adapter_dir(2));
    yt_server s;
    if (yt_serve_up(&s, model, args)) return;
    /* each request's answer alone first, then all of them at once */
    client cl[CLIENTS];
    char *want[CLIENTS][PER];
    for (int c = 0; c < CLIENTS; c++) {
        cl[c] = (client){.port = s.port, .id = c};
        for (int r = 0; r < PER; r++) {
            char body[256];
            prompt_of(c, r, body, sizeof body);
            cJSON *j;
            yt_post_json(s.port, "/v1/completions", body, NULL, &j);
            const char *t = yt_choice_text(j);
            want[c][r] = t ? strdup(t) : NULL;
            cl[c].want[r] = want[c][r];
            cJSON_Delete(j);
        }
    }
    double t0 = yf_time();
    for (int c = 0; c < CLIENTS; c++) pthread_create(&cl[c].th, NULL, run_client, &cl[c]);
    int ok = 0, bad = 0;
    for (int c = 0; c < CLIENTS; c++) {
        pthread_join(cl[c].th, NULL);
        ok += cl[c].ok;
        bad += cl[c].bad;
    }
    double took = yf_time() - t0;
    CHECK(ok == CLIENTS * PER && bad == 0, "%d clients x %d requests: %d right, %d wrong or lost (%.2f s)", CLIENTS, PER, ok,
          bad, took);
    yt_http_resp r;
    yt_http(s.port, "GET", "/metrics", NULL, NULL, 0, 10, NULL, NULL, &r);
    double processed = r.body ? yt_metric(r.body, "yuanft_requests_processed_total") : -1;
    CHECK(processed == 2 * CLIENTS * PER, "the server processed %.0f requests, %d were sent", processed, 2 * CLIENTS * PER);
    yt_http_resp_free(&r);
    for (int c = 0; c < CLIENTS; c++)
        for (int k = 0; k < PER; k++) free(want[c][k]);
    yt_serve_down(&s);
}

/* ---- the page, in a browser ------------------------------------------------------ */

/* tests/serve_page.py drives headless Chromium over the page; optional
 * (python3-selenium, chromium, chromium-driver), skipped without them. The
 * screenshot goes to out/serve-page.png. */
TEST(serve_page_in_headless_chromium) {
    char out[16384];
    if (yt_sh(out, sizeof out, "/usr/bin/python3 -c 'import selenium' 2>&1 && command -v chromium && command -v chromedriver") != 0)
        yt_skip("the page test needs python3-selenium, chromium and chromium-driver (Debian packages)");
    const char *model = yt_serve_trained_model();
    char args[4096], txt[1024];
    snprintf(args, sizeof args, "--prompt-template none");
    snprintf(txt, sizeof txt, "%s/resume.txt", yt_tmpdir());
    const char *resume = yt_serve_test_resume();
    CHECK(resume[0] && yf_write_file_atomic(txt, resume, strlen(resume)) == 0);
    yt_server s;
    if (yt_serve_up(&s, model, args)) return;
    int rc = yt_sh(out, sizeof out, "mkdir -p out && timeout 120 /usr/bin/python3 tests/serve_page.py http://127.0.0.1:%d %s "
                                    "out/serve-page.png 2>&1", s.port, txt);
    if (rc == 77) {
        yt_serve_down(&s);
        yt_skip("%s", out);
    }
    CHECK(rc == 0, "serve_page.py: exit %d:\n%s", rc, out);
    fprintf(stderr, "    %s", out);
    yt_serve_down(&s);
}
