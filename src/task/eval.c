/* eval: answers (format, strict and lenient parsing) and their scores.
 * See eval.h for the scoring rules. */
#include "task/eval.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "base/jsontext.h"

const char *const yf_type_names[YF_N_TYPES] = {"姓名", "国籍", "种族", "职位", "教育背景", "专业", "组织名", "地名"};
const char *const yf_type_tags[YF_N_TYPES] = {"NAME", "CONT", "RACE", "TITLE", "EDU", "PRO", "ORG", "LOC"};

static int find_in(const char *const *names, const char *s, size_t n) {
    for (int t = 0; t < YF_N_TYPES; t++)
        if (strlen(names[t]) == n && memcmp(names[t], s, n) == 0) return t;
    return -1;
}
int yf_type_from_name(const char *s, size_t n) { return find_in(yf_type_names, s, n); }
int yf_type_from_tag(const char *s, size_t n) { return find_in(yf_type_tags, s, n); }

int yf_types_parse(const char *list, uint32_t *mask) {
    *mask = 0;
    const char *p = list;
    for (;;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        while (n && (*p == ' ')) p++, n--;
        while (n && p[n - 1] == ' ') n--;
        if (n) {
            int t = yf_type_from_name(p, n);
            if (t < 0) t = yf_type_from_tag(p, n);
            if (t < 0)
                return yf_errorf("--types: unknown type '%.*s' (known: 姓名 国籍 种族 职位 教育背景 专业 组织名 地名, or "
                                 "NAME CONT RACE TITLE EDU PRO ORG LOC)",
                                 (int)(n > 60 ? 60 : n), p);
            if (*mask >> t & 1) return yf_errorf("--types: %s is given twice", yf_type_names[t]);
            *mask |= 1u << t;
        }
        if (!e) break;
        p = e + 1;
    }
    if (!*mask) return yf_errorf("--types: the list is empty (give types such as 姓名,组织名 or NAME,ORG)");
    return 0;
}

/* ---- answers ------------------------------------------------------------ */

void yf_answer_init(yf_answer *a) { memset(a, 0, sizeof *a); }

void yf_answer_free(yf_answer *a) {
    for (int t = 0; t < YF_N_TYPES; t++) {
        for (size_t i = 0; i < a->ent[t].n; i++) free(a->ent[t].s[i]);
        free(a->ent[t].s);
        free(a->ent[t].slot);
    }
    memset(a, 0, sizeof *a);
}

/* Entities are kept in a hash set beside the list, so that an answer of n
 * entities (a model's, or a hostile predictions file's) costs O(n), not the
 * O(n^2) of comparing each with all before it. */
static size_t str_hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return (size_t)(h ^ (h >> 29));
}

/* The slot of s[0..n) in l's set: holding it, or the empty one where it goes. */
static size_t *find_slot(const yf_strlist *l, const char *s, size_t n) {
    for (size_t i = str_hash(s, n) & (l->nslot - 1);; i = (i + 1) & (l->nslot - 1)) {
        size_t *sl = &l->slot[i];
        if (!*sl) return sl;
        const char *x = l->s[*sl - 1];
        if (strlen(x) == n && memcmp(x, s, n) == 0) return sl;
    }
}

static bool list_has(const yf_strlist *l, const char *s, size_t n) { return l->nslot && *find_slot(l, s, n); }

void yf_answer_add(yf_answer *a, int t, const char *s, size_t n) {
    YF_CHECK(t >= 0 && t < YF_N_TYPES);
    /* entities are C strings: one holding a NUL ("\u0000") is kept up to it,
     * and compared as kept, so that no two kept strings are equal; one that
     * is empty up to its NUL is no entity, as an empty string is none */
    n = strnlen(s, n);
    if (n == 0) return;
    yf_strlist *l = &a->ent[t];
    if (list_has(l, s, n)) return;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 4;
        l->s = yf_realloc(l->s, l->cap * sizeof *l->s);
    }
    char *c = yf_malloc(n + 1);
    memcpy(c, s, n);
    c[n] = 0;
    l->s[l->n++] = c;
    if (2 * l->n >= l->nslot) { /* grow and re-insert every index */
        free(l->slot);
        l->nslot = l->nslot ? 2 * l->nslot : 16;
        l->slot = yf_calloc(l->nslot, sizeof *l->slot);
        for (size_t i = 0; i < l->n; i++) *find_slot(l, l->s[i], strlen(l->s[i])) = i + 1;
    } else {
        *find_slot(l, c, n) = l->n;
    }
}

