/* The server's pieces that need no socket: request bodies (good, bad, and
 * every prefix of a good one), entity spans, the API key comparison, the
 * response shapes and the metrics text. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "serve/openai.h"
#include "serve/request.h"
#include "serve/server.h"

static void bad(yf_api_kind kind, const char *body, const char *param) {
    yf_api_request r;
    yf_api_error e;
    int rc = yf_api_parse(kind, body, strlen(body), &r, &e);
    CHECK(rc == -1 && e.status == 400 && !strcmp(e.param, param) && e.message[0],
          "%s: rc %d, status %d, param '%s' (want '%s'): %s", body, rc, e.status, e.param, param, e.message);
    if (rc == 0) yf_api_request_free(&r);
}

TEST(serve_parse_bad_bodies) {
    bad(YF_API_COMPLETION, "", "");
    bad(YF_API_COMPLETION, "{", "");
    bad(YF_API_COMPLETION, "null", "");
    bad(YF_API_COMPLETION, "\"text\"", "");
    bad(YF_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\"}}", "");
    bad(YF_API_COMPLETION, "{\"prompt\": \"x\"}", "model");
    bad(YF_API_COMPLETION, "{\"model\": [], \"prompt\": \"x\"}", "model");
    bad(YF_API_COMPLETION, "{\"model\": \"m\"}", "prompt");
    bad(YF_API_COMPLETION, "{\"model\": \"m\", \"prompt\": null}", "prompt");
    bad(YF_API_COMPLETION, "{\"model\": \"m\", \"prompt\": []}", "prompt");
    bad(YF_API_COMPLETION, "{\"model\": \"m\", \"prompt\": [\"a\", \"b\"]}", "prompt");
    bad(YF_API_COMPLETION, "{\"model\": \"m\", \"prompt\": [1, 2.5]}", "prompt");
    bad(YF_API_COMPLETION, "{\"model\": \"m\", \"prompt\": [[1, 2]]}", "prompt");
    bad(YF_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"\xc3\x28\"}", "prompt");
    bad(YF_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"max_tokens\": 0}", "max_tokens");
    bad(YF_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"max_tokens\": 1e30}", "max_tokens");
    bad(YF_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"max_tokens\": \"8\"}", "max_tokens");
    bad(YF_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"temperature\": -0.1}", "temperature");
    bad(YF_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"top_p\": 1.5}", "top_p");
    bad(YF_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"top_k\": -1}", "top_k");
    bad(YF_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"repetition_penalty\": 0}", "repetition_penalty");
    bad(YF_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"seed\": 0.5}", "seed");
    bad(YF_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"stop\": 3}", "stop");
    bad(YF_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"stop\": [\"\"]}", "stop");
    bad(YF_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"stop\": [\"a\", 1]}", "stop");
    bad(YF_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"stream\": \"yes\"}", "stream");
    bad(YF_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"stream_options\": 1}", "stream_options");
    bad(YF_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"stream_options\": {\"include_usage\": 1}}", "include_usage");
    bad(YF_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"n\": 3}", "n");
    bad(YF_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"logprobs\": 5}", "logprobs");
    bad(YF_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"echo\": true}", "echo");
    bad(YF_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"response_format\": \"json\"}", "response_format");
    bad(YF_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"response_format\": {\"type\": \"json_schema\"}}",
        "response_format.json_schema");
    bad(YF_API_COMPLETION,
        "{\"model\": \"m\", \"prompt\": \"x\", \"response_format\": {\"type\": \"json_schema\", \"json_schema\": {\"schema\": 3}}}",
        "response_format.json_schema.schema");
    bad(YF_API_CHAT, "{\"model\": \"m\"}", "messages");
    bad(YF_API_CHAT, "{\"model\": \"m\", \"messages\": []}", "messages");
    bad(YF_API_CHAT, "{\"model\": \"m\", \"messages\": [3]}", "messages[0]");
    bad(YF_API_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"robot\"}]}",
        "messages[1].role");
    bad(YF_API_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\"}]}]}",
        "messages[0].content");
    bad(YF_API_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"a\"}], \"max_completion_tokens\": 0}",
        "max_completion_tokens");
    bad(YF_API_EXTRACT, "{}", "text");
    bad(YF_API_EXTRACT, "{\"text\": [\"a\"]}", "text");
    bad(YF_API_EXTRACT, "{\"text\": \"a\", \"types\": []}", "types");
    bad(YF_API_EXTRACT, "{\"text\": \"a\", \"types\": [\"姓名\", 3]}", "types");
    bad(YF_API_EXTRACT, "{\"text\": \"a\", \"types\": [\"电话\"]}", "types");
    bad(YF_API_EXTRACT, "{\"text\": \"a\", \"adapter\": 1}", "adapter");
    bad(YF_API_EXTRACT, "{\"text\": \"a\", \"max_tokens\": -1}", "max_tokens");
    /* every prefix of a good body, and bytes flipped in it: an answer, never a crash */
    const char *good = "{\"model\": \"lora\", \"messages\": [{\"role\": \"system\", \"content\": \"be brief\"}, {\"role\": \"user\", "
                       "\"content\": [{\"type\": \"text\", \"text\": \"张伟\"}]}], \"max_tokens\": 8, \"stop\": [\"。\"], "
                       "\"stream\": true, \"response_format\": {\"type\": \"json_schema\", \"json_schema\": {\"name\": \"x\", "
                       "\"schema\": {\"type\": \"object\"}}}}";
    size_t n = strlen(good);
    int ok = 0;
    char *buf = malloc(n + 1);
    for (size_t k = 0; k <= n; k++) {
        yf_api_request r;
        yf_api_error e;
        if (yf_api_parse(YF_API_CHAT, good, k, &r, &e) == 0) ok++, yf_api_request_free(&r);
        memcpy(buf, good, n + 1);
        buf[k % n] ^= (char)(0x55 + k);
        if (yf_api_parse(YF_API_CHAT, buf, n, &r, &e) == 0) yf_api_request_free(&r);
    }
    free(buf);
    CHECK(ok == 1, "%d prefixes of a body parsed; only the whole one should", ok);
}

