/* torch_pickle: reads the zip archive torch.save writes (torch >= 1.6):
 *   ARCHIVE/data.pkl      the pickled state dict
 *   ARCHIVE/data/KEY      one entry per storage, raw little-endian elements
 *   ARCHIVE/version, ARCHIVE/byteorder (newer torch), ...
 * data.pkl is run on a small pickle machine that knows only what a state dict
 * needs: dicts (OrderedDict), tuples, ints, strings, persistent ids naming
 * storages, and torch._utils._rebuild_tensor_v2 / _rebuild_parameter.
 * Tensors point into the mmapped archive: nothing is read until used. */
#include "formats/torch_pickle.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/safetensors.h" /* yf_table_check_unique */
#include "formats/zip.h"

/* ---- values ---------------------------------------------------------------- */

typedef enum {
    PV_NONE, PV_BOOL, PV_INT, PV_FLOAT, PV_STR, PV_BYTES, PV_TUPLE, PV_LIST, PV_DICT,
    PV_GLOBAL, PV_STORAGE, PV_TENSOR, PV_MARK
} pv_kind;

typedef struct pv pv;
typedef struct pv_tensor {
    pv *storage;
    int64_t offset;
    int ndim;
    int64_t shape[YF_MAX_DIMS], stride[YF_MAX_DIMS];
} pv_tensor;
struct pv {
    pv_kind kind;
    bool seen;        /* DICT: already walked (a DAG or a cycle is refused) */
    int n, cap;
    int64_t i;        /* INT, BOOL; STORAGE: numel */
    double f;
    char *s;          /* STR/BYTES (NUL-terminated copy); GLOBAL: "module.name"; STORAGE: key */
    size_t slen;
    pv **items;       /* TUPLE/LIST: items; DICT: key, value, key, value ... */
    yf_dtype dtype;   /* STORAGE */
    pv_tensor *t;     /* TENSOR */
};

/* A state dict needs about one value per 4 bytes of pickle (a tensor: ~17
 * values in ~70 bytes); the machine allows one per 2 bytes, plus slack. */
#define PK_NODES_PER_BYTE_DIV 2
#define PK_NODES_SLACK 4096
/* data.pkl of a real checkpoint is ~100 bytes a tensor: 256 MiB is millions of tensors */
#define PK_MAX_PICKLE_BYTES (256 * YF_MIB)
/* module and attribute names of a GLOBAL, and storage keys, are short */
#define PK_MAX_NAME 256

/* Every value lives until the load ends: the machine allocates from an arena
 * of nodes freed together, so shared (memoised) values need no refcounts.
 * Every allocation is charged to a budget of bytes (from the archive's size,
 * see yf_torch_load) checked once an opcode: a pickle can make the machine
 * allocate only in proportion to the file. */
typedef struct vm {
    const char *where; /* "FILE: ARCHIVE/data.pkl" for messages */
    pv **all;
    int64_t nall, capall, max_nodes;
    pv **stack;
    int64_t sp, capstack;
    pv **memo;
    int64_t nmemo, capmemo;
    uint64_t used, budget; /* bytes allocated for values, names, stacks */
    pv mark; /* the MARK sentinel, pushed by pointer */
} vm;

static inline void charge(vm *m, uint64_t bytes) { m->used += bytes; }

static pv *pv_new(vm *m, pv_kind k) {
    pv *v = yf_calloc(1, sizeof *v);
    v->kind = k;
    if (m->nall == m->capall) {
        m->capall = m->capall ? m->capall * 2 : 256;
        m->all = yf_realloc(m->all, (size_t)m->capall * sizeof *m->all);
        charge(m, (uint64_t)m->capall / 2 * sizeof *m->all);
    }
    m->all[m->nall++] = v;
    charge(m, sizeof *v + 16);
    return v;
}

static void pv_append(vm *m, pv *c, pv *x) {
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 4;
        c->items = yf_realloc(c->items, (size_t)c->cap * sizeof *c->items);
        charge(m, (uint64_t)c->cap / 2 * sizeof *c->items + 16);
    }
    c->items[c->n++] = x;
}

