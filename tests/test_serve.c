/* `yuanft serve` over HTTP as a client sees it: bad requests and their
 * errors, the API key, body limits, streaming, a client that leaves, a
 * full queue, SIGTERM. The server runs as a child process (build/yuanft,
 * or YF_CLI: the ASan build for the *bad* tests) on a free loopback port. */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/util.h"
#include "harness.h"
#include "test_serve_util.h"

/* The error object of an answer: its param and code ("" when null). */
static void check_error(const cJSON *j, int status, int want_status, const char *want_param, const char *what) {
    const cJSON *e = cJSON_GetObjectItem(j, "error");
    const cJSON *param = cJSON_GetObjectItem(e, "param"), *msg = cJSON_GetObjectItem(e, "message");
    const char *ps = cJSON_IsString(param) ? param->valuestring : "";
    CHECK(status == want_status, "%s: status %d, want %d", what, status, want_status);
    CHECK(cJSON_IsString(msg) && msg->valuestring[0], "%s: no error message", what);
    CHECK(cJSON_IsString(cJSON_GetObjectItem(e, "type")), "%s: no error type", what);
    CHECK(!strcmp(ps, want_param), "%s: error names '%s', want '%s' (%s)", what, ps, want_param,
          cJSON_IsString(msg) ? msg->valuestring : "");
}

static void expect(int port, const char *path, const char *body, const char *hdr, int want, const char *param) {
    cJSON *j;
    int st = yt_post_json(port, path, body, hdr, &j);
    check_error(j, st, want, param, body);
    cJSON_Delete(j);
}

