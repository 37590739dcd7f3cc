/* yuanft tokenize: JSON strings on stdin -> one JSON array of ids a line, or
 * with --decode, arrays of ids -> JSON strings. One output line per input line;
 * a line that is not valid JSON (or not valid UTF-8) stops with an error
 * naming the line and a non-zero exit. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    char *s;
    size_t n, cap;
} tbuf;

static void tb_put(tbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        while (b->n + n + 1 > b->cap) b->cap = b->cap ? b->cap * 2 : 1024;
        b->s = yf_realloc(b->s, b->cap);
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

static int hex4(const char *s, size_t n, size_t at, unsigned *v) {
    if (at + 4 > n) return -1;
    *v = 0;
    for (int k = 0; k < 4; k++) {
        char c = s[at + k];
        unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0')
                     : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                     : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10)
                                            : 16u;
        if (d > 15) return -1;
        *v = *v * 16 + d;
    }
    return 0;
}

static void put_utf8(tbuf *b, unsigned cp) {
    char c[4];
    size_t n;
    if (cp < 0x80) c[0] = (char)cp, n = 1;
    else if (cp < 0x800) c[0] = (char)(0xC0 | cp >> 6), c[1] = (char)(0x80 | (cp & 0x3F)), n = 2;
    else if (cp < 0x10000)
        c[0] = (char)(0xE0 | cp >> 12), c[1] = (char)(0x80 | ((cp >> 6) & 0x3F)), c[2] = (char)(0x80 | (cp & 0x3F)), n = 3;
    else
        c[0] = (char)(0xF0 | cp >> 18), c[1] = (char)(0x80 | ((cp >> 12) & 0x3F)),
        c[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), c[3] = (char)(0x80 | (cp & 0x3F)), n = 4;
    tb_put(b, c, n);
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* Parses one JSON string value filling the whole line into out (exact bytes,
 * \u0000 included). Returns NULL or what is wrong. */
static const char *parse_json_string(const char *s, size_t n, tbuf *out) {
    size_t i = 0;
    out->n = 0;
    tb_put(out, "", 0);
    while (i < n && is_ws(s[i])) i++;
    if (i == n) return "empty line, expected a JSON string";
    if (s[i] != '"') return "expected a JSON string (\"...\")";
    for (i++;;) {
        if (i >= n) return "unterminated string";
        unsigned char c = (unsigned char)s[i];
        if (c == '"') break;
        if (c < 0x20) return "unescaped control character in string";
        if (c >= 0x80) {
            size_t k = yf_utf8_len(s + i, n - i);
            if (!k) return "invalid UTF-8 in string";
            tb_put(out, s + i, k);
            i += k;
            continue;
        }
        if (c != '\\') {
            tb_put(out, s + i, 1);
            i++;
            continue;
        }
        if (i + 1 >= n) return "unterminated escape";
        char e = s[i + 1];
        i += 2;
        const char *simple = strchr("\"\\/bfnrt", e);
        if (simple && e) {
            static const char map[] = "\"\\/\b\f\n\r\t";
            tb_put(out, &map[simple - "\"\\/bfnrt"], 1);
            continue;
        }
        if (e != 'u') return "invalid escape in string";
        unsigned cp, lo;
        if (hex4(s, n, i, &cp)) return "invalid \\u escape";
        i += 4;
        if (cp >= 0xDC00 && cp <= 0xDFFF) return "lone low surrogate in \\u escape";
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (i + 2 > n || s[i] != '\\' || s[i + 1] != 'u' || hex4(s, n, i + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                return "lone high surrogate in \\u escape";
            i += 6;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        }
        put_utf8(out, cp);
    }
    for (i++; i < n; i++)
        if (!is_ws(s[i])) return "text after the JSON string";
    return NULL;
}

/* Writes text as a JSON string: UTF-8 kept, controls escaped, malformed
 * bytes (none come out of the decoder) as U+FFFD. */
static void write_json_string(FILE *f, const char *s, size_t n) {
    fputc('"', f);
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80) {
            size_t k = yf_utf8_len(s + i, n - i);
            if (k) fwrite(s + i, 1, k, f), i += k;
            else fputs("\\ufffd", f), i++;
            continue;
        }
        switch (c) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        case '\b': fputs("\\b", f); break;
        case '\f': fputs("\\f", f); break;
        default:
            if (c < 0x20) fprintf(f, "\\u%04x", c);
            else fputc(c, f);
        }
        i++;
    }
    fputs("\"\n", f);
}

