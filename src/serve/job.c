/* job: a request's prompt, its run on the scheduler and its text (job.h). */
#include "serve/job.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/jsontext.h"
#include "task/eval.h"
#include "task/extract.h"
#include "task/jsonschema.h"

#define U_FFFD "\xEF\xBF\xBD"

/* ---- the model side: adapter, prompt, limits ---------------------------------- */

/* The adapter a request runs with: completions and chat name it in "model"
 * ("base" or an adapter); extract in "adapter" (default: the first adapter
 * the server has, else the base model). */
static int resolve_model(yf_job *j, yf_api_error *e) {
    yf_server *s = j->srv;
    const char *name = j->q.model;
    if (j->q.kind == YF_API_EXTRACT && !name) {
        j->adapter = s->nad > 0 ? 0 : -1;
    } else {
        j->adapter = yf_server_adapter(s, name);
        if (j->adapter == -2) {
            const char *field = j->q.kind == YF_API_EXTRACT ? "adapter" : "model";
            return yf_api_fail(e, 404, "invalid_request_error", "model_not_found", field,
                               "the %s '%.200s' does not exist: \"base\" or one of the adapters of GET /v1/models",
                               field, name);
        }
    }
    j->model_name = j->adapter < 0 ? "base" : s->ad[j->adapter].name;
    return 0;
}

/* The prompt's tokenizer ids (malloc'd), as job.h describes; param names
 * the field for errors. */
static int prompt_tokens(yf_job *j, int64_t **ids, size_t *n, const char **param, yf_api_error *e) {
    yf_server *s = j->srv;
    yf_api_request *q = &j->q;
    int rc = 0;
    *ids = NULL;
    *n = 0;
    if (q->kind == YF_API_COMPLETION) {
        *param = "prompt";
        if (!q->prompt) {
            *n = (size_t)q->n_prompt_ids;
            *ids = yf_malloc((*n ? *n : 1) * sizeof(int64_t));
            memcpy(*ids, q->prompt_ids, *n * sizeof(int64_t));
            for (size_t i = 0; i < *n; i++)
                if ((*ids)[i] >= s->n_tok_ids)
                    return yf_api_fail(e, 400, "invalid_request_error", NULL, "prompt",
                                       "'prompt' item %zu is token id %lld; the tokenizer has %lld ids", i,
                                       (long long)(*ids)[i], (long long)s->n_tok_ids);
            return 0;
        }
        rc = yf_tokenizer_encode(s->tok, q->prompt, strlen(q->prompt), ids, n);
    } else if (q->kind == YF_API_CHAT) {
        *param = "messages";
        yf_sbuf b = {0};
        for (size_t i = 0; i < q->nmsgs; i++) {
            if (i) yf_sbuf_puts(&b, s->turn_sep);
            yf_sbuf_puts(&b, q->msgs[i].content);
        }
        yf_sbuf_puts(&b, "<sep>");
        rc = yf_tokenizer_encode(s->tok, b.s, b.n, ids, n);
        yf_sbuf_free(&b);
    } else {
        *param = "text";
        rc = yf_prompt_ids(&s->tpl, &s->enc, q->text, ids, n);
        /* as yuanft extract: the end of an over-long prompt, with its <sep> */
        int64_t limit = s->o.extract_max_length > 0 ? s->o.extract_max_length : YF_DEFAULT_MAX_LENGTH;
        if (limit > s->ctx - 1) limit = s->ctx - 1;
        if (rc == 0 && (int64_t)*n > limit) {
            memmove(*ids, *ids + *n - limit, (size_t)limit * sizeof(int64_t));
            *n = (size_t)limit;
        }
    }
    if (rc) return yf_api_fail(e, 400, "invalid_request_error", NULL, *param, "%s", yf_last_error());
    return 0;
}

