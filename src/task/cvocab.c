/* cvocab: the token front end of constrain.h. Each model row's bytes are
 * computed once; a byte trie over them (children contiguous and sorted, built
 * breadth first from the sorted byte strings) lets the full mask be one walk
 * that steps the byte automaton once per trie edge it enters and drops a
 * whole subtree at the first refused byte. Where few bytes can follow (the
 * structure, a key, the suffix automaton's edges inside a span) the walk
 * looks those children up instead of trying the node's many children. The greedy path tests rows in descending logit order and walks
 * the trie only when none of the first 32 is allowed.
 *
 * The budget: a state's cost is the fewest rows that spell its shortest
 * completion (cs_close), by dynamic programming over the trie, or the
 * completion's bytes when no rows spell it. A row spells at least one byte,
 * so the program runs only when the bytes exceed what is left. A row is
 * allowed when the state after it costs at most max(budget, cost now) - 1:
 * the budget closes the answer in time, and an answer already over budget
 * still moves towards closing. When every byte is some row's whole text (the
 * Yuan vocabulary has the 256 byte pieces) every completion can be spelled
 * and the answer is always complete within the budget (if the budget allows
 * the shortest answer at all); a pruned vocabulary may lack the rows that
 * spell a completion, and then an answer cut by the budget can stay open. */
#include <math.h>
#include <stdlib.h>

#include "task/constrain_internal.h"

enum { CV_DUMMY = 1, CV_NONE = 2 };
#define PLAIN_K 32 /* plain rows of more characters are walked like the others */

typedef struct cv_node {
    int32_t child;    /* first child; children are contiguous, sorted by byte */
    int32_t rows;     /* first of this node's rows in cv->rows */
    uint16_t n_child;
    uint16_t n_rows;  /* rows whose bytes end here */
    uint8_t byte;     /* the byte on the edge into this node */
    uint8_t kinds;    /* bit 0: a row here has a dummy prefix; bit 1: a row here has none;
                       * bit 2: a row here or below is not plain text (PLAIN_K) */
    uint16_t pad;
} cv_node;

struct yf_cvocab {
    int64_t V, eod;
    int64_t *off;     /* [V + 1] row r's bytes: bytes[off[r], off[r+1]) */
    uint8_t *bytes;
    uint8_t *flags;   /* [V] CV_* */
    cv_node *nodes;   /* [n_nodes]; 0 = the root */
    int32_t n_nodes;
    int32_t *rows;    /* terminal rows, grouped per node */
    bool byte_complete; /* every byte is some row's whole text */
    uint64_t *plain;  /* [(PLAIN_K + 1) * words] plain[k]: the rows whose text is 1..k whole
                       * characters of plain string content (no '"', '\\', control bytes) */
};

/* ---- building ------------------------------------------------------------- */

static int cmp_rows(const void *a, const void *b, void *ctx) {
    const yf_cvocab *v = ctx;
    int64_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    int64_t lx = v->off[x + 1] - v->off[x], ly = v->off[y + 1] - v->off[y];
    int c = memcmp(v->bytes + v->off[x], v->bytes + v->off[y], (size_t)(lx < ly ? lx : ly));
    if (c) return c;
    if (lx != ly) return lx < ly ? -1 : 1;
    return x < y ? -1 : x > y;
}

/* Nodes in breadth-first order, each covering a range of the sorted rows
 * that share its prefix: the rows equal to the prefix come first. */
