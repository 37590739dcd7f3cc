/* tokenizer: SentencePiece BPE (tokenizer.model parsed from its protobuf wire
 * format), plus the recipe's special tokens. See tokenizer.h.
 *
 * The encoder follows SentencePiece's own algorithm so that ids match it
 * exactly: normalise (identity rules, dummy prefix, ' ' -> U+2581, invalid
 * UTF-8 bytes -> U+FFFD), split into characters (user-defined pieces matched
 * whole and frozen), then repeatedly merge the adjacent pair whose merged piece
 * has the highest score (ties: leftmost), merging only into NORMAL,
 * USER_DEFINED or UNUSED pieces; UNUSED results are split back into the pair
 * that formed them; pieces not in the vocabulary become <0xNN> byte pieces
 * (byte fallback) or one <unk> per run. */
#include "tokenizer/tokenizer.h"

#include <stdlib.h>
#include <string.h>

/* SentencePiece piece types (sentencepiece_model.proto). */
enum { PT_NORMAL = 1, PT_UNKNOWN = 2, PT_CONTROL = 3, PT_USER = 4, PT_UNUSED = 5, PT_BYTE = 6 };

/* The recipe's special tokens: unk, bos, eos='<eod>', then the 15 it adds, in
 * the order it adds them (the ones not in the model get new ids in this order). */
static const char *const k_special[] = {
    "<unk>", "<s>", "<eod>", "<sep>", "<pad>", "<mask>", "<predict>", "<FIM_SUFFIX>", "<FIM_PREFIX>",
    "<FIM_MIDDLE>", "<commit_before>", "<commit_msg>", "<commit_after>", "<jupyter_start>", "<jupyter_text>",
    "<jupyter_code>", "<jupyter_output>", "<empty_output>",
};
#define TK_N_SPECIAL ((int)(sizeof k_special / sizeof *k_special))

#define WS "\xE2\x96\x81" /* U+2581, SentencePiece's space symbol */

typedef struct {
    uint32_t off; /* text in arena: NUL-terminated, its length in the 4 bytes before */
    uint32_t len;
    float score;
    uint8_t type;
    uint8_t byteval; /* the byte of a <0xNN> piece */
} tk_piece;

/* Hash slot: a piece string may be both a "normal" piece (mergeable) and a
 * reserved one (control/unknown/byte), as SentencePiece keeps two maps. */
typedef struct {
    uint32_t tag; /* high hash bits, to skip most string compares */
    uint32_t off; /* the text, in arena (saves a look at pieces[]) */
    int32_t normal;
    int32_t reserved;
} tk_slot;

struct yf_tokenizer {
    char *arena;
    tk_piece *pieces;
    int32_t n_pieces;
    tk_slot *slots;
    size_t mask;
    int32_t unk_id;
    int32_t byte_id[256];
    bool byte_fallback, add_dummy_prefix, remove_extra_ws, escape_ws;
    int32_t *user; /* USER_DEFINED ids, their texts in byte order (a prefix before its extensions) */
    int n_user;
    int n_unused;
    char *unk_surface;
    size_t unk_surface_len;
    int64_t special_id[TK_N_SPECIAL];
    size_t special_len[TK_N_SPECIAL];
    int64_t n_ids;
    uint8_t *is_special; /* [n_ids] */
};

/* ---- hashing ------------------------------------------------------------ */

static inline uint64_t load32(const char *s) {
    uint32_t v;
    memcpy(&v, s, 4);
    return v;
}

/* Pieces are short (most 3-9 bytes): the tail is read with two overlapping
 * 4-byte loads (or three single bytes) rather than a variable-length copy. */
static inline uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xC2B2AE3D27D4EB4Full);
    while (n > 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 32;
        s += 8;
        n -= 8;
    }
    uint64_t w;
    if (n >= 4) w = load32(s) | load32(s + n - 4) << 32;
    else if (n > 0) w = (uint64_t)(uint8_t)s[0] | (uint64_t)(uint8_t)s[n / 2] << 8 | (uint64_t)(uint8_t)s[n - 1] << 16;
    else w = 0;
    h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 29;
    h *= 0x94D049BB133111EBull;
    return h ^ (h >> 31);
}

static const char *piece_text(const yf_tokenizer *t, int32_t id) { return t->arena + t->pieces[id].off; }

/* The slot holding string s, or the empty slot where it would go. */
static inline tk_slot *find_slot(const yf_tokenizer *t, const char *s, size_t n) {
    uint64_t h = hash_bytes(s, n);
    uint32_t tag = (uint32_t)(h >> 32);
    for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
        tk_slot *sl = &t->slots[i];
        if (sl->normal < 0 && sl->reserved < 0) return sl;
        if (sl->tag != tag) continue;
        const char *key = t->arena + sl->off;
        if (load32(key - 4) == n && memcmp(key, s, n) == 0) return sl;
    }
}

/* Mergeable piece (NORMAL / USER_DEFINED / UNUSED) with this text, or -1. */
static inline int32_t lookup_normal(const yf_tokenizer *t, const char *s, size_t n) {
    return find_slot(t, s, n)->normal;
}

/* SentencePiece's PieceToId: reserved pieces first, then normal, else -1. */
static int32_t lookup_any(const yf_tokenizer *t, const char *s, size_t n) {
    const tk_slot *sl = find_slot(t, s, n);
    return sl->reserved >= 0 ? sl->reserved : sl->normal;
}

