/* What the serve tests share (test_serve_util.h). */
#include "test_serve_util.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "formats/vocab_map.h"
#include "task/eval.h"
#include "harness.h"
#include "tokenizer/tokenizer.h"

const char *const yt_serve_lines[4] = {
    "张伟，男，汉族，中国国籍，硕士研究生学历。",
    "2015年起任华信科技有限公司总经理。",
    "毕业于复旦大学经济学专业，高级经济师。",
    "李娜女士，现任上海银行董事。",
};

static const char *const k_answers[4] = {
    "{\\\"姓名\\\": [\\\"张伟\\\"], \\\"国籍\\\": [\\\"中国国籍\\\"], \\\"种族\\\": [\\\"汉族\\\"], \\\"教育背景\\\": [\\\"硕士研究生学历\\\"]}",
    "{\\\"职位\\\": [\\\"总经理\\\"], \\\"组织名\\\": [\\\"华信科技有限公司\\\"]}",
    "{\\\"职位\\\": [\\\"高级经济师\\\"], \\\"专业\\\": [\\\"经济学专业\\\"], \\\"组织名\\\": [\\\"复旦大学\\\"]}",
    "{\\\"姓名\\\": [\\\"李娜\\\"], \\\"职位\\\": [\\\"董事\\\"], \\\"组织名\\\": [\\\"上海银行\\\"]}",
};

static void write_file(const char *path, const char *text) {
    CHECK(yf_write_file_atomic(path, text, strlen(text)) == 0, "%s", yf_last_error());
}

static void link_into(const char *dir, const char *target, const char *name) {
    char p[2100];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    CHECK(symlink(target, p) == 0, "symlink %s", p);
}

const char *yt_serve_golden_model(void) {
    static char dir[1024];
    const char *shared = yt_shared_path("golden/yuan-tiny");
    char gold[2048], tokp[2048];
    snprintf(gold, sizeof gold, "%s", shared);
    snprintf(tokp, sizeof tokp, "%s", yt_shared_path("yuan/tokenizer.model"));
    if (tokp[0] != '/' || gold[0] != '/') { /* links need absolute targets */
        char cwd[512];
        CHECK(getcwd(cwd, sizeof cwd) != NULL);
        char t[2048];
        snprintf(t, sizeof t, "%s/%.1500s", cwd, gold);
        snprintf(gold, sizeof gold, "%s", t);
        snprintf(t, sizeof t, "%s/%.1500s", cwd, tokp);
        snprintf(tokp, sizeof tokp, "%s", t);
    }
    snprintf(dir, sizeof dir, "%s/golden-text", yt_tmpdir());
    CHECK(yf_mkdir_p(dir) == 0, "%s", yf_last_error());
    char t[2100];
    snprintf(t, sizeof t, "%s/config.json", gold);
    link_into(dir, t, "config.json");
    snprintf(t, sizeof t, "%s/model.safetensors", gold);
    link_into(dir, t, "model.safetensors");
    link_into(dir, tokp, "tokenizer.model");
    /* 320 tokenizer ids: <unk>, the specials, the lines' ids, then the
     * lowest ids not taken yet */
    yf_tokenizer *tok = NULL;
    CHECK(yf_tokenizer_load(tokp, &tok) == 0, "%s", yf_last_error());
    if (!tok) return dir;
    enum { V = 320 };
    int64_t ids[V];
    int n = 0;
    const char *special[] = {"<eod>", "<sep>", "<n>"};
    ids[n++] = 0;
    for (int i = 0; i < 3; i++) ids[n++] = yf_tokenizer_piece_id(tok, special[i]);
    const char *more[] = {"hello world, the quick brown fox. {\"key\": [\"value\"]}", "姓名国籍种族职位教育背景专业组织名地名"};
    for (int k = 0; k < 6; k++) {
        const char *s = k < 4 ? yt_serve_lines[k] : more[k - 4];
        int64_t *e = NULL;
        size_t ne = 0;
        CHECK(yf_tokenizer_encode(tok, s, strlen(s), &e, &ne) == 0);
        for (size_t i = 0; i < ne && n < V; i++) {
            bool dup = false;
            for (int j = 0; j < n; j++) dup |= ids[j] == e[i];
            if (!dup) ids[n++] = e[i];
        }
        free(e);
    }
    for (int64_t c = 3; n < V; c++) {
        bool dup = false;
        for (int j = 0; j < n; j++) dup |= ids[j] == c;
        if (!dup) ids[n++] = c;
    }
    yf_vocab_map vm;
    yf_vocab_map_build(&vm, ids, V);
    CHECK(vm.n == V, "vocab map of %lld rows", (long long)vm.n);
    CHECK(yf_vocab_map_save(&vm, dir) == 0, "%s", yf_last_error());
    yf_vocab_map_free(&vm);
    yf_tokenizer_free(tok);
    return dir;
}

