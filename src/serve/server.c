/* server: loading, the process's life and shutdown (server.h).
 *
 * Order: the signals are blocked first (every thread inherits the mask, so
 * SIGTERM / SIGINT reach only sigwait here); the port is bound and answers
 * at once (GET /health 503 "loading"); then the model, the tokenizer and
 * the adapters load and the scheduler starts (200). On SIGTERM or SIGINT
 * the listening socket closes, new requests on open connections get 503,
 * requests in flight get --shutdown-timeout seconds to finish, then the
 * rest are cancelled; the process then exits 0. */
#include "serve/server.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/pool.h"

void yf_serve_opts_default(yf_serve_opts *o) {
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->port = 8080;
    o->parallel = 4;
    o->max_queue = 64;
    o->max_body = (int64_t)1 << 20;
    o->prompt_template = "resume";
    o->shutdown_timeout = 10;
    o->extract_max_length = YF_DEFAULT_MAX_LENGTH;
    o->extract_max_new = 128;
    o->prefix_cache_mb = 1024;
}

int32_t yf_server_adapter(const yf_server *s, const char *name) {
    if (!name || !strcmp(name, "base")) return -1;
    for (int64_t i = 0; i < s->nad; i++)
        if (!strcmp(s->ad[i].name, name)) return (int32_t)i;
    return -2;
}

/* ---- loading ---------------------------------------------------------------- */

/* "NAME=DIR": a name of letters, digits, '.', '_', '-' (not "base"), once. */
static int parse_adapter_spec(const yf_server *s, const char *spec, char **name, const char **dir) {
    const char *eq = strchr(spec, '=');
    if (!eq || eq == spec || !eq[1])
        return yf_errorf("--adapter %s: expected NAME=DIR (the name clients give as \"model\")", spec);
    for (const char *p = spec; p < eq; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.' ||
              *p == '_' || *p == '-'))
            return yf_errorf("--adapter %s: the name may hold letters, digits, '.', '_' and '-' only", spec);
    *name = yf_malloc((size_t)(eq - spec) + 1);
    memcpy(*name, spec, (size_t)(eq - spec));
    (*name)[eq - spec] = 0;
    *dir = eq + 1;
    if (!strcmp(*name, "base") || yf_server_adapter(s, *name) != -2) {
        yf_errorf("--adapter %s: the name '%s' is %s", spec, *name, strcmp(*name, "base") ? "given twice" : "the base model's");
        free(*name);
        return -1;
    }
    return 0;
}

static int load(yf_server *s) {
    const yf_serve_opts *o = &s->o;
    yf_par_adapt_to_load(); /* the thread rule of every command that runs the model */
    if (yf_model_load(o->model_dir, &o->model, &s->model)) return -1;
    const yf_config *cfg = yf_model_config(s->model);
    s->V = cfg->vocab_size;
    char *tp = o->tokenizer ? yf_strdup(o->tokenizer) : yf_path_join(o->model_dir, "tokenizer.model");
    if (!o->tokenizer && !yf_file_exists(tp)) {
        yf_errorf("%s has no tokenizer.model: pass --tokenizer FILE", o->model_dir);
        free(tp);
        return -1;
    }
    int rc = yf_tokenizer_load(tp, &s->tok);
    free(tp);
    if (rc || yf_encoder_from_tokenizer(s->tok, &s->enc) || yf_template_load(o->prompt_template, &s->tpl)) return -1;
    s->n_tok_ids = yf_tokenizer_n_ids(s->tok);
    /* after the tokenizer: the map's ids are checked against its size */
    if (yf_vocab_map_load(o->model_dir, s->n_tok_ids, &s->vmap)) return -1;
    if (s->vmap.n && s->vmap.n != s->V)
        return yf_errorf("%s/%s: maps %lld ids but the model has vocab_size %lld", o->model_dir, YF_VOCAB_MAP_FILE,
                         (long long)s->vmap.n, (long long)s->V);
    int64_t eod = yf_tokenizer_piece_id(s->tok, "<eod>");
    s->eod_row = yf_vocab_to_model(&s->vmap, eod >= 0 ? eod : cfg->eod_token);
    s->turn_sep = "<n>";
    /* the vocabulary as bytes, once: /v1/extract's spans and response_format */
    if (yf_cvocab_build(s->tok, &s->vmap, s->V, &s->cv)) return -1;
    s->ctx = o->max_length > 0 ? o->max_length : cfg->max_position_embeddings < 2048 ? cfg->max_position_embeddings : 2048;
    s->ad = yf_calloc((size_t)o->nadapters + 1, sizeof *s->ad);
    s->los = yf_calloc((size_t)o->nadapters + 1, sizeof *s->los);
    s->dns = yf_calloc((size_t)o->nadapters + 1, sizeof *s->dns);
    for (int64_t i = 0; i < o->nadapters; i++) {
        yf_serve_adapter *a = &s->ad[i];
        const char *dir = NULL;
        if (parse_adapter_spec(s, o->adapters[i], &a->name, &dir)) return -1;
        if (yf_lora_load(dir, cfg, &a->lo)) {
            free(a->name);
            a->name = NULL;
            return -1;
        }
        s->nad++;
        a->dora_n = yf_dora_norms_new(s->model, &a->lo);
        s->los[i] = &a->lo;
        s->dns[i] = a->dora_n;
    }
    yf_sched_opts so = {.parallel = o->parallel, .max_queue = o->max_queue, .max_length = s->ctx,
                        .adapters = s->los, .dora_n = (float **const *)s->dns, .nadapters = s->nad};
    if (o->prefix_cache_mb > 0) {
        s->prefix = yf_serve_prefix_new(s->model, s->los, s->nad, (size_t)o->prefix_cache_mb << 20);
        so.prefix = yf_serve_prefix_hook(s->prefix);
    }
    return yf_sched_start(s->model, &so, &s->sched);
}

