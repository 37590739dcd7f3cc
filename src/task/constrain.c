/* constrain: grammars as trees of JSON value nodes, and the byte automaton
 * that runs them (a pushdown automaton whose stack depth the grammar bounds,
 * so a state is a small struct copied by value).
 *
 * The automaton accepts exactly the canonical text of each value, as
 * Python's json.dumps(ensure_ascii=False) writes it: separators ", " and
 * ": ", no other whitespace, object keys in the grammar's order (each at most
 * once, required ones never skipped), strings escaped the one way json.dumps
 * escapes them. It refuses any byte after which no complete value can be
 * reached (an unmatched span, an escape no input byte needs, a property
 * whose value cannot be produced for this input), so every state it reaches
 * can still be completed; cs_close gives the shortest such completion. */
#include <stdlib.h>

#include "base/jsontext.h"
#include "task/constrain_internal.h"

enum { O_OPEN, O_KEY, O_COLON, O_COLON_SP, O_VALUE, O_AFTER, O_COMMA, O_COMMA_SP };
enum { A_OPEN, A_AFTER, A_COMMA, A_ITEM };
enum { S_TEXT, S_ENUM };
enum { N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP };
enum { CE_NONE, CE_BS, CE_U, CE_U0, CE_U00, CE_U00H };

/* ---- grammars ------------------------------------------------------------ */

int32_t ck_add(yf_constraint *c, ck_kind kind) {
    if (c->n_nodes == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 8;
        c->nodes = yf_realloc(c->nodes, (size_t)c->cap * sizeof *c->nodes);
    }
    ck_node *n = &c->nodes[c->n_nodes];
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->max = -1;
    return c->n_nodes++;
}

void ck_set_names(ck_node *n, const char *const *raw, const size_t *len, int32_t count) {
    n->n = count;
    n->names = yf_calloc((size_t)(count ? count : 1), sizeof *n->names);
    n->name_len = yf_calloc((size_t)(count ? count : 1), sizeof *n->name_len);
    for (int32_t i = 0; i < count; i++) {
        yf_sbuf b = {0};
        yf_sbuf_json_string(&b, raw[i], len[i]);
        /* drop the quotes: names are matched between them */
        n->name_len[i] = (uint32_t)(b.n - 2);
        n->names[i] = yf_malloc(b.n - 1);
        memcpy(n->names[i], b.s + 1, b.n - 2);
        n->names[i][b.n - 2] = 0;
        yf_sbuf_free(&b);
    }
}

int32_t ck_depth(const yf_constraint *c, int32_t node) {
    const ck_node *n = &c->nodes[node];
    int32_t d = 0;
    if (n->kind == CK_OBJECT)
        for (int32_t i = 0; i < n->n; i++) {
            int32_t k = ck_depth(c, n->child[i]);
            if (k > d) d = k;
        }
    if (n->kind == CK_ARRAY) d = ck_depth(c, n->items);
    return d + 1;
}

void yf_constraint_free(yf_constraint *c) {
    if (!c) return;
    for (int32_t i = 0; i < c->n_nodes; i++) {
        ck_node *n = &c->nodes[i];
        for (int32_t k = 0; k < n->n && n->names; k++) free(n->names[k]);
        free(n->names);
        free(n->name_len);
        free(n->child);
    }
    free(c->nodes);
    free(c);
}

int yf_constraint_answer(const char *const *keys, size_t n, bool spans, yf_constraint **out) {
    *out = NULL;
    if (n == 0) return yf_errorf("the answer format needs at least one type (key); the list is empty");
    if (n > CK_MAX_NAMES) return yf_errorf("the answer format takes at most %d types, got %zu", CK_MAX_NAMES, n);
    size_t *len = yf_malloc(n * sizeof *len);
    for (size_t i = 0; i < n; i++) {
        len[i] = strlen(keys[i]);
        if (!len[i] || len[i] > 1024 || !yf_utf8_valid(keys[i], len[i])) {
            free(len);
            return yf_errorf("type %zu of the answer format is empty, longer than 1024 bytes or not UTF-8", i + 1);
        }
        for (size_t k = 0; k < i; k++)
            if (len[k] == len[i] && memcmp(keys[k], keys[i], len[i]) == 0) {
                free(len);
                return yf_errorf("type '%s' is given twice", keys[i]);
            }
    }
    yf_constraint *c = yf_calloc(1, sizeof *c);
    /* one array node and one string node serve every key */
    int32_t obj = ck_add(c, CK_OBJECT), arr = ck_add(c, CK_ARRAY), str = ck_add(c, CK_STRING);
    ck_set_names(&c->nodes[obj], keys, len, (int32_t)n);
    c->nodes[obj].child = yf_malloc(n * sizeof(int32_t));
    for (size_t i = 0; i < n; i++) c->nodes[obj].child[i] = arr;
    c->nodes[arr].items = str;
    c->nodes[arr].min = 1;
    c->nodes[str].min = 1;
    c->nodes[str].span = spans;
    c->has_span = spans;
    c->root = obj;
    free(len);
    *out = c;
    return 0;
}