char *yf_answer_format(const yf_answer *a) {
    yf_sbuf b = {0};
    yf_sbuf_puts(&b, "{");
    bool first = true;
    for (int t = 0; t < YF_N_TYPES; t++) {
        const yf_strlist *l = &a->ent[t];
        if (!l->n) continue;
        if (!first) yf_sbuf_puts(&b, ", ");
        first = false;
        yf_sbuf_json_string(&b, yf_type_names[t], strlen(yf_type_names[t]));
        yf_sbuf_puts(&b, ": [");
        for (size_t i = 0; i < l->n; i++) {
            if (i) yf_sbuf_puts(&b, ", ");
            yf_sbuf_json_string(&b, l->s[i], strlen(l->s[i]));
        }
        yf_sbuf_puts(&b, "]");
    }
    yf_sbuf_puts(&b, "}");
    return yf_sbuf_take(&b);
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

static bool only_ws(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!is_ws(s[i])) return false;
    return true;
}

/* Adds the entities of a parsed JSON object. */
static void from_cjson(yf_answer *a, const cJSON *obj) {
    for (const cJSON *kv = obj->child; kv; kv = kv->next) {
        int t = kv->string ? yf_type_from_name(kv->string, strlen(kv->string)) : -1;
        if (cJSON_IsNull(kv)) continue;
        if (cJSON_IsString(kv)) { /* a single entity instead of a list: take it */
            if (!kv->valuestring[0]) continue; /* an empty string is never an entity */
            if (t >= 0) yf_answer_add(a, t, kv->valuestring, strlen(kv->valuestring));
            else a->n_other++;
            continue;
        }
        if (!cJSON_IsArray(kv)) {
            a->n_other++;
            continue;
        }
        for (const cJSON *it = kv->child; it; it = it->next) {
            if (cJSON_IsString(it) && !it->valuestring[0]) continue;
            if (cJSON_IsString(it) && t >= 0) yf_answer_add(a, t, it->valuestring, strlen(it->valuestring));
            else a->n_other++;
        }
    }
}

/* ---- the lenient parser --------------------------------------------------
 * Used only when the text is not a valid JSON object. A small recursive
 * descent over the shape answers have ({"type": ["entity", ...], ...}) that
 * keeps everything complete it saw before the text ended or went wrong. */

typedef struct lp {
    const char *s;
    size_t n, i;
    yf_answer *a;
    int pairs; /* key: value pairs read */
} lp;

typedef enum { LP_CLOSED, LP_TRUNCATED, LP_GARBAGE } lp_end;