TEST(serve_bad_requests) {
    const char *model = yt_serve_golden_model();
    char args[2048];
    snprintf(args, sizeof args, "--api-key sekret-key --max-body 4096 --adapter lora=%s --adapter dora=%s",
             yt_shared_path("golden/yuan-tiny/lora"), yt_shared_path("golden/yuan-tiny/dora"));
    yt_server s;
    if (yt_serve_up(&s, model, args)) return;
    int p = s.port;
    const char *key = "Authorization: Bearer sekret-key\r\n";
    /* the API key: missing, wrong (also a prefix of the right one), right */
    expect(p, "/v1/completions", "{\"model\": \"base\", \"prompt\": \"x\"}", NULL, 401, "");
    expect(p, "/v1/completions", "{\"model\": \"base\", \"prompt\": \"x\"}", "Authorization: Bearer sekret\r\n", 401, "");
    expect(p, "/v1/completions", "{\"model\": \"base\", \"prompt\": \"x\"}", "Authorization: Bearer sekret-keyX\r\n", 401, "");
    cJSON *j;
    int st = yt_post_json(p, "/v1/completions", "{\"model\": \"base\", \"prompt\": \"张伟\", \"max_tokens\": 2}", key, &j);
    CHECK(st == 200 && yt_choice_text(j), "with the key: status %d", st);
    cJSON_Delete(j);
    /* malformed JSON, wrong types, values out of range: 400 naming the field */
    expect(p, "/v1/completions", "{\"model\": \"base\", \"prompt\": ", key, 400, "");
    expect(p, "/v1/completions", "[1, 2]", key, 400, "");
    expect(p, "/v1/completions", "{\"model\": \"base\", \"prompt\": \"x\"} trailing", key, 400, "");
    expect(p, "/v1/completions", "{\"model\": 5, \"prompt\": \"x\"}", key, 400, "model");
    expect(p, "/v1/completions", "{\"prompt\": \"x\"}", key, 400, "model");
    expect(p, "/v1/completions", "{\"model\": \"base\", \"prompt\": 5}", key, 400, "prompt");
    expect(p, "/v1/completions", "{\"model\": \"base\", \"prompt\": [1, -2]}", key, 400, "prompt");
    expect(p, "/v1/completions", "{\"model\": \"base\", \"prompt\": \"\xffx\"}", key, 400, "prompt");
    expect(p, "/v1/completions", "{\"model\": \"base\", \"prompt\": \"x\", \"max_tokens\": -3}", key, 400, "max_tokens");
    expect(p, "/v1/completions", "{\"model\": \"base\", \"prompt\": \"x\", \"max_tokens\": 2.5}", key, 400, "max_tokens");
    expect(p, "/v1/completions", "{\"model\": \"base\", \"prompt\": \"x\", \"max_tokens\": 100000}", key, 400, "max_tokens");
    expect(p, "/v1/completions", "{\"model\": \"base\", \"prompt\": \"x\", \"temperature\": \"hot\"}", key, 400, "temperature");
    expect(p, "/v1/completions", "{\"model\": \"base\", \"prompt\": \"x\", \"temperature\": 7}", key, 400, "temperature");
    expect(p, "/v1/completions", "{\"model\": \"base\", \"prompt\": \"x\", \"top_p\": 0}", key, 400, "top_p");
    expect(p, "/v1/completions", "{\"model\": \"base\", \"prompt\": \"x\", \"stream\": 1}", key, 400, "stream");
    expect(p, "/v1/completions", "{\"model\": \"base\", \"prompt\": \"x\", \"n\": 2}", key, 400, "n");
    expect(p, "/v1/completions", "{\"model\": \"base\", \"prompt\": \"x\", \"stop\": [\"a\", \"b\", \"c\", \"d\", \"e\"]}", key, 400,
           "stop");
    expect(p, "/v1/completions", "{\"model\": \"base\", \"prompt\": \"x\", \"response_format\": {\"type\": \"yaml\"}}", key,
           400, "response_format.type");
    /* an unknown adapter: 404 with an error object */
    expect(p, "/v1/completions", "{\"model\": \"gpt-4\", \"prompt\": \"x\"}", key, 404, "model");
    expect(p, "/v1/chat/completions", "{\"model\": \"nope\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}", key,
           404, "model");
    expect(p, "/v1/extract", "{\"text\": \"x\", \"adapter\": \"nope\"}", key, 404, "adapter");
    /* a prompt longer than the context (256) */
    char big[4096] = "{\"model\": \"lora\", \"prompt\": [";
    for (int i = 0; i < 300; i++) snprintf(big + strlen(big), sizeof big - strlen(big), "%s%d", i ? "," : "", 5 + i % 200);
    strcat(big, "]}");
    expect(p, "/v1/completions", big, key, 400, "prompt");
    /* chat and extract fields */
    expect(p, "/v1/chat/completions", "{\"model\": \"base\", \"messages\": \"hi\"}", key, 400, "messages");
    expect(p, "/v1/chat/completions", "{\"model\": \"base\", \"messages\": [{\"content\": \"hi\"}]}", key, 400,
           "messages[0].role");
    expect(p, "/v1/chat/completions", "{\"model\": \"base\", \"messages\": [{\"role\": \"user\", \"content\": 3}]}", key, 400,
           "messages[0].content");
    expect(p, "/v1/extract", "{\"types\": [\"姓名\"]}", key, 400, "text");
    expect(p, "/v1/extract", "{\"text\": \"x\", \"types\": [\"PHONE\"]}", key, 400, "types");
    expect(p, "/v1/extract", "{\"text\": 5}", key, 400, "text");
    expect(p, "/v1/extract", "{\"text\": \"x\", \"constrain\": \"json\"}", key, 400, "constrain");
    /* response_format: free-form json_object is not supported; a schema
     * outside the subset, or whose shortest answer max_tokens cuts */
    expect(p, "/v1/chat/completions",
           "{\"model\": \"base\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"response_format\": "
           "{\"type\": \"json_object\"}}",
           key, 400, "response_format.type");
    expect(p, "/v1/chat/completions",
           "{\"model\": \"base\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"response_format\": "
           "{\"type\": \"json_schema\", \"json_schema\": {\"name\": \"a\", \"schema\": {\"type\": \"object\", "
           "\"patternProperties\": {}}}}}",
           key, 400, "response_format.json_schema.schema");
    expect(p, "/v1/completions",
           "{\"model\": \"base\", \"prompt\": \"x\", \"max_tokens\": 2, \"response_format\": {\"type\": \"json_schema\", "
           "\"json_schema\": {\"schema\": {\"type\": \"object\", \"properties\": {\"name\": {\"type\": \"string\"}}, "
           "\"required\": [\"name\"]}}}}",
           key, 400, "max_tokens");
    /* a body over --max-body: 413, with Content-Length and sent anyway */
    char *huge = malloc(8192);
    memset(huge, ' ', 8191);
    huge[8191] = 0;
    memcpy(huge, "{\"model\": \"base\", \"prompt\": \"x\"}", 32);
    expect(p, "/v1/completions", huge, key, 413, "");
    free(huge);
    /* routes and methods */
    yt_http_resp r;
    yt_http(p, "GET", "/v1/nothing", key, NULL, 0, 10, NULL, NULL, &r);
    CHECK(r.status == 404, "unknown path: %d", r.status);
    yt_http_resp_free(&r);
    yt_http(p, "GET", "/v1/completions", key, NULL, 0, 10, NULL, NULL, &r);
    CHECK(r.status == 405, "GET on a POST endpoint: %d", r.status);
    yt_http_resp_free(&r);
    /* /health and / need no key; /metrics does */
    yt_http(p, "GET", "/health", NULL, NULL, 0, 10, NULL, NULL, &r);
    CHECK(r.status == 200 && strstr(r.body, "ok"), "health: %d %s", r.status, r.body);
    yt_http_resp_free(&r);
    yt_http(p, "GET", "/metrics", NULL, NULL, 0, 10, NULL, NULL, &r);
    CHECK(r.status == 401, "metrics without the key: %d", r.status);
    yt_http_resp_free(&r);
    yt_http(p, "GET", "/metrics", key, NULL, 0, 10, NULL, NULL, &r);
    CHECK(r.status == 200 && yt_metric(r.body, "yuanft_http_unauthorized_total") == 4 &&
              yt_metric(r.body, "yuanft_http_body_too_large_total") == 1,
          "metrics: %d\n%s", r.status, r.body);
    yt_http_resp_free(&r);
    yt_http(p, "GET", "/v1/models", key, NULL, 0, 10, NULL, NULL, &r);
    CHECK(r.status == 200 && strstr(r.body, "\"lora\"") && strstr(r.body, "\"dora\"") && strstr(r.body, "\"base\""),
          "models: %s", r.body);
    yt_http_resp_free(&r);
    yt_serve_down(&s);
}