TEST(serve_parse_fields) {
    yf_api_request r;
    yf_api_error e;
    const char *c = "{\"model\": \"lora\", \"prompt\": [1, 2, 3], \"max_tokens\": 7, \"temperature\": 0.5, \"top_p\": 0.9, "
                    "\"top_k\": 40, \"repetition_penalty\": 1.2, \"seed\": -1, \"stop\": \"END\", \"stream\": true, "
                    "\"stream_options\": {\"include_usage\": true}, \"logprobs\": null, \"n\": 1, \"user\": \"ignored\"}";
    CHECK(yf_api_parse(YF_API_COMPLETION, c, strlen(c), &r, &e) == 0, "%s", e.message);
    CHECK(!strcmp(r.model, "lora") && !r.prompt && r.n_prompt_ids == 3 && r.prompt_ids[2] == 3);
    CHECK(r.max_tokens == 7 && r.temperature == 0.5 && r.top_p == 0.9 && r.top_k == 40 && r.repetition_penalty == 1.2);
    CHECK(r.has_seed && r.seed == UINT64_MAX && r.nstop == 1 && !strcmp(r.stop[0], "END"));
    CHECK(r.stream && r.include_usage && r.format == YF_FORMAT_TEXT);
    yf_api_request_free(&r);
    const char *ch = "{\"model\": \"base\", \"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": "
                     "\"a\"}, {\"type\": \"text\", \"text\": \"b\"}]}, {\"role\": \"assistant\", \"content\": null}], "
                     "\"max_completion_tokens\": 5, \"max_tokens\": 9, \"response_format\": {\"type\": \"json_schema\", "
                     "\"json_schema\": {\"name\": \"person\", \"strict\": true, \"schema\": {\"type\": \"object\", "
                     "\"properties\": {\"name\": {\"type\": \"string\"}}}}}}";
    CHECK(yf_api_parse(YF_API_CHAT, ch, strlen(ch), &r, &e) == 0, "%s", e.message);
    CHECK(r.nmsgs == 2 && !strcmp(r.msgs[0].content, "ab") && !strcmp(r.msgs[1].content, ""));
    CHECK(r.max_tokens == 5, "max_completion_tokens wins: %lld", (long long)r.max_tokens);
    CHECK(r.format == YF_FORMAT_JSON_SCHEMA && r.schema_strict && !strcmp(r.schema_name, "person") &&
              !strcmp(r.schema, "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"}}}"),
          "schema %s", r.schema ? r.schema : "");
    yf_api_request_free(&r);
    const char *x = "{\"text\": \"张伟\", \"types\": [\"姓名\", \"ORG\"], \"adapter\": \"dora\"}";
    CHECK(yf_api_parse(YF_API_EXTRACT, x, strlen(x), &r, &e) == 0, "%s", e.message);
    CHECK(!strcmp(r.text, "张伟") && !strcmp(r.model, "dora") && r.types == ((1u << 0) | (1u << 6)) && r.max_tokens == -1);
    yf_api_request_free(&r);
}

TEST(serve_spans_character_offsets) {
    yf_answer a;
    yf_answer_init(&a);
    yf_answer_add(&a, 1, "中国国籍", strlen("中国国籍"));
    yf_answer_add(&a, 7, "中国", strlen("中国"));
    yf_answer_add(&a, 0, "Ann", 3);
    yf_answer_add(&a, 6, "不在文中", strlen("不在文中"));
    /* "Ann😀，中国国籍；中国。Ann" : 😀 is one character of 4 bytes */
    const char *t = "Ann\xF0\x9F\x98\x80，中国国籍；中国。Ann";
    yf_span *s;
    size_t n;
    yf_spans_find(&a, 0, t, strlen(t), &s, &n);
    static const struct {
        int type;
        int64_t start, end;
    } want[] = {{0, 0, 3}, {1, 5, 9}, {7, 5, 7}, {7, 10, 12}, {0, 13, 16}};
    CHECK(n == 5, "%zu spans", n);
    for (size_t i = 0; i < n && i < 5; i++)
        CHECK(s[i].type == want[i].type && s[i].start == want[i].start && s[i].end == want[i].end &&
                  !memcmp(t + s[i].bstart, s[i].entity, s[i].bend - s[i].bstart),
              "span %zu: type %d [%lld, %lld), want type %d [%lld, %lld)", i, s[i].type, (long long)s[i].start,
              (long long)s[i].end, want[i].type, (long long)want[i].start, (long long)want[i].end);
    free(s);
    yf_spans_find(&a, 1u << 7, t, strlen(t), &s, &n);
    CHECK(n == 2 && s[0].type == 7 && s[1].type == 7, "mask 地名: %zu spans", n);
    free(s);
    yf_answer_free(&a);
}