static void build_trie(yf_cvocab *v, const int32_t *order, int32_t m) {
    int32_t cap = 1024;
    v->nodes = yf_calloc((size_t)cap, sizeof *v->nodes);
    int32_t *lo = yf_malloc((size_t)cap * sizeof *lo), *hi = yf_malloc((size_t)cap * sizeof *hi),
            *depth = yf_malloc((size_t)cap * sizeof *depth);
    v->rows = yf_malloc((size_t)(m ? m : 1) * sizeof *v->rows);
    v->n_nodes = 1;
    lo[0] = 0, hi[0] = m, depth[0] = 0;
    int32_t nrows = 0;
    for (int32_t i = 0; i < v->n_nodes; i++) {
        int32_t k = lo[i], end = hi[i], d = depth[i];
        cv_node *nd = &v->nodes[i];
        nd->rows = nrows;
        for (; k < end && v->off[order[k] + 1] - v->off[order[k]] == d; k++) {
            v->rows[nrows++] = order[k];
            nd->n_rows++;
            nd->kinds |= v->flags[order[k]] & CV_DUMMY ? 1 : 2;
        }
        nd->child = v->n_nodes;
        while (k < end) {
            uint8_t b = v->bytes[v->off[order[k]] + d];
            int32_t j = k;
            while (j < end && v->bytes[v->off[order[j]] + d] == b) j++;
            if (v->n_nodes == cap) {
                cap *= 2;
                v->nodes = yf_realloc(v->nodes, (size_t)cap * sizeof *v->nodes);
                lo = yf_realloc(lo, (size_t)cap * sizeof *lo);
                hi = yf_realloc(hi, (size_t)cap * sizeof *hi);
                depth = yf_realloc(depth, (size_t)cap * sizeof *depth);
                nd = &v->nodes[i];
            }
            cv_node *c = &v->nodes[v->n_nodes];
            memset(c, 0, sizeof *c);
            c->byte = b;
            lo[v->n_nodes] = k, hi[v->n_nodes] = j, depth[v->n_nodes] = d + 1;
            v->n_nodes++;
            nd->n_child++;
            k = j;
        }
    }
    free(lo);
    free(hi);
    free(depth);
}

/* Characters of row r's text when it is plain string content, else 0 (also
 * for more than PLAIN_K characters). */
static int plain_chars(const yf_cvocab *v, int64_t r) {
    if (v->flags[r] & CV_NONE) return 0;
    uint8_t u = CU_OK;
    int chars = 0;
    for (int64_t i = v->off[r]; i < v->off[r + 1]; i++) {
        uint8_t b = v->bytes[i];
        if (b < 0x20 || b == '"' || b == '\\' || (u = cu_step(u, b)) == CU_BAD) return 0;
        chars += u == CU_OK;
    }
    return u == CU_OK && chars <= PLAIN_K ? chars : 0;
}

/* The plain masks, and each trie node's bit 2: a row not plain at or below it
 * (children come after their parents, so a reverse pass sees them first). */
static void plain_rows(yf_cvocab *v) {
    int64_t words = (v->V + 63) / 64;
    v->plain = yf_calloc((size_t)((PLAIN_K + 1) * words), sizeof *v->plain);
    for (int64_t r = 0; r < v->V; r++) {
        int c = plain_chars(v, r);
        for (int k = c; c && k <= PLAIN_K; k++) v->plain[k * words + (r >> 6)] |= 1ull << (r & 63);
    }
    for (int32_t i = v->n_nodes - 1; i >= 0; i--) {
        cv_node *nd = &v->nodes[i];
        for (int32_t k = nd->rows; k < nd->rows + nd->n_rows && !(nd->kinds & 4); k++)
            if (!plain_chars(v, v->rows[k])) nd->kinds |= 4;
        for (int32_t c = nd->child; c < nd->child + nd->n_child && !(nd->kinds & 4); c++) nd->kinds |= v->nodes[c].kinds & 4;
    }
}

static int32_t child(const yf_cvocab *v, int32_t node, uint8_t b) {
    const cv_node *nd = &v->nodes[node];
    if (nd->n_child == 256) return nd->child + b;
    int32_t l = nd->child, h = nd->child + nd->n_child;
    while (l < h) {
        int32_t mid = (l + h) >> 1;
        if (v->nodes[mid].byte < b) l = mid + 1;
        else h = mid;
    }
    return l < nd->child + nd->n_child && v->nodes[l].byte == b ? l : -1;
}