/* Parses a JSON array of integer ids. Returns NULL or what is wrong. */
static const char *parse_ids(const char *line, size_t n, int64_t **ids, size_t *nids) {
    *ids = NULL;
    *nids = 0;
    size_t k = 0;
    while (k < n && is_ws(line[k])) k++;
    if (k == n) return "empty line, expected a JSON array of ids";
    /* n + 1: cJSON checks for the terminating NUL that getline leaves */
    cJSON *j = cJSON_ParseWithLengthOpts(line, n + 1, NULL, true);
    if (!j) return "invalid JSON";
    const char *err = NULL;
    if (!cJSON_IsArray(j)) err = "expected a JSON array of ids";
    int sz = err ? 0 : cJSON_GetArraySize(j);
    int64_t *v = yf_malloc(((size_t)sz + 1) * sizeof *v);
    size_t m = 0;
    const cJSON *e;
    if (!err)
        cJSON_ArrayForEach(e, j) {
            double d = cJSON_IsNumber(e) ? e->valuedouble : NAN;
            if (!(d >= 0 && d < 9.0e15 && d == floor(d))) {
                err = "ids must be non-negative integers";
                break;
            }
            v[m++] = (int64_t)d;
        }
    cJSON_Delete(j);
    if (err) {
        free(v);
        return err;
    }
    *ids = v;
    *nids = m;
    return NULL;
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL;
    bool decode = false, skip_special = false;
    const yc_opt opts[] = {
        YC_OPT("tokenizer", YC_STR, &model, "the model's tokenizer.model (SentencePiece)", .meta = "FILE", .required = true),
        YC_OPT("decode", YC_FLAG, &decode, "read JSON arrays of ids, write JSON strings (without it: encode)"),
        YC_OPT("skip-special-tokens", YC_FLAG, &skip_special, "with --decode: drop special tokens (<eod>, <sep>, ...)"),
    };
    int rc = yc_parse("tokenize",
                      "Encode strings to token ids, or decode ids to strings; `data tokenize` turns records into training tensors.\n"
                      "One JSON string a line on stdin gives one JSON array of ids a line on stdout, encoded as the\n"
                      "fine-tuning recipe does: split on special tokens, no BOS/EOS. --decode reverses it.",
                      argc, argv, opts, (int)(sizeof opts / sizeof *opts));
    if (rc) return rc == 1 ? 0 : 2;
    yf_tokenizer *tok = NULL;
    if (yf_tokenizer_load(model, &tok)) return yc_fail("tokenize");

    static char obuf[1 << 16];
    setvbuf(stdout, obuf, _IOFBF, sizeof obuf);
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    long long lineno = 0;
    tbuf text = {0};
    int status = 0;
    while ((got = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        size_t n = (size_t)got;
        int64_t *ids = NULL;
        size_t nids = 0;
        const char *err;
        if (!decode) {
            err = parse_json_string(line, n, &text);
            if (!err && yf_tokenizer_encode(tok, text.s, text.n, &ids, &nids)) err = yf_last_error();
            if (!err) {
                fputc('[', stdout);
                for (size_t i = 0; i < nids; i++) fprintf(stdout, i ? ",%lld" : "%lld", (long long)ids[i]);
                fputs("]\n", stdout);
            }
        } else {
            char *out = NULL;
            size_t olen = 0;
            err = parse_ids(line, n, &ids, &nids);
            if (!err && yf_tokenizer_decode_n(tok, ids, nids, skip_special, &out, &olen)) err = yf_last_error();
            if (!err) write_json_string(stdout, out, olen);
            free(out);
        }
        free(ids);
        if (err) {
            fflush(stdout);
            fprintf(stderr, "yuanft tokenize: stdin line %lld: %s\n", lineno, err);
            status = 1;
            break;
        }
    }
    if (!status && ferror(stdin)) {
        fprintf(stderr, "yuanft tokenize: error reading stdin\n");
        status = 1;
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "yuanft tokenize: error writing stdout\n");
        status = 1;
    }
    free(line);
    free(text.s);
    yf_tokenizer_free(tok);
    return status;
}
