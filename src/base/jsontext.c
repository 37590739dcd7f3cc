#include "base/jsontext.h"

#include <stdlib.h>
#include <string.h>

static void reserve(yf_sbuf *b, size_t extra) {
    if (b->s && b->n + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + extra + 1) cap *= 2;
    b->s = yf_realloc(b->s, cap);
    b->cap = cap;
}

void yf_sbuf_put(yf_sbuf *b, const char *s, size_t n) {
    reserve(b, n);
    if (n) memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

void yf_sbuf_puts(yf_sbuf *b, const char *s) { yf_sbuf_put(b, s, strlen(s)); }

int yf_json_escape_byte(unsigned char c, char out[6]) {
    static const char hex[] = "0123456789abcdef";
    char e = 0;
    switch (c) {
    case '"': e = '"'; break;
    case '\\': e = '\\'; break;
    case '\n': e = 'n'; break;
    case '\r': e = 'r'; break;
    case '\t': e = 't'; break;
    case '\b': e = 'b'; break;
    case '\f': e = 'f'; break;
    default:
        if (c >= 0x20) {
            out[0] = (char)c;
            return 1;
        }
        memcpy(out, "\\u00", 4); /* Python writes lowercase hex */
        out[4] = hex[c >> 4];
        out[5] = hex[c & 15];
        return 6;
    }
    out[0] = '\\';
    out[1] = e;
    return 2;
}

void yf_sbuf_json_string(yf_sbuf *b, const char *s, size_t n) {
    yf_sbuf_put(b, "\"", 1);
    size_t run = 0; /* bytes copied in one go between escapes */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        char e[6];
        int el = yf_json_escape_byte(c, e);
        yf_sbuf_put(b, s + run, i - run);
        yf_sbuf_put(b, e, (size_t)el);
        run = i + 1;
    }
    yf_sbuf_put(b, s + run, n - run);
    yf_sbuf_put(b, "\"", 1);
}

char *yf_sbuf_take(yf_sbuf *b) {
    char *s = b->s ? b->s : yf_strdup("");
    memset(b, 0, sizeof *b);
    return s;
}

void yf_sbuf_free(yf_sbuf *b) {
    free(b->s);
    memset(b, 0, sizeof *b);
}

bool yf_utf8_valid(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        unsigned cp;
        if (c >= 0xc2 && c <= 0xdf) len = 2, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef) len = 3, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4) len = 4, cp = c & 0x07;
        else return false;
        if (n - i < len) return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
            return false;
        i += len;
    }
    return true;
}

void yf_fput_json_line(FILE *f, const char *s) {
    yf_sbuf b = {0};
    yf_sbuf_json_string(&b, s, strlen(s));
    yf_sbuf_puts(&b, "\n");
    char *t = yf_sbuf_take(&b);
    fputs(t, f);
    free(t);
}

int yf_write_json_lines(const char *path, const char *const *s, size_t n) {
    yf_atomic_file af;
    if (yf_atomic_open(&af, path)) return -1;
    for (size_t i = 0; i < n; i++) yf_fput_json_line(af.f, s[i]);
    /* a failed write leaves the stream's error flag set: commit reports it */
    return yf_atomic_commit(&af);
}