/* ---- UTF-8 -------------------------------------------------------------- */

/* Length of the valid UTF-8 character at s (1..4), 0 when malformed: overlong
 * forms, surrogates and code points past U+10FFFF are malformed, as in
 * SentencePiece's DecodeUTF8. */
size_t yf_utf8_len(const char *str, size_t n) {
    const uint8_t *s = (const uint8_t *)str;
    if (n == 0) return 0;
    if (s[0] < 0x80) return 1;
#define TRAIL(c) (((c) & 0xC0) == 0x80)
    if ((s[0] & 0xE0) == 0xC0) {
        if (n < 2 || !TRAIL(s[1])) return 0;
        uint32_t cp = ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
        return cp >= 0x80 ? 2 : 0;
    }
    if ((s[0] & 0xF0) == 0xE0) {
        if (n < 3 || !TRAIL(s[1]) || !TRAIL(s[2])) return 0;
        uint32_t cp = ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        return cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF) ? 3 : 0;
    }
    if ((s[0] & 0xF8) == 0xF0) {
        if (n < 4 || !TRAIL(s[1]) || !TRAIL(s[2]) || !TRAIL(s[3])) return 0;
        uint32_t cp = ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
                      ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
        return cp >= 0x10000 && cp <= 0x10FFFF ? 4 : 0;
    }
#undef TRAIL
    return 0;
}

/* ---- protobuf wire format ------------------------------------------------
 * Every length is checked against the bytes left in the enclosing message. */

typedef struct {
    const uint8_t *p, *end, *base;
    const char *path;
} pb_reader;

static int pb_fail(const pb_reader *r, const char *what) {
    return yf_errorf("%s: corrupt or truncated tokenizer model: %s at byte %zu of the file; use the tokenizer.model "
                     "that comes with the Yuan 2.0 model",
                     r->path, what, (size_t)(r->p - r->base));
}