/* ---- per-sequence tables -------------------------------------------------- */

static int64_t add_sat(int64_t a, int64_t b) { return a >= CS_INF || b >= CS_INF || a + b >= CS_INF ? CS_INF : a + b; }

int cs_ctx_init(cs_ctx *x, const yf_constraint *g, const char *input, size_t len) {
    memset(x, 0, sizeof *x);
    x->g = g;
    if (g->has_span) {
        cs_sam *m = yf_calloc(1, sizeof *m);
        if (cs_sam_build(m, input, len)) {
            free(m);
            return -1;
        }
        x->sam = m;
    }
    x->producible = yf_calloc((size_t)g->n_nodes, 1);
    x->minval = yf_calloc((size_t)g->n_nodes, sizeof *x->minval);
    /* children have larger indices than their parents: fill from the end */
    for (int32_t i = g->n_nodes - 1; i >= 0; i--) {
        const ck_node *n = &g->nodes[i];
        int64_t v = CS_INF;
        switch (n->kind) {
        case CK_OBJECT:
            v = 2;
            for (int32_t k = 0, first = 1; k < n->n; k++) {
                if (!(n->required >> k & 1)) continue;
                v = add_sat(v, add_sat(n->name_len[k] + 4 + (first ? 0 : 2), x->minval[n->child[k]]));
                first = 0;
            }
            break;
        case CK_ARRAY:
            if (n->min == 0) v = 2;
            else if (x->producible[n->items] && (n->max < 0 || n->max >= n->min))
                v = add_sat(2 + 2 * (n->min - 1), n->min >= CS_INF ? CS_INF : n->min * x->minval[n->items]);
            break;
        case CK_STRING:
            if (n->n) {
                for (int32_t k = 0; k < n->n; k++)
                    if (n->name_len[k] + 2 < v) v = n->name_len[k] + 2;
            } else if (n->span) {
                v = add_sat(2, x->sam->dist[0 * 8 + CU_OK]);
            } else if (n->max < 0 || n->max >= n->min) {
                v = add_sat(2, n->min);
            }
            break;
        case CK_INTEGER:
        case CK_NUMBER: v = 1; break;
        case CK_BOOLEAN:
        case CK_NULL: v = 4; break;
        }
        x->minval[i] = v;
        x->producible[i] = v < CS_INF;
    }
    if (!x->producible[g->root]) {
        cs_ctx_free(x);
        return yf_errorf("no answer of this grammar is possible for this input (a required string must be a "
                         "span of the input, and the input has none)");
    }
    return 0;
}

void cs_ctx_free(cs_ctx *x) {
    if (x->sam) cs_sam_free((cs_sam *)x->sam);
    free((void *)x->sam);
    free(x->producible);
    free(x->minval);
    memset(x, 0, sizeof *x);
}

/* ---- the automaton --------------------------------------------------------- */

void cs_start(cs_state *s) { memset(s, 0, __builtin_offsetof(cs_state, f)); }

/* Properties that may come after property `last` (-1: the first): those
 * after it up to the first required one, whose values can be produced. */
static uint64_t key_cands(const cs_ctx *x, const ck_node *n, int32_t last) {
    uint64_t m = 0;
    for (int32_t i = last + 1; i < n->n; i++) {
        if (x->producible[n->child[i]]) m |= 1ull << i;
        if (n->required >> i & 1) break;
    }
    return m;
}

static bool obj_can_close(const ck_node *n, int32_t last) { return last + 1 >= 64 || (n->required >> (last + 1)) == 0; }