TEST(serve_api_key_constant_time_compare) {
    CHECK(yf_api_key_equal("secret", 6, "secret"));
    CHECK(!yf_api_key_equal("secre", 5, "secret"));
    CHECK(!yf_api_key_equal("secretX", 7, "secret"));
    CHECK(!yf_api_key_equal("Secret", 6, "secret"));
    CHECK(!yf_api_key_equal("", 0, "secret"));
    CHECK(!yf_api_key_equal("secret\0x", 8, "secret"), "bytes after a NUL count");
}

TEST(serve_response_shapes_are_json) {
    yf_api_usage u = {5, 3};
    char *t[6];
    t[0] = yf_api_completion_json(YF_API_COMPLETION, "cmpl-1", 7, "base", "a\0b\"c", 5, "length", &u);
    t[1] = yf_api_completion_json(YF_API_CHAT, "chatcmpl-1", 7, "lora", "你好", strlen("你好"), "stop", &u);
    t[2] = yf_api_chunk_event(YF_API_CHAT, "chatcmpl-1", 7, "lora", "x", 1, true, NULL, NULL);
    t[3] = yf_api_chunk_event(YF_API_COMPLETION, "cmpl-1", 7, "base", NULL, 0, false, NULL, &u);
    yf_api_error e;
    yf_api_fail(&e, 400, "invalid_request_error", NULL, "max_tokens", "bad \"value\"\n");
    t[4] = yf_api_error_json(&e);
    const char *ad[2] = {"lora", "dora"};
    t[5] = yf_api_models_json(ad, 2, 9);
    for (int i = 0; i < 6; i++) {
        const char *body = (i == 2 || i == 3) ? t[i] + 6 : t[i]; /* events: after "data: " */
        cJSON *j = cJSON_Parse(body);
        CHECK(j != NULL, "not JSON: %s", t[i]);
        if (i == 0) {
            const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
            CHECK(!strcmp(cJSON_GetObjectItem(j, "object")->valuestring, "text_completion") &&
                  !strcmp(cJSON_GetObjectItem(ch, "finish_reason")->valuestring, "length") &&
                  cJSON_GetObjectItem(cJSON_GetObjectItem(j, "usage"), "total_tokens")->valuedouble == 8);
            CHECK(strstr(t[0], "\"a\\u0000b\\\"c\""), "a NUL in the text is escaped: %s", t[0]);
        }
        if (i == 1)
            CHECK(!strcmp(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0),
                                                                  "message"), "content")->valuestring, "你好"));
        if (i == 3) CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(j, "choices")) == 0 && cJSON_GetObjectItem(j, "usage"));
        if (i == 4)
            CHECK(!strcmp(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), "param")->valuestring, "max_tokens"));
        if (i == 5) CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(j, "data")) == 3);
        cJSON_Delete(j);
        free(t[i]);
    }
}

TEST(serve_metrics_text_format) {
    yf_sched_stats st = {.parallel = 4, .active = 2, .queued = 1, .processed = 10, .generated_tokens = 300,
                         .decode_s = 2, .prefill_s = 1, .steps = 50, .step_rows = 150};
    yf_http_counters hc = {.requests = 12, .overhead_ns = 2000000, .overhead_n = 4};
    char *t = yf_metrics_text(&st, &hc, NULL, 3, true);
    int samples = 0, help = 0, type = 0;
    for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strncmp(line, "# HELP yuanft_", 14)) help++;
        else if (!strncmp(line, "# TYPE yuanft_", 14)) type++;
        else {
            char name[128];
            double v;
            CHECK(sscanf(line, "%127s %lf", name, &v) == 2 && !strncmp(name, "yuanft_", 7), "sample line: %s", line);
            samples++;
            if (!strcmp(name, "yuanft_generated_tokens_per_second")) CHECK_NEAR("tokens/s (300 in 3 s)", v - 100, 1e-9);
            if (!strcmp(name, "yuanft_batch_occupancy_mean")) CHECK_NEAR("mean occupancy (3 of 4)", v - 0.75, 1e-9);
            if (!strcmp(name, "yuanft_http_overhead_seconds_mean")) CHECK_NEAR("overhead (0.5 ms)", v - 5e-4, 1e-12);
        }
    }
    CHECK(samples > 10 && samples == help && samples == type, "%d samples, %d HELP, %d TYPE", samples, help, type);
    free(t);
}
