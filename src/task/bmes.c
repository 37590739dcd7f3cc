/* bmes: BMES reader and the converter to training records. */
#include "task/bmes.h"

#include <stdlib.h>
#include <string.h>

#include "base/jsontext.h"

void yf_bmes_free(yf_bmes_corpus *c) {
    for (size_t i = 0; i < c->n; i++) {
        free(c->s[i].text);
        free(c->s[i].spans);
    }
    free(c->s);
    memset(c, 0, sizeof *c);
}

/* What the reader knows while inside a sentence. */
typedef struct reader {
    const char *path;
    yf_bmes_corpus *c;
    size_t cap;
    yf_sbuf text;
    yf_span *spans;
    size_t n_spans, cap_spans;
    int64_t n_chars, first_line;
    int open_type;        /* -1 when no entity is open */
    size_t open_start;
    int64_t open_line;
    bool open_drop;       /* the open entity is the second half of a cut one */
    int cut_type;         /* type of an entity the last blank line cut, else -1 */
} reader;

static void add_span(reader *r, int type, size_t start, size_t end) {
    if (r->n_spans == r->cap_spans) {
        r->cap_spans = r->cap_spans ? 2 * r->cap_spans : 8;
        r->spans = yf_realloc(r->spans, r->cap_spans * sizeof *r->spans);
    }
    r->spans[r->n_spans++] = (yf_span){type, start, end};
    r->c->n_entities[type]++;
}

static int end_sentence(reader *r, int64_t line) {
    if (r->open_type >= 0) { /* the corpus defect (see bmes.h): leave the entity out */
        if (r->c->n_cut < 8) r->c->cut_lines[r->c->n_cut] = line;
        r->c->n_cut++;
        r->cut_type = r->open_type;
        r->open_type = -1;
    }
    if (!r->n_chars) return 0;
    yf_bmes_corpus *c = r->c;
    if (c->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 256;
        c->s = yf_realloc(c->s, r->cap * sizeof *c->s);
    }
    yf_bmes_sentence *s = &c->s[c->n++];
    s->len = r->text.n;
    s->text = yf_sbuf_take(&r->text);
    s->n_chars = r->n_chars;
    s->line = r->first_line;
    s->spans = r->spans;
    s->n_spans = r->n_spans;
    c->n_chars += r->n_chars;
    r->spans = NULL;
    r->n_spans = r->cap_spans = 0;
    r->n_chars = 0;
    return 0;
}

/* One "CHARACTER TAG" line (len > 0, no newline). */
static int read_line(reader *r, const char *s, size_t len, int64_t line) {
    const char *sp = NULL;
    for (size_t i = len; i-- > 0;)
        if (s[i] == ' ' || s[i] == '\t') {
            sp = s + i;
            break;
        }
    int shown = len > 40 ? 40 : (int)len;
    if (!sp || sp == s || sp + 1 == s + len)
        return yf_errorf("%s:%lld: expected 'CHARACTER TAG', got '%.*s'", r->path, (long long)line, shown, s);
    size_t clen = (size_t)(sp - s);
    const char *tag = sp + 1;
    size_t tlen = len - clen - 1;
    if (!yf_utf8_valid(s, len)) return yf_errorf("%s:%lld: not UTF-8 text", r->path, (long long)line);
    char kind = 'O';
    int type = -1;
    if (!(tlen == 1 && tag[0] == 'O')) {
        if (tlen > 2 && strchr("BMES", tag[0]) && tag[1] == '-') type = yf_type_from_tag(tag + 2, tlen - 2);
        if (type < 0)
            return yf_errorf("%s:%lld: unknown tag '%.*s' (expected O, or B-/M-/E-/S- and one of NAME CONT RACE TITLE EDU PRO "
                             "ORG LOC)",
                             r->path, (long long)line, (int)(tlen > 40 ? 40 : tlen), tag);
        kind = tag[0];
    }
    int open = r->open_type;
    if (!r->n_chars && r->cut_type >= 0 && (kind == 'M' || kind == 'E') && type == r->cut_type) {
        open = r->open_type = type; /* the second half of a cut entity */
        r->open_drop = true;
        r->open_start = 0;
        r->open_line = line;
    }
    if (!r->n_chars) r->cut_type = -1;
    if ((kind == 'M' || kind == 'E') && open < 0)
        return yf_errorf("%s:%lld: %.*s without a B-%s before it", r->path, (long long)line, (int)tlen, tag, yf_type_tags[type]);
    if ((kind == 'M' || kind == 'E') && open != type)
        return yf_errorf("%s:%lld: %.*s inside the %s entity begun at line %lld", r->path, (long long)line, (int)tlen, tag,
                         yf_type_tags[open], (long long)r->open_line);
    if ((kind == 'B' || kind == 'S' || kind == 'O') && open >= 0)
        return yf_errorf("%s:%lld: %.*s inside the %s entity begun at line %lld (missing E-%s)", r->path, (long long)line,
                         (int)tlen, tag, yf_type_tags[open], (long long)r->open_line, yf_type_tags[open]);
    if (!r->n_chars) r->first_line = line;
    size_t start = r->text.n;
    yf_sbuf_put(&r->text, s, clen);
    r->n_chars++;
    switch (kind) {
    case 'B':
        r->open_type = type;
        r->open_start = start;
        r->open_line = line;
        r->open_drop = false;
        break;
    case 'E':
        if (!r->open_drop) add_span(r, type, r->open_start, r->text.n);
        r->open_type = -1;
        r->open_drop = false;
        break;
    case 'S': add_span(r, type, start, r->text.n); break;
    default: break;
    }
    return 0;
}