static void lp_ws(lp *p) {
    while (p->i < p->n && is_ws(p->s[p->i])) p->i++;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static void put_utf8(yf_sbuf *b, uint32_t cp) {
    char u[4];
    size_t n;
    if (cp < 0x80) u[0] = (char)cp, n = 1;
    else if (cp < 0x800) u[0] = (char)(0xc0 | cp >> 6), u[1] = (char)(0x80 | (cp & 0x3f)), n = 2;
    else if (cp < 0x10000)
        u[0] = (char)(0xe0 | cp >> 12), u[1] = (char)(0x80 | ((cp >> 6) & 0x3f)), u[2] = (char)(0x80 | (cp & 0x3f)), n = 3;
    else
        u[0] = (char)(0xf0 | cp >> 18), u[1] = (char)(0x80 | ((cp >> 12) & 0x3f)), u[2] = (char)(0x80 | ((cp >> 6) & 0x3f)),
        u[3] = (char)(0x80 | (cp & 0x3f)), n = 4;
    yf_sbuf_put(b, u, n);
}

/* Reads 4 hex digits at s[i]; -1 when fewer are left or one is not hex. */
static int32_t hex4(const lp *p, size_t i) {
    if (i > p->n || p->n - i < 4) return -1;
    int32_t v = 0;
    for (int k = 0; k < 4; k++) {
        int h = hexval(p->s[i + k]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

/* At an opening quote: reads the string into out. Returns true when it was
 * closed, false when the text ended first (out then holds what was complete:
 * a cut escape sequence is dropped). */
static bool lp_string(lp *p, yf_sbuf *out) {
    p->i++; /* the opening quote */
    yf_sbuf_put(out, "", 0);
    while (p->i < p->n) {
        char c = p->s[p->i];
        if (c == '"') {
            p->i++;
            return true;
        }
        if (c != '\\') {
            yf_sbuf_put(out, &c, 1);
            p->i++;
            continue;
        }
        if (p->i + 1 >= p->n) break; /* cut after the backslash */
        char e = p->s[p->i + 1];
        const char *simple = strchr("\"\\/bfnrt", e);
        if (simple && e) {
            static const char rep[] = "\"\\/\b\f\n\r\t";
            yf_sbuf_put(out, &rep[simple - "\"\\/bfnrt"], 1);
            p->i += 2;
            continue;
        }
        if (e != 'u') { /* not an escape JSON knows: keep both characters */
            yf_sbuf_put(out, p->s + p->i, 2);
            p->i += 2;
            continue;
        }
        int32_t cp = hex4(p, p->i + 2);
        if (cp < 0) {
            if (p->n - p->i < 6) break; /* cut inside \uXXXX */
            yf_sbuf_put(out, p->s + p->i, 2);
            p->i += 2;
            continue;
        }
        p->i += 6;
        if (cp >= 0xd800 && cp <= 0xdbff) { /* high surrogate: wants \uDC00-\uDFFF next */
            if (p->n - p->i < 6 && p->n - p->i > 0 && p->s[p->i] == '\\') break;
            int32_t lo = (p->i + 1 < p->n && p->s[p->i] == '\\' && p->s[p->i + 1] == 'u') ? hex4(p, p->i + 2) : -1;
            if (lo >= 0xdc00 && lo <= 0xdfff) {
                p->i += 6;
                put_utf8(out, 0x10000 + (((uint32_t)cp - 0xd800) << 10) + ((uint32_t)lo - 0xdc00));
            } else {
                put_utf8(out, 0xfffd);
            }
            continue;
        }
        put_utf8(out, (cp >= 0xdc00 && cp <= 0xdfff) ? 0xfffd : (uint32_t)cp);
    }
    p->i = p->n;
    return false;
}

/* Skips a value that is not an entity string (number, literal, nested
 * object or list). Returns LP_CLOSED when skipped, LP_TRUNCATED at the end of
 * the text, LP_GARBAGE when there is no value here. */
static lp_end lp_skip_value(lp *p) {
    char c = p->s[p->i];
    if (c != '{' && c != '[') {
        size_t start = p->i;
        while (p->i < p->n && (strchr("+-.eE", p->s[p->i]) || (p->s[p->i] >= '0' && p->s[p->i] <= '9') ||
                               (p->s[p->i] >= 'a' && p->s[p->i] <= 'z')))
            p->i++;
        return p->i > start ? LP_CLOSED : LP_GARBAGE;
    }
    int64_t depth = 0;
    bool in_str = false;
    for (; p->i < p->n; p->i++) {
        c = p->s[p->i];
        if (in_str) {
            if (c == '\\') p->i++;
            else if (c == '"') in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (--depth == 0) {
                p->i++;
                return LP_CLOSED;
            }
        }
    }
    p->i = p->n;
    return LP_TRUNCATED;
}

static void lp_take(lp *p, int t, const yf_sbuf *s) {
    if (s->n == 0) return; /* an empty string is never an entity */
    if (t >= 0) yf_answer_add(p->a, t, s->s, s->n);
    else p->a->n_other++;
}

/* A list of entities of type t (-1: unknown key), at its '['. */
static lp_end lp_list(lp *p, int t, yf_sbuf *tmp) {
    p->i++;
    for (;;) {
        lp_ws(p);
        if (p->i >= p->n) return LP_TRUNCATED;
        char c = p->s[p->i];
        if (c == ']') {
            p->i++;
            return LP_CLOSED;
        }
        if (c == '}') return LP_CLOSED; /* missing ']': the object's '}' ends the list too */
        if (c == ',') {
            p->i++;
            continue;
        }
        if (c == '"') {
            tmp->n = 0;
            if (!lp_string(p, tmp)) return LP_TRUNCATED; /* a cut last string is never an entity */
            lp_take(p, t, tmp);
            continue;
        }
        lp_end e = lp_skip_value(p);
        if (e != LP_CLOSED) return e;
        p->a->n_other++;
    }
}

/* The object at p->i ('{'). */
static lp_end lp_object(lp *p) {
    yf_sbuf key = {0}, tmp = {0};
    lp_end end = LP_GARBAGE;
    p->i++;
    for (;;) {
        lp_ws(p);
        if (p->i >= p->n) { end = LP_TRUNCATED; break; }
        char c = p->s[p->i];
        if (c == '}') { p->i++; end = LP_CLOSED; break; }
        if (c == ',') { p->i++; continue; }
        if (c != '"') { end = LP_GARBAGE; break; }
        key.n = 0;
        if (!lp_string(p, &key)) { end = LP_TRUNCATED; break; } /* a cut key has no value: dropped */
        int t = yf_type_from_name(key.s, key.n);
        lp_ws(p);
        if (p->i >= p->n) { end = LP_TRUNCATED; break; }
        if (p->s[p->i] == ':') p->i++;
        else if (p->s[p->i] != '[' && p->s[p->i] != '"') { end = LP_GARBAGE; break; }
        lp_ws(p);
        if (p->i >= p->n) { end = LP_TRUNCATED; break; }
        c = p->s[p->i];
        p->pairs++;
        lp_end e;
        if (c == '[') {
            e = lp_list(p, t, &tmp);
        } else if (c == '"') {
            tmp.n = 0;
            e = lp_string(p, &tmp) ? LP_CLOSED : LP_TRUNCATED;
            if (e == LP_CLOSED) lp_take(p, t, &tmp);
        } else {
            e = lp_skip_value(p);
            if (e == LP_CLOSED && !(p->i >= 4 && memcmp(p->s + p->i - 4, "null", 4) == 0)) p->a->n_other++;
        }
        if (e != LP_CLOSED) { end = e; break; }
    }
    yf_sbuf_free(&key);
    yf_sbuf_free(&tmp);
    return end;
}

static void parse_depth(const char *text, size_t len, yf_answer *out, int depth) {
    while (len && is_ws(text[0])) text++, len--;
    while (len && is_ws(text[len - 1])) len--;
    out->status = YF_ANS_UNPARSABLE;
    if (!len) return;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    bool clean = root && end && only_ws(end, len - (size_t)(end - text));
    if (root && cJSON_IsObject(root)) {
        from_cjson(out, root);
        out->status = clean ? YF_ANS_OK : YF_ANS_RECOVERED; /* else: text after the object */
        cJSON_Delete(root);
        return;
    }
    if (root && cJSON_IsString(root) && clean && depth == 0) { /* the answer, quoted once more */
        parse_depth(root->valuestring, strlen(root->valuestring), out, 1);
        if (out->status == YF_ANS_OK) out->status = YF_ANS_RECOVERED;
        cJSON_Delete(root);
        return;
    }
    cJSON_Delete(root);
    /* Try the object at each of the first few '{' (text before the answer). */
    int tries = 0;
    for (size_t i = 0; i < len && tries < 16; i++) {
        if (text[i] != '{') continue;
        tries++;
        lp p = {text, len, i, out, 0};
        lp_end e = lp_object(&p);
        if (e != LP_GARBAGE || p.pairs > 0) {
            out->status = YF_ANS_RECOVERED;
            return;
        }
        yf_answer_free(out); /* nothing usable there: forget what it held */
        out->status = YF_ANS_UNPARSABLE;
    }
}

void yf_answer_parse(const char *text, size_t len, yf_answer *out) {
    yf_answer_init(out);
    parse_depth(text, len, out, 0);
}

void yf_answer_parse_strict(const char *text, size_t len, yf_answer *out) {
    yf_answer_init(out);
    out->status = YF_ANS_UNPARSABLE;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (root && cJSON_IsObject(root) && end && only_ws(end, len - (size_t)(end - text))) {
        from_cjson(out, root);
        out->status = YF_ANS_OK;
    }
    cJSON_Delete(root);
}

/* ---- scores ------------------------------------------------------------- */

void yf_eval_init(yf_eval_result *r) { memset(r, 0, sizeof *r); }

void yf_eval_add(yf_eval_result *r, const yf_answer *pred, const yf_answer *gold) {
    r->n_records++;
    if (pred->status == YF_ANS_UNPARSABLE) r->n_unparsable++;
    if (pred->status == YF_ANS_RECOVERED) r->n_recovered++;
    for (int t = 0; t < YF_N_TYPES; t++) {
        const yf_strlist *p = &pred->ent[t], *g = &gold->ent[t];
        int64_t tp = 0;
        for (size_t i = 0; i < p->n; i++) tp += list_has(g, p->s[i], strlen(p->s[i]));
        r->per_type[t].tp += tp;
        r->per_type[t].fp += (int64_t)p->n - tp;
        r->per_type[t].fn += (int64_t)g->n - tp;
    }
    r->n_other += pred->n_other;
}

static void prf(yf_prf *x) {
    x->precision = x->tp + x->fp ? (double)x->tp / (double)(x->tp + x->fp) : 0.0;
    x->recall = x->tp + x->fn ? (double)x->tp / (double)(x->tp + x->fn) : 0.0;
    x->f1 = x->precision + x->recall > 0 ? 2 * x->precision * x->recall / (x->precision + x->recall) : 0.0;
}

void yf_eval_finish(yf_eval_result *r) {
    yf_prf m = {0};
    for (int t = 0; t < YF_N_TYPES; t++) {
        prf(&r->per_type[t]);
        m.tp += r->per_type[t].tp;
        m.fp += r->per_type[t].fp;
        m.fn += r->per_type[t].fn;
    }
    m.fp += r->n_other;
    prf(&m);
    r->micro = m;
}

static int score(const char *const *pred, const char *const *gold, size_t n, const char *gold_name, bool lenient,
                 yf_eval_result *out) {
    yf_eval_result strict;
    yf_eval_init(out);
    yf_eval_init(&strict);
    for (size_t i = 0; i < n; i++) {
        yf_answer p, g;
        yf_answer_parse(gold[i], strlen(gold[i]), &g);
        if (g.status != YF_ANS_OK) {
            yf_answer_free(&g);
            return yf_errorf("%s: record %zu: the gold answer (\"output\") is not a JSON object", gold_name, i + 1);
        }
        yf_answer_parse_strict(pred[i], strlen(pred[i]), &p);
        yf_eval_add(&strict, &p, &g);
        yf_answer_free(&p);
        if (lenient) {
            yf_answer_parse(pred[i], strlen(pred[i]), &p);
            yf_eval_add(out, &p, &g);
            yf_answer_free(&p);
        }
        yf_answer_free(&g);
    }
    yf_eval_finish(&strict);
    if (!lenient) *out = strict;
    else yf_eval_finish(out);
    out->lenient = lenient;
    out->strict = strict.micro;
    return 0;
}

int64_t yf_eval_not_in_input(const char *const *pred, const char *const *inputs, size_t n) {
    int64_t c = 0;
    for (size_t i = 0; i < n; i++) {
        yf_answer p;
        yf_answer_parse(pred[i], strlen(pred[i]), &p);
        for (int t = 0; t < YF_N_TYPES; t++)
            for (size_t k = 0; k < p.ent[t].n; k++) c += !strstr(inputs[i], p.ent[t].s[k]);
        yf_answer_free(&p);
    }
    return c;
}

int yf_eval_score(const char *const *pred, const char *const *gold, size_t n, const char *gold_name,
                  yf_eval_result *out) {
    return score(pred, gold, n, gold_name, false, out);
}

int yf_eval_score_lenient(const char *const *pred, const char *const *gold, size_t n, const char *gold_name,
                          yf_eval_result *out) {
    return score(pred, gold, n, gold_name, true, out);
}

static cJSON *prf_json(const yf_prf *x) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "precision", x->precision);
    cJSON_AddNumberToObject(o, "recall", x->recall);
    cJSON_AddNumberToObject(o, "f1", x->f1);
    cJSON_AddNumberToObject(o, "tp", (double)x->tp);
    cJSON_AddNumberToObject(o, "fp", (double)x->fp);
    cJSON_AddNumberToObject(o, "fn", (double)x->fn);
    return o;
}

int yf_eval_write_report(const yf_eval_result *r, const char *path) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddItemToObject(root, "micro", prf_json(&r->micro));
    cJSON *pt = cJSON_CreateObject();
    for (int t = 0; t < YF_N_TYPES; t++) cJSON_AddItemToObject(pt, yf_type_names[t], prf_json(&r->per_type[t]));
    cJSON_AddItemToObject(root, "per_type", pt);
    cJSON_AddNumberToObject(root, "records", (double)r->n_records);
    cJSON_AddNumberToObject(root, "unparsable", (double)r->n_unparsable);
    cJSON_AddNumberToObject(root, "recovered", (double)r->n_recovered);
    cJSON_AddNumberToObject(root, "other_fp", (double)r->n_other);
    cJSON_AddStringToObject(root, "scoring", r->lenient ? "lenient" : "strict");
    if (r->lenient) cJSON_AddItemToObject(root, "strict_micro", prf_json(&r->strict));
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    if (!s) return yf_errorf("%s: cannot format the report (out of memory)", path);
    size_t n = strlen(s);
    char *t = yf_malloc(n + 2);
    memcpy(t, s, n);
    t[n] = '\n';
    free(s);
    int rc = yf_write_file_atomic(path, t, n + 1);
    free(t);
    return rc;
}

/* Display columns of a UTF-8 label: CJK characters take two. */
static int columns(const char *s) {
    int w = 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x80) w++;
        else if (c >= 0xc0) w += 2;
    }
    return w;
}