int yf_cvocab_build(const yf_tokenizer *tok, const yf_vocab_map *vmap, int64_t V, yf_cvocab **out) {
    *out = NULL;
    if (V < 1 || V > INT32_MAX) return yf_errorf("constrained decoding: bad vocabulary size %lld", (long long)V);
    yf_cvocab *v = yf_calloc(1, sizeof *v);
    v->V = V;
    v->off = yf_malloc((size_t)(V + 1) * sizeof *v->off);
    v->flags = yf_malloc((size_t)V);
    size_t cap = (size_t)V * 4, n = 0;
    v->bytes = yf_malloc(cap);
    int64_t n_ids = yf_tokenizer_n_ids(tok);
    char tmp[1024];
    int32_t m = 0;
    for (int64_t r = 0; r < V; r++) {
        int64_t id = yf_vocab_to_orig(vmap, r);
        bool dummy = false;
        size_t len = id < n_ids ? yf_tokenizer_id_bytes(tok, id, tmp, sizeof tmp, &dummy) : 0;
        if (len > sizeof tmp) len = 0; /* a piece this long is never allowed */
        v->off[r] = (int64_t)n;
        v->flags[r] = len ? (dummy ? CV_DUMMY : 0) : CV_NONE;
        if (n + len > cap) {
            while (n + len > cap) cap *= 2;
            v->bytes = yf_realloc(v->bytes, cap);
        }
        memcpy(v->bytes + n, tmp, len);
        n += len;
        m += len > 0;
    }
    v->off[V] = (int64_t)n;
    int64_t eod = yf_tokenizer_piece_id(tok, "<eod>");
    v->eod = eod >= 0 ? yf_vocab_to_model(vmap, eod) : -1;
    if (v->eod < 0 || v->eod >= V || yf_vocab_to_orig(vmap, v->eod) != eod) v->eod = -1;
    int32_t *order = yf_malloc((size_t)(m ? m : 1) * sizeof *order);
    for (int32_t r = 0, k = 0; r < V; r++)
        if (!(v->flags[r] & CV_NONE)) order[k++] = r;
    qsort_r(order, (size_t)m, sizeof *order, cmp_rows, v);
    build_trie(v, order, m);
    free(order);
    plain_rows(v);
    v->byte_complete = v->nodes[0].n_child == 256;
    for (int32_t c = 0; c < v->nodes[0].n_child && v->byte_complete; c++)
        v->byte_complete = v->nodes[v->nodes[0].child + c].n_rows > 0;
    *out = v;
    return 0;
}

void yf_cvocab_free(yf_cvocab *v) {
    if (!v) return;
    free(v->off);
    free(v->bytes);
    free(v->flags);
    free(v->nodes);
    free(v->rows);
    free(v->plain);
    free(v);
}

int64_t yf_cvocab_size(const yf_cvocab *v) { return v->V; }
int64_t yf_cvocab_eod(const yf_cvocab *v) { return v->eod; }
bool yf_cvocab_byte_complete(const yf_cvocab *v) { return v->byte_complete; }

/* ---- one sequence ------------------------------------------------------------ */

struct yf_cstate {
    const yf_constraint *g;
    const yf_cvocab *v;
    cs_ctx x;
    cs_state st;
    bool bos;          /* no token yet: a dummy-prefix row loses its leading space */
    bool ended;        /* <eod> emitted */
    char *buf;         /* scratch: completions */
    size_t n, cap;
    int64_t *dp;       /* scratch: the token program */
    size_t dp_cap;
    uint64_t *bits;    /* scratch: a mask for pick and the hook */
};

int yf_cstate_new(const yf_constraint *c, const yf_cvocab *v, const char *input, size_t len, yf_cstate **out) {
    *out = NULL;
    yf_cstate *s = yf_calloc(1, sizeof *s);
    if (cs_ctx_init(&s->x, c, input ? input : "", input ? len : 0)) {
        free(s);
        return -1;
    }
    s->g = c;
    s->v = v;
    s->bits = yf_malloc((size_t)((v->V + 63) / 64) * sizeof *s->bits);
    yf_cstate_reset(s);
    *out = s;
    return 0;
}

void yf_cstate_free(yf_cstate *s) {
    if (!s) return;
    cs_ctx_free(&s->x);
    free(s->buf);
    free(s->dp);
    free(s->bits);
    free(s);
}

void yf_cstate_reset(yf_cstate *s) {
    cs_start(&s->st);
    s->bos = true;
    s->ended = false;
}

