/* http: the HTTP side of `yuanft serve` on libmicrohttpd (Debian's
 * libmicrohttpd-dev: a small, well-kept C library that does the parsing,
 * chunked transfer and keep-alive, so no HTTP parser is written here).
 *
 * One thread a connection (MHD_USE_THREAD_PER_CONNECTION): a handler may
 * block while its request waits for the model. A non-streamed request
 * waits for its job, looking at the client's socket every 100 ms: a client
 * that has gone cancels its request. A streamed one (server-sent events)
 * hands MHD a reader that waits for each piece of text; a client gone
 * makes a write fail, and the response's free callback cancels the job.
 *
 * Checks before a body is read: the route and method (404 / 405), the API
 * key (401, compared in constant time), loading / shutting down (503),
 * Content-Length over --max-body (413); then while it is read, the same
 * limit (413 without keeping the excess). */
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/jsontext.h"
#include "serve/job.h"
#include "serve/openai.h"

typedef enum route {
    R_NONE, R_PAGE, R_HEALTH, R_METRICS, R_MODELS, R_COMPLETIONS, R_CHAT, R_EXTRACT
} route;

/* What MHD keeps for a request between calls of the handler (*con_cls). */
typedef struct conn {
    route r;
    yf_sbuf body;
    bool too_large;
    bool answered;     /* a response was queued */
    double t0;
} conn;

/* A streamed response's state (the reader's cls). */
typedef struct stream {
    yf_server *s;
    yf_job *j;
    char id[64];
    int64_t created;
    int fd;            /* the client's socket */
    size_t sent;       /* bytes of the job's text sent */
    bool first, ended;
    char *pend;        /* events not handed to MHD yet */
    size_t npend, off;
} stream;

static void add64(int64_t *p, int64_t v) { __atomic_add_fetch(p, v, __ATOMIC_RELAXED); }

/* Whether the client has closed its side (or the socket failed). */
static bool client_gone(int fd) {
    if (fd < 0) return false;
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) return true;
    char c;
    return recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0; /* EOF: closed; data: a pipelined request */
}

static int conn_fd(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

/* timing: a Server-Timing header's value, or NULL. */
static enum MHD_Result send_text(yf_server *s, struct MHD_Connection *c, int status, const char *type, const char *body,
                                 size_t len, const char *timing) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (timing) MHD_add_response_header(resp, "Server-Timing", timing);
    if (status == MHD_HTTP_SERVICE_UNAVAILABLE) MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    if (status == MHD_HTTP_UNAUTHORIZED) MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    enum MHD_Result rc = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    add64(&s->hc.requests, 1);
    if (status >= 400 && status < 500) add64(&s->hc.errors_4xx, 1);
    if (status >= 500) add64(&s->hc.errors_5xx, 1);
    return rc;
}

static enum MHD_Result send_json(yf_server *s, struct MHD_Connection *c, int status, char *json) {
    enum MHD_Result rc = send_text(s, c, status, "application/json", json, strlen(json), NULL);
    free(json);
    return rc;
}

static enum MHD_Result send_error(yf_server *s, struct MHD_Connection *c, const yf_api_error *e) {
    if (e->status == MHD_HTTP_UNAUTHORIZED) add64(&s->hc.unauthorized, 1);
    if (e->status == 413) add64(&s->hc.too_large, 1);
    return send_json(s, c, e->status, yf_api_error_json(e));
}

/* ---- checks before the body ------------------------------------------------- */

static route route_of(const char *url, const char *method, bool *method_ok) {
    static const struct {
        const char *url, *method;
        route r;
    } k[] = {
        {"/", "GET", R_PAGE}, {"/index.html", "GET", R_PAGE}, {"/health", "GET", R_HEALTH},
        {"/metrics", "GET", R_METRICS}, {"/v1/models", "GET", R_MODELS}, {"/v1/completions", "POST", R_COMPLETIONS},
        {"/v1/chat/completions", "POST", R_CHAT}, {"/v1/extract", "POST", R_EXTRACT},
    };
    for (size_t i = 0; i < sizeof k / sizeof *k; i++)
        if (!strcmp(url, k[i].url)) {
            *method_ok = !strcmp(method, k[i].method) || (!strcmp(method, "HEAD") && !strcmp(k[i].method, "GET"));
            return k[i].r;
        }
    *method_ok = false;
    return R_NONE;
}

