/* spans: entity occurrences with character offsets (spans.h). */
#include "serve/spans.h"

#include <stdlib.h>
#include <string.h>

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