TEST(serve_bad_start) {
    char out[4096];
    const char *model = yt_serve_golden_model();
    int rc = yt_sh(out, sizeof out, "%s serve --model %s --adapter nameonly 2>&1", yt_cli(), model);
    CHECK(rc == 1 && strstr(out, "NAME=DIR"), "adapter without a dir: exit %d: %s", rc, out);
    rc = yt_sh(out, sizeof out, "%s serve --model %s --adapter base=%s 2>&1", yt_cli(), model,
               yt_shared_path("golden/yuan-tiny/lora"));
    CHECK(rc == 1 && strstr(out, "base"), "an adapter named base: exit %d: %s", rc, out);
    rc = yt_sh(out, sizeof out, "%s serve --model %s --adapter a=%s/missing 2>&1", yt_cli(), model, yt_tmpdir());
    CHECK(rc == 1 && strstr(out, "missing"), "missing adapter: exit %d: %s", rc, out);
    rc = yt_sh(out, sizeof out, "%s serve --model %s/none --port 0 2>&1", yt_cli(), yt_tmpdir());
    CHECK(rc == 1 && strstr(out, "none"), "missing model: exit %d: %s", rc, out);
    rc = yt_sh(out, sizeof out, "%s serve --model %s --parallel 0 2>&1", yt_cli(), model);
    CHECK(rc == 1 && strstr(out, "--parallel"), "--parallel 0: exit %d: %s", rc, out);
    rc = yt_sh(out, sizeof out, "%s serve --model %s --max-length 100000 --port 0 2>&1", yt_cli(), model);
    CHECK(rc == 1 && strstr(out, "--max-length"), "--max-length past the model's: exit %d: %s", rc, out);
    rc = yt_sh(out, sizeof out, "%s serve --model %s --host no.such.host.invalid 2>&1", yt_cli(), model);
    CHECK(rc == 1 && strstr(out, "--host"), "bad host: exit %d: %s", rc, out);
}

/* ---- streaming ---------------------------------------------------------------- */

/* The text of a stream's events joined, its finish reason, and checks on
 * the framing: every event "data: {json}", the last "data: [DONE]". */
