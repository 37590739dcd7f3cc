/* jsonschema: the schema subset of jsonschema.h, parsed with cJSON and
 * compiled node by node into the grammar of constrain_internal.h (a parent
 * node is added before its children, as the grammar requires). */
#include "task/jsonschema.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "task/constrain_internal.h"

#define MAX_NAME 4096 /* bytes of a property name or enum value */

typedef struct compiler {
    yf_constraint *c;
    const char *name;
    char path[512];   /* where in the schema: #/properties/a/items */
} compiler;

static int fail(const compiler *k, const char *msg) {
    return yf_errorf("%s: schema at %s: %s", k->name, k->path, msg);
}

static const char *const k_annotations[] = {"title", "description", "$schema", "$id", "$comment", "default", "examples"};

static bool is_annotation(const char *key) {
    for (size_t i = 0; i < sizeof k_annotations / sizeof *k_annotations; i++)
        if (!strcmp(key, k_annotations[i])) return true;
    return false;
}

/* The keywords each type takes besides "type" and the annotations. */
static bool keyword_ok(ck_kind kind, const char *key) {
    switch (kind) {
    case CK_OBJECT: return !strcmp(key, "properties") || !strcmp(key, "required") || !strcmp(key, "additionalProperties");
    case CK_ARRAY: return !strcmp(key, "items") || !strcmp(key, "minItems") || !strcmp(key, "maxItems");
    case CK_STRING: return !strcmp(key, "enum") || !strcmp(key, "minLength") || !strcmp(key, "maxLength");
    default: return false;
    }
}

/* A non-negative integer keyword (absent: dflt). */
static int count_kw(compiler *k, const cJSON *s, const char *key, int64_t dflt, int64_t *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(s, key);
    *out = dflt;
    if (!v) return 0;
    double d = cJSON_GetNumberValue(v);
    if (!cJSON_IsNumber(v) || d < 0 || d != floor(d) || d > 1e9) {
        char msg[160];
        snprintf(msg, sizeof msg, "\"%s\" must be a non-negative integer (at most 1e9)", key);
        return fail(k, msg);
    }
    *out = (int64_t)d;
    return 0;
}

static int compile(compiler *k, const cJSON *s, int depth, int32_t *out);

/* Appends "/seg" to the path for a child; returns the old length. */
static size_t push_path(compiler *k, const char *seg) {
    size_t n = strlen(k->path);
    snprintf(k->path + n, sizeof k->path - n, "/%s", seg);
    return n;
}

static int names_from(compiler *k, const cJSON *arr, const char *what, ck_node *n) {
    int32_t cnt = cJSON_GetArraySize(arr);
    if (cnt > CK_MAX_NAMES) {
        char msg[160];
        snprintf(msg, sizeof msg, "at most %d %s are supported, got %d", CK_MAX_NAMES, what, cnt);
        return fail(k, msg);
    }
    const char **raw = yf_calloc((size_t)(cnt ? cnt : 1), sizeof *raw);
    size_t *len = yf_calloc((size_t)(cnt ? cnt : 1), sizeof *len);
    int32_t i = 0;
    for (const cJSON *e = arr->child; e; e = e->next, i++) {
        raw[i] = cJSON_IsArray(arr) ? cJSON_GetStringValue(e) : e->string;
        if (!raw[i]) {
            free(raw), free(len);
            char msg[160];
            snprintf(msg, sizeof msg, "every one of the %s must be a string", what);
            return fail(k, msg);
        }
        len[i] = strlen(raw[i]);
        if (len[i] > MAX_NAME) {
            free(raw), free(len);
            return fail(k, "a name or enum value longer than 4096 bytes");
        }
    }
    ck_set_names(n, raw, len, cnt);
    free(raw);
    free(len);
    return 0;
}

static int compile_object(compiler *k, const cJSON *s, int depth, int32_t node) {
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(s, "properties"), *req = cJSON_GetObjectItemCaseSensitive(s, "required"),
                *add = cJSON_GetObjectItemCaseSensitive(s, "additionalProperties");
    if (props && !cJSON_IsObject(props)) return fail(k, "\"properties\" must be an object");
    if (req && !cJSON_IsArray(req)) return fail(k, "\"required\" must be a list of property names");
    if (add && !cJSON_IsBool(add))
        return fail(k, "\"additionalProperties\" must be true or false (a schema there is outside the supported subset)");
    if (props) {
        for (const cJSON *a = props->child; a; a = a->next)
            for (const cJSON *b = a->next; b; b = b->next)
                if (!strcmp(a->string, b->string)) return fail(k, "a property is listed twice");
        if (names_from(k, props, "properties", &k->c->nodes[node])) return -1;
    }
    int32_t n = k->c->nodes[node].n;
    k->c->nodes[node].child = yf_calloc((size_t)(n ? n : 1), sizeof(int32_t));
    for (const cJSON *r = req ? req->child : NULL; r; r = r->next) {
        if (!cJSON_IsString(r)) return fail(k, "\"required\" must be a list of property names");
        int32_t i = 0;
        for (const cJSON *p = props ? props->child : NULL; p; p = p->next, i++)
            if (!strcmp(p->string, r->valuestring)) break;
        if (i >= n) {
            char msg[200];
            snprintf(msg, sizeof msg, "\"required\" names '%.60s', which \"properties\" does not list", r->valuestring);
            return fail(k, msg);
        }
        k->c->nodes[node].required |= 1ull << i;
    }
    int32_t i = 0;
    for (const cJSON *p = props ? props->child : NULL; p; p = p->next, i++) {
        size_t old = push_path(k, "properties");
        push_path(k, p->string);
        int32_t child;
        if (compile(k, p, depth + 1, &child)) return -1;
        k->path[old] = 0;
        k->c->nodes[node].child[i] = child;
    }
    return 0;
}

