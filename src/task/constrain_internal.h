/* constrain_internal: what constrain.c (grammars, the byte automaton, the span
 * index), cvocab.c (the token front end) and jsonschema.c (the schema
 * compiler) share. Not a public header: see constrain.h. */
#ifndef YF_CONSTRAIN_INTERNAL_H
#define YF_CONSTRAIN_INTERNAL_H

#include <string.h>

#include "base/jsontext.h"
#include "task/constrain.h"

/* ---- grammars: a tree of JSON value nodes -------------------------------- */

#define CK_MAX_NAMES 64   /* properties of an object, values of an enum */
#define CK_MAX_DEPTH 16   /* nesting of values (frames of the automaton) */

typedef enum { CK_OBJECT, CK_ARRAY, CK_STRING, CK_INTEGER, CK_NUMBER, CK_BOOLEAN, CK_NULL } ck_kind;

typedef struct ck_node {
    ck_kind kind;
    int32_t n;          /* object: properties; string: enum values (0 = no enum) */
    char **names;       /* [n] object: the keys; string: the enum values; JSON-escaped, no quotes */
    uint32_t *name_len; /* [n] bytes */
    int32_t *child;     /* [n] object: the value node of each property */
    uint64_t required;  /* object: bit i = property i is required */
    int32_t items;      /* array: the node of its items */
    int64_t min, max;   /* array: items; string: code points; max -1 = no limit */
    bool span;          /* string: a verbatim substring of the input */
} ck_node;

struct yf_constraint {
    ck_node *nodes;     /* [n_nodes]; every child index is larger than its parent's */
    int32_t n_nodes, cap;
    int32_t root;
    bool has_span;
};

/* Adds a node (zeroed but kind, max = -1) and returns its index. */
int32_t ck_add(yf_constraint *c, ck_kind kind);
/* Sets object/enum names from raw UTF-8 strings (escaped here). */
void ck_set_names(ck_node *n, const char *const *raw, const size_t *len, int32_t count);
/* The grammar's nesting depth (frames needed), for the CK_MAX_DEPTH check. */
int32_t ck_depth(const yf_constraint *c, int32_t node);

/* ---- UTF-8 and JSON escapes, a byte at a time ---------------------------- */

/* UTF-8 decoder states: OK between characters; C1..C3 continuation bytes
 * (80-BF) still due; E0/ED/F0/F4 the restricted second byte of those leads
 * (no overlongs, no surrogates, nothing past U+10FFFF). */
enum { CU_OK, CU_C1, CU_C2, CU_C3, CU_E0, CU_ED, CU_F0, CU_F4, CU_BAD = 0xff };

static inline uint8_t cu_step(uint8_t u, uint8_t b) {
    switch (u) {
    case CU_OK:
        if (b < 0x80) return CU_OK;
        if (b >= 0xc2 && b <= 0xdf) return CU_C1;
        if (b == 0xe0) return CU_E0;
        if (b == 0xed) return CU_ED;
        if (b >= 0xe1 && b <= 0xef) return CU_C2;
        if (b == 0xf0) return CU_F0;
        if (b >= 0xf1 && b <= 0xf3) return CU_C3;
        if (b == 0xf4) return CU_F4;
        return CU_BAD;
    case CU_C1: return b >= 0x80 && b <= 0xbf ? CU_OK : CU_BAD;
    case CU_C2: return b >= 0x80 && b <= 0xbf ? CU_C1 : CU_BAD;
    case CU_C3: return b >= 0x80 && b <= 0xbf ? CU_C2 : CU_BAD;
    case CU_E0: return b >= 0xa0 && b <= 0xbf ? CU_C1 : CU_BAD;
    case CU_ED: return b >= 0x80 && b <= 0x9f ? CU_C1 : CU_BAD;
    case CU_F0: return b >= 0x90 && b <= 0xbf ? CU_C2 : CU_BAD;
    case CU_F4: return b >= 0x80 && b <= 0x8f ? CU_C2 : CU_BAD;
    default: return CU_BAD;
    }
}

/* The smallest byte a state accepts next (for the shortest completion). */
static inline uint8_t cu_min_next(uint8_t u) { return u == CU_OK ? 'a' : u == CU_E0 ? 0xa0 : u == CU_F0 ? 0x90 : 0x80; }

/* How json.dumps(ensure_ascii=False) writes byte c inside a string (base/jsontext.h). */
static inline int cj_escape(uint8_t c, char *out) { return yf_json_escape_byte(c, out); }
static inline int cj_escape_len(uint8_t c) {
    char e[6];
    return yf_json_escape_byte(c, e);
}