static void vm_free(vm *m) {
    for (int64_t i = 0; i < m->nall; i++) {
        free(m->all[i]->s);
        free(m->all[i]->items);
        free(m->all[i]->t);
        free(m->all[i]);
    }
    free(m->all);
    free(m->stack);
    free(m->memo);
}

static void push(vm *m, pv *v) {
    if (m->sp == m->capstack) {
        m->capstack = m->capstack ? m->capstack * 2 : 64;
        m->stack = yf_realloc(m->stack, (size_t)m->capstack * sizeof *m->stack);
        charge(m, (uint64_t)m->capstack / 2 * sizeof *m->stack);
    }
    m->stack[m->sp++] = v;
}

/* ---- the machine ------------------------------------------------------------ */

static const char *kind_name(pv_kind k) {
    static const char *n[] = {"None", "bool", "int", "float", "str", "bytes", "tuple", "list", "dict",
                              "global", "storage", "tensor", "mark"};
    return n[k];
}

static const struct { const char *name; yf_dtype dt; } g_storages[] = {
    {"torch.FloatStorage", YF_F32}, {"torch.BFloat16Storage", YF_BF16}, {"torch.HalfStorage", YF_F16},
    {"torch.LongStorage", YF_I64},  {"torch.IntStorage", YF_I32},       {"torch.ByteStorage", YF_U8},
};

/* ('storage', storage_type, key, location, numel) -> a STORAGE value */
static pv *persistent_load(vm *m, pv *pid, size_t pos) {
    if (pid->kind != PV_TUPLE || pid->n < 5 || pid->items[0]->kind != PV_STR || strcmp(pid->items[0]->s, "storage"))
        return yf_errorf("%s: persistent id at offset %zu is not a ('storage', type, key, location, numel) tuple",
                         m->where, pos), NULL;
    pv *type = pid->items[1], *key = pid->items[2], *numel = pid->items[4];
    if (type->kind != PV_GLOBAL || key->kind != PV_STR || numel->kind != PV_INT || numel->i < 0 ||
        key->slen > PK_MAX_NAME)
        return yf_errorf("%s: malformed storage persistent id at offset %zu", m->where, pos), NULL;
    pv *st = pv_new(m, PV_STORAGE);
    size_t k = 0, nst = sizeof g_storages / sizeof *g_storages;
    while (k < nst && strcmp(g_storages[k].name, type->s)) k++;
    if (k == nst)
        return yf_errorf("%s: storage type %s is not supported (float, bfloat16, half, long, int, byte are)", m->where,
                         type->s), NULL;
    st->dtype = g_storages[k].dt;
    st->s = yf_strdup(key->s);
    charge(m, key->slen + 1);
    st->i = numel->i;
    return st;
}

static bool int_tuple(const pv *t, int64_t *out, int *n) {
    if (t->kind != PV_TUPLE || t->n > YF_MAX_DIMS) return false;
    for (int i = 0; i < t->n; i++) {
        if (t->items[i]->kind != PV_INT) return false;
        out[i] = t->items[i]->i;
    }
    *n = t->n;
    return true;
}

