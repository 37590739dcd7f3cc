/* data: records, templates, examples, batches, the pre-tokenised file. */
#include "task/data.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "base/jsontext.h"
#include "formats/safetensors.h"

/* ---- records ------------------------------------------------------------ */

void yf_records_free(yf_records *r) {
    for (size_t i = 0; i < r->n; i++) {
        free(r->r[i].input);
        free(r->r[i].output);
    }
    free(r->r);
    memset(r, 0, sizeof *r);
}

static const char *json_kind(const cJSON *j) {
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsBool(j)) return "a boolean";
    if (cJSON_IsNull(j)) return "null";
    if (cJSON_IsArray(j)) return "a list";
    if (cJSON_IsObject(j)) return "an object";
    return "invalid";
}

/* Takes the record's two strings, or fails naming path:line. */
static int take_record(const char *path, int64_t line, const cJSON *j, yf_records *out, size_t *cap) {
    if (!cJSON_IsObject(j))
        return yf_errorf("%s:%lld: a record must be a JSON object with \"input\" and \"output\", got %s", path,
                         (long long)line, json_kind(j));
    const char *keys[2] = {"input", "output"};
    char *val[2] = {0};
    for (int k = 0; k < 2; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, keys[k]);
        const char *why = NULL;
        if (!v) why = "is missing";
        else if (!cJSON_IsString(v)) why = json_kind(v);
        else if (!yf_utf8_valid(v->valuestring, strlen(v->valuestring))) why = "not UTF-8";
        if (why) {
            free(val[0]);
            if (!v) return yf_errorf("%s:%lld: the record has no \"%s\" key", path, (long long)line, keys[k]);
            return yf_errorf("%s:%lld: \"%s\" must be a UTF-8 string, got %s", path, (long long)line, keys[k], why);
        }
        val[k] = yf_strdup(v->valuestring);
    }
    if (out->n == *cap) {
        *cap = *cap ? 2 * *cap : 256;
        out->r = yf_realloc(out->r, *cap * sizeof *out->r);
    }
    out->r[out->n++] = (yf_record){val[0], val[1], line};
    return 0;
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Line (1-based) of position p in buf, counting from a known (pos, line). */
static int64_t line_at(const char *buf, size_t *pos, int64_t *line, size_t p) {
    for (; *pos < p; (*pos)++)
        if (buf[*pos] == '\n') (*line)++;
    return *line;
}

static int load_array(const char *path, const char *buf, size_t len, size_t i, yf_records *out, size_t *cap) {
    size_t lpos = 0;
    int64_t line = 1;
    i++; /* '[' */
    for (bool first = true;; first = false) {
        while (i < len && is_ws(buf[i])) i++;
        if (i < len && buf[i] == ']' && first) {
            i++;
            break;
        }
        if (i >= len) return yf_errorf("%s:%lld: the JSON array is not closed (missing ']')", path, (long long)line_at(buf, &lpos, &line, i));
        const char *end = NULL;
        cJSON *j = cJSON_ParseWithLengthOpts(buf + i, len - i, &end, 0);
        if (!j) {
            const char *e = cJSON_GetErrorPtr();
            size_t at = e && e >= buf && e <= buf + len ? (size_t)(e - buf) : i;
            return yf_errorf("%s:%lld: invalid JSON", path, (long long)line_at(buf, &lpos, &line, at));
        }
        int rc = take_record(path, line_at(buf, &lpos, &line, i), j, out, cap);
        cJSON_Delete(j);
        if (rc) return rc;
        i = (size_t)(end - buf);
        while (i < len && is_ws(buf[i])) i++;
        if (i < len && buf[i] == ',') {
            i++;
            continue;
        }
        if (i < len && buf[i] == ']') {
            i++;
            break;
        }
        return yf_errorf("%s:%lld: expected ',' or ']' after a record", path, (long long)line_at(buf, &lpos, &line, i));
    }
    while (i < len && is_ws(buf[i])) i++;
    if (i < len) return yf_errorf("%s:%lld: text after the JSON array", path, (long long)line_at(buf, &lpos, &line, i));
    return 0;
}