/* The API key as OpenAI clients send it: "Authorization: Bearer KEY". */
static bool authorized(const yf_server *s, struct MHD_Connection *c, yf_api_error *e) {
    if (!s->o.api_key) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h) {
        yf_api_fail(e, 401, "invalid_request_error", "invalid_api_key", "",
                    "no API key: send the header 'Authorization: Bearer KEY' (the key given with --api-key)");
        return false;
    }
    const char *key = strncasecmp(h, "Bearer ", 7) == 0 ? h + 7 : h;
    if (!yf_api_key_equal(key, strlen(key), s->o.api_key)) {
        yf_api_fail(e, 401, "invalid_request_error", "invalid_api_key", "", "incorrect API key");
        return false;
    }
    return true;
}

/* The first call for a request (headers only): an error response, or 0. */
static int precheck(yf_server *s, struct MHD_Connection *c, conn *k, const char *url, const char *method,
                    yf_api_error *e) {
    bool ok;
    k->r = route_of(url, method, &ok);
    if (k->r == R_NONE) return yf_api_fail(e, 404, "invalid_request_error", "not_found", "", "no such endpoint: %.200s %.200s", method, url);
    if (!ok) return yf_api_fail(e, 405, "invalid_request_error", "method_not_allowed", "", "%.200s takes no %.16s", url, method);
    if (k->r == R_PAGE || k->r == R_HEALTH) return 0;
    if (!authorized(s, c, e)) return -1;
    if (k->r == R_METRICS) return 0;
    if (__atomic_load_n(&s->draining, __ATOMIC_ACQUIRE))
        return yf_api_fail(e, 503, "server_error", "shutting_down", "", "the server is shutting down");
    if (!__atomic_load_n(&s->ready, __ATOMIC_ACQUIRE))
        return yf_api_fail(e, 503, "server_error", "loading", "", "the model is still loading; retry shortly");
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && strtoull(cl, NULL, 10) > (unsigned long long)s->o.max_body)
        return yf_api_fail(e, 413, "invalid_request_error", "request_too_large", "",
                           "the body is %s bytes; at most %lld are accepted (--max-body)", cl, (long long)s->o.max_body);
    return 0;
}

/* ---- the GET endpoints --------------------------------------------------------- */

/* The page at / (src/serve/page.html: HTML, CSS and JavaScript in one file,
 * no external assets, Chinese and English), built into the binary: the
 * assembler's .incbin copies the file's bytes (the Makefile makes http.o
 * depend on it and runs the compiler from the repository root, where the
 * path is resolved). */
__asm__(".section .rodata\n"
        ".balign 16\n"
        ".globl yf_page_html_bytes\n"
        ".hidden yf_page_html_bytes\n"
        "yf_page_html_bytes:\n"
        ".incbin \"src/serve/page.html\"\n"
        ".byte 0\n"
        ".previous\n");
extern const char yf_page_html_bytes[];

const char *yf_serve_page(void) { return yf_page_html_bytes; }

/* GET /metrics: Prometheus' text exposition format (version 0.0.4), one
 * "# HELP", one "# TYPE" and one sample a metric, every name yuanft_. */
static void metric(yf_sbuf *b, const char *name, const char *type, const char *help, double v) {
    char t[512];
    snprintf(t, sizeof t, "# HELP yuanft_%s %s\n# TYPE yuanft_%s %s\nyuanft_%s %.17g\n", name, help, name, type, name, v);
    yf_sbuf_puts(b, t);
}