/* callable(*args) for the few callables a state dict uses */
static pv *reduce(vm *m, pv *fn, pv *args, size_t pos) {
    if (fn->kind != PV_GLOBAL || args->kind != PV_TUPLE)
        return yf_errorf("%s: REDUCE at offset %zu applies a %s to a %s (expected a global and a tuple)", m->where, pos,
                         kind_name(fn->kind), kind_name(args->kind)), NULL;
    if (!strcmp(fn->s, "collections.OrderedDict")) {
        if (args->n != 0) return yf_errorf("%s: OrderedDict with arguments at offset %zu", m->where, pos), NULL;
        return pv_new(m, PV_DICT);
    }
    if (!strcmp(fn->s, "torch._utils._rebuild_tensor_v2")) {
        /* (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata]) */
        if (args->n < 4 || args->items[0]->kind != PV_STORAGE || args->items[1]->kind != PV_INT)
            return yf_errorf("%s: _rebuild_tensor_v2 at offset %zu has unexpected arguments", m->where, pos), NULL;
        pv *tv = pv_new(m, PV_TENSOR);
        pv_tensor *t = tv->t = yf_calloc(1, sizeof *t);
        charge(m, sizeof *t + 16);
        int nstride = 0;
        t->storage = args->items[0];
        t->offset = args->items[1]->i;
        if (!int_tuple(args->items[2], t->shape, &t->ndim) || !int_tuple(args->items[3], t->stride, &nstride) ||
            nstride != t->ndim)
            return yf_errorf("%s: _rebuild_tensor_v2 at offset %zu: size/stride are not matching int tuples of at "
                             "most %d dims",
                             m->where, pos, YF_MAX_DIMS), NULL;
        return tv;
    }
    if (!strcmp(fn->s, "torch._utils._rebuild_parameter")) {
        if (args->n < 1 || args->items[0]->kind != PV_TENSOR)
            return yf_errorf("%s: _rebuild_parameter at offset %zu has unexpected arguments", m->where, pos), NULL;
        return args->items[0];
    }
    return yf_errorf("%s: unsupported callable %s at offset %zu (not a plain state dict of tensors)", m->where, fn->s,
                     pos), NULL;
}