static int pb_varint(pb_reader *r, uint64_t *v) {
    uint64_t x = 0;
    for (int shift = 0; shift <= 63; shift += 7) {
        if (r->p >= r->end) return pb_fail(r, "varint runs past the end of its message");
        uint8_t c = *r->p++;
        x |= (uint64_t)(c & 0x7F) << shift;
        if (!(c & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return pb_fail(r, "varint longer than 10 bytes");
}

static int pb_bytes(pb_reader *r, const uint8_t **data, size_t *len) {
    uint64_t n;
    if (pb_varint(r, &n)) return -1;
    if (n > (uint64_t)(r->end - r->p)) {
        char msg[128];
        snprintf(msg, sizeof msg, "length %llu but only %zu bytes left", (unsigned long long)n,
                 (size_t)(r->end - r->p));
        return pb_fail(r, msg);
    }
    *data = r->p;
    *len = (size_t)n;
    r->p += n;
    return 0;
}

static int pb_fixed32(pb_reader *r, uint32_t *v) {
    if (r->end - r->p < 4) return pb_fail(r, "4-byte field runs past the end of its message");
    *v = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 | (uint32_t)r->p[3] << 24;
    r->p += 4;
    return 0;
}

static int pb_key(pb_reader *r, uint32_t *field, int *wire) {
    uint64_t k;
    if (pb_varint(r, &k)) return -1;
    if ((k >> 3) == 0 || (k >> 3) > 0x1FFFFFFF) return pb_fail(r, "invalid field number");
    *field = (uint32_t)(k >> 3);
    *wire = (int)(k & 7);
    return 0;
}

static int pb_skip(pb_reader *r, int wire) {
    uint64_t v;
    uint32_t f = 0;
    const uint8_t *d;
    size_t n;
    switch (wire) {
    case 0: return pb_varint(r, &v);
    case 1:
        if (r->end - r->p < 8) return pb_fail(r, "8-byte field runs past the end of its message");
        r->p += 8;
        return 0;
    case 2: return pb_bytes(r, &d, &n);
    case 5: return pb_fixed32(r, &f);
    default: return pb_fail(r, "unsupported protobuf wire type");
    }
}

static int pb_expect(pb_reader *r, int wire, int want, const char *field) {
    if (wire == want) return 0;
    char msg[160];
    snprintf(msg, sizeof msg, "field %s has wire type %d, expected %d", field, wire, want);
    return pb_fail(r, msg);
}

/* ---- loading ------------------------------------------------------------ */

typedef struct {
    tk_piece *pieces;
    size_t n, cap;
    char *arena;
    size_t arena_len, arena_cap;
    int64_t model_type;
    bool byte_fallback, ws_suffix;
    bool has_unk_surface;
    const uint8_t *unk_surface;
    size_t unk_surface_len;
    bool add_dummy_prefix, remove_extra_ws, escape_ws;
    size_t charsmap_len, denorm_charsmap_len;
    bool has_trainer, has_normalizer;
} tk_raw;

static int parse_piece(pb_reader *r, tk_raw *raw) {
    const uint8_t *text = NULL;
    size_t len = 0;
    float score = 0;
    uint64_t type = PT_NORMAL;
    while (r->p < r->end) {
        uint32_t f = 0;
        int w = 0;
        if (pb_key(r, &f, &w)) return -1;
        if (f == 1) {
            if (pb_expect(r, w, 2, "piece") || pb_bytes(r, &text, &len)) return -1;
        } else if (f == 2) {
            uint32_t bits;
            if (pb_expect(r, w, 5, "score") || pb_fixed32(r, &bits)) return -1;
            memcpy(&score, &bits, 4);
        } else if (f == 3) {
            if (pb_expect(r, w, 0, "type") || pb_varint(r, &type)) return -1;
        } else if (pb_skip(r, w))
            return -1;
    }
    if (!text || len == 0) return pb_fail(r, "empty piece");
    if (type < PT_NORMAL || type > PT_BYTE) return pb_fail(r, "unknown piece type");
    if (len > (1u << 20)) return pb_fail(r, "piece longer than 1 MiB");
    /* pieces are C strings to the rest of the library: one with a NUL would
     * be a different piece there (found by fuzz_tokenizer_model) */
    if (memchr(text, 0, len)) return pb_fail(r, "piece with a NUL byte");
    if (raw->n == raw->cap) {
        raw->cap = raw->cap ? raw->cap * 2 : 1024;
        raw->pieces = yf_realloc(raw->pieces, raw->cap * sizeof *raw->pieces);
    }
    if (raw->arena_len + len + 5 > raw->arena_cap) {
        while (raw->arena_len + len + 5 > raw->arena_cap) raw->arena_cap = raw->arena_cap ? raw->arena_cap * 2 : 1 << 16;
        raw->arena = yf_realloc(raw->arena, raw->arena_cap);
    }
    uint32_t len32 = (uint32_t)len;
    memcpy(raw->arena + raw->arena_len, &len32, 4);
    memcpy(raw->arena + raw->arena_len + 4, text, len);
    raw->arena[raw->arena_len + 4 + len] = 0;
    raw->pieces[raw->n++] = (tk_piece){(uint32_t)raw->arena_len + 4, len32, score, (uint8_t)type, 0};
    raw->arena_len += len + 5;
    return 0;
}

static int parse_trainer(pb_reader *r, tk_raw *raw) {
    while (r->p < r->end) {
        uint32_t f = 0;
        int w = 0;
        uint64_t v;
        if (pb_key(r, &f, &w)) return -1;
        if (f == 3 || f == 24 || f == 35) {
            if (pb_expect(r, w, 0, f == 3 ? "model_type" : f == 24 ? "treat_whitespace_as_suffix" : "byte_fallback") ||
                pb_varint(r, &v))
                return -1;
            if (f == 3) raw->model_type = (int64_t)v;
            else if (f == 24) raw->ws_suffix = v != 0;
            else raw->byte_fallback = v != 0;
        } else if (f == 44) {
            if (pb_expect(r, w, 2, "unk_surface") || pb_bytes(r, &raw->unk_surface, &raw->unk_surface_len)) return -1;
            raw->has_unk_surface = true;
        } else if (pb_skip(r, w))
            return -1;
    }
    return 0;
}

static int parse_normalizer(pb_reader *r, tk_raw *raw, bool denorm) {
    while (r->p < r->end) {
        uint32_t f = 0;
        int w = 0;
        uint64_t v;
        const uint8_t *d;
        size_t n;
        if (pb_key(r, &f, &w)) return -1;
        if (f == 2) {
            if (pb_expect(r, w, 2, "precompiled_charsmap") || pb_bytes(r, &d, &n)) return -1;
            if (denorm) raw->denorm_charsmap_len = n;
            else raw->charsmap_len = n;
        } else if (!denorm && (f == 3 || f == 4 || f == 5)) {
            if (pb_expect(r, w, 0, "normalizer flag") || pb_varint(r, &v)) return -1;
            if (f == 3) raw->add_dummy_prefix = v != 0;
            else if (f == 4) raw->remove_extra_ws = v != 0;
            else raw->escape_ws = v != 0;
        } else if (pb_skip(r, w))
            return -1;
    }
    return 0;
}

/* Parses the ModelProto: 1 pieces, 2 trainer_spec, 3 normalizer_spec,
 * 5 denormalizer_spec; other fields are skipped. */
static int parse_model(const char *path, const uint8_t *buf, size_t len, tk_raw *raw) {
    pb_reader r = {buf, buf + len, buf, path};
    while (r.p < r.end) {
        uint32_t f = 0;
        int w = 0;
        if (pb_key(&r, &f, &w)) return -1;
        if (f == 1 || f == 2 || f == 3 || f == 5) {
            if (pb_expect(&r, w, 2, f == 1 ? "pieces" : f == 2 ? "trainer_spec" : "normalizer_spec")) return -1;
            const uint8_t *d;
            size_t n;
            if (pb_bytes(&r, &d, &n)) return -1;
            pb_reader sub = {d, d + n, buf, path};
            if (f == 2) raw->has_trainer = true;
            if (f == 3) raw->has_normalizer = true;
            int rc = f == 1 ? parse_piece(&sub, raw)
                     : f == 2 ? parse_trainer(&sub, raw)
                              : parse_normalizer(&sub, raw, f == 5);
            if (rc) return -1;
        } else if (pb_skip(&r, w))
            return -1;
    }
    return 0;
}

static int byte_piece_value(const char *s, size_t n) {
    static const char hex[] = "0123456789ABCDEF";
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    const char *hi = memchr(hex, s[3], 16), *lo = memchr(hex, s[4], 16);
    if (!hi || !lo || !s[3] || !s[4]) return -1;
    return (int)((hi - hex) * 16 + (lo - hex));
}

/* Byte order of two pieces' texts; a prefix sorts before its extensions. */
static int cmp_piece_text(const void *a, const void *b, void *tp) {
    const yf_tokenizer *t = tp;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    uint32_t lx = t->pieces[x].len, ly = t->pieces[y].len;
    int c = memcmp(piece_text(t, x), piece_text(t, y), lx < ly ? lx : ly);
    return c ? c : (lx > ly) - (lx < ly);
}

static int build(yf_tokenizer *t, const char *path, tk_raw *raw) {
    if (raw->n == 0) return yf_errorf("%s: not a SentencePiece model (no pieces found)", path);
    if (raw->n > (1u << 26)) return yf_errorf("%s: %zu pieces is more than any SentencePiece model holds", path, raw->n);
    /* real models always hold both; without them a truncated file could load
     * as a valid model with default (wrong) settings */
    if (!raw->has_trainer || !raw->has_normalizer)
        return yf_errorf("%s: no %s in the model: the file is truncated or not a SentencePiece model", path,
                         raw->has_trainer ? "normalizer_spec" : "trainer_spec");
    if (raw->model_type != 2)
        return yf_errorf("%s: SentencePiece model type %lld is not BPE (2): only BPE models are supported", path,
                         (long long)raw->model_type);
    if (raw->charsmap_len || raw->denorm_charsmap_len)
        return yf_errorf("%s: the model has precompiled normalisation rules; only identity normalisation is supported",
                         path);
    if (raw->ws_suffix) return yf_errorf("%s: treat_whitespace_as_suffix models are not supported", path);

    t->pieces = raw->pieces;
    t->n_pieces = (int32_t)raw->n;
    t->arena = raw->arena;
    raw->pieces = NULL;
    raw->arena = NULL;
    t->byte_fallback = raw->byte_fallback;
    t->add_dummy_prefix = raw->add_dummy_prefix;
    t->remove_extra_ws = raw->remove_extra_ws;
    t->escape_ws = raw->escape_ws;
    const char *surf = raw->has_unk_surface ? (const char *)raw->unk_surface : " \xE2\x81\x87 ";
    t->unk_surface_len = raw->has_unk_surface ? raw->unk_surface_len : strlen(surf);
    t->unk_surface = yf_malloc(t->unk_surface_len + 1);
    memcpy(t->unk_surface, surf, t->unk_surface_len);
    t->unk_surface[t->unk_surface_len] = 0;

    size_t nslots = 1024;
    while (nslots < 2 * raw->n) nslots *= 2;
    t->slots = yf_malloc(nslots * sizeof *t->slots);
    for (size_t i = 0; i < nslots; i++) t->slots[i] = (tk_slot){0, 0, -1, -1};
    t->mask = nslots - 1;
    t->unk_id = -1;
    for (int i = 0; i < 256; i++) t->byte_id[i] = -1;
    t->user = yf_malloc(sizeof *t->user * raw->n);
    for (int32_t id = 0; id < t->n_pieces; id++) {
        const tk_piece *p = &t->pieces[id];
        const char *s = piece_text(t, id);
        bool normal = p->type == PT_NORMAL || p->type == PT_USER || p->type == PT_UNUSED;
        tk_slot *sl = find_slot(t, s, p->len);
        int32_t *dst = normal ? &sl->normal : &sl->reserved;
        if (*dst >= 0)
            return yf_errorf("%s: piece '%s' is defined twice (ids %d and %d): the model is corrupt", path, s, *dst,
                             id);
        sl->tag = (uint32_t)(hash_bytes(s, p->len) >> 32);
        sl->off = p->off;
        *dst = id;
        if (p->type == PT_UNKNOWN) {
            if (t->unk_id >= 0) return yf_errorf("%s: more than one unknown piece (ids %d and %d)", path, t->unk_id, id);
            t->unk_id = id;
        } else if (p->type == PT_BYTE) {
            int b = byte_piece_value(s, p->len);
            if (b < 0) return yf_errorf("%s: byte piece %d is '%s', not <0xNN>", path, id, s);
            t->byte_id[b] = id;
            t->pieces[id].byteval = (uint8_t)b;
        } else if (p->type == PT_USER) {
            t->user[t->n_user++] = id;
        } else if (p->type == PT_UNUSED) {
            t->n_unused++;
        }
    }
    if (t->unk_id < 0) return yf_errorf("%s: the model has no unknown piece (<unk>): it is corrupt", path);
    if (t->byte_fallback)
        for (int b = 0; b < 256; b++)
            if (t->byte_id[b] < 0) return yf_errorf("%s: byte_fallback is on but byte piece <0x%02X> is missing", path, b);
    /* sorted once (O(n log n)); user_match narrows the range byte by byte */
    qsort_r(t->user, (size_t)t->n_user, sizeof *t->user, cmp_piece_text, t);

    /* Special tokens: their model id when the model has the piece, else the
     * next new id, as the tokenizer's add_special_tokens assigns them. */
    t->n_ids = t->n_pieces;
    for (int k = 0; k < TK_N_SPECIAL; k++) {
        t->special_len[k] = strlen(k_special[k]);
        YF_CHECK(k_special[k][0] == '<'); /* the splitter looks for '<' */
        int32_t id = lookup_any(t, k_special[k], t->special_len[k]);
        t->special_id[k] = id >= 0 ? id : t->n_ids++;
    }
    t->is_special = yf_calloc((size_t)t->n_ids, 1);
    for (int k = 0; k < TK_N_SPECIAL; k++) t->is_special[t->special_id[k]] = 1;
    return 0;
}

int yf_tokenizer_load(const char *path, yf_tokenizer **out) {
    *out = NULL;
    char *buf = NULL;
    size_t len = 0;
    if (yf_read_file_max(path, YF_MAX_TOKENIZER_BYTES, &buf, &len)) return -1;
    tk_raw raw = {0};
    raw.model_type = 1; /* proto default: UNIGRAM */
    raw.add_dummy_prefix = raw.remove_extra_ws = raw.escape_ws = true;
    yf_tokenizer *t = yf_calloc(1, sizeof *t);
    int rc = -1;
    if (len > UINT32_MAX / 2) yf_errorf("%s: %zu bytes is too large for a tokenizer model", path, len);
    else if (parse_model(path, (const uint8_t *)buf, len, &raw) == 0) rc = build(t, path, &raw);
    free(raw.pieces);
    free(raw.arena);
    free(buf);
    if (rc) {
        yf_tokenizer_free(t);
        return -1;
    }
    *out = t;
    return 0;
}

void yf_tokenizer_free(yf_tokenizer *t) {
    if (!t) return;
    free(t->arena);
    free(t->pieces);
    free(t->slots);
    free(t->user);
    free(t->unk_surface);
    free(t->is_special);
    free(t);
}

/* ---- encoding ----------------------------------------------------------- */

typedef struct {
    int32_t off, len, prev, next;
    bool freeze; /* a user-defined piece: never merged */
} tk_sym;

typedef struct {
    float score;
    int32_t left, right, size;
} tk_pair;

typedef struct {
    int32_t off, len, left_len;
} tk_rev;

typedef struct {
    char *norm;
    size_t norm_len, norm_cap;
    tk_sym *sym;
    size_t sym_cap;
    tk_pair *heap;
    size_t nheap, heap_cap;
    tk_rev *rev;
    size_t nrev, rev_cap;
    int32_t *rslot;      /* hash set over rev by text: index + 1, 0 empty; built once a piece */
    size_t rslot_cap;
    bool rbuilt;
    int64_t *ids;
    size_t nids, ids_cap;
} tk_work;

static void work_free(tk_work *w) {
    free(w->norm);
    free(w->sym);
    free(w->heap);
    free(w->rev);
    free(w->rslot);
    free(w->ids);
}

static inline void push_id(tk_work *w, int64_t id) {
    if (w->nids == w->ids_cap) {
        w->ids_cap = w->ids_cap ? w->ids_cap * 2 : 64;
        w->ids = yf_realloc(w->ids, w->ids_cap * sizeof *w->ids);
    }
    w->ids[w->nids++] = id;
}

/* Length of the longest user-defined piece at s, 0 if none. The pieces are
 * sorted by text: after d bytes, those that begin with s[0, d) are a range
 * [lo, hi) whose first may be exactly s[0, d) (a match), and the next byte
 * narrows it by two binary searches: O(match length x log n_user). */
static size_t user_match(const yf_tokenizer *t, const char *s, size_t n) {
    size_t best = 0, d = 0;
    int lo = 0, hi = t->n_user;
    while (lo < hi) {
        if (t->pieces[t->user[lo]].len == d) {
            best = d;
            if (++lo == hi) break;
        }
        if (d == n) break;
        /* every piece in [lo, hi) is longer than d now */
        uint8_t c = (uint8_t)s[d];
        int a = lo, b = hi;
        while (a < b) {
            int m = a + (b - a) / 2;
            if ((uint8_t)piece_text(t, t->user[m])[d] < c) a = m + 1;
            else b = m;
        }
        lo = a;
        b = hi;
        while (a < b) {
            int m = a + (b - a) / 2;
            if ((uint8_t)piece_text(t, t->user[m])[d] <= c) a = m + 1;
            else b = m;
        }
        hi = a;
        d++;
    }
    return best;
}

static inline void norm_put(tk_work *w, const char *s, size_t n) {
    memcpy(w->norm + w->norm_len, s, n);
    w->norm_len += n;
}

/* SentencePiece's Normalizer::Normalize with an empty rule set. */
static void normalize(const yf_tokenizer *t, const char *text, size_t len, tk_work *w) {
    size_t need = 3 * len + 4; /* every byte may become 3 (U+2581 or U+FFFD), plus the prefix */
    if (need > w->norm_cap) {
        w->norm_cap = need;
        free(w->norm);
        w->norm = yf_malloc(need);
    }
    w->norm_len = 0;
    size_t i = 0;
    if (t->remove_extra_ws)
        while (i < len && text[i] == ' ' && !user_match(t, text + i, len - i)) i++;
    if (i == len) return;
    const char *ws = t->escape_ws ? WS : " ";
    size_t wsn = t->escape_ws ? 3 : 1;
    if (t->add_dummy_prefix) norm_put(w, ws, wsn);
    bool prev_space = t->remove_extra_ws;
    while (i < len) {
        const char *s = text + i;
        size_t n = user_match(t, s, len - i), used;
        if (n) used = n;
        else if ((n = yf_utf8_len(s, len - i)) != 0) used = n;
        else s = "\xEF\xBF\xBD", n = 3, used = 1; /* malformed byte: U+FFFD, one byte consumed */
        if (prev_space)
            while (n && *s == ' ') s++, n--;
        if (n) {
            for (size_t k = 0; k < n; k++) {
                if (s[k] == ' ' && t->escape_ws) norm_put(w, WS, 3);
                else w->norm[w->norm_len++] = s[k];
            }
            prev_space = s[n - 1] == ' ';
        }
        if (!t->remove_extra_ws) prev_space = false;
        i += used;
    }
    if (t->remove_extra_ws)
        while (w->norm_len >= wsn && memcmp(w->norm + w->norm_len - wsn, ws, wsn) == 0) w->norm_len -= wsn;
}

static inline bool pair_before(const tk_pair *a, const tk_pair *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void heap_push(tk_work *w, tk_pair p) {
    if (w->nheap == w->heap_cap) {
        w->heap_cap = w->heap_cap ? w->heap_cap * 2 : 256;
        w->heap = yf_realloc(w->heap, w->heap_cap * sizeof *w->heap);
    }
    size_t i = w->nheap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!pair_before(&p, &w->heap[parent])) break;
        w->heap[i] = w->heap[parent];
        i = parent;
    }
    w->heap[i] = p;
}

static tk_pair heap_pop(tk_work *w) {
    tk_pair top = w->heap[0], last = w->heap[--w->nheap];
    size_t i = 0, n = w->nheap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && pair_before(&w->heap[c + 1], &w->heap[c])) c++;
        if (!pair_before(&w->heap[c], &last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n) w->heap[i] = last;
    return top;
}

static void maybe_add_pair(const yf_tokenizer *t, tk_work *w, int32_t left, int32_t right) {
    if (left < 0 || right < 0 || w->sym[left].freeze || w->sym[right].freeze) return;
    int32_t off = w->sym[left].off, len = w->sym[left].len + w->sym[right].len;
    int32_t id = lookup_normal(t, w->norm + off, (size_t)len);
    if (id < 0) return;
    heap_push(w, (tk_pair){t->pieces[id].score, left, right, len});
    if (t->pieces[id].type == PT_UNUSED) {
        /* remember how this unused piece was formed, to split it back later */
        if (w->nrev == w->rev_cap) {
            w->rev_cap = w->rev_cap ? w->rev_cap * 2 : 64;
            w->rev = yf_realloc(w->rev, w->rev_cap * sizeof *w->rev);
        }
        w->rev[w->nrev++] = (tk_rev){off, len, w->sym[left].len};
    }
}

/* Emits the id(s) of the final symbol norm[off, off+len). */
/* Indexes the merge records by their text, a later record replacing an
 * earlier one of the same text (SentencePiece's map keeps the last): a
 * lookup is then O(1) instead of a scan of every record, which made a text
 * with many UNUSED merges quadratic. */
static void build_rev_index(tk_work *w) {
    size_t cap = 64;
    while (cap < 2 * w->nrev + 2) cap *= 2;
    if (cap > w->rslot_cap) {
        free(w->rslot);
        w->rslot = yf_malloc(cap * sizeof *w->rslot);
        w->rslot_cap = cap;
    }
    memset(w->rslot, 0, w->rslot_cap * sizeof *w->rslot);
    size_t mask = w->rslot_cap - 1;
    for (size_t k = 0; k < w->nrev; k++) {
        const tk_rev *r = &w->rev[k];
        for (size_t i = hash_bytes(w->norm + r->off, (size_t)r->len) & mask;; i = (i + 1) & mask) {
            int32_t e = w->rslot[i];
            if (e == 0 || (w->rev[e - 1].len == r->len && memcmp(w->norm + w->rev[e - 1].off, w->norm + r->off,
                                                                  (size_t)r->len) == 0)) {
                w->rslot[i] = (int32_t)k + 1;
                break;
            }
        }
    }
    w->rbuilt = true;
}

static const tk_rev *find_rev(tk_work *w, int32_t off, int32_t len) {
    if (!w->rbuilt) build_rev_index(w);
    size_t mask = w->rslot_cap - 1;
    for (size_t i = hash_bytes(w->norm + off, (size_t)len) & mask;; i = (i + 1) & mask) {
        int32_t e = w->rslot[i];
        if (e == 0) return NULL;
        const tk_rev *r = &w->rev[e - 1];
        if (r->len == len && memcmp(w->norm + r->off, w->norm + off, (size_t)len) == 0) return r;
    }
}

static void emit_piece(const yf_tokenizer *t, tk_work *w, int32_t off, int32_t len, bool *prev_unk) {
    int32_t id = lookup_any(t, w->norm + off, (size_t)len);
    if (id >= 0 && t->pieces[id].type == PT_UNUSED) {
        /* the latest record for this text wins, as SentencePiece's map does */
        const tk_rev *r = find_rev(w, off, len);
        if (r) {
            int32_t ll = r->left_len;
            emit_piece(t, w, off, ll, prev_unk);
            emit_piece(t, w, off + ll, len - ll, prev_unk);
            return;
        }
    }
    if (id < 0) id = t->unk_id;
    if (id == t->unk_id) {
        if (t->byte_fallback) {
            for (int32_t k = 0; k < len; k++) push_id(w, t->byte_id[(uint8_t)w->norm[off + k]]);
        } else if (!*prev_unk) {
            push_id(w, id); /* a run of unknown pieces becomes one <unk> */
        }
        *prev_unk = true;
        return;
    }
    push_id(w, id);
    *prev_unk = false;
}

/* One SentencePiece encode of text, appending ids to w->ids. */
static void encode_piece(const yf_tokenizer *t, const char *text, size_t len, tk_work *w) {
    normalize(t, text, len, w);
    if (w->norm_len == 0) return;
    if (w->norm_len > w->sym_cap) {
        w->sym_cap = w->norm_len;
        free(w->sym);
        w->sym = yf_malloc(w->sym_cap * sizeof *w->sym);
    }
    int32_t nsym = 0;
    for (size_t i = 0; i < w->norm_len;) {
        size_t n = user_match(t, w->norm + i, w->norm_len - i);
        bool freeze = n > 0;
        if (!n) n = yf_utf8_len(w->norm + i, w->norm_len - i);
        if (!n) n = 1; /* cannot happen: the normalised text is valid UTF-8 */
        w->sym[nsym] = (tk_sym){(int32_t)i, (int32_t)n, nsym - 1, -1, freeze};
        if (nsym > 0) w->sym[nsym - 1].next = nsym;
        nsym++;
        i += n;
    }
    w->nheap = 0;
    w->nrev = 0;
    w->rbuilt = false;
    for (int32_t i = 0; i + 1 < nsym; i++) maybe_add_pair(t, w, i, i + 1);
    while (w->nheap) {
        tk_pair top = heap_pop(w);
        tk_sym *l = &w->sym[top.left], *r = &w->sym[top.right];
        /* stale: one side was merged away or has grown since the pair was queued */
        if (l->len == 0 || r->len == 0 || l->len + r->len != top.size) continue;
        l->len += r->len;
        l->next = r->next;
        if (r->next >= 0) w->sym[r->next].prev = top.left;
        r->len = 0;
        maybe_add_pair(t, w, l->prev, top.left);
        maybe_add_pair(t, w, top.left, l->next);
    }
    bool prev_unk = false;
    for (int32_t i = 0; i >= 0; i = w->sym[i].next) emit_piece(t, w, w->sym[i].off, w->sym[i].len, &prev_unk);
}

static int check_len(size_t len) {
    if (len > (size_t)INT32_MAX / 4)
        return yf_errorf("tokenizer: text of %zu bytes is too long to encode in one call (split it)", len);
    return 0;
}

int yf_tokenizer_encode_sp(const yf_tokenizer *t, const char *text, size_t len, int64_t **ids, size_t *n) {
    *ids = NULL;
    *n = 0;
    if (check_len(len)) return -1;
    tk_work w = {0};
    encode_piece(t, text, len, &w);
    *ids = w.ids;
    *n = w.nids;
    w.ids = NULL;
    work_free(&w);
    return 0;
}

int yf_tokenizer_encode(const yf_tokenizer *t, const char *text, size_t len, int64_t **ids, size_t *n) {
    *ids = NULL;
    *n = 0;
    if (check_len(len)) return -1;
    tk_work w = {0};
    size_t seg = 0, pos = 0;
    while (pos < len) {
        const char *lt = memchr(text + pos, '<', len - pos);
        if (!lt) break;
        size_t at = (size_t)(lt - text);
        int best = -1;
        for (int k = 0; k < TK_N_SPECIAL; k++)
            if (t->special_len[k] <= len - at && memcmp(lt, k_special[k], t->special_len[k]) == 0 &&
                (best < 0 || t->special_len[k] > t->special_len[best]))
                best = k;
        if (best < 0) {
            pos = at + 1;
            continue;
        }
        encode_piece(t, text + seg, at - seg, &w);
        push_id(&w, t->special_id[best]);
        seg = pos = at + t->special_len[best];
    }
    encode_piece(t, text + seg, len - seg, &w);
    *ids = w.ids;
    *n = w.nids;
    w.ids = NULL;
    work_free(&w);
    return 0;
}

/* ---- decoding ----------------------------------------------------------- */

typedef struct {
    char *s;
    size_t n, cap;
} tk_buf;

static void buf_put(tk_buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        while (b->n + n + 1 > b->cap) b->cap = b->cap ? b->cap * 2 : 256;
        b->s = yf_realloc(b->s, b->cap);
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

/* SentencePiece's Decode of ids (all < n_pieces): control pieces vanish,
 * <unk> becomes its surface " ⁇ ", runs of byte pieces are reassembled into
 * UTF-8 (malformed bytes -> U+FFFD; with raw, the bytes as they are), U+2581
 * -> ' ', and the first text piece loses its leading U+2581 (the dummy
 * prefix). */
static void sp_decode(const yf_tokenizer *t, const int64_t *ids, size_t n, bool raw, tk_buf *out) {
    bool bos_ws = true;
    for (size_t i = 0; i < n; i++) {
        const tk_piece *p = &t->pieces[ids[i]];
        const char *s = piece_text(t, (int32_t)ids[i]);
        if (p->type == PT_CONTROL) continue;
        if (p->type == PT_BYTE) {
            /* the run of byte pieces ids[i, j), decoded a character at a time */
            size_t j = i;
            while (j < n && t->pieces[ids[j]].type == PT_BYTE) j++;
            while (i < j) {
                char c[4];
                size_t m = 0;
                for (; m < 4 && i + m < j; m++) c[m] = (char)t->pieces[ids[i + m]].byteval;
                size_t cl = raw ? 1 : yf_utf8_len(c, m);
                if (cl) buf_put(out, c, cl), i += cl;
                else buf_put(out, "\xEF\xBF\xBD", 3), i++;
            }
            i--;
            bos_ws = false;
            continue;
        }
        if ((int32_t)ids[i] == t->unk_id) {
            buf_put(out, t->unk_surface, t->unk_surface_len);
            bos_ws = false;
            continue;
        }
        size_t len = p->len, k = 0;
        if (bos_ws && len >= 3 && memcmp(s, WS, 3) == 0) k = 3;
        bos_ws = false;
        while (k < len) {
            size_t from = k;
            while (k < len && !(k + 3 <= len && memcmp(s + k, WS, 3) == 0)) k++;
            buf_put(out, s + from, k - from);
            if (k < len) buf_put(out, " ", 1), k += 3;
        }
    }
}

/* yf_tokenizer_decode_n; raw (with skip_special): byte pieces as they are */
static int decode_ids(const yf_tokenizer *t, const int64_t *ids, size_t n, bool skip_special, bool raw, char **text,
                      size_t *len) {
    *text = NULL;
    if (len) *len = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= t->n_ids)
            return yf_errorf("tokenizer: id %lld at position %zu is out of range (the tokenizer has %lld ids)",
                             (long long)ids[i], i, (long long)t->n_ids);
    tk_buf out = {0};
    buf_put(&out, "", 0);
    if (skip_special) {
        int64_t *keep = yf_malloc((n ? n : 1) * sizeof *keep);
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (!t->is_special[ids[i]]) keep[m++] = ids[i];
        sp_decode(t, keep, m, raw, &out);
        free(keep);
    } else {
        size_t start = 0;
        for (size_t i = 0; i <= n; i++) {
            if (i < n && !t->is_special[ids[i]]) continue;
            if (i > start) sp_decode(t, ids + start, i - start, false, &out); /* ids may be NULL when n = 0 */
            if (i < n) {
                const char *s = yf_tokenizer_id_piece(t, ids[i]);
                buf_put(&out, s, strlen(s));
            }
            start = i + 1;
        }
    }
    *text = out.s;
    if (len) *len = out.n;
    return 0;
}

int yf_tokenizer_decode_n(const yf_tokenizer *t, const int64_t *ids, size_t n, bool skip_special, char **text,
                          size_t *len) {
    return decode_ids(t, ids, n, skip_special, false, text, len);
}

int yf_tokenizer_decode_bytes(const yf_tokenizer *t, const int64_t *ids, size_t n, char **text, size_t *len) {
    return decode_ids(t, ids, n, true, true, text, len);
}

int yf_tokenizer_decode(const yf_tokenizer *t, const int64_t *ids, size_t n, bool skip_special, char **text) {
    return yf_tokenizer_decode_n(t, ids, n, skip_special, text, NULL);
}

/* ---- lookups ------------------------------------------------------------ */

int64_t yf_tokenizer_piece_id(const yf_tokenizer *t, const char *piece) {
    for (int k = 0; k < TK_N_SPECIAL; k++)
        if (strcmp(piece, k_special[k]) == 0) return t->special_id[k];
    return lookup_any(t, piece, strlen(piece));
}

const char *yf_tokenizer_id_piece(const yf_tokenizer *t, int64_t id) {
    if (id < 0 || id >= t->n_ids) return NULL;
    if (id < t->n_pieces) return piece_text(t, (int32_t)id);
    for (int k = 0; k < TK_N_SPECIAL; k++)
        if (t->special_id[k] == id) return k_special[k];
    return NULL;
}

bool yf_tokenizer_is_special(const yf_tokenizer *t, int64_t id) {
    return id >= 0 && id < t->n_ids && t->is_special[id];
}

size_t yf_tokenizer_id_bytes(const yf_tokenizer *t, int64_t id, char *buf, size_t cap, bool *dummy) {
    *dummy = false;
    if (id < 0 || id >= t->n_pieces || t->is_special[id]) return 0;
    const tk_piece *p = &t->pieces[id];
    if (p->type == PT_CONTROL) return 0;
    if (p->type == PT_BYTE) {
        if (cap >= 1) buf[0] = (char)p->byteval;
        return 1;
    }
    const char *s = piece_text(t, (int32_t)id);
    *dummy = p->len >= 3 && memcmp(s, WS, 3) == 0;
    size_t n = 0;
    for (size_t k = 0; k < p->len;) {
        bool ws = k + 3 <= p->len && memcmp(s + k, WS, 3) == 0;
        if (n < cap) buf[n] = ws ? ' ' : s[k];
        n++;
        k += ws ? 3 : 1;
    }
    return n;
}

bool yf_tokenizer_is_byte_piece(const yf_tokenizer *t, int64_t id) {
    return id >= 0 && id < t->n_pieces && t->pieces[id].type == PT_BYTE;
}

int64_t yf_tokenizer_n_ids(const yf_tokenizer *t) { return t->n_ids; }
int64_t yf_tokenizer_n_pieces(const yf_tokenizer *t) { return t->n_pieces; }