static char *sse_text(const char *body, bool chat, char *finish, size_t fcap, int *nusage) {
    char *out = calloc(1, strlen(body) + 1);
    const char *p = body;
    bool done = false, first = true;
    *nusage = 0;
    finish[0] = 0;
    while (*p) {
        const char *e = strstr(p, "\n\n");
        CHECK(e != NULL && !strncmp(p, "data: ", 6), "event framing at: %.60s", p);
        if (!e || strncmp(p, "data: ", 6)) break;
        CHECK(!done, "an event after [DONE]");
        if (!strncmp(p + 6, "[DONE]", 6)) {
            done = true;
        } else {
            cJSON *j = cJSON_ParseWithLength(p + 6, (size_t)(e - p - 6));
            CHECK(j != NULL, "event is not JSON: %.80s", p);
            const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
            if (cJSON_GetObjectItem(j, "usage")) ++*nusage;
            if (ch) {
                const cJSON *t = chat ? cJSON_GetObjectItem(cJSON_GetObjectItem(ch, "delta"), "content")
                                      : cJSON_GetObjectItem(ch, "text");
                if (chat && first)
                    CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(ch, "delta"), "role") != NULL, "first delta without role");
                if (cJSON_IsString(t)) strcat(out, t->valuestring);
                const cJSON *f = cJSON_GetObjectItem(ch, "finish_reason");
                if (cJSON_IsString(f)) snprintf(finish, fcap, "%s", f->valuestring);
                first = false;
            }
            cJSON_Delete(j);
        }
        p = e + 2;
    }
    CHECK(done, "the stream did not end with data: [DONE]");
    return out;
}

TEST(serve_stream_equals_whole_answer) {
    const char *model = yt_serve_golden_model();
    char args[1024];
    snprintf(args, sizeof args, "--adapter lora=%s", yt_shared_path("golden/yuan-tiny/lora"));
    yt_server s;
    if (yt_serve_up(&s, model, args)) return;
    for (int chat = 0; chat < 2; chat++) {
        const char *path = chat ? "/v1/chat/completions" : "/v1/completions";
        char body[1024], sbody[1024];
        const char *in = chat ? "\"messages\": [{\"role\": \"user\", \"content\": \"张伟，男，汉族\"}]" : "\"prompt\": \"张伟，男，汉族\"";
        snprintf(body, sizeof body, "{\"model\": \"lora\", %s, \"max_tokens\": 20}", in);
        snprintf(sbody, sizeof sbody,
                 "{\"model\": \"lora\", %s, \"max_tokens\": 20, \"stream\": true, \"stream_options\": {\"include_usage\": true}}",
                 in);
        cJSON *j;
        int st = yt_post_json(s.port, path, body, NULL, &j);
        const char *whole = yt_choice_text(j);
        CHECK(st == 200 && whole, "%s: status %d", path, st);
        const cJSON *usage = cJSON_GetObjectItem(j, "usage");
        CHECK(cJSON_GetObjectItem(usage, "completion_tokens") &&
                  cJSON_GetObjectItem(usage, "completion_tokens")->valuedouble == 20,
              "%s: usage", path);
        yt_http_resp r;
        yt_http(s.port, "POST", path, NULL, sbody, strlen(sbody), 60, NULL, NULL, &r);
        char *ct = yt_http_header(&r, "Content-Type");
        CHECK(r.status == 200 && ct && strstr(ct, "text/event-stream"), "%s stream: %d %s", path, r.status, ct ? ct : "");
        char finish[32];
        int nusage;
        char *streamed = sse_text(r.body, chat, finish, sizeof finish, &nusage);
        CHECK(whole && !strcmp(streamed, whole), "%s: streamed text '%s' differs from the whole answer '%s'", path, streamed,
              whole ? whole : "");
        CHECK(!strcmp(finish, "length") && nusage == 1, "%s: finish '%s', %d usage chunks", path, finish, nusage);
        free(streamed);
        free(ct);
        yt_http_resp_free(&r);
        cJSON_Delete(j);
    }
    /* stop strings: the text ends before the first one, finish "stop" */
    cJSON *j;
    int st = yt_post_json(s.port, "/v1/completions", "{\"model\": \"base\", \"prompt\": \"张伟\", \"max_tokens\": 30}", NULL, &j);
    const char *t = yt_choice_text(j);
    CHECK(st == 200 && t && strlen(t) > 6, "status %d", st);
    if (t && strlen(t) > 6) {
        char stop[8] = {0}, body[512];
        /* a stop string from the middle of the answer: its first character (UTF-8) */
        size_t at = strlen(t) / 2;
        while (at > 0 && ((unsigned char)t[at] & 0xC0) == 0x80) at--;
        size_t cl = 1;
        while (((unsigned char)t[at + cl] & 0xC0) == 0x80) cl++;
        memcpy(stop, t + at, cl);
        const char *first = strstr(t, stop);
        snprintf(body, sizeof body, "{\"model\": \"base\", \"prompt\": \"张伟\", \"max_tokens\": 30, \"stop\": [\"%s\"]}", stop);
        cJSON *k;
        st = yt_post_json(s.port, "/v1/completions", body, NULL, &k);
        const char *ts = yt_choice_text(k);
        const cJSON *f = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(k, "choices"), 0), "finish_reason");
        CHECK(st == 200 && ts && strlen(ts) == (size_t)(first - t) && !strncmp(ts, t, strlen(ts)),
              "with stop '%s': '%s', want '%.*s'", stop, ts ? ts : "", (int)(first - t), t);
        CHECK(cJSON_IsString(f) && !strcmp(f->valuestring, "stop"), "finish_reason after a stop string");
        cJSON_Delete(k);
    }
    cJSON_Delete(j);
    yt_serve_down(&s);
}

