/* JSON Schema constraints (jsonschema.h): schemas of each kind accept and
 * refuse hand-written texts; `yuanft generate --json-schema` with the golden
 * tiny model (garbage text, greedy and sampled) writes JSON that validates
 * against its schema (checked with python3-jsonschema when installed);
 * schemas outside the subset are one-line errors naming the keyword. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "task/jsonschema.h"

static yf_constraint *schema(const char *text) {
    yf_constraint *c = NULL;
    CHECK(yf_constraint_json_schema(text, strlen(text), "schema", &c) == 0, "%s: %s", text, yf_last_error());
    return c;
}

static bool acc(const yf_constraint *c, const char *text) { return yf_constraint_accepts(c, "", 0, text, strlen(text)); }

static void cases(const char *sch, const char *const *good, size_t ng, const char *const *bad, size_t nb) {
    yf_constraint *c = schema(sch);
    if (!c) return;
    for (size_t i = 0; i < ng; i++) CHECK(acc(c, good[i]), "%s: rejected %s", sch, good[i]);
    for (size_t i = 0; i < nb; i++) CHECK(!acc(c, bad[i]), "%s: accepted %s", sch, bad[i]);
    yf_constraint_free(c);
}
#define CASES(s, g, b) cases(s, g, sizeof g / sizeof *g, b, sizeof b / sizeof *b)

static const char *k_person =
    "{\"type\": \"object\", \"properties\": {\"name\": {\"type\": \"string\", \"maxLength\": 5}, \"age\": {\"type\": "
    "\"integer\"}, \"tags\": {\"type\": \"array\", \"items\": {\"enum\": [\"a\", \"b\\\"c\"]}, \"minItems\": 1, "
    "\"maxItems\": 2}, \"ok\": {\"type\": \"boolean\"}, \"x\": {\"type\": \"null\"}, \"score\": {\"type\": \"number\"}}, "
    "\"required\": [\"name\", \"age\", \"score\"], \"additionalProperties\": false, \"title\": \"a person\"}";

TEST(jsonschema_object_cases) {
    static const char *good[] = {
        "{\"name\": \"\", \"age\": 0, \"score\": 0}",
        "{\"name\": \"高高高高高\", \"age\": -12, \"tags\": [\"a\", \"b\\\"c\"], \"ok\": false, \"x\": null, \"score\": -1.5e+3}",
        "{\"name\": \"a\\nb\", \"age\": 7, \"ok\": true, \"score\": 0.25}",
    };
    static const char *bad[] = {
        "{\"name\": \"\", \"age\": 0}",                                 /* score required */
        "{\"age\": 0, \"name\": \"\", \"score\": 0}",                   /* order */
        "{\"name\": \"\", \"age\": 0, \"score\": 0, \"extra\": 1}",     /* not listed */
        "{\"name\": \"高高高高高高\", \"age\": 0, \"score\": 0}",       /* maxLength 5 code points */
        "{\"name\": \"\", \"age\": 1.5, \"score\": 0}",                 /* integer */
        "{\"name\": \"\", \"age\": 01, \"score\": 0}",
        "{\"name\": \"\", \"age\": 0, \"tags\": [], \"score\": 0}",     /* minItems */
        "{\"name\": \"\", \"age\": 0, \"tags\": [\"a\", \"a\", \"a\"], \"score\": 0}", /* maxItems */
        "{\"name\": \"\", \"age\": 0, \"tags\": [\"c\"], \"score\": 0}", /* enum */
        "{\"name\": \"\", \"age\": 0, \"ok\": tru, \"score\": 0}",
        "{\"name\": \"\", \"age\": 0, \"score\": 1.}",
        "{\"name\": \"\", \"age\": 0, \"score\": -}",
        "{\"name\":\"\", \"age\": 0, \"score\": 0}",                    /* separators */
        "{\"name\": \"\", \"age\": 0, \"score\": 0} ",
    };
    CASES(k_person, good, bad);
}