static int build_prompt(yf_job *j, yf_api_error *e) {
    yf_server *s = j->srv;
    int64_t *ids;
    size_t n;
    const char *param = "prompt";
    if (prompt_tokens(j, &ids, &n, &param, e)) {
        free(ids);
        return -1;
    }
    if (n == 0) {
        free(ids);
        return yf_api_fail(e, 400, "invalid_request_error", NULL, param, "'%s' gives no tokens: nothing to continue", param);
    }
    yf_vocab_map_ids(&s->vmap, ids, (int64_t)n);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= s->V) {
            int64_t bad = ids[i];
            free(ids);
            return yf_api_fail(e, 400, "invalid_request_error", NULL, param,
                               "'%s' has token id %lld, outside the model's vocabulary of %lld rows (a model without "
                               "a vocab_map for this tokenizer?)", param, (long long)bad, (long long)s->V);
        }
    j->prompt = ids;
    j->plen = (int64_t)n;
    if (j->plen >= s->ctx)
        return yf_api_fail(e, 400, "invalid_request_error", "context_length_exceeded", param,
                           "'%s' is %lld tokens; the context is %lld tokens (--max-length), which leaves no room to "
                           "generate", param, (long long)j->plen, (long long)s->ctx);
    return 0;
}

/* max_tokens and the sampling settings into the scheduler's request. */
static int set_limits(yf_job *j, yf_api_error *e) {
    yf_server *s = j->srv;
    yf_api_request *q = &j->q;
    yf_sched_req *r = &j->req;
    int64_t room = s->ctx - j->plen;
    if (q->kind == YF_API_EXTRACT) { /* as yuanft extract: greedy, capped by the context */
        r->max_new = q->max_tokens > 0 ? q->max_tokens : (s->o.extract_max_new > 0 ? s->o.extract_max_new : 128);
        yf_sampling_default(&r->samp);
        r->seed = 42;
    } else {
        if (q->max_tokens > room)
            return yf_api_fail(e, 400, "invalid_request_error", "context_length_exceeded", "max_tokens",
                               "'max_tokens' is %lld, but after the prompt's %lld tokens the context of %lld has room "
                               "for %lld", (long long)q->max_tokens, (long long)j->plen, (long long)s->ctx,
                               (long long)room);
        /* OpenAI's defaults: 16 for completions, what fits for chat */
        r->max_new = q->max_tokens > 0 ? q->max_tokens : q->kind == YF_API_COMPLETION ? (room < 16 ? room : 16) : room;
        yf_sampling_default(&r->samp);
        r->samp.temperature = (float)q->temperature;
        r->samp.top_p = (float)q->top_p;
        r->samp.top_k = q->top_k;
        r->samp.repetition_penalty = (float)q->repetition_penalty;
        if (yf_sampling_check(&r->samp))
            return yf_api_fail(e, 400, "invalid_request_error", NULL, "", "%s", yf_last_error());
        static uint64_t counter;
        r->seed = q->has_seed ? q->seed : (uint64_t)(yf_time() * 1e9) ^ __atomic_add_fetch(&counter, 0x9E3779B97F4A7C15ull, __ATOMIC_RELAXED);
    }
    r->limit = j->plen + r->max_new < s->ctx ? j->plen + r->max_new : s->ctx;
    return 0;
}

/* The constrained decoder (task/constrain.h) on this one request. */
_Static_assert(YF_CONSTRAIN_SPANS == 0 && YF_CONSTRAIN_SCHEMA == 1 && YF_CONSTRAIN_NONE == 2,
               "request.h's constrain values are yf_constrain_mode's");

static int set_constraint(yf_job *j, yf_api_error *e) {
    yf_server *s = j->srv;
    yf_api_request *q = &j->q;
    const char *input = NULL;
    if (q->kind == YF_API_EXTRACT) {
        /* as yuanft extract --constrain MODE --types LIST */
        yf_constrain_mode mode = q->constrain >= 0 ? (yf_constrain_mode)q->constrain : s->o.extract_constrain;
        if (mode == YF_CONSTRAIN_NONE) return 0;
        const char *keys[YF_N_TYPES];
        size_t nk = 0;
        for (int t = 0; t < YF_N_TYPES; t++)
            if (!q->types || (q->types >> t & 1)) keys[nk++] = yf_type_names[t];
        if (yf_constraint_answer(keys, nk, mode == YF_CONSTRAIN_SPANS, &j->grammar))
            return yf_api_fail(e, 400, "invalid_request_error", NULL, "types", "%s", yf_last_error());
        input = q->text;
    } else if (q->format == YF_FORMAT_JSON_OBJECT) {
        return yf_api_fail(e, 400, "invalid_request_error", "unsupported_response_format", "response_format.type",
                           "'response_format' json_object (any JSON object) is not supported: the constrained decoder "
                           "takes a JSON Schema; send {\"type\": \"json_schema\", \"json_schema\": {\"schema\": ...}} "
                           "(the subset of docs/constrained-decoding.md)");
    } else if (q->format == YF_FORMAT_JSON_SCHEMA) {
        if (yf_constraint_json_schema(q->schema, strlen(q->schema), "response_format.json_schema.schema", &j->grammar))
            return yf_api_fail(e, 400, "invalid_request_error", "invalid_json_schema", "response_format.json_schema.schema",
                               "%s", yf_last_error());
    } else {
        return 0;
    }
    if (yf_cstate_new(j->grammar, s->cv, input, input ? strlen(input) : 0, &j->cst))
        return yf_api_fail(e, 400, "invalid_request_error", NULL, input ? "text" : "response_format.json_schema.schema",
                           "%s", yf_last_error());
    /* a schema whose shortest answer does not fit max_tokens would be cut:
     * refused (yuanft generate warns) */
    int64_t need = yf_cstate_cost(j->cst);
    if (!input && need > j->req.max_new)
        return yf_api_fail(e, 400, "invalid_request_error", NULL, "max_tokens",
                           "'max_tokens' is %lld, but the shortest JSON the schema allows takes %lld tokens",
                           (long long)j->req.max_new, (long long)need);
    yf_cstate_hook(&j->cst, &j->hook);
    j->req.hook = &j->hook;
    return 0;
}