/* The opening of the test split's first résumé (its first two sentences)
 * as one record {"input", "output"} (JSON text), its input in *text. */
static char *test_resume_record(char **text) {
    char p[1024], out[4096];
    snprintf(p, sizeof p, "%s/test.jsonl", yt_tmpdir());
    int rc = yt_sh(out, sizeof out, "%s data resume-ner --bmes %s --output-file %s 2>&1", yt_cli(),
                   yt_shared_path("data/resume-ner/test.char.bmes"), p);
    CHECK(rc == 0, "data resume-ner: %s", out);
    char *all = NULL;
    size_t n = 0;
    *text = NULL;
    if (rc || yf_read_file(p, &all, &n)) return NULL;
    yf_answer a;
    yf_answer_init(&a);
    char in[2048] = "";
    char *save = NULL, *ln = strtok_r(all, "\n", &save);
    for (int k = 0; k < 2 && ln; k++, ln = strtok_r(NULL, "\n", &save)) {
        cJSON *r = cJSON_Parse(ln);
        const cJSON *i = cJSON_GetObjectItem(r, "input"), *o = cJSON_GetObjectItem(r, "output");
        if (cJSON_IsString(i) && cJSON_IsString(o)) {
            strncat(in, i->valuestring, sizeof in - strlen(in) - 1);
            yf_answer part;
            yf_answer_parse(o->valuestring, strlen(o->valuestring), &part);
            for (int t = 0; t < YF_N_TYPES; t++)
                for (size_t e = 0; e < part.ent[t].n; e++) yf_answer_add(&a, t, part.ent[t].s[e], strlen(part.ent[t].s[e]));
            yf_answer_free(&part);
        }
        cJSON_Delete(r);
    }
    free(all);
    char *ans = yf_answer_format(&a);
    yf_answer_free(&a);
    cJSON *rec = cJSON_CreateObject();
    cJSON_AddStringToObject(rec, "input", in);
    cJSON_AddStringToObject(rec, "output", ans);
    char *t = cJSON_PrintUnformatted(rec);
    cJSON_Delete(rec);
    free(ans);
    *text = strdup(in);
    return t;
}

const char *yt_serve_test_resume(void) {
    static char *text;
    if (!text) free(test_resume_record(&text));
    return text ? text : "";
}

const char *yt_serve_trained_model(void) {
    static char dir[1024];
    const char *d = yt_tmpdir();
    char tok[1024], p[1024], out[16384];
    snprintf(tok, sizeof tok, "%s", yt_shared_path("yuan/tokenizer.model"));
    snprintf(p, sizeof p, "%s/records.jsonl", d);
    char recs[8192] = "";
    for (int i = 0; i < 4; i++) {
        size_t l = strlen(recs);
        snprintf(recs + l, sizeof recs - l, "{\"input\": \"%s\", \"output\": \"%s\"}\n", yt_serve_lines[i], k_answers[i]);
    }
    char *text = NULL, *rec = test_resume_record(&text);
    if (rec) snprintf(recs + strlen(recs), sizeof recs - strlen(recs), "%s\n", rec);
    free(rec);
    free(text);
    write_file(p, recs);
    /* the golden tiny model's shapes (its adapters fit), a pruned vocabulary */
    int rc = yt_train_small_yuan(out, sizeof out, d, p, tok, 96, 200, 7, "trained");
    CHECK(rc == 0, "init + train: exit %d: %s", rc, out);
    snprintf(dir, sizeof dir, "%s/trained", d);
    return dir;
}