static void value_done(cs_state *s) {
    if (--s->depth == 0) s->done = 1;
}

/* Byte b begins a value of node (the parent already moved past it). */
static bool begin_value(const cs_ctx *x, cs_state *s, int32_t node, uint8_t b) {
    const ck_node *n = &x->g->nodes[node];
    if (!x->producible[node] || s->depth >= CK_MAX_DEPTH) return false;
    cs_frame *f = &s->f[s->depth];
    memset(f, 0, sizeof *f);
    f->node = node;
    switch (n->kind) {
    case CK_OBJECT:
        if (b != '{') return false;
        f->phase = O_OPEN;
        f->count = -1;
        break;
    case CK_ARRAY:
        if (b != '[') return false;
        f->phase = A_OPEN;
        break;
    case CK_STRING:
        if (b != '"') return false;
        f->phase = n->n ? S_ENUM : S_TEXT;
        f->cand = n->n >= 64 ? ~0ull : (1ull << n->n) - 1;
        s->utf8 = CU_OK;
        s->esc = CE_NONE;
        s->chars = 0;
        s->sam = 0;
        break;
    case CK_INTEGER:
    case CK_NUMBER:
        if (b == '-') f->phase = N_MINUS;
        else if (b == '0') f->phase = N_ZERO;
        else if (b >= '1' && b <= '9') f->phase = N_INT;
        else return false;
        break;
    case CK_BOOLEAN:
        if (b != 't' && b != 'f') return false;
        f->count = b == 't';
        f->pos = 1;
        break;
    case CK_NULL:
        if (b != 'n') return false;
        f->pos = 1;
        break;
    }
    s->depth++;
    return true;
}

static bool step_object(const cs_ctx *x, cs_state *s, cs_frame *f, const ck_node *n, uint8_t b) {
    switch (f->phase) {
    case O_OPEN:
    case O_COMMA_SP:
        if (b == '}' && f->phase == O_OPEN) {
            if (!obj_can_close(n, -1)) return false;
            value_done(s);
            return true;
        }
        if (b != '"') return false;
        f->cand = key_cands(x, n, f->count);
        f->pos = 0;
        f->phase = O_KEY;
        return f->cand != 0;
    case O_KEY: {
        uint64_t keep = 0;
        for (uint64_t m = f->cand; m; m &= m - 1) {
            int i = __builtin_ctzll(m);
            if (b == '"' && n->name_len[i] == f->pos) {
                f->count = i;
                f->phase = O_COLON;
                return true;
            }
            if (f->pos < n->name_len[i] && (uint8_t)n->names[i][f->pos] == b) keep |= 1ull << i;
        }
        f->cand = keep;
        f->pos++;
        return keep != 0;
    }
    case O_COLON: return b == ':' ? (f->phase = O_COLON_SP, true) : false;
    case O_COLON_SP: return b == ' ' ? (f->phase = O_VALUE, true) : false;
    case O_VALUE: f->phase = O_AFTER; return begin_value(x, s, n->child[f->count], b);
    case O_AFTER:
        if (b == ',') return key_cands(x, n, f->count) ? (f->phase = O_COMMA, true) : false;
        if (b == '}' && obj_can_close(n, f->count)) {
            value_done(s);
            return true;
        }
        return false;
    case O_COMMA: return b == ' ' ? (f->phase = O_COMMA_SP, true) : false;
    default: return false;
    }
}

static bool step_array(const cs_ctx *x, cs_state *s, cs_frame *f, const ck_node *n, uint8_t b) {
    switch (f->phase) {
    case A_OPEN:
        if (b == ']') {
            if (n->min > 0) return false;
            value_done(s);
            return true;
        }
        if (n->max == 0) return false;
        __attribute__((fallthrough)); /* the first item */
    case A_ITEM:
        f->count++;
        f->phase = A_AFTER;
        return begin_value(x, s, n->items, b);
    case A_AFTER:
        if (b == ',') {
            if ((n->max >= 0 && f->count >= n->max) || !x->producible[n->items]) return false;
            f->phase = A_COMMA;
            return true;
        }
        if (b == ']' && f->count >= n->min) {
            value_done(s);
            return true;
        }
        return false;
    case A_COMMA: return b == ' ' ? (f->phase = A_ITEM, true) : false;
    default: return false;
    }
}