bool yf_cstate_complete(const yf_cstate *s) { return s->ended || cs_accepting(&s->x, &s->st); }

/* The fewest rows that spell w[0..L) (INT64_MAX: none do). At the start of
 * an answer a dummy-prefix row spells its text without the leading space. */
static int64_t spell(yf_cstate *s, const char *w, size_t L, bool bos) {
    const yf_cvocab *v = s->v;
    if (s->dp_cap < L + 1) {
        s->dp_cap = 2 * (L + 1);
        s->dp = yf_realloc(s->dp, s->dp_cap * sizeof *s->dp);
    }
    int64_t *f = s->dp;
    f[L] = 0;
    for (size_t i = L; i-- > 0;) {
        f[i] = INT64_MAX;
        for (int pass = 0; pass < (bos && i == 0 ? 2 : 1); pass++) {
            /* pass 0: rows as they are; pass 1 (answer start): ' ' + w[0..] by a dummy-prefix row */
            int32_t node = pass ? child(v, 0, ' ') : 0;
            uint8_t want = !(bos && i == 0) ? 3 : pass ? 1 : 2;
            for (size_t j = i; j < L && node >= 0; j++) {
                node = child(v, node, (uint8_t)w[j]);
                if (node < 0) break;
                if ((v->nodes[node].kinds & want) && f[j + 1] < INT64_MAX && f[j + 1] + 1 < f[i]) f[i] = f[j + 1] + 1;
            }
        }
    }
    return f[0];
}

/* The cost of st: the rows that spell its shortest completion, or its bytes
 * when no rows spell it (a pruned vocabulary); never more than the bytes. */
static int64_t cost(yf_cstate *s, const cs_state *st, bool bos) {
    s->n = 0;
    cs_close(&s->x, st, &s->buf, &s->n, &s->cap);
    if (s->n == 0) return 0;
    int64_t t = spell(s, s->buf, s->n, bos);
    return t < (int64_t)s->n ? t : (int64_t)s->n;
}

/* Does state st (at the answer's start when bos) cost at most X? */
static bool within(yf_cstate *s, const cs_state *st, bool bos, int64_t X) {
    if (X == INT64_MAX) return true;
    s->n = 0;
    cs_close(&s->x, st, &s->buf, &s->n, &s->cap);
    if ((int64_t)s->n <= X) return true; /* a row spells at least one byte */
    return spell(s, s->buf, s->n, bos) <= X;
}

int64_t yf_cstate_cost(yf_cstate *s) { return yf_cstate_complete(s) ? 0 : cost(s, &s->st, s->bos); }

char *yf_cstate_completion(yf_cstate *s, size_t *len) {
    s->n = 0;
    if (!s->ended) cs_close(&s->x, &s->st, &s->buf, &s->n, &s->cap);
    char *t = yf_malloc(s->n + 1);
    memcpy(t, s->buf ? s->buf : "", s->n);
    t[s->n] = 0;
    if (len) *len = s->n;
    return t;
}

/* What a row may cost after it: max(budget, cost now) - 1. */
static int64_t limit(yf_cstate *s, int64_t budget) {
    if (budget == INT64_MAX) return INT64_MAX;
    if (budget < 1) budget = 1;
    if (within(s, &s->st, s->bos, budget)) return budget - 1;
    return cost(s, &s->st, s->bos) - 1;
}

/* Steps st through row's bytes (answer start: without a dummy prefix). */
static bool feed(const yf_cstate *s, cs_state *st, int64_t row) {
    const yf_cvocab *v = s->v;
    int64_t a = v->off[row], b = v->off[row + 1];
    if (s->bos && (v->flags[row] & CV_DUMMY)) a++;
    if (a >= b) return false;
    for (int64_t i = a; i < b; i++)
        if (!cs_step(&s->x, st, v->bytes[i])) return false;
    return true;
}

