/* request: parsing and checking the request bodies (request.h). */
#include "serve/request.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/jsontext.h"
#include "task/eval.h"

int yf_api_fail(yf_api_error *e, int status, const char *type, const char *code, const char *param, const char *fmt,
                ...) {
    e->status = status;
    e->type = type;
    e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

#define BAD(e, param, ...) yf_api_fail((e), 400, "invalid_request_error", NULL, (param), __VA_ARGS__)

/* Prompts, messages and texts longer than this are refused before the
 * tokenizer sees them (the body limit bounds them too). */
#define MAX_TEXT_BYTES ((size_t)16 << 20)
/* Stop strings: OpenAI's limit of 4, each at most this long. */
#define MAX_STOP_BYTES 256
#define MAX_TOKENS_CAP ((int64_t)1 << 24)

/* A field that is absent or null: NULL. */
static const cJSON *field(const cJSON *o, const char *name) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);
    return f && !cJSON_IsNull(f) ? f : NULL;
}

/* A JSON string's text, checked for UTF-8 (cJSON keeps the bytes as sent). */
static int get_text(const cJSON *f, const char *param, size_t maxlen, char **out, yf_api_error *e) {
    if (!cJSON_IsString(f) || !f->valuestring) return BAD(e, param, "'%s' must be a string", param);
    size_t n = strlen(f->valuestring);
    if (n > maxlen) return BAD(e, param, "'%s' is %zu bytes long; at most %zu are accepted", param, n, maxlen);
    if (!yf_utf8_valid(f->valuestring, n)) return BAD(e, param, "'%s' is not valid UTF-8", param);
    *out = yf_strdup(f->valuestring);
    return 0;
}

static int get_number(const cJSON *o, const char *name, double lo, double hi, bool lo_open, double *out,
                      yf_api_error *e) {
    const cJSON *f = field(o, name);
    if (!f) return 0;
    if (!cJSON_IsNumber(f)) return BAD(e, name, "'%s' must be a number", name);
    double v = f->valuedouble;
    if (!isfinite(v) || v < lo || v > hi || (lo_open && v == lo))
        return BAD(e, name, "'%s' is %g; it must be in %s%g, %g]", name, v, lo_open ? "(" : "[", lo, hi);
    *out = v;
    return 0;
}

/* An integer field: a JSON number with no fractional part within [lo, hi]. */
static int get_int(const cJSON *o, const char *name, int64_t lo, int64_t hi, int64_t *out, bool *present,
                   yf_api_error *e) {
    const cJSON *f = field(o, name);
    if (present) *present = f != NULL;
    if (!f) return 0;
    if (!cJSON_IsNumber(f) || !isfinite(f->valuedouble) || f->valuedouble != floor(f->valuedouble))
        return BAD(e, name, "'%s' must be an integer", name);
    double v = f->valuedouble;
    if (v < (double)lo || v > (double)hi)
        return BAD(e, name, "'%s' is %.0f; it must be in [%lld, %lld]", name, v, (long long)lo, (long long)hi);
    *out = (int64_t)v;
    return 0;
}

static int get_bool(const cJSON *o, const char *name, bool *out, yf_api_error *e) {
    const cJSON *f = field(o, name);
    if (!f) return 0;
    if (!cJSON_IsBool(f)) return BAD(e, name, "'%s' must be true or false", name);
    *out = cJSON_IsTrue(f);
    return 0;
}

/* "stop": a string or up to 4 of them, each non-empty. */
static int get_stop(const cJSON *o, yf_api_request *r, yf_api_error *e) {
    const cJSON *f = field(o, "stop");
    if (!f) return 0;
    if (cJSON_IsString(f)) {
        if (get_text(f, "stop", MAX_STOP_BYTES, &r->stop[0], e)) return -1;
        r->nstop = 1;
    } else if (cJSON_IsArray(f)) {
        int n = cJSON_GetArraySize(f);
        if (n > YF_API_MAX_STOP) return BAD(e, "stop", "'stop' has %d strings; at most %d are accepted", n, YF_API_MAX_STOP);
        for (const cJSON *s = f->child; s; s = s->next) {
            if (get_text(s, "stop", MAX_STOP_BYTES, &r->stop[r->nstop], e)) return -1;
            r->nstop++;
        }
    } else {
        return BAD(e, "stop", "'stop' must be a string or an array of strings");
    }
    for (size_t i = 0; i < r->nstop; i++)
        if (!r->stop[i][0]) return BAD(e, "stop", "'stop' strings must not be empty");
    return 0;
}