/* Can the unescaped byte c come next in the open string? (*u, *w: the
 * decoder and span states after it.) */
static bool text_ok(const cs_ctx *x, const cs_state *s, const ck_node *n, uint8_t c, uint8_t *u, int32_t *w) {
    *u = cu_step(s->utf8, c);
    if (*u == CU_BAD) return false;
    if (s->utf8 == CU_OK && n->max >= 0 && s->chars >= n->max) return false;
    *w = 0;
    if (n->span) {
        *w = cs_sam_go(x->sam, s->sam, c);
        if (*w < 0 || x->sam->dist[*w * 8 + *u] >= CS_INF) return false;
    }
    return true;
}

static void text_put(cs_state *s, uint8_t u, int32_t w) {
    s->utf8 = u;
    s->sam = w;
    if (u == CU_OK) s->chars++;
}

static bool text_add(const cs_ctx *x, cs_state *s, const ck_node *n, uint8_t c) {
    uint8_t u;
    int32_t w;
    if (!text_ok(x, s, n, c, &u, &w)) return false;
    text_put(s, u, w);
    return true;
}

/* Control characters json.dumps writes as \u00XX (the others have \n etc.). */
static bool long_escaped(uint8_t c) { return c < 0x20 && c != '\b' && c != '\t' && c != '\n' && c != '\f' && c != '\r'; }

/* Is some byte in [lo, hi] that an escape of this kind stands for allowed? */
static bool any_escape_ok(const cs_ctx *x, const cs_state *s, const ck_node *n, int lo, int hi, bool only_long) {
    uint8_t u;
    int32_t w;
    for (int c = lo; c <= hi; c++) {
        if (only_long ? !long_escaped((uint8_t)c) : cj_escape_len((uint8_t)c) == 1) continue;
        if (text_ok(x, s, n, (uint8_t)c, &u, &w)) return true;
    }
    return false;
}

static bool step_escape(const cs_ctx *x, cs_state *s, const ck_node *n, uint8_t b) {
    switch (s->esc) {
    case CE_BS: {
        static const char from[] = "\"\\bfnrt", to[] = "\"\\\b\f\n\r\t";
        const char *p = b ? strchr(from, b) : NULL;
        if (p) {
            s->esc = CE_NONE;
            return text_add(x, s, n, (uint8_t)to[p - from]);
        }
        if (b != 'u' || !any_escape_ok(x, s, n, 0, 0x1f, true)) return false;
        s->esc = CE_U;
        return true;
    }
    case CE_U: return b == '0' ? (s->esc = CE_U0, true) : false;
    case CE_U0: return b == '0' ? (s->esc = CE_U00, true) : false;
    case CE_U00:
        if (b != '0' && b != '1') return false;
        s->esc_hi = (uint8_t)(b - '0');
        if (!any_escape_ok(x, s, n, s->esc_hi * 16, s->esc_hi * 16 + 15, true)) return false;
        s->esc = CE_U00H;
        return true;
    case CE_U00H: {
        int d = b >= '0' && b <= '9' ? b - '0' : b >= 'a' && b <= 'f' ? b - 'a' + 10 : -1;
        uint8_t c = (uint8_t)(s->esc_hi * 16 + d);
        if (d < 0 || !long_escaped(c)) return false;
        s->esc = CE_NONE;
        return text_add(x, s, n, c);
    }
    default: return false;
    }
}

static bool text_closable(const cs_state *s, const ck_node *n) {
    return s->esc == CE_NONE && s->utf8 == CU_OK && s->chars >= n->min;
}

static bool step_string(const cs_ctx *x, cs_state *s, cs_frame *f, const ck_node *n, uint8_t b) {
    if (f->phase == S_ENUM) {
        uint64_t keep = 0;
        for (uint64_t m = f->cand; m; m &= m - 1) {
            int i = __builtin_ctzll(m);
            if (b == '"' && n->name_len[i] == f->pos) {
                value_done(s);
                return true;
            }
            if (f->pos < n->name_len[i] && (uint8_t)n->names[i][f->pos] == b) keep |= 1ull << i;
        }
        f->cand = keep;
        f->pos++;
        return keep != 0;
    }
    if (s->esc != CE_NONE) return step_escape(x, s, n, b);
    if (b == '"') {
        if (!text_closable(s, n)) return false;
        value_done(s);
        return true;
    }
    if (b == '\\') {
        if (!any_escape_ok(x, s, n, 0, 0x5c, false)) return false;
        s->esc = CE_BS;
        return true;
    }
    if (b < 0x20) return false;
    return text_add(x, s, n, b);
}