TEST(jsonschema_top_level_kinds) {
    static const char *ig[] = {"0", "-0", "12", "-907"}, *ib[] = {"", "01", "1.0", "-", "1e3", " 1"};
    CASES("{\"type\": \"integer\"}", ig, ib);
    static const char *ng[] = {"0.5", "-1e-05", "3E+2", "7"}, *nb[] = {".5", "1.", "1e", "1e+", "NaN", "00"};
    CASES("{\"type\": \"number\"}", ng, nb);
    static const char *bg[] = {"true", "false"}, *bb[] = {"True", "tru", "null"};
    CASES("{\"type\": \"boolean\"}", bg, bb);
    static const char *zg[] = {"null"}, *zb[] = {"nul", "{}"};
    CASES("{\"type\": \"null\", \"description\": \"nothing\"}", zg, zb);
    static const char *eg[] = {"\"上海\"", "\"b\\\"c\""}, *eb[] = {"\"上\"", "\"上海市\"", "\"b\"c\""};
    CASES("{\"enum\": [\"上海\", \"b\\\"c\", \"北京\"]}", eg, eb);
    static const char *sg[] = {"\"ab\"", "\"\\u0001\\t\""}, *sb[] = {"\"a\"", "\"abcd\"", "\"\\u0041b\""};
    CASES("{\"type\": \"string\", \"minLength\": 2, \"maxLength\": 3}", sg, sb);
    static const char *ag[] = {"[]", "[{\"k\": [1, 2]}, {\"k\": []}]"}, *ab[] = {"[{}]", "[{\"k\": [1,2]}]", "[ ]"};
    CASES("{\"type\": \"array\", \"items\": {\"type\": \"object\", \"properties\": {\"k\": {\"type\": \"array\", \"items\": "
          "{\"type\": \"integer\"}}}, \"required\": [\"k\"]}}",
          ag, ab);
    static const char *og[] = {"{}"}, *ob[] = {"{\"a\": 1}"};
    CASES("{\"type\": \"object\"}", og, ob);
}

/* Schemas of each kind; outputs of the tiny model, greedy and sampled. */
static const char *const k_schemas[] = {
    NULL, /* k_person */
    "{\"type\": \"integer\"}",
    "{\"type\": \"number\"}",
    "{\"type\": \"boolean\"}",
    "{\"type\": \"null\"}",
    "{\"type\": \"string\", \"maxLength\": 12}",
    "{\"enum\": [\"上海\", \"北京\", \"a\\\"b\"]}",
    "{\"type\": \"array\", \"items\": {\"type\": \"string\", \"minLength\": 1}, \"minItems\": 2, \"maxItems\": 4}",
    "{\"type\": \"object\", \"properties\": {\"items\": {\"type\": \"array\", \"items\": {\"type\": \"object\", \"properties\": "
    "{\"id\": {\"type\": \"integer\"}, \"ok\": {\"type\": \"boolean\"}}, \"required\": [\"id\"]}}}, \"required\": [\"items\"]}",
};
#define N_SCHEMAS (sizeof k_schemas / sizeof *k_schemas)