/* ---- the scheduler side: tokens, text, stop strings ---------------------------- */

/* Bytes at the end of text[0..len) that may still change or start a stop
 * string: up to three U+FFFD (the bytes of a character not complete yet),
 * and the longest suffix that begins one of the stop strings. */
static size_t held_back(const yf_job *j, const char *text, size_t len) {
    size_t hold = 0;
    while (hold < 9 && len - hold >= 3 && memcmp(text + len - hold - 3, U_FFFD, 3) == 0) hold += 3;
    size_t end = len - hold, stop_hold = 0;
    for (size_t i = 0; i < j->q.nstop; i++) {
        size_t sl = strlen(j->q.stop[i]);
        for (size_t k = sl - 1; k > stop_hold; k--) /* a proper prefix of length k ending the text */
            if (k <= end && memcmp(text + end - k, j->q.stop[i], k) == 0) {
                stop_hold = k;
                break;
            }
    }
    return hold + stop_hold;
}

/* The first stop string in text[from..len): its start, or len. */
static size_t find_stop(const yf_job *j, const char *text, size_t from, size_t len) {
    size_t best = len;
    for (size_t i = 0; i < j->q.nstop; i++) {
        const char *p = memmem(text + from, len - from, j->q.stop[i], strlen(j->q.stop[i]));
        if (p && (size_t)(p - text) < best) best = (size_t)(p - text);
    }
    return best;
}

static bool on_token(void *ctx, int64_t id) {
    yf_job *j = ctx;
    yf_server *s = j->srv;
    /* ids are appended on this thread only: decode them outside the lock */
    if (j->n == j->cap) {
        pthread_mutex_lock(&j->mu);
        j->cap = j->cap ? 2 * j->cap : 64;
        j->ids = yf_realloc(j->ids, (size_t)j->cap * sizeof(int64_t));
        pthread_mutex_unlock(&j->mu);
    }
    j->ids[j->n] = yf_vocab_to_orig(&s->vmap, id);
    char *txt = NULL;
    size_t len = 0;
    if (yf_tokenizer_decode_n(s->tok, j->ids, (size_t)j->n + 1, true, &txt, &len)) {
        txt = yf_strdup(""); /* an id the tokenizer lacks (a padded vocabulary row): no text */
        len = 0;
    }
    size_t stop_at = find_stop(j, txt, j->searched < len ? j->searched : len, len);
    bool stop = stop_at < len;
    size_t safe = stop ? stop_at : len - held_back(j, txt, len);
    pthread_mutex_lock(&j->mu);
    if (j->n == 0) j->t_first = yf_time();
    j->n++;
    free(j->text);
    j->text = txt;
    j->len = stop ? stop_at : len;
    j->text[j->len] = 0;
    j->safe = safe > j->safe ? safe : j->safe;
    size_t maxstop = 0;
    for (size_t i = 0; i < j->q.nstop; i++)
        if (strlen(j->q.stop[i]) > maxstop) maxstop = strlen(j->q.stop[i]);
    j->searched = j->safe > maxstop ? j->safe - maxstop : 0;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    return stop;
}