/* Runs the pickle in p[0, n); returns the value STOP leaves, or NULL. */
static pv *run(vm *m, const uint8_t *p, size_t n) {
    size_t i = 0;
#define NEED(k)                                                                                         \
    do {                                                                                                \
        if (n - i < (size_t)(k))                                                                        \
            return yf_errorf("%s: truncated pickle: opcode 0x%02x at offset %zu needs %zu more bytes", \
                             m->where, op, at, (size_t)(k)), NULL;                                      \
    } while (0)
#define POP(v)                                                                                              \
    do {                                                                                                    \
        if (m->sp == 0 || m->stack[m->sp - 1] == &m->mark)                                                   \
            return yf_errorf("%s: pickle stack underflow at offset %zu (opcode 0x%02x)", m->where, at, op), NULL; \
        (v) = m->stack[--m->sp];                                                                            \
    } while (0)
    while (i < n) {
        size_t at = i;
        uint8_t op = p[i++];
        if (m->used > m->budget || m->nall > m->max_nodes)
            return yf_errorf("%s: unpacking the pickle needs more than %llu MiB or %lld values by offset %zu, more than "
                             "a state dict of this size does: not a plain state dict (or a hostile file)",
                             m->where, (unsigned long long)(m->budget >> 20), (long long)m->max_nodes, at), NULL;
        pv *a, *b, *c;
        switch (op) {
        case 0x80: /* PROTO */
            NEED(1);
            if (p[i] > 5) return yf_errorf("%s: pickle protocol %d is not supported", m->where, p[i]), NULL;
            i++;
            break;
        case 0x95: /* FRAME (protocol 4): an 8-byte length hint */
            NEED(8);
            i += 8;
            break;
        case '.': /* STOP */
            POP(a);
            return a;
        case '(': push(m, &m->mark); break;
        case '}': push(m, pv_new(m, PV_DICT)); break;
        case ')': push(m, pv_new(m, PV_TUPLE)); break;
        case ']': push(m, pv_new(m, PV_LIST)); break;
        case 'N': push(m, pv_new(m, PV_NONE)); break;
        case 0x88: /* NEWTRUE */
        case 0x89: /* NEWFALSE */
            a = pv_new(m, PV_BOOL);
            a->i = op == 0x88;
            push(m, a);
            break;
        case 'K': NEED(1); a = pv_new(m, PV_INT); a->i = p[i]; i += 1; push(m, a); break;
        case 'M': NEED(2); a = pv_new(m, PV_INT); a->i = p[i] | p[i + 1] << 8; i += 2; push(m, a); break;
        case 'J': {
            NEED(4);
            uint32_t u = (uint32_t)p[i] | (uint32_t)p[i + 1] << 8 | (uint32_t)p[i + 2] << 16 | (uint32_t)p[i + 3] << 24;
            a = pv_new(m, PV_INT);
            a->i = (int32_t)u;
            i += 4;
            push(m, a);
            break;
        }
        case 0x8a: { /* LONG1: n-byte little-endian two's complement */
            NEED(1);
            size_t len = p[i++];
            NEED(len);
            if (len > 8) return yf_errorf("%s: integer of %zu bytes at offset %zu is too large", m->where, len, at), NULL;
            uint64_t u = 0;
            for (size_t k = 0; k < len; k++) u |= (uint64_t)p[i + k] << (8 * k);
            if (len > 0 && len < 8 && (p[i + len - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * len);
            a = pv_new(m, PV_INT);
            a->i = (int64_t)u;
            i += len;
            push(m, a);
            break;
        }
        case 'G': { /* BINFLOAT: big-endian double */
            NEED(8);
            uint64_t u = 0;
            for (int k = 0; k < 8; k++) u = u << 8 | p[i + k];
            a = pv_new(m, PV_FLOAT);
            memcpy(&a->f, &u, 8);
            i += 8;
            push(m, a);
            break;
        }
        case 'X': case 0x8c: case 0x8d: case 'T': case 'U': case 'B': case 'C': case 0x8e: {
            /* strings and bytes: 4-, 1- or 8-byte length then the bytes */
            size_t lw = (op == 0x8c || op == 'U' || op == 'C') ? 1 : (op == 0x8d || op == 0x8e) ? 8 : 4;
            NEED(lw);
            uint64_t len = 0;
            for (size_t k = 0; k < lw; k++) len |= (uint64_t)p[i + k] << (8 * k);
            i += lw;
            if (len > n - i)
                return yf_errorf("%s: truncated pickle: string at offset %zu claims %llu bytes", m->where, at,
                                 (unsigned long long)len), NULL;
            a = pv_new(m, (op == 'B' || op == 'C' || op == 0x8e) ? PV_BYTES : PV_STR);
            a->s = yf_malloc((size_t)len + 1);
            charge(m, len + 1);
            memcpy(a->s, p + i, (size_t)len);
            a->s[len] = 0;
            a->slen = (size_t)len;
            i += (size_t)len;
            push(m, a);
            break;
        }
        case 'c': { /* GLOBAL: "module\nname\n" */
            const uint8_t *nl1 = memchr(p + i, '\n', n - i);
            const uint8_t *nl2 = nl1 ? memchr(nl1 + 1, '\n', (size_t)(p + n - nl1 - 1)) : NULL;
            if (!nl2) return yf_errorf("%s: truncated GLOBAL at offset %zu", m->where, at), NULL;
            size_t ml = (size_t)(nl1 - (p + i)), nl = (size_t)(nl2 - nl1 - 1);
            if (ml > PK_MAX_NAME || nl > PK_MAX_NAME)
                return yf_errorf("%s: GLOBAL at offset %zu names a %zu-byte module or attribute: not a state dict",
                                 m->where, at, ml > nl ? ml : nl), NULL;
            a = pv_new(m, PV_GLOBAL);
            a->s = yf_malloc(ml + nl + 2);
            memcpy(a->s, p + i, ml);
            a->s[ml] = '.';
            memcpy(a->s + ml + 1, nl1 + 1, nl);
            a->s[ml + 1 + nl] = 0;
            i = (size_t)(nl2 + 1 - p);
            push(m, a);
            break;
        }
        case 0x93: /* STACK_GLOBAL */
            POP(b);
            POP(a);
            if (a->kind != PV_STR || b->kind != PV_STR || a->slen > PK_MAX_NAME || b->slen > PK_MAX_NAME)
                return yf_errorf("%s: STACK_GLOBAL at offset %zu needs two strings (of at most %d bytes)", m->where, at,
                                 PK_MAX_NAME), NULL;
            c = pv_new(m, PV_GLOBAL);
            c->s = yf_malloc(a->slen + b->slen + 2);
            snprintf(c->s, a->slen + b->slen + 2, "%s.%s", a->s, b->s);
            push(m, c);
            break;
        case 'q': case 'r': case 0x94: { /* BINPUT, LONG_BINPUT, MEMOIZE */
            int64_t idx;
            if (op == 'q') { NEED(1); idx = p[i]; i += 1; }
            else if (op == 'r') { NEED(4); idx = (int64_t)((uint32_t)p[i] | (uint32_t)p[i + 1] << 8 | (uint32_t)p[i + 2] << 16 | (uint32_t)p[i + 3] << 24); i += 4; }
            else idx = m->nmemo;
            if (m->sp == 0 || m->stack[m->sp - 1] == &m->mark)
                return yf_errorf("%s: memo store with an empty stack at offset %zu", m->where, at), NULL;
            /* memo indices are dense in practice (one per value at most); a wild one means corruption */
            if (idx > m->nmemo + 1024 || idx > m->nall + 1024)
                return yf_errorf("%s: memo index %lld at offset %zu is out of range", m->where, (long long)idx, at), NULL;
            if (idx >= m->capmemo) {
                int64_t cap = m->capmemo ? m->capmemo : 256;
                while (cap <= idx) cap *= 2;
                m->memo = yf_realloc(m->memo, (size_t)cap * sizeof *m->memo);
                charge(m, (uint64_t)(cap - m->capmemo) * sizeof *m->memo);
                m->capmemo = cap;
            }
            if (idx >= m->nmemo) {
                for (int64_t k = m->nmemo; k <= idx; k++) m->memo[k] = NULL;
                m->nmemo = idx + 1;
            }
            m->memo[idx] = m->stack[m->sp - 1];
            break;
        }
        case 'h': case 'j': { /* BINGET, LONG_BINGET */
            int64_t idx;
            if (op == 'h') { NEED(1); idx = p[i]; i += 1; }
            else { NEED(4); idx = (int64_t)((uint32_t)p[i] | (uint32_t)p[i + 1] << 8 | (uint32_t)p[i + 2] << 16 | (uint32_t)p[i + 3] << 24); i += 4; }
            if (idx >= m->nmemo || !m->memo[idx])
                return yf_errorf("%s: memo index %lld read at offset %zu was never stored", m->where, (long long)idx,
                                 at), NULL;
            push(m, m->memo[idx]);
            break;
        }
        case 't': case 'l': case 'd': case 'e': case 'u': case '1': { /* everything since MARK */
            int64_t k = m->sp;
            while (k > 0 && m->stack[k - 1] != &m->mark) k--;
            if (k == 0) return yf_errorf("%s: opcode '%c' at offset %zu without a MARK", m->where, op, at), NULL;
            int64_t first = k, cnt = m->sp - k;
            m->sp = k - 1; /* drop the items and the mark */
            if (op == '1') break;
            if (op == 't' || op == 'l') {
                a = pv_new(m, op == 't' ? PV_TUPLE : PV_LIST);
                for (int64_t q = 0; q < cnt; q++) pv_append(m, a, m->stack[first + q]);
                push(m, a);
                break;
            }
            if (op == 'd') {
                a = pv_new(m, PV_DICT);
                push(m, a);
            } else {
                if (m->sp == 0) return yf_errorf("%s: '%c' at offset %zu has no container", m->where, op, at), NULL;
                a = m->stack[m->sp - 1];
            }
            if ((op == 'e' && a->kind != PV_LIST) || (op != 'e' && a->kind != PV_DICT) || (op != 'e' && cnt % 2))
                return yf_errorf("%s: opcode '%c' at offset %zu on a %s with %lld items", m->where, op, at,
                                 kind_name(a->kind), (long long)cnt), NULL;
            for (int64_t q = 0; q < cnt; q++) pv_append(m, a, m->stack[first + q]);
            break;
        }
        case 0x85: case 0x86: case 0x87: { /* TUPLE1..3 */
            int cnt = op - 0x84;
            if (m->sp < cnt) return yf_errorf("%s: pickle stack underflow at offset %zu", m->where, at), NULL;
            a = pv_new(m, PV_TUPLE);
            for (int64_t q = m->sp - cnt; q < m->sp; q++) {
                if (m->stack[q] == &m->mark) return yf_errorf("%s: MARK inside TUPLE%d at offset %zu", m->where, cnt, at), NULL;
                pv_append(m, a, m->stack[q]);
            }
            m->sp -= cnt;
            push(m, a);
            break;
        }
        case 'a': /* APPEND */
            POP(b);
            POP(a);
            if (a->kind != PV_LIST) return yf_errorf("%s: APPEND to a %s at offset %zu", m->where, kind_name(a->kind), at), NULL;
            pv_append(m, a, b);
            push(m, a);
            break;
        case 's': /* SETITEM */
            POP(c);
            POP(b);
            POP(a);
            if (a->kind != PV_DICT) return yf_errorf("%s: SETITEM on a %s at offset %zu", m->where, kind_name(a->kind), at), NULL;
            pv_append(m, a, b);
            pv_append(m, a, c);
            push(m, a);
            break;
        case '0': POP(a); break; /* POP */
        case '2': /* DUP */
            POP(a);
            push(m, a);
            push(m, a);
            break;
        case 'Q': /* BINPERSID */
            POP(a);
            if (!(b = persistent_load(m, a, at))) return NULL;
            push(m, b);
            break;
        case 'R': /* REDUCE */
            POP(b);
            POP(a);
            if (!(c = reduce(m, a, b, at))) return NULL;
            push(m, c);
            break;
        case 'b': /* BUILD: set state on an object. OrderedDict carries
                   * `_metadata` (module versions) this way: not needed. */
            POP(b);
            POP(a);
            if (a->kind != PV_DICT && a->kind != PV_TENSOR)
                return yf_errorf("%s: BUILD on a %s at offset %zu is not supported", m->where, kind_name(a->kind), at), NULL;
            push(m, a);
            break;
        default:
            if (op >= 0x20 && op < 0x7f)
                return yf_errorf("%s: unsupported pickle opcode '%c' (0x%02x) at offset %zu", m->where, op, op, at), NULL;
            return yf_errorf("%s: unsupported pickle opcode 0x%02x at offset %zu", m->where, op, at), NULL;
        }
    }
#undef NEED
#undef POP
    return yf_errorf("%s: pickle ends without STOP (truncated)", m->where), NULL;
}

/* ---- from values to tensors --------------------------------------------------- */

typedef struct loader {
    const char *path;
    const char *where;
    yf_zip zip;
    const char *prefix; /* "ARCHIVE/" */
    yf_table *tab;
    vm *m;              /* its budget also pays for the tensor names */
    /* storages already resolved, by zip entry (shared storages: tied weights) */
    const uint8_t **data; /* [zip.n], NULL until read */
} loader;

static int storage_bytes(loader *L, pv *st, const uint8_t **data, uint64_t *size) {
    size_t nn = strlen(L->prefix) + strlen(st->s) + 8;
    char *name = yf_malloc(nn);
    snprintf(name, nn, "%sdata/%s", L->prefix, st->s);
    const yf_zip_entry *e = yf_zip_find(&L->zip, name);
    if (!e) {
        yf_errorf("%s: storage %s is missing from the archive (no entry %s)", L->path, st->s, name);
        free(name);
        return -1;
    }
    free(name);
    ptrdiff_t k = e - L->zip.e;
    if (!L->data[k]) {
        void *owned = NULL;
        if (yf_zip_data(&L->zip, e, false, &L->data[k], &owned)) return -1;
        if (owned) yf_table_own(L->tab, owned); /* inflated once, shared by every view */
    }
    *data = L->data[k];
    *size = e->usize;
    size_t es = yf_dtype_size(st->dtype);
    if ((uint64_t)st->i > *size / es)
        return yf_errorf("%s: storage %s holds %llu bytes, too few for %lld %s elements", L->path, st->s,
                         (unsigned long long)*size, (long long)st->i, yf_dtype_name(st->dtype));
    return 0;
}

static int add_tensor(loader *L, const char *name, const pv_tensor *t) {
    pv *st = t->storage;
    size_t es = yf_dtype_size(st->dtype);
    /* numel and the contiguity check; size-1 dimensions may have any stride */
    uint64_t numel = 1, expect = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->shape[d] < 0) return yf_errorf("%s: tensor %s has a negative size", L->path, name);
        uint64_t s = (uint64_t)t->shape[d];
        if (s && numel > UINT64_MAX / s / es) return yf_errorf("%s: tensor %s is too large", L->path, name);
        numel *= s;
    }
    if (numel > 0)
        for (int d = t->ndim - 1; d >= 0; d--) {
            if (t->shape[d] != 1 && (uint64_t)t->stride[d] != expect) {
                char buf[128];
                size_t k = 0;
                for (int q = 0; q < t->ndim; q++)
                    k += (size_t)snprintf(buf + k, sizeof buf - k, "%s%lld", q ? ", " : "", (long long)t->stride[q]);
                return yf_errorf("%s: tensor %s is not contiguous (stride (%s)): save it with .contiguous()", L->path,
                                 name, buf);
            }
            expect *= (uint64_t)t->shape[d];
        }
    if (t->offset < 0 || (uint64_t)t->offset > (uint64_t)st->i || numel > (uint64_t)st->i - (uint64_t)t->offset)
        return yf_errorf("%s: tensor %s [offset %lld, %llu elements] lies outside its storage %s of %lld elements",
                         L->path, name, (long long)t->offset, (unsigned long long)numel, st->s, (long long)st->i);
    const uint8_t *data;
    uint64_t size;
    if (storage_bytes(L, st, &data, &size)) return -1;
    void *ptr = (void *)(data + (uint64_t)t->offset * es);
    if ((uintptr_t)ptr % es) {
        /* torch aligns entries to 64 bytes; copy anything that is not */
        void *copy = yf_aligned_alloc(numel > 0 ? numel * es : 1);
        memcpy(copy, ptr, numel * es);
        yf_table_own(L->tab, copy);
        ptr = copy;
    }
    yf_table_add(L->tab, name, st->dtype, t->ndim, t->shape, ptr);
    return 0;
}