/* ---- the span index: a suffix automaton of the input's bytes ------------ */

#define CS_INF 0x3fffffff

typedef struct cs_sam {
    int32_t n;           /* states; 0 = the empty string */
    int32_t *edge_at;    /* [n + 1] state s's edges: [edge_at[s], edge_at[s+1]) */
    uint8_t *edge_byte;  /* sorted by byte within a state */
    int32_t *edge_to;
    int32_t *dist;       /* [n * 8]: escaped bytes from (state, UTF-8 state) to the
                          * nearest closable span (whole characters, non-empty); CS_INF: none */
    uint8_t *next;       /* [n * 8]: the byte that starts that shortest way */
} cs_sam;

/* Builds the index of s[0..n) with its shortest-completion tables. */
int cs_sam_build(cs_sam *m, const char *s, size_t n);
void cs_sam_free(cs_sam *m);
/* The state after appending byte b to state v's strings; -1 when no
 * substring continues so. */
static inline int32_t cs_sam_go(const cs_sam *m, int32_t v, uint8_t b) {
    int32_t lo = m->edge_at[v], hi = m->edge_at[v + 1];
    while (lo < hi) {
        int32_t mid = (lo + hi) >> 1;
        if (m->edge_byte[mid] < b) lo = mid + 1;
        else hi = mid;
    }
    return lo < m->edge_at[v + 1] && m->edge_byte[lo] == b ? m->edge_to[lo] : -1;
}

/* ---- the byte automaton -------------------------------------------------- */

typedef struct cs_frame {
    int32_t node;
    uint8_t phase;
    uint8_t pad;
    uint16_t pos;       /* bytes matched: key, enum value, literal */
    int32_t count;      /* array: items begun; object: the last property (-1 none); literal: which */
    uint32_t pad2;
    uint64_t cand;      /* key or enum values still matching */
} cs_frame;

typedef struct cs_state {
    int16_t depth;      /* frames open; 0 with !done: the top value not begun */
    uint8_t done;       /* the top value is complete */
    uint8_t utf8;       /* open string: UTF-8 decoder state (CU_*) */
    uint8_t esc;        /* open string: escape sequence progress (CE_*) */
    uint8_t esc_hi;     /* open string: the first hex digit of \u00XX */
    uint16_t pad;
    int32_t sam;        /* open span string: the suffix automaton state */
    int32_t pad2;
    int64_t chars;      /* open string: code points so far */
    cs_frame f[CK_MAX_DEPTH];
} cs_state;

/* What the automaton reads besides its state (one per sequence). */
typedef struct cs_ctx {
    const yf_constraint *g;
    const cs_sam *sam;      /* NULL when the grammar has no span strings */
    uint8_t *producible;    /* [n_nodes]: a value of the node exists (spans depend on the input) */
    int64_t *minval;        /* [n_nodes]: bytes of its shortest value */
} cs_ctx;

/* Bytes of the state that matter (a copy of this many is a full copy). */
static inline size_t cs_size(const cs_state *s) {
    return __builtin_offsetof(cs_state, f) + (size_t)s->depth * sizeof(cs_frame);
}
static inline void cs_copy(cs_state *dst, const cs_state *src) { memcpy(dst, src, cs_size(src)); }

void cs_start(cs_state *s);
/* Consumes one byte of the answer; false (s then undefined) when the byte is
 * not accepted or leads to a state from which no answer can be completed. */
bool cs_step(const cs_ctx *x, cs_state *s, uint8_t b);
/* A complete answer (the top value done, or a top-level number that may end). */
bool cs_accepting(const cs_ctx *x, const cs_state *s);
/* Appends the shortest completion of s (deterministic) to *buf (grown as needed). */
void cs_close(const cs_ctx *x, const cs_state *s, char **buf, size_t *n, size_t *cap);

/* A superset of the bytes cs_step can accept next, when it is small: writes
 * them (distinct) to out[256] and returns how many; -1 when it would be most
 * bytes (free string text, numbers, escapes). */
int cs_next_bytes(const cs_ctx *x, const cs_state *s, uint8_t *out);

/* When s is inside a free string's text (not a span, no escape begun, between
 * characters): how many more characters it may take (INT64_MAX: no limit).
 * Else -1. */
int64_t cs_free_text_room(const cs_ctx *x, const cs_state *s);

int cs_ctx_init(cs_ctx *x, const yf_constraint *g, const char *input, size_t len);
void cs_ctx_free(cs_ctx *x);

#endif