/* "prompt": a string, an array of one string, or an array of token ids. */
static int get_prompt(const cJSON *o, yf_api_request *r, yf_api_error *e) {
    const cJSON *f = field(o, "prompt");
    if (!f) return BAD(e, "prompt", "'prompt' is required");
    if (cJSON_IsString(f)) return get_text(f, "prompt", MAX_TEXT_BYTES, &r->prompt, e);
    if (!cJSON_IsArray(f)) return BAD(e, "prompt", "'prompt' must be a string or an array of token ids");
    int n = cJSON_GetArraySize(f);
    if (n == 0) return BAD(e, "prompt", "'prompt' is empty");
    if (cJSON_IsString(f->child)) {
        if (n != 1) return BAD(e, "prompt", "'prompt' holds %d prompts; one a request is supported", n);
        return get_text(f->child, "prompt", MAX_TEXT_BYTES, &r->prompt, e);
    }
    if ((size_t)n > MAX_TEXT_BYTES / 4) return BAD(e, "prompt", "'prompt' has %d token ids; too many", n);
    r->prompt_ids = yf_malloc((size_t)n * sizeof(int64_t));
    for (const cJSON *t = f->child; t; t = t->next) {
        double v = cJSON_IsNumber(t) ? t->valuedouble : -1;
        if (!cJSON_IsNumber(t) || v != floor(v) || v < 0 || v > 2147483647.0)
            return BAD(e, "prompt", "'prompt' must be a string or an array of token ids (non-negative integers); "
                                    "item %lld is not", (long long)r->n_prompt_ids);
        r->prompt_ids[r->n_prompt_ids++] = (int64_t)v;
    }
    return 0;
}

static const char *const k_roles[] = {"system", "user", "assistant", "developer", "tool"};

/* "messages": [{"role", "content"}], content a string or text parts. */
static int get_messages(const cJSON *o, yf_api_request *r, yf_api_error *e) {
    const cJSON *f = field(o, "messages");
    char param[64];
    if (!f) return BAD(e, "messages", "'messages' is required");
    if (!cJSON_IsArray(f) || cJSON_GetArraySize(f) == 0)
        return BAD(e, "messages", "'messages' must be a non-empty array of {\"role\", \"content\"}");
    int n = cJSON_GetArraySize(f);
    r->msgs = yf_calloc((size_t)n, sizeof *r->msgs);
    for (const cJSON *m = f->child; m; m = m->next) {
        yf_chat_msg *cm = &r->msgs[r->nmsgs];
        size_t i = r->nmsgs++;
        snprintf(param, sizeof param, "messages[%zu]", i);
        if (!cJSON_IsObject(m)) return BAD(e, param, "'%s' must be an object with \"role\" and \"content\"", param);
        snprintf(param, sizeof param, "messages[%zu].role", i);
        const cJSON *role = field(m, "role");
        if (!role) return BAD(e, param, "'%s' is required", param);
        if (get_text(role, param, 64, &cm->role, e)) return -1;
        bool known = false;
        for (size_t k = 0; k < sizeof k_roles / sizeof *k_roles; k++) known |= strcmp(cm->role, k_roles[k]) == 0;
        if (!known) return BAD(e, param, "'%s' is '%s'; one of system, user, assistant, developer, tool", param, cm->role);
        snprintf(param, sizeof param, "messages[%zu].content", i);
        const cJSON *c = field(m, "content");
        if (!c) {
            cm->content = yf_strdup("");
        } else if (cJSON_IsString(c)) {
            if (get_text(c, param, MAX_TEXT_BYTES, &cm->content, e)) return -1;
        } else if (cJSON_IsArray(c)) { /* [{"type": "text", "text": "..."}]: the texts joined */
            yf_sbuf b = {0};
            for (const cJSON *p = c->child; p; p = p->next) {
                const cJSON *ty = field(p, "type"), *tx = field(p, "text");
                if (!cJSON_IsObject(p) || !cJSON_IsString(ty) || strcmp(ty->valuestring, "text") != 0 ||
                    !cJSON_IsString(tx) || !yf_utf8_valid(tx->valuestring, strlen(tx->valuestring))) {
                    yf_sbuf_free(&b);
                    return BAD(e, param, "'%s' parts must be {\"type\": \"text\", \"text\": string} (only text is supported)",
                               param);
                }
                yf_sbuf_puts(&b, tx->valuestring);
                if (b.n > MAX_TEXT_BYTES) {
                    yf_sbuf_free(&b);
                    return BAD(e, param, "'%s' is too long", param);
                }
            }
            cm->content = yf_sbuf_take(&b);
        } else {
            return BAD(e, param, "'%s' must be a string or an array of text parts", param);
        }
    }
    return 0;
}