/* ---- a client that leaves, a full queue ------------------------------------------ */

typedef struct leaver {
    int events;
    int leave_after;
} leaver;

static bool leave_cb(void *ctx, const char *data, size_t n) {
    leaver *l = ctx;
    for (size_t i = 0; i + 1 < n; i++) l->events += data[i] == '\n' && data[i + 1] == '\n';
    return l->events < l->leave_after;
}

static double metric_now(int port, const char *name) {
    yt_http_resp r;
    yt_http(port, "GET", "/metrics", NULL, NULL, 0, 10, NULL, NULL, &r);
    double v = r.body ? yt_metric(r.body, name) : -1;
    yt_http_resp_free(&r);
    return v;
}

static bool wait_metric(int port, const char *name, double want, double timeout_s) {
    for (double t = 0; t < timeout_s; t += 0.02) {
        if (metric_now(port, name) == want) return true;
        usleep(20000);
    }
    return false;
}

typedef struct bg {
    int port;
    const char *body;
    int status;
    pthread_t th;
} bg;

static void *bg_post(void *arg) {
    bg *b = arg;
    cJSON *j;
    b->status = yt_post_json(b->port, "/v1/completions", b->body, NULL, &j);
    cJSON_Delete(j);
    return NULL;
}

TEST(serve_disconnect_cancels_and_queue_full) {
    const char *model = yt_serve_long_model();
    char args[1024];
    snprintf(args, sizeof args, "--tokenizer %s --parallel 1 --max-queue 1 --max-length 4096", yt_serve_tokenizer());
    yt_server s;
    if (yt_serve_up(&s, model, args)) return;
    const char *longreq = "{\"model\": \"base\", \"prompt\": [5, 6, 7], \"max_tokens\": 4000, \"stream\": true}";
    /* a streamed client that reads two events and leaves: its request is
     * cancelled and the slot taken by the next one at once */
    leaver l = {0, 2};
    yt_http_resp r;
    double t0 = yf_time();
    yt_http(s.port, "POST", "/v1/completions", NULL, longreq, strlen(longreq), 60, leave_cb, &l, &r);
    yt_http_resp_free(&r);
    CHECK(wait_metric(s.port, "yuanft_requests_cancelled_total", 1, 10), "the left stream was not cancelled");
    cJSON *j;
    int st = yt_post_json(s.port, "/v1/completions", "{\"model\": \"base\", \"prompt\": [5], \"max_tokens\": 3}", NULL, &j);
    CHECK(st == 200, "after the leaver: %d", st);
    cJSON_Delete(j);
    double took = yf_time() - t0;
    CHECK(metric_now(s.port, "yuanft_generated_tokens_total") < 3000,
          "the cancelled request kept decoding (%.0f tokens; %.2f s)", metric_now(s.port, "yuanft_generated_tokens_total"),
          took);
    /* one slot busy (a long request), one request queued, the third refused */
    bg a = {s.port, "{\"model\": \"base\", \"prompt\": [5, 6], \"max_tokens\": 4000}", 0, 0};
    bg q = {s.port, "{\"model\": \"base\", \"prompt\": [9], \"max_tokens\": 4}", 0, 0};
    pthread_create(&a.th, NULL, bg_post, &a);
    CHECK(wait_metric(s.port, "yuanft_slots_busy", 1, 10), "the long request did not start");
    pthread_create(&q.th, NULL, bg_post, &q);
    CHECK(wait_metric(s.port, "yuanft_queue_depth", 1, 10), "the second request did not queue");
    const char *third = "{\"model\": \"base\", \"prompt\": [9], \"max_tokens\": 4}";
    yt_http(s.port, "POST", "/v1/completions", NULL, third, strlen(third), 10, NULL, NULL, &r);
    char *ra = yt_http_header(&r, "Retry-After");
    CHECK(r.status == 503 && ra && strstr(r.body, "\"error\""), "a full queue: %d, Retry-After %s: %s", r.status,
          ra ? ra : "none", r.body);
    free(ra);
    yt_http_resp_free(&r);
    CHECK(metric_now(s.port, "yuanft_requests_rejected_total") == 1, "rejected count");
    CHECK(metric_now(s.port, "yuanft_requests_deferred_total") >= 1, "deferred count");
    pthread_join(a.th, NULL);
    pthread_join(q.th, NULL);
    CHECK(a.status == 200 && q.status == 200, "the running and the queued request: %d, %d", a.status, q.status);
    yt_serve_down(&s);
}

