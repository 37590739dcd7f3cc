/* bench-serve: load on a running `yuanft serve` from N concurrent clients
 * (bench/serve_bench.sh starts the server and calls this).
 *
 *   bench-serve load PORT CLIENTS REQUESTS PROMPT_LEN MAX_TOKENS MODEL IDMAX
 *     CLIENTS threads, each sending REQUESTS streamed completions one after
 *     the other (prompt: PROMPT_LEN token ids in [3, IDMAX), distinct per
 *     request and per load shape — CLIENTS, REQUESTS, MAX_TOKENS — so that
 *     the phases of bench/serve_bench.sh find none of theirs in the
 *     server's prefix cache; the same load sent twice repeats its prompts); one
 *     JSON line: generated tokens per second of wall time (all clients),
 *     time to first token and time per output token after it (p50, p95 over
 *     the requests), errors.
 *   bench-serve overhead PORT N MODEL
 *     N non-streamed completions of one token one after the other: the
 *     round trip minus the server's Server-Timing "model" duration (queue +
 *     model) is the HTTP layer's share: parsing, tokenizing, writing, the
 *     connection; and GET /health's round trip. One JSON line.
 * Loopback only; timings from CLOCK_MONOTONIC. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../tests/http_client.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(double *v, int n, double p) {
    if (n == 0) return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    int i = (int)(p * (n - 1) + 0.5);
    return v[i];
}

typedef struct req_times {
    double t0, first, last;
    int events;
} req_times;

static bool on_data(void *ctx, const char *data, size_t n) {
    req_times *t = ctx;
    double at = now();
    /* an event with text: "text": "<not empty>" */
    for (const char *p = data; (p = memmem(p, n - (size_t)(p - data), "\"text\": \"", 9)) != NULL; p += 9)
        if (p[9] != '"') {
            if (!t->events++) t->first = at;
            t->last = at;
        }
    return true;
}

typedef struct client {
    int port, id, requests, plen, max_tokens, idmax;
    int64_t salt; /* the load's shape: its prompts differ from other loads' */
    const char *model;
    double *ttft, *tpot;
    int n, errors;
    long tokens;
    pthread_t th;
} client;

/* The completion_tokens of a stream's usage chunk. */
static long usage_tokens(const char *body) {
    const char *u = strstr(body, "\"completion_tokens\": ");
    return u ? strtol(u + 21, NULL, 10) : 0;
}

static void *run_client(void *arg) {
    client *c = arg;
    size_t cap = (size_t)c->plen * 8 + 512;
    char *body = malloc(cap);
    for (int r = 0; r < c->requests; r++) {
        int k = snprintf(body, cap, "{\"model\": \"%s\", \"max_tokens\": %d, \"stream\": true, "
                                    "\"stream_options\": {\"include_usage\": true}, \"prompt\": [", c->model, c->max_tokens);
        for (int i = 0; i < c->plen; i++) /* distinct prompts: no client's prefix is another's */
            k += snprintf(body + k, cap - (size_t)k, "%s%d", i ? "," : "",
                          (int)(3 + (c->salt * 15485863 + c->id * 7919 + r * 104729 + i * 31) % (c->idmax - 3)));
        snprintf(body + k, cap - (size_t)k, "]}");
        req_times t = {now(), 0, 0, 0};
        yt_http_resp resp;
        int rc = yt_http(c->port, "POST", "/v1/completions", NULL, body, strlen(body), 600, on_data, &t, &resp);
        long toks = resp.body ? usage_tokens(resp.body) : 0;
        if (rc || resp.status != 200 || toks < 1 || t.events == 0) {
            c->errors++;
        } else {
            c->tokens += toks;
            c->ttft[c->n] = (t.first - t.t0) * 1e3;
            c->tpot[c->n] = toks > 1 ? (t.last - t.first) * 1e3 / (double)(toks - 1) : 0;
            c->n++;
        }
        yt_http_resp_free(&resp);
    }
    free(body);
    return NULL;
}