static void row(FILE *f, const char *label, const yf_prf *x) {
    int pad = 16 - columns(label);
    fprintf(f, "%s%*s %9.4f %9.4f %9.4f %7lld %7lld %7lld\n", label, pad > 0 ? pad : 0, "", x->precision, x->recall, x->f1,
            (long long)x->tp, (long long)x->fp, (long long)x->fn);
}

void yf_eval_print(const yf_eval_result *r, FILE *f) {
    fprintf(f, "%-16s %9s %9s %9s %7s %7s %7s\n", "type", "precision", "recall", "f1", "tp", "fp", "fn");
    for (int t = 0; t < YF_N_TYPES; t++) {
        char label[64];
        snprintf(label, sizeof label, "%s %s", yf_type_names[t], yf_type_tags[t]);
        row(f, label, &r->per_type[t]);
    }
    row(f, "micro", &r->micro);
    fprintf(f, "records %lld, unparsable answers %lld, recovered answers %lld, entities outside the eight types %lld\n",
            (long long)r->n_records, (long long)r->n_unparsable, (long long)r->n_recovered, (long long)r->n_other);
    if (r->lenient)
        fprintf(f, "scoring: lenient (answers that are not valid JSON recovered); strict micro P %.4f R %.4f F1 %.4f\n",
                r->strict.precision, r->strict.recall, r->strict.f1);
    else
        fprintf(f, "scoring: strict (an answer that is not valid JSON counts as empty, as json.loads would fail)\n");
}

