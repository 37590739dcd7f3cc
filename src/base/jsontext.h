/* jsontext: a growable text buffer and JSON writing that matches Python's
 * json.dumps(obj, ensure_ascii=False) byte for byte (separators ", " and
 * ": ", non-ASCII written as itself), so the answers and JSON Lines we write
 * are the same bytes the Python recipe produces and trains on. */
#ifndef YF_JSONTEXT_H
#define YF_JSONTEXT_H

#include <stdio.h>
#include "base/util.h"

typedef struct yf_sbuf {
    char *s;      /* NUL-terminated once anything was appended; NULL before */
    size_t n;     /* bytes used, without the NUL */
    size_t cap;
} yf_sbuf;

void yf_sbuf_put(yf_sbuf *b, const char *s, size_t n);
void yf_sbuf_puts(yf_sbuf *b, const char *s);
/* Appends s[0..n) as a quoted JSON string: \" \\ \n \r \t \b \f escaped,
 * other bytes below 0x20 as \u00xx, everything else (UTF-8 included) as is. */
void yf_sbuf_json_string(yf_sbuf *b, const char *s, size_t n);
/* How that escaping writes byte c: 1 (c itself), 2 (\n ...) or 6 (\u00xx)
 * bytes to out; returns how many. */
int yf_json_escape_byte(unsigned char c, char out[6]);
/* Hands the text over (malloc'd, never NULL: "" when empty) and resets b. */
char *yf_sbuf_take(yf_sbuf *b);
void yf_sbuf_free(yf_sbuf *b);

/* True when s[0..n) is well-formed UTF-8 (no overlongs, no surrogates). */
bool yf_utf8_valid(const char *s, size_t n);

/* Writes s as one JSON string (Python json.dumps, ensure_ascii=False) and a newline. */
void yf_fput_json_line(FILE *f, const char *s);
/* Writes s[0..n) to path as one JSON string a line, atomically (a crash or a
 * full disk leaves what was at path before); write errors are reported. */
int yf_write_json_lines(const char *path, const char *const *s, size_t n);

#endif