char *yf_metrics_text(const yf_sched_stats *st, const yf_http_counters *hc, const yf_prefix_cache_stats *pc,
                      int64_t http_inflight, bool ready) {
    yf_sbuf b = {0};
    metric(&b, "ready", "gauge", "1 once the model is loaded", ready);
    if (pc) {
        metric(&b, "prefix_cache_tokens_reused_total", "counter", "Prompt positions copied from the prefix cache, not computed.",
               (double)pc->tokens_reused);
        metric(&b, "prefix_cache_tokens_computed_total", "counter", "Prompt positions the prefix cache computed.",
               (double)pc->tokens_computed);
        metric(&b, "prefix_cache_bytes", "gauge", "Bytes the prefix cache holds.", (double)pc->bytes);
        metric(&b, "prefix_cache_evicted_total", "counter", "Prefix cache entries dropped for its budget.",
               (double)pc->evicted);
    }
    metric(&b, "requests_processed_total", "counter", "Generation requests that finished (stop or length).",
           (double)st->processed);
    metric(&b, "requests_deferred_total", "counter", "Requests that found every slot busy and waited in the queue.",
           (double)st->deferred);
    metric(&b, "requests_rejected_total", "counter", "Requests refused with 503: the queue was full.",
           (double)st->rejected);
    metric(&b, "requests_cancelled_total", "counter", "Requests cancelled: client gone, or shutdown.",
           (double)st->cancelled);
    metric(&b, "requests_failed_total", "counter", "Requests the model failed on.", (double)st->failed);
    metric(&b, "prompt_tokens_total", "counter", "Prompt tokens prefilled.", (double)st->prompt_tokens);
    metric(&b, "generated_tokens_total", "counter", "Tokens generated.", (double)st->generated_tokens);
    double busy = st->prefill_s + st->decode_s;
    metric(&b, "generated_tokens_per_second", "gauge",
           "Tokens generated per second of model time (prefill and decode), since the start.",
           busy > 0 ? (double)st->generated_tokens / busy : 0);
    metric(&b, "prefill_seconds_total", "counter", "Seconds spent prefilling prompts.", st->prefill_s);
    metric(&b, "prefills_total", "counter", "Prefill rounds (requests admitted together are prefilled in one).",
           (double)st->prefills);
    metric(&b, "decode_seconds_total", "counter", "Seconds spent in decode steps.", st->decode_s);
    metric(&b, "decode_steps_total", "counter", "Decode steps (one token for every running request).",
           (double)st->steps);
    metric(&b, "queue_depth", "gauge", "Requests waiting for a slot.", (double)st->queued);
    metric(&b, "slots_busy", "gauge", "Slots decoding a request now.", (double)st->active);
    metric(&b, "slots", "gauge", "Slots (--parallel).", (double)st->parallel);
    metric(&b, "batch_occupancy", "gauge", "Busy slots / slots, now.",
           st->parallel ? (double)st->active / (double)st->parallel : 0);
    metric(&b, "batch_occupancy_mean", "gauge", "Rows of a decode step / slots, averaged over the steps so far.",
           st->steps && st->parallel ? (double)st->step_rows / (double)st->steps / (double)st->parallel : 0);
    metric(&b, "http_requests_total", "counter", "HTTP requests answered.", (double)hc->requests);
    metric(&b, "http_requests_in_flight", "gauge", "HTTP requests being handled.", (double)http_inflight);
    metric(&b, "http_client_errors_total", "counter", "Answers with a 4xx status.", (double)hc->errors_4xx);
    metric(&b, "http_server_errors_total", "counter", "Answers with a 5xx status.", (double)hc->errors_5xx);
    metric(&b, "http_unauthorized_total", "counter", "401 answers: missing or wrong API key.", (double)hc->unauthorized);
    metric(&b, "http_body_too_large_total", "counter", "413 answers: body over --max-body.", (double)hc->too_large);
    metric(&b, "http_disconnects_total", "counter", "Clients gone before their answer was complete.",
           (double)hc->disconnects);
    metric(&b, "http_overhead_seconds_mean", "gauge",
           "Mean seconds a generation request spends in the HTTP layer (parsing, tokenizing, writing; not the model).",
           hc->overhead_n ? (double)hc->overhead_ns * 1e-9 / (double)hc->overhead_n : 0);
    return yf_sbuf_take(&b);
}


