/* spans: where the entities of an extraction answer occur in its text, for
 * /v1/extract's "spans" and the page's highlighting. Offsets count Unicode
 * characters (code points) of the text, as Python's str and JavaScript's
 * Array.from(text) index it. */
#ifndef YF_SPANS_H
#define YF_SPANS_H

#include "task/eval.h"

typedef struct yf_span {
    int type;             /* index into yf_type_names */
    const char *entity;   /* the answer's string (not owned) */
    int64_t start, end;   /* characters [start, end) */
    size_t bstart, bend;  /* the same in bytes */
} yf_span;

/* Every occurrence of every entity of a (restricted to the types in mask,
 * 0: all) in text[0..len) (UTF-8): for each entity, its occurrences left to
 * right, not overlapping each other. Sorted by start, then longer first,
 * then type. *out malloc'd ([*n], NULL when none). Entities that do not
 * occur (a model that paraphrased) give no span. */
void yf_spans_find(const yf_answer *a, uint32_t mask, const char *text, size_t len, yf_span **out, size_t *n);

#endif