static int load_lines(const char *path, const char *buf, size_t len, yf_records *out, size_t *cap) {
    size_t pos = 0;
    for (int64_t line = 1; pos < len; line++) {
        const char *s = buf + pos;
        const char *nl = memchr(s, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - s) : len - pos;
        pos += ll + (nl ? 1 : 0);
        size_t a = 0;
        while (a < ll && is_ws(s[a])) a++;
        if (a == ll) continue; /* blank line */
        const char *end = NULL;
        cJSON *j = cJSON_ParseWithLengthOpts(s, ll, &end, 0);
        if (!j) return yf_errorf("%s:%lld: invalid JSON (each line must be one record)", path, (long long)line);
        for (const char *e = end; e < s + ll; e++)
            if (!is_ws(*e)) {
                cJSON_Delete(j);
                return yf_errorf("%s:%lld: text after the record (one record a line)", path, (long long)line);
            }
        int rc = take_record(path, line, j, out, cap);
        cJSON_Delete(j);
        if (rc) return rc;
    }
    return 0;
}

int yf_data_load(const char *path, yf_records *out) {
    memset(out, 0, sizeof *out);
    char *buf;
    size_t len;
    if (yf_read_file_max(path, YF_MAX_TEXT_BYTES, &buf, &len)) return -1;
    size_t i = 0, cap = 0;
    if (len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0) memset(buf, ' ', 3); /* byte order mark */
    while (i < len && is_ws(buf[i])) i++;
    int rc = i < len && buf[i] == '[' ? load_array(path, buf, len, i, out, &cap) : load_lines(path, buf, len, out, &cap);
    if (rc == 0 && out->n == 0) rc = yf_errorf("%s: no records (expected a JSON array or JSON Lines of {\"input\", \"output\"})", path);
    free(buf);
    if (rc) yf_records_free(out);
    return rc;
}

/* ---- templates ---------------------------------------------------------- */

const char yf_resume_template[] =
    "# 任务描述\n"
    "假设你是一个AI简历助手，能从简历中识别出所有的命名实体，并以json格式返回结果。\n"
    "\n"
    "# 任务要求\n"
    "实体的类别包括：姓名、国籍、种族、职位、教育背景、专业、组织名、地名。\n"
    "返回的json格式是一个字典，其中每个键是实体的类别，值是一个列表，包含实体的文本。\n"
    "\n"
    "# 样例\n"
    "输入：\n"
    "张三，男，中国籍，工程师\n"
    "输出：\n"
    "{\"姓名\": [\"张三\"], \"国籍\": [\"中国\"], \"职位\": [\"工程师\"]}\n"
    "\n"
    "# 当前简历\n"
    "query\n"
    "\n"
    "# 任务重述\n"
    "请参考样例，按照任务要求，识别出当前简历中所有的命名实体，并以json格式返回结果。";

int yf_template_load(const char *spec, yf_template *out) {
    memset(out, 0, sizeof *out);
    if (!strcmp(spec, "none")) return 0;
    if (!strcmp(spec, "resume")) {
        out->text = yf_strdup(yf_resume_template);
        out->slot = yf_strdup("query");
        return 0;
    }
    char *text;
    size_t len;
    if (yf_read_file_max(spec, YF_MAX_CONFIG_BYTES, &text, &len))
        return yf_errorf("%s (the template is 'resume', 'none' or a file with an {input} placeholder)", yf_last_error());
    if (strlen(text) != len || !yf_utf8_valid(text, len)) {
        free(text);
        return yf_errorf("%s: the template is not UTF-8 text", spec);
    }
    if (!strstr(text, "{input}")) {
        free(text);
        return yf_errorf("%s: the template has no {input} placeholder (where the record's input goes)", spec);
    }
    out->text = text;
    out->slot = yf_strdup("{input}");
    return 0;
}