/* "response_format": {"type": "text" | "json_object" | "json_schema", "json_schema": {...}}. */
static int get_format(const cJSON *o, yf_api_request *r, yf_api_error *e) {
    const cJSON *f = field(o, "response_format");
    if (!f) return 0;
    const cJSON *ty = cJSON_IsObject(f) ? field(f, "type") : NULL;
    if (!cJSON_IsString(ty))
        return BAD(e, "response_format", "'response_format' must be {\"type\": \"text\" | \"json_object\" | \"json_schema\"}");
    if (!strcmp(ty->valuestring, "text")) return 0;
    if (!strcmp(ty->valuestring, "json_object")) {
        r->format = YF_FORMAT_JSON_OBJECT;
        return 0;
    }
    if (strcmp(ty->valuestring, "json_schema") != 0)
        return BAD(e, "response_format.type", "'response_format.type' is '%s'; one of text, json_object, json_schema",
                   ty->valuestring);
    const cJSON *js = field(f, "json_schema");
    if (!cJSON_IsObject(js))
        return BAD(e, "response_format.json_schema", "'response_format.json_schema' must be an object with a \"schema\"");
    const cJSON *name = field(js, "name"), *schema = field(js, "schema");
    if (name && get_text(name, "response_format.json_schema.name", 256, &r->schema_name, e)) return -1;
    if (!cJSON_IsObject(schema))
        return BAD(e, "response_format.json_schema.schema", "'response_format.json_schema.schema' must be a JSON Schema object");
    if (get_bool(js, "strict", &r->schema_strict, e)) return -1;
    r->format = YF_FORMAT_JSON_SCHEMA;
    r->schema = cJSON_PrintUnformatted(schema);
    if (!r->schema) return BAD(e, "response_format.json_schema.schema", "the schema could not be read");
    return 0;
}

/* Fields of the OpenAI API this server does not implement: refused when
 * they ask for something, ignored at their defaults. */
static int get_unsupported(const cJSON *o, yf_api_error *e) {
    int64_t n = 1;
    if (get_int(o, "n", 1, 1, &n, NULL, e)) return BAD(e, "n", "'n' must be 1: one choice a request is supported");
    if (get_int(o, "best_of", 1, 1, &n, NULL, e)) return BAD(e, "best_of", "'best_of' must be 1");
    const cJSON *f = field(o, "logprobs");
    if (f && !cJSON_IsFalse(f) && !(cJSON_IsNumber(f) && f->valuedouble == 0))
        return BAD(e, "logprobs", "'logprobs' is not supported");
    f = field(o, "echo");
    if (f && !cJSON_IsFalse(f)) return BAD(e, "echo", "'echo' is not supported");
    f = field(o, "tools");
    if (f && !(cJSON_IsArray(f) && cJSON_GetArraySize(f) == 0)) return BAD(e, "tools", "'tools' are not supported");
    return 0;
}

/* "types": names (姓名 ...) or Resume NER tags (NAME ...). */
static int get_types(const cJSON *o, yf_api_request *r, yf_api_error *e) {
    const cJSON *f = field(o, "types");
    if (!f) return 0;
    if (!cJSON_IsArray(f) || cJSON_GetArraySize(f) == 0)
        return BAD(e, "types", "'types' must be a non-empty array of entity types (姓名, 国籍, 种族, 职位, 教育背景, 专业, "
                               "组织名, 地名, or NAME, CONT, RACE, TITLE, EDU, PRO, ORG, LOC)");
    for (const cJSON *t = f->child; t; t = t->next) {
        if (!cJSON_IsString(t)) return BAD(e, "types", "'types' must hold strings");
        size_t n = strlen(t->valuestring);
        int k = yf_type_from_name(t->valuestring, n);
        if (k < 0) k = yf_type_from_tag(t->valuestring, n);
        if (k < 0)
            return BAD(e, "types", "'types': '%.64s' is not an entity type (姓名, 国籍, 种族, 职位, 教育背景, 专业, 组织名, 地名, "
                                   "or NAME, CONT, RACE, TITLE, EDU, PRO, ORG, LOC)", t->valuestring);
        r->types |= 1u << k;
    }
    return 0;
}

/* "constrain": how /v1/extract decodes, as yuanft extract --constrain. */
static int get_constrain(const cJSON *o, yf_api_request *r, yf_api_error *e) {
    static const char *const modes[] = {"spans", "schema", "none"};
    const cJSON *f = field(o, "constrain");
    r->constrain = -1;
    if (!f) return 0;
    for (int i = 0; cJSON_IsString(f) && i < 3; i++)
        if (!strcmp(f->valuestring, modes[i])) {
            r->constrain = i;
            return 0;
        }
    return BAD(e, "constrain", "'constrain' must be \"spans\" (every string a span of the text), \"schema\" (the "
                               "answer format, strings free) or \"none\" (free-running)");
}