static bool number_complete(uint8_t phase) { return phase == N_ZERO || phase == N_INT || phase == N_FRAC || phase == N_EXP; }

static bool step_number(const cs_ctx *x, cs_state *s, cs_frame *f, const ck_node *n, uint8_t b) {
    bool digit = b >= '0' && b <= '9', real = n->kind == CK_NUMBER;
    uint8_t p = f->phase;
    switch (p) {
    case N_MINUS: return digit ? (f->phase = b == '0' ? N_ZERO : N_INT, true) : false;
    case N_DOT: return digit ? (f->phase = N_FRAC, true) : false;
    case N_E:
        if (b == '+' || b == '-') return f->phase = N_ESIGN, true;
        return digit ? (f->phase = N_EXP, true) : false;
    case N_ESIGN: return digit ? (f->phase = N_EXP, true) : false;
    default: break;
    }
    if (digit && p != N_ZERO) return true; /* INT, FRAC, EXP go on */
    if (real && b == '.' && (p == N_ZERO || p == N_INT)) return f->phase = N_DOT, true;
    if (real && (b == 'e' || b == 'E') && p != N_EXP) return f->phase = N_E, true;
    /* the number ended before b: b belongs to the value around it */
    value_done(s);
    return !s->done && cs_step(x, s, b);
}

static bool step_literal(cs_state *s, cs_frame *f, const ck_node *n, uint8_t b) {
    const char *lit = n->kind == CK_NULL ? "null" : f->count ? "true" : "false";
    if ((uint8_t)lit[f->pos] != b) return false;
    if (lit[++f->pos] == 0) value_done(s);
    return true;
}

bool cs_step(const cs_ctx *x, cs_state *s, uint8_t b) {
    if (s->done) return false;
    if (s->depth == 0) return begin_value(x, s, x->g->root, b);
    cs_frame *f = &s->f[s->depth - 1];
    const ck_node *n = &x->g->nodes[f->node];
    switch (n->kind) {
    case CK_OBJECT: return step_object(x, s, f, n, b);
    case CK_ARRAY: return step_array(x, s, f, n, b);
    case CK_STRING: return step_string(x, s, f, n, b);
    case CK_INTEGER:
    case CK_NUMBER: return step_number(x, s, f, n, b);
    default: return step_literal(s, f, n, b);
    }
}

bool cs_accepting(const cs_ctx *x, const cs_state *s) {
    if (s->done) return true;
    if (s->depth != 1) return false;
    const ck_node *n = &x->g->nodes[s->f[0].node];
    return (n->kind == CK_INTEGER || n->kind == CK_NUMBER) && number_complete(s->f[0].phase);
}

/* Distinct bytes, collected. */
typedef struct bset {
    uint8_t *out;
    int n;
    uint64_t seen[4];
} bset;

static void bs_add(bset *b, uint8_t c) {
    if (b->seen[c >> 6] >> (c & 63) & 1) return;
    b->seen[c >> 6] |= 1ull << (c & 63);
    b->out[b->n++] = c;
}

static void value_starts(const cs_ctx *x, int32_t node, bset *b) {
    if (!x->producible[node]) return;
    switch (x->g->nodes[node].kind) {
    case CK_OBJECT: bs_add(b, '{'); break;
    case CK_ARRAY: bs_add(b, '['); break;
    case CK_STRING: bs_add(b, '"'); break;
    case CK_INTEGER:
    case CK_NUMBER:
        bs_add(b, '-');
        for (uint8_t c = '0'; c <= '9'; c++) bs_add(b, c);
        break;
    case CK_BOOLEAN: bs_add(b, 't'), bs_add(b, 'f'); break;
    case CK_NULL: bs_add(b, 'n'); break;
    }
}

/* The next bytes of the names in cand after pos, and '"' when one is complete. */
static void name_bytes(const ck_node *n, uint64_t cand, uint32_t pos, bset *b) {
    for (uint64_t m = cand; m; m &= m - 1) {
        int i = __builtin_ctzll(m);
        bs_add(b, pos < n->name_len[i] ? (uint8_t)n->names[i][pos] : '"');
    }
}