static enum MHD_Result get(yf_server *s, struct MHD_Connection *c, route r) {
    bool ready = __atomic_load_n(&s->ready, __ATOMIC_ACQUIRE), draining = __atomic_load_n(&s->draining, __ATOMIC_ACQUIRE);
    if (r == R_PAGE) return send_text(s, c, 200, "text/html; charset=utf-8", yf_serve_page(), strlen(yf_serve_page()), NULL);
    if (r == R_HEALTH) {
        const char *st = draining ? "shutting down" : ready ? "ok" : "loading";
        char body[64];
        snprintf(body, sizeof body, "{\"status\": \"%s\"}\n", st);
        return send_text(s, c, ready && !draining ? 200 : 503, "application/json", body, strlen(body), NULL);
    }
    if (r == R_METRICS) {
        yf_sched_stats st = {0};
        if (ready) yf_sched_get_stats(s->sched, &st);
        yf_http_counters hc;
        memcpy(&hc, &s->hc, sizeof hc); /* each field read whole; the set need not be one instant */
        yf_prefix_cache_stats pc;
        if (s->prefix) yf_serve_prefix_get_stats(s->prefix, &pc);
        char *t = yf_metrics_text(&st, &hc, s->prefix ? &pc : NULL, __atomic_load_n(&s->http_inflight, __ATOMIC_RELAXED),
                                  ready);
        enum MHD_Result rc = send_text(s, c, 200, "text/plain; version=0.0.4; charset=utf-8", t, strlen(t), NULL);
        free(t);
        return rc;
    }
    const char **names = yf_calloc((size_t)s->nad + 1, sizeof *names);
    for (int64_t i = 0; i < s->nad; i++) names[i] = s->ad[i].name;
    char *t = yf_api_models_json(names, (size_t)s->nad, s->created);
    free(names);
    return send_json(s, c, 200, t);
}

/* ---- a streamed answer ----------------------------------------------------------- */