static void on_done(void *ctx, yf_finish why, const char *error) {
    yf_job *j = ctx;
    /* an extraction answer a pruned vocabulary could not finish: its
     * shortest completion after the ids' bytes, as yuanft extract writes it
     * (yf_answer_text: a character cut between the two is whole again) */
    char *tail = NULL, *txt = NULL;
    size_t tl = 0, len = 0;
    bool ended = why == YF_FINISH_STOP || why == YF_FINISH_LENGTH;
    if (j->cst && j->q.kind == YF_API_EXTRACT && ended && !yf_cstate_complete(j->cst))
        tail = yf_cstate_completion(j->cst, &tl);
    if (tail && tl && yf_answer_text(j->srv->tok, j->ids, (size_t)j->n, tail, &txt, &len)) txt = NULL;
    pthread_mutex_lock(&j->mu);
    if (txt) {
        free(j->text);
        j->text = txt;
        j->len = len;
    }
    free(tail);
    j->why = why;
    if (error) snprintf(j->error, sizeof j->error, "%s", error);
    j->safe = j->len; /* nothing more comes: the held-back bytes are final */
    j->t_end = yf_time();
    j->done = true;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

/* ---- the job ------------------------------------------------------------------ */

int yf_job_new(yf_server *s, yf_api_request *q, yf_job **out, yf_api_error *e) {
    yf_job *j = yf_calloc(1, sizeof *j);
    j->srv = s;
    j->q = *q;
    memset(q, 0, sizeof *q);
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    j->text = yf_strdup("");
    if (resolve_model(j, e) || build_prompt(j, e) || set_limits(j, e) || set_constraint(j, e)) {
        yf_job_free(j);
        return -1;
    }
    yf_sched_req *r = &j->req;
    r->adapter = j->adapter;
    r->prompt = j->prompt;
    r->plen = j->plen;
    r->stop_id = s->eod_row;
    r->on_token = on_token;
    r->on_done = on_done;
    r->ctx = j;
    *out = j;
    return 0;
}

int yf_job_submit(yf_job *j, yf_api_error *e) {
    bool full = false;
    j->t_start = yf_time();
    if (yf_sched_submit(j->srv->sched, &j->req, &full))
        return yf_api_fail(e, 503, "server_error", full ? "server_busy" : "shutting_down", "",
                           "%s; retry later", yf_last_error());
    j->submitted = true;
    return 0;
}

size_t yf_job_wait(yf_job *j, size_t have, double timeout_s, bool *done) {
    pthread_mutex_lock(&j->mu);
    if (!j->done && j->safe <= have && timeout_s > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double t = (double)ts.tv_sec + ts.tv_nsec * 1e-9 + timeout_s;
        ts.tv_sec = (time_t)t;
        ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
        while (!j->done && j->safe <= have)
            if (pthread_cond_timedwait(&j->cv, &j->mu, &ts) != 0) break;
    }
    size_t safe = j->safe;
    *done = j->done && safe <= have;
    pthread_mutex_unlock(&j->mu);
    return safe;
}

char *yf_job_text(yf_job *j, size_t from, size_t to) {
    pthread_mutex_lock(&j->mu);
    YF_CHECK(from <= to && to <= j->len);
    char *t = yf_malloc(to - from + 1);
    memcpy(t, j->text + from, to - from);
    t[to - from] = 0;
    pthread_mutex_unlock(&j->mu);
    return t;
}

void yf_job_cancel(yf_job *j) {
    if (j->submitted) yf_sched_cancel(j->srv->sched, &j->req);
}

void yf_job_free(yf_job *j) {
    if (!j) return;
    if (j->submitted) {
        pthread_mutex_lock(&j->mu);
        bool done = j->done;
        pthread_mutex_unlock(&j->mu);
        if (!done) yf_sched_cancel(j->srv->sched, &j->req);
        pthread_mutex_lock(&j->mu);
        while (!j->done) pthread_cond_wait(&j->cv, &j->mu);
        pthread_mutex_unlock(&j->mu);
    }
    yf_cstate_free(j->cst);
    yf_constraint_free(j->grammar);
    yf_api_request_free(&j->q);
    free(j->prompt);
    free(j->ids);
    free(j->text);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

const char *yf_job_finish_reason(const yf_job *j) { return j->why == YF_FINISH_LENGTH ? "length" : "stop"; }