int cs_next_bytes(const cs_ctx *x, const cs_state *s, uint8_t *out) {
    bset b = {out, 0, {0}};
    if (s->done) return 0;
    if (s->depth == 0) {
        value_starts(x, x->g->root, &b);
        return b.n;
    }
    const cs_frame *f = &s->f[s->depth - 1];
    const ck_node *n = &x->g->nodes[f->node];
    switch (n->kind) {
    case CK_OBJECT:
        switch (f->phase) {
        case O_OPEN: bs_add(&b, '}'), bs_add(&b, '"'); break;
        case O_KEY: name_bytes(n, f->cand, f->pos, &b); break;
        case O_COLON: bs_add(&b, ':'); break;
        case O_COLON_SP:
        case O_COMMA: bs_add(&b, ' '); break;
        case O_VALUE: value_starts(x, n->child[f->count], &b); break;
        case O_AFTER: bs_add(&b, ','), bs_add(&b, '}'); break;
        default: bs_add(&b, '"'); break;
        }
        return b.n;
    case CK_ARRAY:
        if (f->phase == A_AFTER) bs_add(&b, ','), bs_add(&b, ']');
        else if (f->phase == A_COMMA) bs_add(&b, ' ');
        else value_starts(x, n->items, &b);
        if (f->phase == A_OPEN) bs_add(&b, ']');
        return b.n;
    case CK_STRING:
        if (f->phase == S_ENUM) {
            name_bytes(n, f->cand, f->pos, &b);
            return b.n;
        }
        if (!n->span || s->esc != CE_NONE) return -1;
        bs_add(&b, '"'), bs_add(&b, '\\');
        for (int32_t k = x->sam->edge_at[s->sam]; k < x->sam->edge_at[s->sam + 1]; k++)
            if (x->sam->edge_byte[k] >= 0x20) bs_add(&b, x->sam->edge_byte[k]);
        return b.n;
    case CK_BOOLEAN:
    case CK_NULL: {
        const char *lit = n->kind == CK_NULL ? "null" : f->count ? "true" : "false";
        bs_add(&b, (uint8_t)lit[f->pos]);
        return b.n;
    }
    default: return -1;
    }
}

int64_t cs_free_text_room(const cs_ctx *x, const cs_state *s) {
    if (s->depth == 0 || s->esc != CE_NONE || s->utf8 != CU_OK) return -1;
    const cs_frame *f = &s->f[s->depth - 1];
    const ck_node *n = &x->g->nodes[f->node];
    if (n->kind != CK_STRING || n->span || f->phase != S_TEXT) return -1;
    return n->max < 0 ? INT64_MAX : n->max - s->chars;
}

bool yf_constraint_accepts(const yf_constraint *c, const char *input, size_t input_len, const char *text, size_t len) {
    cs_ctx x;
    if (cs_ctx_init(&x, c, input, input_len)) return false;
    cs_state s;
    cs_start(&s);
    bool ok = true;
    for (size_t i = 0; i < len && ok; i++) ok = cs_step(&x, &s, (uint8_t)text[i]);
    ok = ok && cs_accepting(&x, &s);
    cs_ctx_free(&x);
    return ok;
}

/* ---- the shortest completion ----------------------------------------------- */

typedef struct out {
    char **buf;
    size_t *n, *cap;
} out;

static void put(out *o, const char *s, size_t n) {
    if (*o->n + n + 1 > *o->cap) {
        while (*o->n + n + 1 > *o->cap) *o->cap = *o->cap ? 2 * *o->cap : 64;
        *o->buf = yf_realloc(*o->buf, *o->cap);
    }
    memcpy(*o->buf + *o->n, s, n);
    *o->n += n;
    (*o->buf)[*o->n] = 0;
}
static void puts_(out *o, const char *s) { put(o, s, strlen(s)); }

/* The rest of a span from (v, u): the bytes of the shortest way, escaped. */
static void span_rest(const cs_sam *m, int32_t v, uint8_t u, out *o) {
    while (m->dist[v * 8 + u] > 0) {
        uint8_t c = m->next[v * 8 + u];
        char e[6];
        put(o, e, (size_t)cj_escape(c, e));
        v = cs_sam_go(m, v, c);
        u = cu_step(u, c);
    }
}