void yf_template_free(yf_template *t) {
    free(t->text);
    free(t->slot);
    memset(t, 0, sizeof *t);
}

char *yf_template_apply(const yf_template *t, const char *input) {
    if (!t->text) return yf_strdup(input);
    yf_sbuf b = {0};
    size_t sl = strlen(t->slot);
    const char *s = t->text;
    for (const char *hit; (hit = strstr(s, t->slot)); s = hit + sl) {
        yf_sbuf_put(&b, s, (size_t)(hit - s));
        yf_sbuf_puts(&b, input);
    }
    yf_sbuf_puts(&b, s);
    char *r = yf_sbuf_take(&b);
    size_t a = 0, n = strlen(r);
    while (a < n && (is_ws(r[a]) || r[a] == '\v' || r[a] == '\f')) a++;
    while (n > a && (is_ws(r[n - 1]) || r[n - 1] == '\v' || r[n - 1] == '\f')) n--;
    memmove(r, r + a, n - a);
    r[n - a] = 0;
    return r;
}

/* ---- encoding ----------------------------------------------------------- */

/* encode(a + b) into *ids. */
static int encode_cat(const yf_encoder *enc, const char *a, const char *b, int64_t **ids, size_t *n) {
    size_t la = strlen(a), lb = strlen(b);
    char *s = yf_malloc(la + lb + 1);
    memcpy(s, a, la);
    memcpy(s + la, b, lb + 1);
    int rc = enc->encode(enc->ctx, s, la + lb, ids, n);
    free(s);
    return rc;
}

int yf_prompt_ids(const yf_template *t, const yf_encoder *enc, const char *input, int64_t **ids, size_t *n) {
    char *p = yf_template_apply(t, input);
    int rc = encode_cat(enc, p, "<sep>", ids, n);
    free(p);
    return rc;
}

/* ---- examples ----------------------------------------------------------- */

bool yf_example_make(yf_example *ex, const int64_t *prompt, size_t np, const int64_t *answer, size_t na,
                     int64_t max_length) {
    int64_t total = (int64_t)(np + na);
    int64_t len = max_length > 0 && total > max_length ? max_length : total;
    ex->len = len;
    ex->prompt_len = (int64_t)np < len ? (int64_t)np : len;
    ex->ids = yf_malloc((size_t)(len ? len : 1) * sizeof *ex->ids);
    ex->labels = yf_malloc((size_t)(len ? len : 1) * sizeof *ex->labels);
    for (int64_t i = 0; i < len; i++) {
        bool in_prompt = i < (int64_t)np;
        ex->ids[i] = in_prompt ? prompt[i] : answer[i - (int64_t)np];
        ex->labels[i] = in_prompt ? YF_IGNORE_INDEX : ex->ids[i];
    }
    return len < total;
}

void yf_example_free(yf_example *ex) {
    free(ex->ids);
    free(ex->labels);
    memset(ex, 0, sizeof *ex);
}

void yf_dataset_free(yf_dataset *ds) {
    for (size_t i = 0; i < ds->n; i++) yf_example_free(&ds->ex[i]);
    free(ds->ex);
    memset(ds, 0, sizeof *ds);
}

int yf_dataset_build(const yf_records *recs, const yf_template *t, const yf_encoder *enc, int64_t max_length,
                     yf_dataset *out) {
    memset(out, 0, sizeof *out);
    out->ex = yf_calloc(recs->n ? recs->n : 1, sizeof *out->ex);
    out->pad_id = enc->eod_id;
    out->max_length = max_length;
    for (size_t i = 0; i < recs->n; i++) {
        int64_t *p = NULL, *a = NULL;
        size_t np = 0, na = 0;
        int rc = yf_prompt_ids(t, enc, recs->r[i].input, &p, &np);
        if (rc == 0) rc = encode_cat(enc, recs->r[i].output, "<eod>", &a, &na);
        if (rc) {
            free(p);
            yf_dataset_free(out);
            return yf_errorf("record at line %lld: %s", (long long)recs->r[i].line, yf_last_error());
        }
        yf_example *ex = &out->ex[out->n++];
        out->n_truncated += yf_example_make(ex, p, np, a, na, max_length);
        if (ex->prompt_len == ex->len) out->n_no_answer++;
        if (ex->len > out->longest) out->longest = ex->len;
        free(p);
        free(a);
    }
    return 0;
}

