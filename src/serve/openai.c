/* openai: response bodies (openai.h). Written with yf_sbuf rather than
 * cJSON: texts are byte strings with a length (a NUL from a <0x00> token
 * must not cut them). */
#include "serve/openai.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/jsontext.h"

static void put_str(yf_sbuf *b, const char *s) {
    if (s) yf_sbuf_json_string(b, s, strlen(s));
    else yf_sbuf_puts(b, "null");
}

static void put_key(yf_sbuf *b, const char *k) {
    yf_sbuf_json_string(b, k, strlen(k));
    yf_sbuf_puts(b, ": ");
}

static void put_int(yf_sbuf *b, int64_t v) {
    char t[32];
    snprintf(t, sizeof t, "%lld", (long long)v);
    yf_sbuf_puts(b, t);
}

static void put_usage(yf_sbuf *b, const yf_api_usage *u) {
    yf_sbuf_puts(b, "{\"prompt_tokens\": ");
    put_int(b, u->prompt_tokens);
    yf_sbuf_puts(b, ", \"completion_tokens\": ");
    put_int(b, u->completion_tokens);
    yf_sbuf_puts(b, ", \"total_tokens\": ");
    put_int(b, u->prompt_tokens + u->completion_tokens);
    yf_sbuf_puts(b, "}");
}

char *yf_api_error_json(const yf_api_error *e) {
    yf_sbuf b = {0};
    yf_sbuf_puts(&b, "{\"error\": {\"message\": ");
    put_str(&b, e->message);
    yf_sbuf_puts(&b, ", \"type\": ");
    put_str(&b, e->type ? e->type : "invalid_request_error");
    yf_sbuf_puts(&b, ", \"param\": ");
    put_str(&b, e->param[0] ? e->param : NULL);
    yf_sbuf_puts(&b, ", \"code\": ");
    put_str(&b, e->code);
    yf_sbuf_puts(&b, "}}\n");
    return yf_sbuf_take(&b);
}

void yf_api_new_id(char *buf, size_t cap, const char *prefix) {
    static uint64_t counter;
    uint64_t x = (uint64_t)(yf_time() * 1e9) ^ __atomic_add_fetch(&counter, 0x9E3779B97F4A7C15ull, __ATOMIC_RELAXED);
    yf_rng r;
    yf_rng_seed(&r, x);
    uint64_t a = yf_rng_u64(&r), c = yf_rng_u64(&r);
    snprintf(buf, cap, "%s%016llx%08llx", prefix, (unsigned long long)a, (unsigned long long)(c & 0xffffffffu));
}

/* {"id", "object", "created", "model", "choices": [ */
static void head(yf_sbuf *b, const char *id, const char *object, int64_t created, const char *model) {
    yf_sbuf_puts(b, "{\"id\": ");
    put_str(b, id);
    yf_sbuf_puts(b, ", \"object\": ");
    put_str(b, object);
    yf_sbuf_puts(b, ", \"created\": ");
    put_int(b, created);
    yf_sbuf_puts(b, ", \"model\": ");
    put_str(b, model);
    yf_sbuf_puts(b, ", \"choices\": [");
}

char *yf_api_completion_json(yf_api_kind kind, const char *id, int64_t created, const char *model, const char *text,
                             size_t len, const char *finish, const yf_api_usage *u) {
    yf_sbuf b = {0};
    bool chat = kind == YF_API_CHAT;
    head(&b, id, chat ? "chat.completion" : "text_completion", created, model);
    if (chat) {
        yf_sbuf_puts(&b, "{\"index\": 0, \"message\": {\"role\": \"assistant\", \"content\": ");
        yf_sbuf_json_string(&b, text, len);
        yf_sbuf_puts(&b, "}, \"logprobs\": null, \"finish_reason\": ");
    } else {
        yf_sbuf_puts(&b, "{\"index\": 0, \"text\": ");
        yf_sbuf_json_string(&b, text, len);
        yf_sbuf_puts(&b, ", \"logprobs\": null, \"finish_reason\": ");
    }
    put_str(&b, finish);
    yf_sbuf_puts(&b, "}], \"usage\": ");
    put_usage(&b, u);
    yf_sbuf_puts(&b, "}\n");
    return yf_sbuf_take(&b);
}

char *yf_api_chunk_event(yf_api_kind kind, const char *id, int64_t created, const char *model, const char *delta,
                         size_t len, bool first, const char *finish, const yf_api_usage *usage) {
    yf_sbuf b = {0};
    bool chat = kind == YF_API_CHAT;
    yf_sbuf_puts(&b, "data: ");
    head(&b, id, chat ? "chat.completion.chunk" : "text_completion", created, model);
    if (!usage || delta || finish) {
        yf_sbuf_puts(&b, "{\"index\": 0, ");
        if (chat) {
            yf_sbuf_puts(&b, "\"delta\": {");
            if (first) yf_sbuf_puts(&b, "\"role\": \"assistant\"");
            if (delta) {
                if (first) yf_sbuf_puts(&b, ", ");
                put_key(&b, "content");
                yf_sbuf_json_string(&b, delta, len);
            }
            yf_sbuf_puts(&b, "}");
        } else {
            put_key(&b, "text");
            yf_sbuf_json_string(&b, delta ? delta : "", delta ? len : 0);
        }
        yf_sbuf_puts(&b, ", \"logprobs\": null, \"finish_reason\": ");
        put_str(&b, finish);
        yf_sbuf_puts(&b, "}]");
    } else {
        yf_sbuf_puts(&b, "], \"usage\": ");
        put_usage(&b, usage);
    }
    yf_sbuf_puts(&b, "}\n\n");
    return yf_sbuf_take(&b);
}