static void minval(const cs_ctx *x, int32_t node, out *o);

/* `"key": VALUE` for property i (its shortest value). */
static void prop(const cs_ctx *x, const ck_node *n, int32_t i, out *o) {
    puts_(o, "\"");
    put(o, n->names[i], n->name_len[i]);
    puts_(o, "\": ");
    minval(x, n->child[i], o);
}

/* Bytes of the required properties after `last`, then "}". */
static int64_t obj_tail_len(const cs_ctx *x, const ck_node *n, int32_t last) {
    int64_t v = 1;
    for (int32_t i = last + 1; i < n->n; i++)
        if (n->required >> i & 1) v = add_sat(v, add_sat(n->name_len[i] + 6, x->minval[n->child[i]]));
    return v;
}
static void obj_tail(const cs_ctx *x, const ck_node *n, int32_t last, bool first, out *o) {
    for (int32_t i = last + 1; i < n->n; i++) {
        if (!(n->required >> i & 1)) continue;
        if (!first) puts_(o, ", ");
        first = false;
        prop(x, n, i, o);
    }
    puts_(o, "}");
}

static void minval(const cs_ctx *x, int32_t node, out *o) {
    const ck_node *n = &x->g->nodes[node];
    switch (n->kind) {
    case CK_OBJECT:
        puts_(o, "{");
        obj_tail(x, n, -1, true, o);
        break;
    case CK_ARRAY:
        puts_(o, "[");
        for (int64_t k = 0; k < n->min; k++) {
            if (k) puts_(o, ", ");
            minval(x, n->items, o);
        }
        puts_(o, "]");
        break;
    case CK_STRING:
        puts_(o, "\"");
        if (n->n) {
            int32_t best = 0;
            for (int32_t k = 1; k < n->n; k++)
                if (n->name_len[k] < n->name_len[best]) best = k;
            put(o, n->names[best], n->name_len[best]);
        } else if (n->span) {
            span_rest(x->sam, 0, CU_OK, o);
        } else {
            for (int64_t k = 0; k < n->min; k++) puts_(o, "a");
        }
        puts_(o, "\"");
        break;
    case CK_INTEGER:
    case CK_NUMBER: puts_(o, "0"); break;
    case CK_BOOLEAN: puts_(o, "true"); break;
    case CK_NULL: puts_(o, "null"); break;
    }
}

/* The candidate property (of cand) whose completion is shortest, counting
 * its key from byte pos on. */
static int32_t best_key(const cs_ctx *x, const ck_node *n, uint64_t cand, uint32_t pos) {
    int32_t best = -1;
    int64_t best_len = 0;
    for (uint64_t m = cand; m; m &= m - 1) {
        int32_t i = __builtin_ctzll(m);
        int64_t l = add_sat(add_sat(n->name_len[i] - pos + 3, x->minval[n->child[i]]), obj_tail_len(x, n, i));
        if (best < 0 || l < best_len) best = i, best_len = l;
    }
    return best;
}

/* The rest of the open string: the escape and character in progress, the
 * characters still needed, the closing quote. */
static void close_text(const cs_ctx *x, const cs_state *s0, const ck_node *n, out *o) {
    cs_state s = *s0;
    if (s.esc != CE_NONE) {
        /* the cheapest byte the escape can still stand for */
        static const char *const pre[] = {"", "\\", "\\u", "\\u0", "\\u00", "\\u00"};
        int best = -1;
        int64_t best_len = 0;
        uint8_t u;
        int32_t w;
        for (int c = 0; c <= 0x5c; c++) {
            char e[6];
            int el = cj_escape((uint8_t)c, e);
            size_t pl = strlen(pre[s.esc]) + (s.esc == CE_U00H);
            if (el == 1 || (size_t)el <= pl || memcmp(e, pre[s.esc], strlen(pre[s.esc])) != 0) continue;
            if (s.esc == CE_U00H && e[4] - '0' != s.esc_hi) continue;
            if (!text_ok(x, &s, n, (uint8_t)c, &u, &w)) continue;
            int64_t l = el - (int64_t)pl + (n->span ? x->sam->dist[w * 8 + u] : 0);
            if (best < 0 || l < best_len) best = c, best_len = l;
        }
        YF_CHECK(best >= 0); /* the automaton only enters escapes some byte completes */
        char e[6];
        int el = cj_escape((uint8_t)best, e);
        size_t pl = strlen(pre[s.esc]) + (s.esc == CE_U00H);
        put(o, e + pl, (size_t)el - pl);
        text_ok(x, &s, n, (uint8_t)best, &u, &w);
        text_put(&s, u, w);
        s.esc = CE_NONE;
    }
    if (n->span) {
        span_rest(x->sam, s.sam, s.utf8, o);
    } else {
        int64_t chars = s.chars + (s.utf8 != CU_OK); /* the character in progress, once finished */
        for (uint8_t u = s.utf8; u != CU_OK; u = cu_step(u, cu_min_next(u))) {
            char c = (char)cu_min_next(u);
            put(o, &c, 1);
        }
        for (int64_t k = chars; k < n->min; k++) puts_(o, "a");
    }
    puts_(o, "\"");
}