static void stream_push(stream *st, char *ev) {
    size_t n = strlen(ev);
    if (st->off == st->npend) st->npend = st->off = 0;
    st->pend = yf_realloc(st->pend, st->npend + n + 1);
    memcpy(st->pend + st->npend, ev, n);
    st->npend += n;
    free(ev);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    stream *st = cls;
    (void)pos;
    while (st->off == st->npend) {
        if (st->ended) return MHD_CONTENT_READER_END_OF_STREAM;
        bool done;
        size_t safe = yf_job_wait(st->j, st->sent, 0.1, &done);
        yf_job *j = st->j;
        yf_api_kind kind = j->q.kind;
        if (safe > st->sent) {
            char *delta = yf_job_text(j, st->sent, safe);
            stream_push(st, yf_api_chunk_event(kind, st->id, st->created, j->model_name, delta, safe - st->sent,
                                               st->first, NULL, NULL));
            free(delta);
            st->first = false;
            st->sent = safe;
        } else if (done) {
            if (j->why == YF_FINISH_ERROR || j->why == YF_FINISH_CANCELLED) {
                yf_api_error e;
                yf_api_fail(&e, 500, "server_error", NULL, "", "generation failed: %s",
                            j->why == YF_FINISH_CANCELLED ? "cancelled (the server is shutting down)" : j->error);
                char *ej = yf_api_error_json(&e);
                yf_sbuf b = {0};
                yf_sbuf_puts(&b, "data: ");
                yf_sbuf_put(&b, ej, strlen(ej) - 1); /* without its newline */
                yf_sbuf_puts(&b, "\n\n");
                free(ej);
                stream_push(st, yf_sbuf_take(&b));
            } else {
                stream_push(st, yf_api_chunk_event(kind, st->id, st->created, j->model_name, NULL, 0, st->first,
                                                   yf_job_finish_reason(j), NULL));
                if (j->q.include_usage) {
                    yf_api_usage u = {j->plen, j->n};
                    stream_push(st, yf_api_chunk_event(kind, st->id, st->created, j->model_name, NULL, 0, false, NULL, &u));
                }
            }
            stream_push(st, yf_strdup(yf_api_done_event()));
            st->ended = true;
        } else if (client_gone(st->fd)) {
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
    size_t n = st->npend - st->off < max ? st->npend - st->off : max;
    memcpy(buf, st->pend + st->off, n);
    st->off += n;
    return (ssize_t)n;
}

static void stream_free(void *cls) {
    stream *st = cls;
    if (!st->ended) add64(&st->s->hc.disconnects, 1);
    yf_job_free(st->j); /* cancels it if the client left early */
    free(st->pend);
    free(st);
}

static enum MHD_Result answer_stream(yf_server *s, struct MHD_Connection *c, yf_job *j) {
    stream *st = yf_calloc(1, sizeof *st);
    st->s = s;
    st->j = j;
    st->fd = conn_fd(c);
    st->first = true;
    st->created = (int64_t)time(NULL);
    yf_api_new_id(st->id, sizeof st->id, j->q.kind == YF_API_CHAT ? "chatcmpl-" : "cmpl-");
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, st, stream_free);
    if (!resp) {
        stream_free(st);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream; charset=utf-8");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    enum MHD_Result rc = MHD_queue_response(c, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    add64(&s->hc.requests, 1);
    return rc;
}

/* ---- a whole answer ------------------------------------------------------------ */

/* /v1/extract's answer from the finished job: the model's text parsed as
 * yuanft extract parses it, then the entities' places in the input. */
static char *extract_answer(yf_job *j) {
    yf_answer a;
    yf_answer_parse(j->text, j->len, &a);
    yf_span *spans;
    size_t ns;
    yf_spans_find(&a, j->q.types, j->q.text, strlen(j->q.text), &spans, &ns);
    char id[64];
    yf_api_new_id(id, sizeof id, "extract-");
    yf_api_usage u = {j->plen, j->n};
    char *t = yf_api_extract_json(id, j->model_name, &a, j->q.types, spans, ns, j->text, j->len, &u,
                                  (j->t_end - j->t_start) * 1e3);
    free(spans);
    yf_answer_free(&a);
    return t;
}

static enum MHD_Result answer_whole(yf_server *s, struct MHD_Connection *c, conn *k, yf_job *j) {
    int fd = conn_fd(c);
    bool done = false;
    while (!done) {
        yf_job_wait(j, (size_t)-1, 0.1, &done);
        if (!done && client_gone(fd)) {
            add64(&s->hc.disconnects, 1);
            yf_job_free(j);
            return MHD_NO; /* closes the connection */
        }
    }
    enum MHD_Result rc;
    if (j->why == YF_FINISH_ERROR || j->why == YF_FINISH_CANCELLED) {
        yf_api_error e;
        yf_api_fail(&e, j->why == YF_FINISH_CANCELLED ? 503 : 500, "server_error", NULL, "", "generation failed: %s",
                    j->why == YF_FINISH_CANCELLED ? "cancelled (the server is shutting down)" : j->error);
        rc = send_error(s, c, &e);
    } else {
        double t_send = yf_time();
        char *t;
        if (j->q.kind == YF_API_EXTRACT) {
            t = extract_answer(j);
        } else {
            char id[64];
            yf_api_new_id(id, sizeof id, j->q.kind == YF_API_CHAT ? "chatcmpl-" : "cmpl-");
            yf_api_usage u = {j->plen, j->n};
            t = yf_api_completion_json(j->q.kind, id, (int64_t)time(NULL), j->model_name, j->text, j->len,
                                       yf_job_finish_reason(j), &u);
        }
        /* the job's time from submit to done (queue and model): what a client
         * subtracts from its round trip to see the HTTP layer's share */
        char timing[64];
        snprintf(timing, sizeof timing, "model;dur=%.3f", (j->t_end - j->t_start) * 1e3);
        rc = send_text(s, c, 200, "application/json", t, strlen(t), timing);
        free(t);
        /* the HTTP layer's share: all but the job's time from submit to done */
        double http = (j->t_start - k->t0) + (yf_time() - t_send);
        add64(&s->hc.overhead_ns, (int64_t)(http * 1e9));
        add64(&s->hc.overhead_n, 1);
    }
    yf_job_free(j);
    return rc;
}

static enum MHD_Result generate(yf_server *s, struct MHD_Connection *c, conn *k) {
    yf_api_kind kind = k->r == R_CHAT ? YF_API_CHAT : k->r == R_EXTRACT ? YF_API_EXTRACT : YF_API_COMPLETION;
    yf_api_request q;
    yf_api_error e;
    yf_job *j = NULL;
    if (yf_api_parse(kind, k->body.s ? k->body.s : "", k->body.n, &q, &e)) return send_error(s, c, &e);
    bool streamed = q.stream && kind != YF_API_EXTRACT;
    if (yf_job_new(s, &q, &j, &e) || yf_job_submit(j, &e)) {
        yf_api_request_free(&q);
        yf_job_free(j);
        return send_error(s, c, &e);
    }
    return streamed ? answer_stream(s, c, j) : answer_whole(s, c, k, j);
}

/* ---- the handler ---------------------------------------------------------------- */

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    yf_server *s = cls;
    (void)version;
    conn *k = *con_cls;
    if (!k) { /* headers only: check what can be checked now */
        k = yf_calloc(1, sizeof *k);
        k->t0 = yf_time();
        *con_cls = k;
        add64(&s->http_inflight, 1);
        yf_api_error e;
        if (precheck(s, c, k, url, method, &e)) {
            k->answered = true;
            return send_error(s, c, &e);
        }
        return MHD_YES;
    }
    if (*upload_size > 0) { /* a piece of the body */
        if (!k->too_large && k->body.n + *upload_size <= (size_t)s->o.max_body)
            yf_sbuf_put(&k->body, upload, *upload_size);
        else
            k->too_large = true;
        *upload_size = 0;
        return MHD_YES;
    }
    if (k->answered) return MHD_YES;
    k->answered = true;
    if (k->too_large) {
        yf_api_error e;
        yf_api_fail(&e, 413, "invalid_request_error", "request_too_large", "",
                    "the body is over %lld bytes (--max-body)", (long long)s->o.max_body);
        return send_error(s, c, &e);
    }
    if (k->r == R_COMPLETIONS || k->r == R_CHAT || k->r == R_EXTRACT) return generate(s, c, k);
    return get(s, c, k->r);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    yf_server *s = cls;
    (void)c, (void)toe;
    conn *k = *con_cls;
    if (!k) return;
    yf_sbuf_free(&k->body);
    free(k);
    *con_cls = NULL;
    add64(&s->http_inflight, -1);
}

int yf_http_start(yf_server *s, int64_t *port) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai = NULL;
    char ps[16];
    snprintf(ps, sizeof ps, "%lld", (long long)s->o.port);
    int gr = getaddrinfo(s->o.host, ps, &hints, &ai);
    if (gr != 0 || !ai) return yf_errorf("serve: --host %s: %s", s->o.host, gai_strerror(gr));
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC |
                     (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    unsigned limit = (unsigned)(s->o.parallel + s->o.max_queue + 64);
    struct MHD_Daemon *d = MHD_start_daemon(flags, (uint16_t)s->o.port, NULL, NULL, handler, s,
                                            MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_CONNECTION_LIMIT, limit,
                                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
                                            MHD_OPTION_NOTIFY_COMPLETED, completed, s, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!d)
        return yf_errorf("serve: cannot listen on %s:%lld (in use? another --port, or --port 0 for any free one)",
                         s->o.host, (long long)s->o.port);
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    *port = di ? di->port : s->o.port;
    s->mhd = d;
    return 0;
}

void yf_http_quiesce(yf_server *s) {
    if (!s->mhd) return;
    MHD_socket fd = MHD_quiesce_daemon(s->mhd);
    if (fd != MHD_INVALID_SOCKET) close(fd);
}

void yf_http_stop(yf_server *s) {
    if (!s->mhd) return;
    MHD_stop_daemon(s->mhd);
    s->mhd = NULL;
}