static bool allowed(yf_cstate *s, int64_t row, int64_t X) {
    if (row < 0 || row >= s->v->V || s->ended) return false;
    if (row == s->v->eod) return cs_accepting(&s->x, &s->st);
    if (s->v->flags[row] & CV_NONE) return false;
    cs_state t;
    cs_copy(&t, &s->st);
    return feed(s, &t, row) && within(s, &t, false, X);
}

bool yf_cstate_allows(yf_cstate *s, int64_t row, int64_t budget) { return allowed(s, row, limit(s, budget)); }

int yf_cstate_advance(yf_cstate *s, int64_t row) {
    const yf_cvocab *v = s->v;
    if (s->ended) return yf_errorf("constrained decoding: a token after <eod>");
    if (row < 0 || row >= v->V) return yf_errorf("constrained decoding: row %lld is outside the vocabulary", (long long)row);
    if (row == v->eod) {
        if (!cs_accepting(&s->x, &s->st)) return yf_errorf("constrained decoding: <eod> before the answer is complete");
        s->ended = true;
        return 0;
    }
    cs_state t;
    cs_copy(&t, &s->st);
    if ((v->flags[row] & CV_NONE) || !feed(s, &t, row))
        return yf_errorf("constrained decoding: row %lld ('%.*s') does not continue the answer here", (long long)row,
                         (int)(v->off[row + 1] - v->off[row] > 40 ? 40 : v->off[row + 1] - v->off[row]),
                         (const char *)v->bytes + v->off[row]);
    cs_copy(&s->st, &t);
    s->bos = false;
    return 0;
}

/* ---- the full mask: one walk of the trie ------------------------------------- */

typedef struct walker {
    yf_cstate *s;
    int64_t X;
    uint64_t *bits;
    uint8_t want;      /* rows taken: 3 all, 2 without a dummy prefix, 1 with one */
    bool skip_plain;   /* the plain rows are in the mask already: enter only nodes with others */
} walker;

static void walk(walker *w, int32_t node, const cs_state *st);

/* Node c (a child) after byte b from state st. */
static void enter(walker *w, int32_t c, const cs_state *st) {
    const yf_cvocab *v = w->s->v;
    const cv_node *nd = &v->nodes[c];
    cs_state t;
    cs_copy(&t, st);
    if (!cs_step(&w->s->x, &t, nd->byte)) return;
    if (nd->n_rows && (nd->kinds & w->want) && within(w->s, &t, false, w->X))
        for (int32_t k = nd->rows; k < nd->rows + nd->n_rows; k++) {
            int32_t r = v->rows[k];
            if ((v->flags[r] & CV_DUMMY ? 1 : 2) & w->want) w->bits[r >> 6] |= 1ull << (r & 63);
        }
    if (nd->n_child) walk(w, c, &t);
}

static void walk(walker *w, int32_t node, const cs_state *st) {
    const yf_cvocab *v = w->s->v;
    const cv_node *nd = &v->nodes[node];
    uint8_t next[256];
    int nn = nd->n_child > 4 ? cs_next_bytes(&w->s->x, st, next) : -1;
    if (nn >= 0 && nn < nd->n_child / 2) {
        /* few bytes can follow (structure, a key, a span's next bytes): look those up */
        for (int k = 0; k < nn; k++) {
            int32_t c = child(v, node, next[k]);
            if (c >= 0) enter(w, c, st);
        }
        return;
    }
    for (int32_t c = nd->child; c < nd->child + nd->n_child; c++)
        if (!w->skip_plain || (v->nodes[c].kinds & 4)) enter(w, c, st);
}