static int load(int argc, char **argv) {
    if (argc != 9) return 2;
    int port = atoi(argv[2]), nc = atoi(argv[3]), nr = atoi(argv[4]), plen = atoi(argv[5]), mt = atoi(argv[6]);
    int idmax = atoi(argv[8]);
    if (idmax < 4) return 2;
    client *c = calloc((size_t)nc, sizeof *c);
    double *ttft = malloc(sizeof(double) * (size_t)(nc * nr + 1)), *tpot = malloc(sizeof(double) * (size_t)(nc * nr + 1));
    double t0 = now();
    for (int i = 0; i < nc; i++) {
        c[i] = (client){.port = port, .id = i, .requests = nr, .plen = plen, .max_tokens = mt, .model = argv[7], .idmax = idmax,
                        .salt = ((int64_t)nc * 131 + nr) * 131 + mt, .ttft = ttft + i * nr, .tpot = tpot + i * nr};
        pthread_create(&c[i].th, NULL, run_client, &c[i]);
    }
    long tokens = 0;
    int errors = 0, n = 0;
    for (int i = 0; i < nc; i++) {
        pthread_join(c[i].th, NULL);
        tokens += c[i].tokens;
        errors += c[i].errors;
    }
    double wall = now() - t0;
    /* gather the per-request samples */
    double *tt = malloc(sizeof(double) * (size_t)(nc * nr + 1)), *tp = malloc(sizeof(double) * (size_t)(nc * nr + 1));
    for (int i = 0; i < nc; i++)
        for (int k = 0; k < c[i].n; k++) tt[n] = c[i].ttft[k], tp[n++] = c[i].tpot[k];
    printf("{\"clients\": %d, \"requests\": %d, \"tokens\": %ld, \"wall_s\": %.3f, \"tokens_per_s\": %.2f, "
           "\"ttft_p50_ms\": %.1f, \"ttft_p95_ms\": %.1f, \"tpot_p50_ms\": %.1f, \"tpot_p95_ms\": %.1f, \"errors\": %d}\n",
           nc, nc * nr, tokens, wall, tokens / wall, pct(tt, n, 0.5), pct(tt, n, 0.95), pct(tp, n, 0.5), pct(tp, n, 0.95),
           errors);
    free(c), free(ttft), free(tpot), free(tt), free(tp);
    return errors ? 1 : 0;
}

static int overhead(int argc, char **argv) {
    if (argc != 5) return 2;
    int port = atoi(argv[2]), n = atoi(argv[3]), errors = 0, k = 0;
    double *ov = malloc(sizeof(double) * (size_t)(n + 1)), *hl = malloc(sizeof(double) * (size_t)(n + 1));
    char body[256];
    for (int i = 0; i < n; i++) {
        snprintf(body, sizeof body, "{\"model\": \"%s\", \"prompt\": [5, %d, 7], \"max_tokens\": 1}", argv[4], 8 + i % 200);
        yt_http_resp r;
        double t0 = now();
        int rc = yt_http(port, "POST", "/v1/completions", NULL, body, strlen(body), 60, NULL, NULL, &r);
        double rt = (now() - t0) * 1e3;
        char *st = yt_http_header(&r, "Server-Timing");
        const char *d = st ? strstr(st, "dur=") : NULL;
        if (rc || r.status != 200 || !d) errors++;
        else ov[k++] = rt - atof(d + 4);
        free(st);
        yt_http_resp_free(&r);
        t0 = now();
        yt_http(port, "GET", "/health", NULL, NULL, 0, 10, NULL, NULL, &r);
        hl[i] = (now() - t0) * 1e3;
        yt_http_resp_free(&r);
    }
    double mean = 0;
    for (int i = 0; i < k; i++) mean += ov[i] / k;
    printf("{\"requests\": %d, \"overhead_mean_ms\": %.3f, \"overhead_p50_ms\": %.3f, \"overhead_p95_ms\": %.3f, "
           "\"health_p50_ms\": %.3f, \"errors\": %d}\n",
           n, mean, pct(ov, k, 0.5), pct(ov, k, 0.95), pct(hl, n, 0.5), errors);
    free(ov), free(hl);
    return errors ? 1 : 0;
}

int main(int argc, char **argv) {
    int rc = 2;
    if (argc > 1 && !strcmp(argv[1], "load")) rc = load(argc, argv);
    else if (argc > 1 && !strcmp(argv[1], "overhead")) rc = overhead(argc, argv);
    if (rc == 2)
        fprintf(stderr, "usage: bench-serve load PORT CLIENTS REQUESTS PROMPT_LEN MAX_TOKENS MODEL IDMAX\n"
                        "       bench-serve overhead PORT N MODEL\n");
    return rc;
}