/* Closes the frame at depth d (the top one when top; else it waits after a value). */
static void close_frame(const cs_ctx *x, const cs_state *s, int d, out *o) {
    const cs_frame *f = &s->f[d];
    const ck_node *n = &x->g->nodes[f->node];
    switch (n->kind) {
    case CK_OBJECT: {
        int32_t p;
        switch (f->phase) {
        case O_OPEN: obj_tail(x, n, -1, true, o); return;
        case O_KEY:
            p = best_key(x, n, f->cand, f->pos);
            put(o, n->names[p] + f->pos, n->name_len[p] - f->pos);
            puts_(o, "\": ");
            minval(x, n->child[p], o);
            obj_tail(x, n, p, false, o);
            return;
        case O_COLON:
        case O_COLON_SP:
        case O_VALUE:
            puts_(o, f->phase == O_COLON ? ": " : f->phase == O_COLON_SP ? " " : "");
            minval(x, n->child[f->count], o);
            obj_tail(x, n, f->count, false, o);
            return;
        case O_AFTER: obj_tail(x, n, f->count, false, o); return;
        default: /* O_COMMA, O_COMMA_SP: a property must follow */
            p = best_key(x, n, key_cands(x, n, f->count), 0);
            if (f->phase == O_COMMA) puts_(o, " ");
            prop(x, n, p, o);
            obj_tail(x, n, p, false, o);
            return;
        }
    }
    case CK_ARRAY: {
        int64_t more = n->min - f->count; /* items still needed */
        if (f->phase == A_OPEN) {
            for (int64_t k = 0; k < n->min; k++) {
                if (k) puts_(o, ", ");
                minval(x, n->items, o);
            }
        } else {
            if (f->phase != A_AFTER) { /* A_COMMA, A_ITEM: an item must follow */
                puts_(o, f->phase == A_COMMA ? " " : "");
                minval(x, n->items, o);
                more--;
            }
            for (int64_t k = 0; k < more; k++) {
                puts_(o, ", ");
                minval(x, n->items, o);
            }
        }
        puts_(o, "]");
        return;
    }
    case CK_STRING:
        if (f->phase == S_ENUM) {
            int32_t best = -1;
            for (uint64_t m = f->cand; m; m &= m - 1) {
                int32_t i = __builtin_ctzll(m);
                if (best < 0 || n->name_len[i] < n->name_len[best]) best = i;
            }
            put(o, n->names[best] + f->pos, n->name_len[best] - f->pos);
            puts_(o, "\"");
        } else {
            close_text(x, s, n, o);
        }
        return;
    case CK_INTEGER:
    case CK_NUMBER:
        if (!number_complete(f->phase)) puts_(o, "0");
        return;
    default: {
        const char *lit = n->kind == CK_NULL ? "null" : f->count ? "true" : "false";
        puts_(o, lit + f->pos);
        return;
    }
    }
}

void cs_close(const cs_ctx *x, const cs_state *s, char **buf, size_t *n, size_t *cap) {
    out o = {buf, n, cap};
    put(&o, "", 0);
    if (s->done) return;
    if (s->depth == 0) {
        minval(x, x->g->root, &o);
        return;
    }
    for (int d = s->depth - 1; d >= 0; d--) close_frame(x, s, d, &o);
}