/* Appends the dict's tensors; nested dicts ({"model": state_dict}) give
 * dotted names. None values are skipped. A dict is walked once: one reached
 * a second time (memo references make the value a DAG, whose walk could take
 * exponential time, or a cycle) is refused, as no state dict holds one. The
 * names are charged to the machine's budget. */
static int walk(loader *L, pv *d, const char *prefix, int depth) {
    if (depth > 8) return yf_errorf("%s: dictionaries nested too deep", L->where);
    if (d->seen)
        return yf_errorf("%s: a dictionary is reached twice (shared or cyclic): not a plain state dict", L->where);
    d->seen = true;
    for (int i = 0; i + 1 < d->n; i += 2) {
        if (L->m->used > L->m->budget)
            return yf_errorf("%s: the tensor names need more than %llu MiB: not a plain state dict", L->where,
                             (unsigned long long)(L->m->budget >> 20));
        pv *k = d->items[i], *v = d->items[i + 1];
        if (k->kind != PV_STR) return yf_errorf("%s: a state dict key is a %s, not a string", L->where, kind_name(k->kind));
        size_t nn = strlen(prefix) + k->slen + 2;
        charge(L->m, 2 * nn + 64); /* the name here and its copy in the table */
        char *name = yf_malloc(nn);
        snprintf(name, nn, "%s%s", prefix, k->s);
        int rc = 0;
        if (v->kind == PV_TENSOR) rc = add_tensor(L, name, v->t);
        else if (v->kind == PV_DICT) {
            strcat(name, ".");
            rc = walk(L, v, name, depth + 1);
        } else if (v->kind != PV_NONE)
            rc = yf_errorf("%s: entry %s is a %s, not a tensor", L->where, name, kind_name(v->kind));
        free(name);
        if (rc) return rc;
    }
    return 0;
}