const char *yt_serve_tokenizer(void) {
    static char p[1024];
    const char *t = yt_shared_path("yuan/tokenizer.model");
    char cwd[512];
    if (t[0] == '/') snprintf(p, sizeof p, "%s", t);
    else snprintf(p, sizeof p, "%s/%s", getcwd(cwd, sizeof cwd) ? cwd : ".", t);
    return p;
}

const char *yt_serve_long_model(void) {
    static char dir[1024];
    char p[1024], out[4096];
    snprintf(p, sizeof p, "%s/long.json", yt_tmpdir());
    write_file(p, "{\"vocab_size\": 320, \"hidden_size\": 64, \"intermediate_size\": 96, \"num_hidden_layers\": 2, "
                  "\"num_attention_heads\": 4, \"max_position_embeddings\": 4096, \"eod_token\": 3, \"sep_token\": 4, "
                  "\"torch_dtype\": \"float32\"}\n");
    snprintf(dir, sizeof dir, "%s/long", yt_tmpdir());
    int rc = yt_sh(out, sizeof out, "%s init --config %s --out %s --seed 5 2>&1", yt_cli(), p, dir);
    CHECK(rc == 0, "init: %s", out);
    return dir;
}

int yt_serve_up(yt_server *s, const char *model, const char *args) {
    char log[1024], cmd[4096];
    snprintf(log, sizeof log, "%s/serve-%d.log", yt_tmpdir(), rand());
    snprintf(cmd, sizeof cmd, "--model %s %s", model, args ? args : "");
    if (yt_serve_start(s, yt_cli(), cmd, log, 60) == 0) return 0;
    char *text = NULL;
    size_t n = 0;
    yf_read_file(log, &text, &n);
    CHECK(0, "yuanft serve %s did not come up: %s", cmd, text ? text : "(no log)");
    free(text);
    return -1;
}

void yt_serve_down(yt_server *s) {
    if (s->pid <= 0) return;
    int rc = yt_serve_stop(s, SIGTERM, 30);
    CHECK(rc == 0, "the server's exit status after SIGTERM: %d (log %s)", rc, s->log);
}

int yt_post_json(int port, const char *path, const char *body, const char *headers, cJSON **json) {
    yt_http_resp r;
    *json = NULL;
    yt_http(port, "POST", path, headers, body, strlen(body), 60, NULL, NULL, &r);
    if (r.body) *json = cJSON_ParseWithLength(r.body, r.len);
    int st = r.status;
    yt_http_resp_free(&r);
    return st;
}

const char *yt_choice_text(const cJSON *resp) {
    const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItem(resp, "choices"), 0);
    const cJSON *t = cJSON_GetObjectItem(ch, "text");
    if (!t) t = cJSON_GetObjectItem(cJSON_GetObjectItem(ch, "message"), "content");
    return cJSON_IsString(t) ? t->valuestring : NULL;
}

double yt_metric(const char *text, const char *name) {
    size_t nl = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, name, nl) && p[nl] == ' ') return atof(p + nl + 1);
    return -1;
}

char *yt_decode_ids(const char *ids_json) {
    static yf_tokenizer *tok;
    if (!tok) CHECK(yf_tokenizer_load(yt_shared_path("yuan/tokenizer.model"), &tok) == 0, "%s", yf_last_error());
    cJSON *a = cJSON_Parse(ids_json);
    int n = cJSON_GetArraySize(a);
    int64_t *ids = malloc((size_t)(n + 1) * sizeof(int64_t));
    int k = 0;
    for (cJSON *e = a ? a->child : NULL; e; e = e->next) ids[k++] = (int64_t)e->valuedouble;
    char *txt = NULL;
    size_t len = 0;
    if (!tok || yf_tokenizer_decode_n(tok, ids, (size_t)k, true, &txt, &len)) txt = strdup("(undecodable)");
    free(ids);
    cJSON_Delete(a);
    return txt;
}