const char *yf_api_done_event(void) { return "data: [DONE]\n\n"; }

static void model_entry(yf_sbuf *b, const char *name, int64_t created, bool adapter) {
    yf_sbuf_puts(b, "{\"id\": ");
    put_str(b, name);
    yf_sbuf_puts(b, ", \"object\": \"model\", \"created\": ");
    put_int(b, created);
    yf_sbuf_puts(b, ", \"owned_by\": \"yuanft\"");
    if (adapter) yf_sbuf_puts(b, ", \"parent\": \"base\"");
    yf_sbuf_puts(b, "}");
}

char *yf_api_models_json(const char *const *adapters, size_t n, int64_t created) {
    yf_sbuf b = {0};
    yf_sbuf_puts(&b, "{\"object\": \"list\", \"data\": [");
    model_entry(&b, "base", created, false);
    for (size_t i = 0; i < n; i++) {
        yf_sbuf_puts(&b, ", ");
        model_entry(&b, adapters[i], created, true);
    }
    yf_sbuf_puts(&b, "]}\n");
    return yf_sbuf_take(&b);
}

char *yf_api_extract_json(const char *id, const char *model, const yf_answer *a, uint32_t mask, const yf_span *spans,
                          size_t nspans, const char *raw, size_t len, const yf_api_usage *u, double time_ms) {
    yf_answer kept;
    yf_answer_init(&kept);
    for (int t = 0; t < YF_N_TYPES; t++)
        if (!mask || (mask & (1u << t)))
            for (size_t i = 0; i < a->ent[t].n; i++) yf_answer_add(&kept, t, a->ent[t].s[i], strlen(a->ent[t].s[i]));
    char *entities = yf_answer_format(&kept);
    yf_answer_free(&kept);
    yf_sbuf b = {0};
    yf_sbuf_puts(&b, "{\"id\": ");
    put_str(&b, id);
    yf_sbuf_puts(&b, ", \"object\": \"extraction\", \"model\": ");
    put_str(&b, model);
    yf_sbuf_puts(&b, ", \"entities\": ");
    yf_sbuf_puts(&b, entities);
    yf_sbuf_puts(&b, ", \"spans\": [");
    for (size_t i = 0; i < nspans; i++) {
        const yf_span *s = &spans[i];
        yf_sbuf_puts(&b, i ? ", {\"type\": " : "{\"type\": ");
        put_str(&b, yf_type_names[s->type]);
        yf_sbuf_puts(&b, ", \"text\": ");
        put_str(&b, s->entity);
        yf_sbuf_puts(&b, ", \"start\": ");
        put_int(&b, s->start);
        yf_sbuf_puts(&b, ", \"end\": ");
        put_int(&b, s->end);
        yf_sbuf_puts(&b, "}");
    }
    yf_sbuf_puts(&b, "], \"raw\": ");
    yf_sbuf_json_string(&b, raw, len);
    yf_sbuf_puts(&b, ", \"usage\": ");
    put_usage(&b, u);
    char t[64];
    snprintf(t, sizeof t, ", \"time_ms\": %.1f}\n", time_ms);
    yf_sbuf_puts(&b, t);
    free(entities);
    return yf_sbuf_take(&b);
}

/* ---- spans ------------------------------------------------------------------ */

static int cmp_span(const void *pa, const void *pb) {
    const yf_span *a = pa, *b = pb;
    if (a->start != b->start) return a->start < b->start ? -1 : 1;
    if (a->end != b->end) return a->end > b->end ? -1 : 1;
    return (a->type > b->type) - (a->type < b->type);
}

/* Characters in s[0..n): bytes that do not continue a UTF-8 sequence. */
static int64_t chars(const char *s, size_t n) {
    int64_t c = 0;
    for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

void yf_spans_find(const yf_answer *a, uint32_t mask, const char *text, size_t len, yf_span **out, size_t *n) {
    size_t cap = 0;
    *out = NULL;
    *n = 0;
    for (int t = 0; t < YF_N_TYPES; t++) {
        if (mask && !(mask & (1u << t))) continue;
        for (size_t i = 0; i < a->ent[t].n; i++) {
            const char *e = a->ent[t].s[i];
            size_t el = strlen(e);
            if (el == 0) continue;
            /* walk the text once per entity, counting characters as we go */
            size_t at = 0;
            int64_t cpos = 0;
            for (;;) {
                const char *p = memmem(text + at, len - at, e, el);
                if (!p) break;
                size_t b = (size_t)(p - text);
                cpos += chars(text + at, b - at);
                if (*n == cap) *out = yf_realloc(*out, (cap = cap ? 2 * cap : 16) * sizeof **out);
                int64_t ce = chars(e, el);
                (*out)[(*n)++] = (yf_span){t, e, cpos, cpos + ce, b, b + el};
                cpos += ce;
                at = b + el;
            }
        }
    }
    if (*n > 1) qsort(*out, *n, sizeof **out, cmp_span);
}