static int64_t mask_x(yf_cstate *s, int64_t X, uint64_t *bits) {
    const yf_cvocab *v = s->v;
    int64_t words = (v->V + 63) / 64;
    memset(bits, 0, (size_t)words * sizeof *bits);
    if (s->ended) return 0;
    if (v->eod >= 0 && cs_accepting(&s->x, &s->st)) bits[v->eod >> 6] |= 1ull << (v->eod & 63);
    walker w = {s, X, bits, s->bos ? 2 : 3, false};
    int64_t room = cs_free_text_room(&s->x, &s->st);
    if (room > 0) {
        /* inside a free string every plain row of at most `room` characters
         * keeps the string open and adds no bytes to its completion: when the
         * completion's bytes fit, they are all allowed at once */
        s->n = 0;
        cs_close(&s->x, &s->st, &s->buf, &s->n, &s->cap);
        if ((int64_t)s->n <= X) {
            const uint64_t *p = v->plain + (room < PLAIN_K ? room : PLAIN_K) * words;
            for (int64_t i = 0; i < words; i++) bits[i] |= p[i];
            w.skip_plain = true;
        }
    }
    walk(&w, 0, &s->st);
    int32_t sp = child(v, 0, ' ');
    if (s->bos && sp >= 0) {
        /* dummy-prefix rows at the answer's start: their text after the ' ' */
        w.want = 1;
        walk(&w, sp, &s->st);
    }
    int64_t n = 0;
    for (int64_t i = 0; i < words; i++) n += __builtin_popcountll(bits[i]);
    return n;
}

int64_t yf_cstate_mask(yf_cstate *s, int64_t budget, uint64_t *bits) { return mask_x(s, limit(s, budget), bits); }

/* ---- greedy --------------------------------------------------------------------- */

#define PICK_K 32

int64_t yf_cstate_pick(yf_cstate *s, const float *logits, int64_t budget) {
    const yf_cvocab *v = s->v;
    if (s->ended) return -1;
    int64_t X = limit(s, budget), V = v->V;
    int64_t best = 0; /* the argmax as yf_sample takes it: the first highest */
    for (int64_t i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    if (allowed(s, best, X)) return best;
    /* the next PICK_K in descending order (ties: the lower row first) */
    float val[PICK_K];
    int64_t id[PICK_K];
    int cnt = 0;
    for (int64_t i = 0; i < V; i++) {
        float x = logits[i];
        if (isnan(x) || (cnt == PICK_K && !(x > val[PICK_K - 1]))) continue;
        int p = cnt < PICK_K ? cnt++ : PICK_K - 1;
        while (p > 0 && val[p - 1] < x) val[p] = val[p - 1], id[p] = id[p - 1], p--;
        val[p] = x, id[p] = i;
    }
    for (int k = 0; k < cnt; k++)
        if (id[k] != best && allowed(s, id[k], X)) return id[k];
    /* none of them: the best of the full mask */
    mask_x(s, X, s->bits);
    int64_t pick = -1;
    for (int64_t i = 0; i < V; i++)
        if ((s->bits[i >> 6] >> (i & 63) & 1) && (pick < 0 || logits[i] > logits[pick])) pick = i;
    return pick;
}

/* ---- the generation hook ----------------------------------------------------------- */

static int64_t hk_pick(void *ctx, int64_t seq, const float *logits, int64_t V, int64_t budget) {
    yf_cstate *s = ((yf_cstate **)ctx)[seq];
    YF_CHECK(V == s->v->V);
    return yf_cstate_pick(s, logits, budget);
}

static int64_t hk_mask(void *ctx, int64_t seq, float *logits, int64_t V, int64_t budget) {
    yf_cstate *s = ((yf_cstate **)ctx)[seq];
    YF_CHECK(V == s->v->V);
    int64_t n = yf_cstate_mask(s, budget, s->bits);
    for (int64_t i = 0; i < V; i++)
        if (!(s->bits[i >> 6] >> (i & 63) & 1)) logits[i] = -INFINITY;
    return n;
}

static void hk_advance(void *ctx, int64_t seq, int64_t id) {
    /* pick and mask only give rows that continue the answer */
    int rc = yf_cstate_advance(((yf_cstate **)ctx)[seq], id);
    YF_CHECK(rc == 0);
}

static bool hk_done(void *ctx, int64_t seq) {
    yf_cstate *s = ((yf_cstate **)ctx)[seq];
    return s->ended || (s->v->eod < 0 && cs_accepting(&s->x, &s->st));
}

void yf_cstate_hook(yf_cstate **states, yf_gen_hook *hook) {
    memset(hook, 0, sizeof *hook);
    hook->ctx = states;
    hook->pick = hk_pick;
    hook->mask = hk_mask;
    hook->advance = hk_advance;
    hook->done = hk_done;
}