/* ---- prediction files --------------------------------------------------- */

void yf_strv_free(char **v, size_t n) {
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

int yf_eval_read_predictions(const char *path, char ***texts, size_t *n) {
    char *buf;
    size_t len;
    if (yf_read_file_max(path, YF_MAX_TEXT_BYTES, &buf, &len)) return -1;
    size_t cap = 64, cnt = 0;
    char **v = yf_malloc(cap * sizeof *v);
    size_t pos = 0;
    while (pos < len) {
        const char *line = buf + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - line) : len - pos;
        pos += ll + (nl ? 1 : 0);
        if (ll && line[ll - 1] == '\r') ll--;
        if (cnt == cap) v = yf_realloc(v, (cap *= 2) * sizeof *v);
        const char *end = NULL;
        cJSON *j = cJSON_ParseWithLengthOpts(line, ll, &end, 0);
        if (j && cJSON_IsString(j) && end && only_ws(end, ll - (size_t)(end - line))) {
            v[cnt++] = yf_strdup(j->valuestring);
        } else {
            char *s = yf_malloc(ll + 1);
            memcpy(s, line, ll);
            s[ll] = 0;
            v[cnt++] = s;
        }
        cJSON_Delete(j);
    }
    free(buf);
    *texts = v;
    *n = cnt;
    return 0;
}