int yf_bmes_read(const char *path, yf_bmes_corpus *out) {
    memset(out, 0, sizeof *out);
    char *buf;
    size_t len;
    if (yf_read_file_max(path, YF_MAX_TEXT_BYTES, &buf, &len)) return -1;
    reader r = {.path = path, .c = out, .open_type = -1, .cut_type = -1};
    int rc = 0;
    int64_t line = 0;
    size_t pos = 0;
    if (len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0) pos = 3; /* a UTF-8 byte order mark */
    while (pos < len && rc == 0) {
        const char *s = buf + pos;
        const char *nl = memchr(s, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - s) : len - pos;
        pos += ll + (nl ? 1 : 0);
        line++;
        while (ll && (s[ll - 1] == '\r' || s[ll - 1] == ' ' || s[ll - 1] == '\t')) ll--;
        if (ll == 0) rc = end_sentence(&r, line);
        else rc = read_line(&r, s, ll, line);
    }
    if (rc == 0 && r.open_type >= 0)
        rc = yf_errorf("%s:%lld: the file ends inside the %s entity begun at line %lld (missing E-%s)", path,
                       (long long)line, yf_type_tags[r.open_type], (long long)r.open_line, yf_type_tags[r.open_type]);
    if (rc == 0) rc = end_sentence(&r, line + 1);
    if (rc == 0 && out->n == 0) rc = yf_errorf("%s: no sentences in the file", path);
    yf_sbuf_free(&r.text);
    free(r.spans);
    free(buf);
    if (rc) yf_bmes_free(out);
    return rc;
}

char *yf_bmes_answer(const yf_bmes_sentence *s) {
    yf_answer a;
    yf_answer_init(&a);
    for (size_t i = 0; i < s->n_spans; i++)
        yf_answer_add(&a, s->spans[i].type, s->text + s->spans[i].start, s->spans[i].end - s->spans[i].start);
    char *j = yf_answer_format(&a);
    yf_answer_free(&a);
    return j;
}

int yf_bmes_write_jsonl(const yf_bmes_corpus *c, const char *path) {
    yf_atomic_file af;
    if (yf_atomic_open(&af, path)) return -1;
    yf_sbuf b = {0};
    for (size_t i = 0; i < c->n; i++) {
        char *ans = yf_bmes_answer(&c->s[i]);
        b.n = 0;
        yf_sbuf_puts(&b, "{\"input\": ");
        yf_sbuf_json_string(&b, c->s[i].text, c->s[i].len);
        yf_sbuf_puts(&b, ", \"output\": ");
        yf_sbuf_json_string(&b, ans, strlen(ans));
        yf_sbuf_puts(&b, "}\n");
        free(ans);
        if (fwrite(b.s, 1, b.n, af.f) != b.n) {
            yf_sbuf_free(&b);
            yf_atomic_abort(&af);
            return yf_errorf("%s: write failed (disk full?)", path);
        }
    }
    yf_sbuf_free(&b);
    return yf_atomic_commit(&af);
}

/* ---- augmentation: mention replacement ----------------------------------- */

/* One entity string of the corpus: bytes [s, s + n) of a sentence's text. */
typedef struct mention {
    int type;
    const char *s;
    size_t n;
} mention;

static int cmp_mention(const void *pa, const void *pb) {
    const mention *a = pa, *b = pb;
    if (a->type != b->type) return a->type < b->type ? -1 : 1;
    size_t n = a->n < b->n ? a->n : b->n;
    int c = memcmp(a->s, b->s, n);
    if (c) return c;
    return a->n < b->n ? -1 : a->n > b->n;
}

static bool same_text(const char *a, size_t na, const char *b, size_t nb) { return na == nb && memcmp(a, b, na) == 0; }

/* The replacement pool: per type, its distinct strings in byte order (so the
 * draw depends on the corpus, not on the order of the file's sentences). */
typedef struct pool {
    mention *m;               /* [n] sorted by (type, bytes), distinct */
    size_t n;
    size_t first[YF_N_TYPES + 1]; /* type t is m[first[t] .. first[t+1]) */
} pool;