int yf_torch_load(const char *path, yf_table *tab) {
    int fd;
    uint64_t fsize;
    if (yf_open_regular(path, UINT64_MAX, &fd, &fsize)) return -1;
    if (fsize == 0) {
        close(fd);
        return yf_errorf("%s: empty file: not a torch.save archive", path);
    }
    size_t size = (size_t)fsize;
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    close(fd);
    if (map == MAP_FAILED) return yf_errorf("%s: cannot map: %s", path, strerror(err));
    const uint8_t *b = map;
    if (size >= 2 && b[0] == 0x80 && b[1] <= 5)
        return munmap(map, size), yf_errorf("%s: legacy (pre-1.6) torch.save format: re-save it with a newer torch "
                                            "or convert it to safetensors", path);

    loader L;
    memset(&L, 0, sizeof L);
    L.path = path;
    L.tab = tab;
    vm m;
    memset(&m, 0, sizeof m);
    m.mark.kind = PV_MARK;
    L.m = &m;
    /* what unpacking may allocate: a real state dict takes ~1 KB a tensor,
     * far less than the tensor's bytes in the archive; 64 MiB covers the
     * smallest archives */
    m.budget = 64 * YF_MIB + (size > (UINT64_MAX - 64 * YF_MIB) / 16 ? UINT64_MAX / 2 : 16 * (uint64_t)size);
    char *where = NULL, *prefix = NULL;
    int rc = -1, first = tab->n, nbufs0 = tab->nbufs;
    if (yf_zip_open(&L.zip, path, b, size)) goto done;
    L.data = yf_calloc((size_t)(L.zip.n ? L.zip.n : 1), sizeof *L.data);
    /* the pickle is ARCHIVE/data.pkl for whatever ARCHIVE the saver chose */
    const yf_zip_entry *pk = NULL;
    for (int i = 0; i < L.zip.n && !pk; i++) {
        const char *nm = L.zip.e[i].name, *sl = strchr(nm, '/');
        if (sl && !strcmp(sl, "/data.pkl")) pk = &L.zip.e[i];
    }
    if (!pk) {
        yf_errorf("%s: zip archive without ARCHIVE/data.pkl: not written by torch.save", path);
        goto done;
    }
    size_t plen = (size_t)(strchr(pk->name, '/') - pk->name) + 1;
    prefix = yf_malloc(plen + 1);
    memcpy(prefix, pk->name, plen);
    prefix[plen] = 0;
    L.prefix = prefix;
    size_t wn = strlen(path) + strlen(pk->name) + 4;
    where = yf_malloc(wn);
    snprintf(where, wn, "%s: %s", path, pk->name);
    L.where = m.where = where;
    {
        size_t bn = plen + 16;
        char *bo = yf_malloc(bn);
        snprintf(bo, bn, "%sbyteorder", prefix);
        const yf_zip_entry *be = yf_zip_find(&L.zip, bo);
        free(bo);
        if (be && be->method == 0 && be->usize >= 3 && !memcmp(b + be->data_off, "big", 3)) {
            yf_errorf("%s: big-endian tensors are not supported", path);
            goto done;
        }
    }
    if (pk->usize > PK_MAX_PICKLE_BYTES) {
        yf_errorf("%s: %llu bytes of pickle is more than any state dict needs (limit %llu MiB)", where,
                  (unsigned long long)pk->usize, (unsigned long long)(PK_MAX_PICKLE_BYTES >> 20));
        goto done;
    }
    m.max_nodes = PK_NODES_SLACK + (int64_t)(pk->usize / PK_NODES_PER_BYTE_DIV);
    const uint8_t *pdata;
    void *powned = NULL;
    if (yf_zip_data(&L.zip, pk, true, &pdata, &powned)) goto done;
    pv *root = run(&m, pdata, (size_t)pk->usize);
    if (root && root->kind != PV_DICT) {
        yf_errorf("%s: the pickled object is a %s, not a state dict", where, kind_name(root->kind));
        root = NULL;
    }
    if (root && walk(&L, root, "", 0) == 0) rc = yf_table_check_unique(tab, first, path);
    free(powned);
done:
    if (rc == 0) {
        yf_table_own_map(tab, map, size);
    } else {
        while (tab->n > first) free(tab->t[--tab->n].name);
        while (tab->nbufs > nbufs0) free(tab->bufs[--tab->nbufs]);
        munmap(map, size);
    }
    vm_free(&m);
    yf_zip_close(&L.zip);
    free(L.data);
    free(where);
    free(prefix);
    return rc;
}