/* ---- the pre-tokenised file -------------------------------------------- */

int yf_dataset_save(const yf_dataset *ds, const char *path) {
    int64_t N = (int64_t)ds->n, T = ds->longest, pad_id = ds->pad_id;
    size_t cells = (size_t)(N * T);
    int64_t *ids = yf_malloc((cells ? cells : 1) * sizeof *ids);
    int64_t *lab = yf_malloc((cells ? cells : 1) * sizeof *lab);
    int64_t *lens = yf_malloc((size_t)(N ? N : 1) * sizeof *lens);
    for (int64_t i = 0; i < N; i++) {
        const yf_example *ex = &ds->ex[i];
        lens[i] = ex->len;
        for (int64_t t = 0; t < T; t++) {
            ids[i * T + t] = t < ex->len ? ex->ids[t] : ds->pad_id;
            lab[i * T + t] = t < ex->len ? ex->labels[t] : YF_IGNORE_INDEX;
        }
    }
    yf_tensor ts[4] = {
        {.name = "input_ids", .dtype = YF_I64, .ndim = 2, .shape = {N, T}, .data = ids, .nbytes = cells * 8},
        {.name = "labels", .dtype = YF_I64, .ndim = 2, .shape = {N, T}, .data = lab, .nbytes = cells * 8},
        {.name = "lengths", .dtype = YF_I64, .ndim = 1, .shape = {N}, .data = lens, .nbytes = (size_t)N * 8},
        {.name = "pad_id", .dtype = YF_I64, .ndim = 1, .shape = {1}, .data = &pad_id, .nbytes = 8},
    };
    char pad[32], ml[32];
    snprintf(pad, sizeof pad, "%lld", (long long)ds->pad_id);
    snprintf(ml, sizeof ml, "%lld", (long long)ds->max_length);
    const char *meta[] = {"pad_id", pad, "max_length", ml, "format", YF_PRETOKENISED_FORMAT, NULL};
    int rc = yf_st_save(path, ts, 4, meta);
    free(ids);
    free(lab);
    free(lens);
    return rc;
}