TEST(jsonschema_generate_outputs_validate) {
    const char *d = yt_tmpdir();
    char model[1024], tok[1024]; /* yt_shared_path's buffer is static */
    snprintf(model, sizeof model, "%s", yt_shared_path("golden/yuan-tiny"));
    snprintf(tok, sizeof tok, "%s", yt_shared_path("yuan/tokenizer.model"));
    char path[1024], out[16384];
    snprintf(path, sizeof path, "%s/cases.jsonl", d);
    FILE *cases = fopen(path, "w");
    CHECK(cases != NULL);
    if (!cases) return;
    int n = 0;
    for (size_t i = 0; i < N_SCHEMAS; i++) {
        const char *sch = k_schemas[i] ? k_schemas[i] : k_person;
        char sp[1024];
        snprintf(sp, sizeof sp, "%s/s%zu.json", d, i);
        CHECK(yf_write_file_atomic(sp, sch, strlen(sch)) == 0);
        yf_constraint *c = schema(sch);
        /* greedy at a roomy budget and at a tighter one (the person's shortest answer takes 32), then sampled */
        static const char *const runs[] = {"--max-new-tokens 120", "--max-new-tokens 48", "--temperature 1 --seed 1",
                                           "--temperature 1 --seed 2", "--temperature 0.7 --top-p 0.9 --seed 3"};
        for (size_t r = 0; r < sizeof runs / sizeof *runs; r++) {
            int rc = yt_sh(out, sizeof out,
                           "%s generate --model %s --tokenizer %s --prompt-ids 279,71,43,4,4 --json-schema %s "
                           "--max-new-tokens 120 %s 2>/dev/null",
                           yt_cli(), model, tok, sp, runs[r]);
            size_t len = strlen(out);
            while (len && out[len - 1] == '\n') out[--len] = 0;
            CHECK(rc == 0, "schema %zu, %s: exit %d: %s", i, runs[r], rc, out);
            CHECK(c && acc(c, out), "schema %zu, %s: not an answer of the schema: %s", i, runs[r], out);
            cJSON *j = cJSON_ParseWithLength(out, len);
            CHECK(j != NULL, "schema %zu, %s: not JSON: %s", i, runs[r], out);
            cJSON_Delete(j);
            cJSON *rec = cJSON_CreateObject();
            cJSON_AddStringToObject(rec, "schema", sch);
            cJSON_AddStringToObject(rec, "text", out);
            char *line = cJSON_PrintUnformatted(rec);
            fprintf(cases, "%s\n", line);
            free(line);
            cJSON_Delete(rec);
            n++;
        }
        yf_constraint_free(c);
    }
    fclose(cases);
    CHECK(n >= 40, "%d outputs", n);
    int rc = yt_sh(out, sizeof out, "python3 -c 'import jsonschema' 2>&1");
    if (rc != 0) yt_skip("python3-jsonschema is not installed (apt-get install python3-jsonschema): outputs checked by the grammar only");
    rc = yt_sh(out, sizeof out,
               "python3 -c '\n"
               "import json, sys, jsonschema\n"
               "bad = 0\n"
               "for line in open(sys.argv[1], encoding=\"utf-8\"):\n"
               "    c = json.loads(line)\n"
               "    try:\n"
               "        jsonschema.validate(json.loads(c[\"text\"]), json.loads(c[\"schema\"]))\n"
               "    except Exception as e:\n"
               "        bad += 1; print(\"INVALID\", c[\"text\"], str(e).splitlines()[0])\n"
               "print(\"checked\", sum(1 for _ in open(sys.argv[1], encoding=\"utf-8\")), \"invalid\", bad)\n"
               "' %s 2>&1",
               path);
    CHECK(rc == 0 && strstr(out, " invalid 0"), "python3-jsonschema: %s", out);
}

/* A budget below the schema's shortest answer: a warning, and the output
 * is that answer's beginning; at the budget it takes, complete. */
TEST(jsonschema_generate_budget) {
    const char *d = yt_tmpdir();
    char model[1024], tok[1024]; /* yt_shared_path's buffer is static */
    snprintf(model, sizeof model, "%s", yt_shared_path("golden/yuan-tiny"));
    snprintf(tok, sizeof tok, "%s", yt_shared_path("yuan/tokenizer.model"));
    char sp[1024], out[8192];
    snprintf(sp, sizeof sp, "%s/s.json", d);
    CHECK(yf_write_file_atomic(sp, k_person, strlen(k_person)) == 0);
    int rc = yt_sh(out, sizeof out,
                   "%s generate --model %s --tokenizer %s --prompt-ids 279,71,43,4,4 --json-schema %s --max-new-tokens 10 2>&1",
                   yt_cli(), model, tok, sp);
    CHECK(rc == 0 && strstr(out, "warning: the shortest JSON this schema allows takes 32 tokens"), "exit %d: %s", rc, out);
    yf_constraint *c = schema(k_person);
    for (int budget = 32; budget <= 40; budget++) {
        rc = yt_sh(out, sizeof out,
                   "%s generate --model %s --tokenizer %s --prompt-ids 279,71,43,4,4 --json-schema %s --max-new-tokens %d "
                   "--temperature 1 --seed %d 2>/dev/null",
                   yt_cli(), model, tok, sp, budget, budget);
        size_t len = strlen(out);
        while (len && out[len - 1] == '\n') out[--len] = 0;
        CHECK(rc == 0 && c && acc(c, out), "budget %d: '%s'", budget, out);
    }
    yf_constraint_free(c);
}