static void unload(yf_server *s) {
    yf_sched_stop(s->sched);
    yf_serve_prefix_free(s->prefix);
    for (int64_t i = 0; i < s->nad; i++) {
        yf_dora_norms_free(s->ad[i].dora_n, s->model);
        yf_lora_free(&s->ad[i].lo);
        free(s->ad[i].name);
    }
    free(s->ad), free(s->los), free(s->dns);
    yf_cvocab_free(s->cv);
    yf_template_free(&s->tpl);
    if (s->tok) yf_tokenizer_free(s->tok);
    yf_vocab_map_free(&s->vmap);
    if (s->model) yf_model_free(s->model);
}

/* ---- the process ---------------------------------------------------------------- */

static void sleep_s(double t) {
    struct timespec ts = {(time_t)t, (long)((t - (double)(time_t)t) * 1e9)};
    nanosleep(&ts, NULL);
}

/* Waits up to timeout_s for the requests in flight to end (the model's
 * part, and their answers sent); returns how many are left. */
static int64_t wait_idle(yf_server *s, double timeout_s) {
    double t_end = yf_time() + timeout_s;
    for (;;) {
        int64_t n = yf_sched_inflight(s->sched), h = __atomic_load_n(&s->http_inflight, __ATOMIC_ACQUIRE);
        if ((n == 0 && h == 0) || yf_time() >= t_end) return n > h ? n : h;
        sleep_s(0.02);
    }
}

static int check_opts(const yf_serve_opts *o) {
    if (!o->model_dir) return yf_errorf("--model DIR is required");
    if (o->port < 0 || o->port > 65535) return yf_errorf("--port must be in [0, 65535], got %lld", (long long)o->port);
    if (o->parallel < 1 || o->parallel > 1024) return yf_errorf("--parallel must be in [1, 1024], got %lld", (long long)o->parallel);
    if (o->max_queue < 0 || o->max_queue > 1000000) return yf_errorf("--max-queue must be in [0, 1000000], got %lld", (long long)o->max_queue);
    if (o->max_body < 1) return yf_errorf("--max-body must be at least 1 byte, got %lld", (long long)o->max_body);
    if (o->max_length < 0) return yf_errorf("--max-length must be >= 0 (0: the model's, at most 2048), got %lld", (long long)o->max_length);
    if (o->prefix_cache_mb < 0 || o->prefix_cache_mb > ((int64_t)1 << 24))
        return yf_errorf("--prefix-cache-mb must be in [0, 16777216], got %lld", (long long)o->prefix_cache_mb);
    if (o->api_key && !o->api_key[0]) return yf_errorf("--api-key must not be empty");
    if (!(o->shutdown_timeout >= 0)) return yf_errorf("--shutdown-timeout must be >= 0 seconds");
    return 0;
}

int yf_serve_run(const yf_serve_opts *opts) {
    if (check_opts(opts)) return -1;
    yf_server *s = yf_calloc(1, sizeof *s);
    s->o = *opts;
    s->created = (int64_t)time(NULL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    int64_t port = 0;
    if (yf_http_start(s, &port)) {
        free(s);
        return -1;
    }
    fprintf(stderr, "yuanft serve: listening on http://%s:%lld (loading %s)\n", s->o.host, (long long)port,
            s->o.model_dir);
    double t0 = yf_time();
    if (load(s)) {
        char err[1024];
        snprintf(err, sizeof err, "%s", yf_last_error());
        yf_http_stop(s);
        unload(s);
        free(s);
        return yf_errorf("%s", err);
    }
    const yf_config *cfg = yf_model_config(s->model);
    double kv_mib = (double)s->o.parallel * (double)cfg->num_hidden_layers * 2.0 * (double)s->ctx *
                    (double)cfg->hidden_size * 4.0 / (1 << 20);
    fprintf(stderr, "yuanft serve: ready in %.1f s: %lld layers, %lld adapter%s, %lld slots of %lld positions (%.0f MiB "
                    "of cache), queue %lld\n",
            yf_time() - t0, (long long)cfg->num_hidden_layers, (long long)s->nad, s->nad == 1 ? "" : "s",
            (long long)s->o.parallel, (long long)s->ctx, kv_mib, (long long)s->o.max_queue);
    if (!yf_cvocab_byte_complete(s->cv))
        fprintf(stderr, "yuanft serve: note: the model's vocabulary (pruned?) lacks some bytes: a constrained answer "
                        "(response_format, /v1/extract) may end where it cannot be spelled (extract completes it)\n");
    __atomic_store_n(&s->ready, true, __ATOMIC_RELEASE);

    int sig = 0;
    sigwait(&set, &sig);
    __atomic_store_n(&s->draining, true, __ATOMIC_RELEASE);
    yf_http_quiesce(s);
    int64_t left = yf_sched_inflight(s->sched);
    fprintf(stderr, "yuanft serve: %s: stopped accepting; %lld request%s in flight (waiting up to %g s)\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM", (long long)left, left == 1 ? "" : "s", s->o.shutdown_timeout);
    left = wait_idle(s, s->o.shutdown_timeout);
    if (left > 0) {
        fprintf(stderr, "yuanft serve: cancelling %lld request%s\n", (long long)left, left == 1 ? "" : "s");
        yf_sched_cancel_all(s->sched);
        wait_idle(s, 5);
    }
    yf_http_stop(s); /* waits for the connections' threads: their jobs are done */
    unload(s);
    free(s);
    fprintf(stderr, "yuanft serve: stopped\n");
    return 0;
}