static int compile(compiler *k, const cJSON *s, int depth, int32_t *out) {
    if (depth >= CK_MAX_DEPTH) return fail(k, "values nested deeper than 16 are not supported");
    if (!cJSON_IsObject(s)) return fail(k, "a schema must be an object");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(s, "type"), *en = cJSON_GetObjectItemCaseSensitive(s, "enum");
    ck_kind kind;
    if (type) {
        const char *t = cJSON_GetStringValue(type);
        if (!t) return fail(k, "\"type\" must be one string (a list of types is outside the supported subset)");
        if (!strcmp(t, "object")) kind = CK_OBJECT;
        else if (!strcmp(t, "array")) kind = CK_ARRAY;
        else if (!strcmp(t, "string")) kind = CK_STRING;
        else if (!strcmp(t, "integer")) kind = CK_INTEGER;
        else if (!strcmp(t, "number")) kind = CK_NUMBER;
        else if (!strcmp(t, "boolean")) kind = CK_BOOLEAN;
        else if (!strcmp(t, "null")) kind = CK_NULL;
        else return fail(k, "\"type\" must be object, array, string, integer, number, boolean or null");
    } else if (en) {
        kind = CK_STRING;
    } else {
        return fail(k, "a schema needs a \"type\" (or a string \"enum\")");
    }
    for (const cJSON *kv = s->child; kv; kv = kv->next) {
        if (!strcmp(kv->string, "type") || is_annotation(kv->string) || keyword_ok(kind, kv->string)) continue;
        char msg[200];
        snprintf(msg, sizeof msg, "keyword '%.60s' is outside the supported subset (see docs/constrained-decoding.md)",
                 kv->string);
        return fail(k, msg);
    }
    int32_t node = ck_add(k->c, kind);
    *out = node;
    switch (kind) {
    case CK_OBJECT: return compile_object(k, s, depth, node);
    case CK_ARRAY: {
        int64_t mn, mx;
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(s, "items");
        if (!items) return fail(k, "an array needs \"items\" (a schema)");
        if (count_kw(k, s, "minItems", 0, &mn) || count_kw(k, s, "maxItems", -1, &mx)) return -1;
        if (mx >= 0 && mn > mx) return fail(k, "\"minItems\" is above \"maxItems\"");
        size_t old = push_path(k, "items");
        int32_t child;
        if (compile(k, items, depth + 1, &child)) return -1;
        k->path[old] = 0;
        ck_node *n = &k->c->nodes[node];
        n->items = child, n->min = mn, n->max = mx;
        return 0;
    }
    case CK_STRING: {
        int64_t mn, mx;
        if (count_kw(k, s, "minLength", 0, &mn) || count_kw(k, s, "maxLength", -1, &mx)) return -1;
        if (mx >= 0 && mn > mx) return fail(k, "\"minLength\" is above \"maxLength\"");
        ck_node *n = &k->c->nodes[node];
        n->min = mn, n->max = mx;
        if (en) {
            if (!cJSON_IsArray(en) || !en->child) return fail(k, "\"enum\" must be a non-empty list of strings");
            if (cJSON_GetObjectItemCaseSensitive(s, "minLength") || cJSON_GetObjectItemCaseSensitive(s, "maxLength"))
                return fail(k, "\"enum\" with \"minLength\"/\"maxLength\" is outside the supported subset");
            if (names_from(k, en, "enum values", &k->c->nodes[node])) return -1;
        }
        return 0;
    }
    default: return 0;
    }
}

int yf_constraint_json_schema(const char *text, size_t len, const char *name, yf_constraint **out) {
    *out = NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        size_t at = end && end >= text ? (size_t)(end - text) : 0;
        return yf_errorf("%s: not valid JSON (near byte %zu)", name, at);
    }
    yf_constraint *c = yf_calloc(1, sizeof *c);
    compiler k = {c, name, "#"};
    int rc = compile(&k, root, 0, &c->root);
    cJSON_Delete(root);
    if (rc) {
        yf_constraint_free(c);
        return -1;
    }
    *out = c;
    return 0;
}