int yf_dataset_load(const char *path, int64_t pad_id_default, yf_dataset *out) {
    memset(out, 0, sizeof *out);
    yf_table tab;
    yf_table_init(&tab);
    if (yf_st_load(path, &tab)) return -1;
    int rc = 0;
    const yf_tensor *ids = yf_table_find(&tab, "input_ids"), *lab = yf_table_find(&tab, "labels"),
                    *lens = yf_table_find(&tab, "lengths");
    if (!ids || !lab)
        rc = yf_errorf("%s: a pre-tokenised file needs 'input_ids' and 'labels' tensors", path);
    else if (ids->dtype != YF_I64 || lab->dtype != YF_I64 || ids->ndim != 2 || lab->ndim != 2 ||
             ids->shape[0] != lab->shape[0] || ids->shape[1] != lab->shape[1])
        rc = yf_errorf("%s: 'input_ids' and 'labels' must be I64 [N, T] of the same shape", path);
    /* rows of no tokens take no bytes: N would then be bounded by nothing in the file */
    else if (ids->shape[1] < 1 && ids->shape[0] > 0)
        rc = yf_errorf("%s: 'input_ids' is [%lld, 0]: rows without tokens", path, (long long)ids->shape[0]);
    else if (lens && (lens->dtype != YF_I64 || lens->ndim != 1 || lens->shape[0] != ids->shape[0]))
        rc = yf_errorf("%s: 'lengths' must be I64 [N] with N the rows of 'input_ids'", path);
    if (rc) {
        yf_table_free(&tab);
        return rc;
    }
    int64_t N = ids->shape[0], T = ids->shape[1];
    const int64_t *I = ids->data, *L = lab->data, *n = lens ? lens->data : NULL;
    const yf_tensor *pad = yf_table_find(&tab, "pad_id");
    out->pad_id = pad && pad->dtype == YF_I64 && yf_tensor_numel(pad) == 1 ? *(const int64_t *)pad->data : pad_id_default;
    out->max_length = T;
    out->ex = yf_calloc((size_t)(N ? N : 1), sizeof *out->ex);
    for (int64_t i = 0; i < N && rc == 0; i++) {
        int64_t len = n ? n[i] : T;
        if (len < 0 || len > T) {
            rc = yf_errorf("%s: lengths[%lld] = %lld is outside [0, %lld]", path, (long long)i, (long long)len, (long long)T);
            break;
        }
        yf_example *ex = &out->ex[out->n++];
        ex->len = len;
        ex->ids = yf_malloc((size_t)(len ? len : 1) * sizeof *ex->ids);
        ex->labels = yf_malloc((size_t)(len ? len : 1) * sizeof *ex->labels);
        memcpy(ex->ids, I + i * T, (size_t)len * sizeof *ex->ids);
        memcpy(ex->labels, L + i * T, (size_t)len * sizeof *ex->labels);
        ex->prompt_len = len;
        for (int64_t t = 0; t < len; t++) {
            if (ex->ids[t] < 0) {
                rc = yf_errorf("%s: input_ids[%lld][%lld] = %lld is negative", path, (long long)i, (long long)t,
                               (long long)ex->ids[t]);
                break;
            }
            if (ex->labels[t] != YF_IGNORE_INDEX && ex->prompt_len == len) ex->prompt_len = t;
        }
        if (ex->prompt_len == len) out->n_no_answer++;
        if (len > out->longest) out->longest = len;
    }
    yf_table_free(&tab);
    if (rc) yf_dataset_free(out);
    return rc;
}

/* ---- batches ------------------------------------------------------------ */

void yf_batch_make(const yf_dataset *ds, const size_t *idx, size_t n, yf_batch *out) {
    memset(out, 0, sizeof *out);
    int64_t T = 0;
    for (size_t b = 0; b < n; b++) {
        YF_CHECK(idx[b] < ds->n);
        if (ds->ex[idx[b]].len > T) T = ds->ex[idx[b]].len;
    }
    out->B = (int64_t)n;
    out->T = T;
    size_t cells = (size_t)(out->B * T);
    out->input_ids = yf_malloc((cells ? cells : 1) * sizeof *out->input_ids);
    out->labels = yf_malloc((cells ? cells : 1) * sizeof *out->labels);
    out->lengths = yf_malloc((n ? n : 1) * sizeof *out->lengths);
    for (size_t b = 0; b < n; b++) {
        const yf_example *ex = &ds->ex[idx[b]];
        int64_t *row = out->input_ids + (int64_t)b * T, *lab = out->labels + (int64_t)b * T;
        out->lengths[b] = ex->len;
        for (int64_t t = 0; t < T; t++) {
            row[t] = t < ex->len ? ex->ids[t] : ds->pad_id;
            lab[t] = t < ex->len ? ex->labels[t] : YF_IGNORE_INDEX;
            if (t >= 1 && lab[t] != YF_IGNORE_INDEX) out->n_scored++;
        }
    }
}

void yf_batch_free(yf_batch *b) {
    free(b->input_ids);
    free(b->labels);
    free(b->lengths);
    memset(b, 0, sizeof *b);
}