TEST(jsonschema_bad_schemas) {
    static const struct {
        const char *schema, *want;
    } bad[] = {
        {"{\"type\": \"string\", \"pattern\": \"^a\"}", "keyword 'pattern' is outside the supported subset"},
        {"{\"type\": [\"string\", \"null\"]}", "a list of types is outside"},
        {"{\"anyOf\": [{\"type\": \"string\"}]}", "needs a \"type\""},
        {"{\"type\": \"object\", \"properties\": {\"a\": {\"$ref\": \"#\"}}}", "#/properties/a"},
        {"{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"string\"}}, \"required\": [\"b\"]}", "names 'b'"},
        {"{\"type\": \"array\"}", "needs \"items\""},
        {"{\"type\": \"string\", \"minLength\": 3, \"maxLength\": 2}", "above"},
        {"{\"type\": \"array\", \"items\": {\"type\": \"null\"}, \"minItems\": -1}", "non-negative integer"},
        {"{\"enum\": [1, 2]}", "must be a string"},
        {"{\"enum\": []}", "non-empty"},
        {"{\"type\": \"object\", \"additionalProperties\": {\"type\": \"string\"}}", "must be true or false"},
        {"{\"type\": \"integer\", \"minimum\": 0}", "keyword 'minimum'"},
        {"{\"type\": \"date\"}", "must be object, array"},
        {"{\"type\": \"object\"", "not valid JSON"},
        {"[]", "must be an object"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        yf_constraint *c = NULL;
        int rc = yf_constraint_json_schema(bad[i].schema, strlen(bad[i].schema), "s.json", &c);
        const char *e = yf_last_error();
        CHECK(rc != 0 && c == NULL && strstr(e, bad[i].want) && strstr(e, "s.json") && !strchr(e, '\n'), "%s: rc %d, '%s'",
              bad[i].schema, rc, e);
    }
    /* nesting deeper than 16, and 65 properties */
    char deep[2048] = "";
    for (int i = 0; i < 17; i++) strcat(deep, "{\"type\": \"array\", \"items\": ");
    strcat(deep, "{\"type\": \"null\"}");
    for (int i = 0; i < 17; i++) strcat(deep, "}");
    yf_constraint *c = NULL;
    CHECK(yf_constraint_json_schema(deep, strlen(deep), "s", &c) != 0 && strstr(yf_last_error(), "deeper than 16"), "%s",
          yf_last_error());
    char wide[8192] = "{\"type\": \"object\", \"properties\": {";
    for (int i = 0; i < 65; i++) {
        size_t l = strlen(wide);
        snprintf(wide + l, sizeof wide - l, "%s\"p%d\": {\"type\": \"null\"}", i ? ", " : "", i);
    }
    strcat(wide, "}}");
    CHECK(yf_constraint_json_schema(wide, strlen(wide), "s", &c) != 0 && strstr(yf_last_error(), "at most 64"), "%s",
          yf_last_error());
    /* the CLI: one line, exit 1, before the model is loaded */
    char sp[1024], out[4096];
    snprintf(sp, sizeof sp, "%s/bad.json", yt_tmpdir());
    CHECK(yf_write_file_atomic(sp, bad[0].schema, strlen(bad[0].schema)) == 0);
    int rc = yt_sh(out, sizeof out, "%s generate --model %s/none --prompt-ids 1 --json-schema %s", yt_cli(), yt_tmpdir(), sp);
    CHECK(rc == 1 && strstr(out, "pattern") && strchr(out, '\n') == out + strlen(out) - 1, "exit %d: %s", rc, out);
    rc = yt_sh(out, sizeof out, "%s generate --model x --prompt-ids 1 --json-schema %s/missing.json", yt_cli(), yt_tmpdir());
    CHECK(rc == 1 && strstr(out, "missing.json"), "exit %d: %s", rc, out);
}