static int parse_object(yf_api_kind kind, const cJSON *o, yf_api_request *r, yf_api_error *e) {
    if (kind == YF_API_EXTRACT) {
        const cJSON *t = field(o, "text");
        if (!t) return BAD(e, "text", "'text' is required");
        if (get_text(t, "text", MAX_TEXT_BYTES, &r->text, e)) return -1;
        const cJSON *a = field(o, "adapter");
        if (a && get_text(a, "adapter", 256, &r->model, e)) return -1;
        if (get_types(o, r, e) || get_constrain(o, r, e)) return -1;
        return get_int(o, "max_tokens", 1, MAX_TOKENS_CAP, &r->max_tokens, NULL, e);
    }
    const cJSON *m = field(o, "model");
    if (!m) return BAD(e, "model", "'model' is required: \"base\" or an adapter's name (GET /v1/models)");
    if (get_text(m, "model", 256, &r->model, e)) return -1;
    if (kind == YF_API_COMPLETION ? get_prompt(o, r, e) : get_messages(o, r, e)) return -1;
    bool has = false;
    if (kind == YF_API_CHAT && get_int(o, "max_completion_tokens", 1, MAX_TOKENS_CAP, &r->max_tokens, &has, e))
        return -1;
    if (!has && get_int(o, "max_tokens", 1, MAX_TOKENS_CAP, &r->max_tokens, NULL, e)) return -1;
    if (get_number(o, "temperature", 0, 2, false, &r->temperature, e)) return -1;
    if (get_number(o, "top_p", 0, 1, true, &r->top_p, e)) return -1;
    if (get_int(o, "top_k", 0, (int64_t)1 << 30, &r->top_k, NULL, e)) return -1;
    if (get_number(o, "repetition_penalty", 0, 100, true, &r->repetition_penalty, e)) return -1;
    int64_t seed = 0;
    if (get_int(o, "seed", -((int64_t)1 << 53), (int64_t)1 << 53, &seed, &r->has_seed, e)) return -1;
    r->seed = (uint64_t)seed;
    if (get_stop(o, r, e) || get_bool(o, "stream", &r->stream, e)) return -1;
    const cJSON *so = field(o, "stream_options");
    if (so && !cJSON_IsObject(so)) return BAD(e, "stream_options", "'stream_options' must be an object");
    if (so && get_bool(so, "include_usage", &r->include_usage, e)) return -1;
    if (get_format(o, r, e)) return -1;
    return get_unsupported(o, e);
}

int yf_api_parse(yf_api_kind kind, const char *body, size_t len, yf_api_request *out, yf_api_error *e) {
    memset(out, 0, sizeof *out);
    out->kind = kind;
    out->max_tokens = -1;
    out->constrain = -1;
    out->top_p = 1;
    out->repetition_penalty = 1;
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts(body, len, &end, false);
    if (!o) {
        size_t at = end && end >= body ? (size_t)(end - body) : 0;
        return BAD(e, "", "the body is not valid JSON (error near byte %zu of %zu)", at, len);
    }
    for (const char *p = end; p < body + len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
            cJSON_Delete(o);
            return BAD(e, "", "the body has text after its JSON value (at byte %zu)", (size_t)(p - body));
        }
    int rc = cJSON_IsObject(o) ? parse_object(kind, o, out, e) : BAD(e, "", "the body must be a JSON object");
    cJSON_Delete(o);
    if (rc) yf_api_request_free(out);
    return rc;
}

void yf_api_request_free(yf_api_request *r) {
    free(r->model);
    free(r->prompt);
    free(r->prompt_ids);
    for (size_t i = 0; i < r->nmsgs; i++) free(r->msgs[i].role), free(r->msgs[i].content);
    free(r->msgs);
    free(r->text);
    for (size_t i = 0; i < r->nstop; i++) free(r->stop[i]);
    free(r->schema);
    free(r->schema_name);
    memset(r, 0, sizeof *r);
}

bool yf_api_key_equal(const char *key, size_t klen, const char *want) {
    size_t wlen = strlen(want);
    /* every byte of the longer one is looked at, whatever matched */
    size_t n = klen > wlen ? klen : wlen;
    unsigned diff = klen != wlen;
    for (size_t i = 0; i < n; i++) {
        unsigned char a = i < klen ? (unsigned char)key[i] : 0, b = i < wlen ? (unsigned char)want[i] : 0;
        diff |= (unsigned)(a ^ b);
    }
    return diff == 0;
}