/* ---- SIGTERM ------------------------------------------------------------------- */

TEST(serve_sigterm_finishes_or_cancels) {
    const char *model = yt_serve_long_model();
    for (int cut = 0; cut < 2; cut++) {
        char args[1024];
        snprintf(args, sizeof args, "--tokenizer %s --max-length 4096 --shutdown-timeout %s", yt_serve_tokenizer(),
                 cut ? "0.2" : "30");
        yt_server s;
        if (yt_serve_up(&s, model, args)) return;
        bg a = {s.port, cut ? "{\"model\": \"base\", \"prompt\": [5], \"max_tokens\": 4000}"
                            : "{\"model\": \"base\", \"prompt\": [5], \"max_tokens\": 600}", 0, 0};
        pthread_create(&a.th, NULL, bg_post, &a);
        CHECK(wait_metric(s.port, "yuanft_slots_busy", 1, 10), "the request did not start");
        int port = s.port;
        kill(s.pid, SIGTERM);
        usleep(50000);
        /* no new connections once it stops accepting */
        yt_http_resp r;
        int rc = yt_http(port, "GET", "/health", NULL, NULL, 0, 2, NULL, NULL, &r);
        CHECK(rc != 0 || r.status == 503, "after SIGTERM: %d", r.status);
        yt_http_resp_free(&r);
        pthread_join(a.th, NULL);
        CHECK(a.status == (cut ? 503 : 200), "the request in flight at SIGTERM (%s): status %d",
              cut ? "cut off after 0.2 s" : "given 30 s", a.status);
        int ex = yt_serve_stop(&s, 0, 20);
        CHECK(ex == 0, "exit status %d", ex);
    }
}

/* GET /health: 503 {"status": "loading"} from the moment the port is bound
 * until the model is loaded, then 200. yt_serve_start polls it every 2 ms
 * from the "listening" line on; the load (tokenizer, vocabulary bytes,
 * caches) takes tens of milliseconds, so a 503 is seen unless the test is
 * descheduled for all of it: three tries. */
TEST(serve_health_503_while_loading) {
    const char *model = yt_serve_long_model();
    char args[2048];
    snprintf(args, sizeof args, "--tokenizer %s --parallel 16", yt_serve_tokenizer());
    int seen = 0;
    for (int attempt = 0; attempt < 3 && !seen; attempt++) {
        yt_server s;
        if (yt_serve_up(&s, model, args)) return;
        seen = s.loading_503;
        fprintf(stderr, "    start %d: %d answers 503 \"loading\" before the 200\n", attempt + 1, seen);
        yt_serve_down(&s);
    }
    CHECK(seen > 0, "no GET /health answered 503 \"loading\" before the 200 in 3 starts");
}