static void pool_build(const yf_bmes_corpus *c, pool *p) {
    size_t total = 0;
    for (size_t i = 0; i < c->n; i++) total += c->s[i].n_spans;
    p->m = yf_malloc((total ? total : 1) * sizeof *p->m);
    p->n = 0;
    for (size_t i = 0; i < c->n; i++)
        for (size_t j = 0; j < c->s[i].n_spans; j++) {
            const yf_span *sp = &c->s[i].spans[j];
            p->m[p->n++] = (mention){sp->type, c->s[i].text + sp->start, sp->end - sp->start};
        }
    qsort(p->m, p->n, sizeof *p->m, cmp_mention);
    size_t w = 0;
    for (size_t i = 0; i < p->n; i++)
        if (w == 0 || cmp_mention(&p->m[w - 1], &p->m[i]) != 0) p->m[w++] = p->m[i];
    p->n = w;
    size_t k = 0;
    for (int t = 0; t <= YF_N_TYPES; t++) {
        while (k < p->n && p->m[k].type < t) k++;
        p->first[t] = k;
    }
}

/* A string of type t other than (s, n) when the type has another. */
static const mention *draw(const pool *p, int t, const char *s, size_t n, yf_rng *g) {
    size_t lo = p->first[t], cnt = p->first[t + 1] - lo;
    const mention *m = &p->m[lo + yf_rng_u64(g) % cnt];
    if (cnt > 1 && same_text(m->s, m->n, s, n)) m = &p->m[lo + (size_t)(m - &p->m[lo] + 1) % cnt];
    return m;
}

static size_t utf8_chars(const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xc0) != 0x80;
    return c;
}

/* The variant of src with every entity replaced (spans are in position order
 * and do not overlap: the BMES reader makes them so). */
static void make_variant(const yf_bmes_sentence *src, const pool *p, yf_rng *g, yf_bmes_sentence *dst) {
    yf_sbuf b = {0};
    const mention **rep = yf_malloc(src->n_spans * sizeof *rep);
    dst->spans = yf_malloc(src->n_spans * sizeof *dst->spans);
    dst->n_spans = src->n_spans;
    size_t at = 0;
    for (size_t j = 0; j < src->n_spans; j++) {
        const yf_span *sp = &src->spans[j];
        const char *s = src->text + sp->start;
        size_t n = sp->end - sp->start;
        rep[j] = NULL;
        /* the same entity twice in a sentence stays one entity */
        for (size_t i = 0; i < j && !rep[j]; i++)
            if (src->spans[i].type == sp->type &&
                same_text(src->text + src->spans[i].start, src->spans[i].end - src->spans[i].start, s, n))
                rep[j] = rep[i];
        if (!rep[j]) rep[j] = draw(p, sp->type, s, n, g);
        yf_sbuf_put(&b, src->text + at, sp->start - at);
        size_t start = b.n;
        yf_sbuf_put(&b, rep[j]->s, rep[j]->n);
        dst->spans[j] = (yf_span){sp->type, start, b.n};
        at = sp->end;
    }
    yf_sbuf_put(&b, src->text + at, src->len - at);
    free(rep);
    dst->len = b.n;
    dst->text = yf_sbuf_take(&b);
    dst->n_chars = (int64_t)utf8_chars(dst->text, dst->len);
    dst->line = src->line;
}

static void copy_sentence(const yf_bmes_sentence *src, yf_bmes_sentence *dst) {
    *dst = *src;
    dst->text = yf_malloc(src->len + 1);
    memcpy(dst->text, src->text, src->len + 1);
    dst->spans = yf_malloc((src->n_spans ? src->n_spans : 1) * sizeof *dst->spans);
    if (src->n_spans) memcpy(dst->spans, src->spans, src->n_spans * sizeof *dst->spans);
}

int yf_bmes_augment(const yf_bmes_corpus *c, int64_t k, uint64_t seed, yf_bmes_corpus *out) {
    memset(out, 0, sizeof *out);
    if (k < 0 || k > 1000) return yf_errorf("augment: %lld variants a sentence is outside [0, 1000]", (long long)k);
    size_t with = 0;
    for (size_t i = 0; i < c->n; i++) with += c->s[i].n_spans > 0;
    pool p;
    pool_build(c, &p);
    yf_rng g;
    yf_rng_seed(&g, seed ^ 0x6175676d656e74ull); /* "augment" */
    out->s = yf_calloc(c->n + with * (size_t)k + 1, sizeof *out->s);
    for (size_t i = 0; i < c->n; i++) {
        copy_sentence(&c->s[i], &out->s[out->n++]);
        if (!c->s[i].n_spans) continue;
        for (int64_t v = 0; v < k; v++) make_variant(&c->s[i], &p, &g, &out->s[out->n++]);
    }
    for (size_t i = 0; i < out->n; i++) {
        out->n_chars += out->s[i].n_chars;
        for (size_t j = 0; j < out->s[i].n_spans; j++) out->n_entities[out->s[i].spans[j].type]++;
    }
    out->n_cut = c->n_cut;
    memcpy(out->cut_lines, c->cut_lines, sizeof out->cut_lines);
    free(p.m);
    return 0;
}
