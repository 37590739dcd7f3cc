#include "harness.h"
#include "formats/safetensors.h"
#include "formats/torch_pickle.h"
#include "formats/zip.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define GOLDEN "golden/yuan-tiny/"

/* ---- a growable byte buffer ----------------------------------------------- */

typedef struct buf {
    uint8_t *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        while (b->n + n > b->cap) b->cap = b->cap ? b->cap * 2 : 1024;
        b->p = yf_realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void put8(buf *b, unsigned v) { uint8_t x = (uint8_t)v; put(b, &x, 1); }
static void put16(buf *b, unsigned v) { put8(b, v & 0xff); put8(b, (v >> 8) & 0xff); }
static void put32(buf *b, uint32_t v) { put16(b, v & 0xffff); put16(b, v >> 16); }
static void put64(buf *b, uint64_t v) { put32(b, (uint32_t)v); put32(b, (uint32_t)(v >> 32)); }

/* ---- a minimal zip writer (stored or deflated entries, optionally zip64) --- */

typedef struct zent {
    const char *name;
    const void *data;
    size_t len;
    bool deflate;
} zent;

static void write_zip(const char *path, const zent *es, int n, bool zip64) {
    buf z = {0}, cd = {0};
    for (int i = 0; i < n; i++) {
        const zent *e = &es[i];
        uint32_t crc = (uint32_t)crc32(0, e->data, (uInt)e->len);
        uint8_t *cdata = (uint8_t *)e->data;
        size_t clen = e->len;
        if (e->deflate) {
            z_stream s;
            memset(&s, 0, sizeof s);
            deflateInit2(&s, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
            clen = deflateBound(&s, (uLong)e->len);
            cdata = yf_malloc(clen);
            s.next_in = (Bytef *)e->data;
            s.avail_in = (uInt)e->len;
            s.next_out = cdata;
            s.avail_out = (uInt)clen;
            CHECK(deflate(&s, Z_FINISH) == Z_STREAM_END);
            clen = s.total_out;
            deflateEnd(&s);
        }
        uint64_t loff = z.n;
        uint16_t nlen = (uint16_t)strlen(e->name);
        put32(&z, 0x04034b50);
        put16(&z, zip64 ? 45 : 20);
        put16(&z, 0);
        put16(&z, e->deflate ? 8 : 0);
        put16(&z, 0);
        put16(&z, 0x21);
        put32(&z, crc);
        put32(&z, zip64 ? 0xFFFFFFFFu : (uint32_t)clen);
        put32(&z, zip64 ? 0xFFFFFFFFu : (uint32_t)e->len);
        put16(&z, nlen);
        put16(&z, zip64 ? 20 : 0);
        put(&z, e->name, nlen);
        if (zip64) {
            put16(&z, 1);
            put16(&z, 16);
            put64(&z, e->len);
            put64(&z, clen);
        }
        put(&z, cdata, clen);
        if (cdata != e->data) free(cdata);

        put32(&cd, 0x02014b50);
        put16(&cd, 45);
        put16(&cd, zip64 ? 45 : 20);
        put16(&cd, 0);
        put16(&cd, e->deflate ? 8 : 0);
        put16(&cd, 0);
        put16(&cd, 0x21);
        put32(&cd, crc);
        put32(&cd, zip64 ? 0xFFFFFFFFu : (uint32_t)clen);
        put32(&cd, zip64 ? 0xFFFFFFFFu : (uint32_t)e->len);
        put16(&cd, nlen);
        put16(&cd, zip64 ? 28 : 0);
        put16(&cd, 0);
        put16(&cd, 0);
        put16(&cd, 0);
        put32(&cd, 0);
        put32(&cd, zip64 ? 0xFFFFFFFFu : (uint32_t)loff);
        put(&cd, e->name, nlen);
        if (zip64) {
            put16(&cd, 1);
            put16(&cd, 24);
            put64(&cd, e->len);
            put64(&cd, clen);
            put64(&cd, loff);
        }
    }
    uint64_t cd_off = z.n;
    put(&z, cd.p, cd.n);
    if (zip64) {
        uint64_t r = z.n;
        put32(&z, 0x06064b50);
        put64(&z, 44);
        put16(&z, 45);
        put16(&z, 45);
        put32(&z, 0);
        put32(&z, 0);
        put64(&z, (uint64_t)n);
        put64(&z, (uint64_t)n);
        put64(&z, cd.n);
        put64(&z, cd_off);
        put32(&z, 0x07064b50);
        put32(&z, 0);
        put64(&z, r);
        put32(&z, 1);
    }
    put32(&z, 0x06054b50);
    put16(&z, 0);
    put16(&z, 0);
    put16(&z, zip64 ? 0xFFFF : (unsigned)n);
    put16(&z, zip64 ? 0xFFFF : (unsigned)n);
    put32(&z, zip64 ? 0xFFFFFFFFu : (uint32_t)cd.n);
    put32(&z, zip64 ? 0xFFFFFFFFu : (uint32_t)cd_off);
    put16(&z, 0);
    CHECK(yf_write_file_atomic(path, z.p, z.n) == 0, "%s", yf_last_error());
    free(z.p);
    free(cd.p);
}

/* ---- a pickle writer for state dicts -------------------------------------- */

static void pk_str(buf *b, const char *s) {
    put8(b, 'X');
    put32(b, (uint32_t)strlen(s));
    put(b, s, strlen(s));
}
static void pk_int(buf *b, int64_t v) {
    if (v >= 0 && v < 256) { put8(b, 'K'); put8(b, (unsigned)v); }
    else if (v >= 0 && v < 65536) { put8(b, 'M'); put16(b, (unsigned)v); }
    else { put8(b, 0x8a); put8(b, 8); put64(b, (uint64_t)v); } /* LONG1 */
}
static void pk_global(buf *b, const char *mod, const char *name) {
    put8(b, 'c');
    put(b, mod, strlen(mod));
    put8(b, '\n');
    put(b, name, strlen(name));
    put8(b, '\n');
}

/* name: _rebuild_tensor_v2(('storage', type, key, 'cpu', numel), off, size, stride, False, OrderedDict()) */
static void pk_tensor(buf *b, const char *name, const char *stype, const char *key, int64_t numel, int64_t off,
                      int nd, const int64_t *size, const int64_t *stride, bool as_param) {
    pk_str(b, name);
    if (as_param) pk_global(b, "torch._utils", "_rebuild_parameter");
    pk_global(b, "torch._utils", "_rebuild_tensor_v2");
    put8(b, '(');
    put8(b, '(');
    pk_str(b, "storage");
    pk_global(b, "torch", stype);
    pk_str(b, key);
    pk_str(b, "cpu");
    pk_int(b, numel);
    put8(b, 't');
    put8(b, 'Q');
    pk_int(b, off);
    put8(b, '(');
    for (int i = 0; i < nd; i++) pk_int(b, size[i]);
    put8(b, 't');
    put8(b, '(');
    for (int i = 0; i < nd; i++) pk_int(b, stride[i]);
    put8(b, 't');
    put8(b, 0x89);
    pk_global(b, "collections", "OrderedDict");
    put8(b, ')');
    put8(b, 'R');
    put8(b, 't');
    put8(b, 'R');
    if (as_param) { /* _rebuild_parameter(tensor, True, OrderedDict()) */
        put8(b, 0x88);
        pk_global(b, "collections", "OrderedDict");
        put8(b, ')');
        put8(b, 'R');
        put8(b, 0x87);
        put8(b, 'R');
    }
}

/* OrderedDict() + MARK; end with SETITEMS, BUILD {'_metadata': {}} and STOP */
static void pk_begin(buf *b) {
    put8(b, 0x80);
    put8(b, 2);
    pk_global(b, "collections", "OrderedDict");
    put8(b, 'q'); /* BINPUT 0, read back below */
    put8(b, 0);
    put8(b, ')');
    put8(b, 'R');
    put8(b, '(');
}
static void pk_end(buf *b) {
    put8(b, 'u');
    put8(b, '}');
    pk_str(b, "_metadata");
    put8(b, 'h'); /* BINGET 0: OrderedDict */
    put8(b, 0);
    put8(b, ')');
    put8(b, 'R');
    put8(b, 's');
    put8(b, 'b');
    put8(b, '.');
}

static const char *tmp_path(const char *name) {
    static char p[4][600];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", yt_tmpdir(), name);
    return p[k];
}

static void expect_torch_fails(const char *path, const char *needle) {
    yf_table tab;
    yf_table_init(&tab);
    yf_clear_error();
    CHECK(yf_torch_load(path, &tab) == -1, "%s loaded", path);
    CHECK(tab.n == 0, "%d tensors left after a failed load", tab.n);
    const char *e = yf_last_error(), *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    CHECK(strstr(e, base) != NULL, "error does not name the file: %s", e);
    CHECK(strstr(e, needle) != NULL, "error '%s' does not mention '%s'", e, needle);
    CHECK(strchr(e, '\n') == NULL, "error is not one line");
    yf_table_free(&tab);
}

/* ---- the golden files -------------------------------------------------------- */

TEST(torch_load_golden_fp32_equals_safetensors) {
    yf_table pt, st;
    yf_table_init(&pt);
    yf_table_init(&st);
    CHECK(yf_torch_load(yt_shared_path(GOLDEN "pytorch_model.bin"), &pt) == 0, "%s", yf_last_error());
    CHECK(yf_st_load(yt_shared_path(GOLDEN "model.safetensors"), &st) == 0, "%s", yf_last_error());
    CHECK(pt.n == st.n && pt.n == 33, "%d vs %d tensors", pt.n, st.n);
    for (int i = 0; i < st.n; i++) {
        yf_tensor *a = &st.t[i], *b = yf_table_find(&pt, a->name);
        CHECK(b != NULL, "%s missing from pytorch_model.bin", a->name);
        if (!b) continue;
        CHECK(b->dtype == a->dtype && b->ndim == a->ndim && b->nbytes == a->nbytes, "%s", a->name);
        CHECK(b->nbytes == a->nbytes && memcmp(a->data, b->data, a->nbytes) == 0, "%s values differ", a->name);
        CHECK((uintptr_t)b->data % 64 == 0, "%s not 64-byte aligned", a->name);
    }
    /* tied weights: both names, one storage */
    yf_tensor *e = yf_table_find(&pt, "model.embed_tokens.weight"), *h = yf_table_find(&pt, "lm_head.weight");
    CHECK(e && h && e->data == h->data, "embedding and lm_head should share one storage");
    yf_table_free(&pt);
    yf_table_free(&st);
}

TEST(torch_load_golden_bf16_equals_shards) {
    yf_table pt, st;
    yf_table_init(&pt);
    yf_table_init(&st);
    CHECK(yf_torch_load(yt_shared_path(GOLDEN "bf16/pytorch_model.bin"), &pt) == 0, "%s", yf_last_error());
    CHECK(yf_st_load_index(yt_shared_path(GOLDEN "bf16/model.safetensors.index.json"), &st) == 0, "%s",
          yf_last_error());
    CHECK(pt.n == st.n, "%d vs %d tensors", pt.n, st.n);
    for (int i = 0; i < st.n; i++) {
        yf_tensor *a = &st.t[i], *b = yf_table_find(&pt, a->name);
        CHECK(b && b->dtype == YF_BF16 && b->nbytes == a->nbytes && memcmp(a->data, b->data, a->nbytes) == 0,
              "%s differs", a->name);
    }
    yf_table_free(&pt);
    yf_table_free(&st);
}

/* ---- crafted archives ----------------------------------------------------------- */

TEST(torch_zip64_deflate_shared_storage_and_params) {
    float s0[7] = {0, 1, 2, 3, 4, 5, 6};
    uint16_t s1[4] = {0x3f80, 0x4000, 0x4040, 0x4080}; /* bf16 1, 2, 3, 4 */
    buf pk = {0};
    pk_begin(&pk);
    pk_tensor(&pk, "a", "FloatStorage", "0", 7, 1, 2, (int64_t[]){2, 3}, (int64_t[]){3, 1}, false);
    pk_tensor(&pk, "b", "FloatStorage", "0", 7, 0, 1, (int64_t[]){3}, (int64_t[]){1}, true);
    /* a size-1 dimension may carry any stride and still be contiguous */
    pk_tensor(&pk, "c", "BFloat16Storage", "1", 4, 2, 2, (int64_t[]){2, 1}, (int64_t[]){1, 7}, false);
    pk_end(&pk);
    zent es[] = {{"archive/data.pkl", pk.p, pk.n, false},
                 {"archive/data/0", s0, sizeof s0, true},
                 {"archive/data/1", s1, sizeof s1, false},
                 {"archive/version", "3\n", 2, false}};
    for (int z64 = 0; z64 < 2; z64++) {
        const char *path = tmp_path(z64 ? "z64.bin" : "z32.bin");
        write_zip(path, es, 4, z64);
        yf_table t;
        yf_table_init(&t);
        CHECK(yf_torch_load(path, &t) == 0, "%s", yf_last_error());
        yf_tensor *a = yf_table_find(&t, "a"), *b = yf_table_find(&t, "b"), *c = yf_table_find(&t, "c");
        CHECK(t.n == 3 && a && b && c, "%d tensors", t.n);
        if (a && b && c) {
            CHECK(a->dtype == YF_F32 && a->ndim == 2 && a->shape[0] == 2 && a->shape[1] == 3);
            for (int i = 0; i < 6; i++) CHECK(((float *)a->data)[i] == i + 1, "a[%d] = %g", i, ((float *)a->data)[i]);
            for (int i = 0; i < 3; i++) CHECK(((float *)b->data)[i] == i, "b[%d]", i);
            CHECK((float *)b->data + 1 == (float *)a->data, "a and b should share one inflated storage");
            CHECK(c->dtype == YF_BF16 && yf_tensor_get_f32(c, 0) == 3 && yf_tensor_get_f32(c, 1) == 4);
        }
        yf_table_free(&t);
    }
    free(pk.p);
}

/* An archive around a hand-made pickle with one F32 storage of 8 elements. */
static const char *write_pickle_zip(const char *name, const buf *pk) {
    static float s0[8];
    zent es[] = {{"m/data.pkl", pk->p, pk->n, false}, {"m/data/0", s0, sizeof s0, false}};
    const char *path = tmp_path(name);
    write_zip(path, es, 2, false);
    return path;
}

TEST(torch_bad_noncontiguous_and_out_of_storage) {
    struct { int64_t off, numel; int64_t size[2], stride[2]; const char *needle; } cases[] = {
        {0, 8, {2, 3}, {1, 2}, "not contiguous"},
        {3, 8, {2, 3}, {3, 1}, "outside its storage"},
        {0, 9, {3, 3}, {3, 1}, "too few"}, /* the pickle claims more than the entry holds */
        {-1, 8, {2, 3}, {3, 1}, "outside its storage"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        buf pk = {0};
        pk_begin(&pk);
        pk_tensor(&pk, "w", "FloatStorage", "0", cases[i].numel, cases[i].off, 2, cases[i].size, cases[i].stride,
                  false);
        pk_end(&pk);
        expect_torch_fails(write_pickle_zip("case.bin", &pk), cases[i].needle);
        free(pk.p);
    }
}

TEST(torch_bad_pickles) {
    struct { const char *bytes; size_t n; const char *needle; } cases[] = {
#define PK(lit) lit, sizeof(lit) - 1
        {PK("\x80\x02" "F1.0\n."), "unsupported pickle opcode 'F'"},
        {PK("\x80\x02}(X\x01\x00\x00\x00" "a"), "without STOP"},
        {PK("\x80\x02}X\x09\x00\x00\x00" "ab"), "truncated"},
        {PK("\x80\x02" "0."), "underflow"},
        {PK("\x80\x02h\x05."), "never stored"},
        {PK("\x80\x02" "cos\nsystem\nX\x02\x00\x00\x00" "ls\x85R."), "unsupported callable os.system"},
        {PK("\x80\x02]q\x00."), "not a state dict"},
        {PK("\x80\x02}X\x01\x00\x00\x00" "aK\x01s."), "not a tensor"},
        {PK("\x80\x02(X\x07\x00\x00\x00" "storagectorch\nDoubleStorage\nX\x01\x00\x00\x00" "0K\x00K\x01tQ."),
         "DoubleStorage"},
        {PK("\x80\x07}."), "protocol 7"},
#undef PK
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        buf pk = {0};
        put(&pk, cases[i].bytes, cases[i].n);
        expect_torch_fails(write_pickle_zip("pickle.bin", &pk), cases[i].needle);
        CHECK(strstr(yf_last_error(), "data.pkl") || strstr(cases[i].needle, "storage") ||
                  strstr(cases[i].needle, "Storage"),
              "error should name data.pkl: %s", yf_last_error());
        free(pk.p);
    }
}

TEST(torch_bad_corrupt_zip) {
    char *raw = NULL;
    size_t len = 0;
    CHECK(yf_read_file(yt_shared_path(GOLDEN "pytorch_model.bin"), &raw, &len) == 0, "%s", yf_last_error());
    if (!raw) return;
    const char *p = tmp_path("cut.bin");
    /* truncated: the end-of-directory record is gone */
    CHECK(yf_write_file_atomic(p, raw, len / 2) == 0);
    expect_torch_fails(p, "not a zip archive");
    CHECK(yf_write_file_atomic(p, raw, 10) == 0);
    expect_torch_fails(p, "not a zip archive");
    CHECK(yf_write_file_atomic(p, "\x80\x02}q\x00.", 6) == 0);
    expect_torch_fails(p, "legacy");
    CHECK(yf_write_file_atomic(p, "", 0) == 0);
    expect_torch_fails(p, "empty");

    /* the end-of-central-directory record: last 22 bytes (no comment here) */
    size_t eocd = len - 22;
    CHECK(memcmp(raw + eocd, "PK\x05\x06", 4) == 0, "golden archive has a comment?");
    /* torch writes a zip64 end record too (located just before the EOCD):
     * its 64-bit fields are the ones that count */
    CHECK(memcmp(raw + eocd - 20, "PK\x06\x07", 4) == 0, "golden archive has no zip64 locator");
    uint64_t r64;
    memcpy(&r64, raw + eocd - 20 + 8, 8);
    CHECK(r64 + 56 <= len && memcmp(raw + r64, "PK\x06\x06", 4) == 0);
    char *m = yf_malloc(len);
    memcpy(m, raw, len);
    uint64_t huge = 0x7fffff00u;
    memcpy(m + r64 + 48, &huge, 8); /* central directory offset */
    p = tmp_path("cdoff.bin");
    CHECK(yf_write_file_atomic(p, m, len) == 0);
    expect_torch_fails(p, "central directory");

    /* zip64 locator pointing nowhere */
    memcpy(m, raw, len);
    memcpy(m + eocd - 20 + 8, &huge, 8);
    p = tmp_path("loc64.bin");
    CHECK(yf_write_file_atomic(p, m, len) == 0);
    expect_torch_fails(p, "zip64");

    /* damage the first central entry's local header offset */
    uint64_t cdoff;
    memcpy(&cdoff, raw + r64 + 48, 8);
    memcpy(m, raw, len);
    memcpy(m + cdoff + 42, &huge, 4);
    p = tmp_path("loff.bin");
    CHECK(yf_write_file_atomic(p, m, len) == 0);
    expect_torch_fails(p, "local header");

    /* entry count larger than the directory can hold */
    memcpy(m, raw, len);
    memcpy(m + r64 + 32, &huge, 8);
    p = tmp_path("count.bin");
    CHECK(yf_write_file_atomic(p, m, len) == 0);
    expect_torch_fails(p, "corrupt zip");

    /* a byte of data.pkl changed: the CRC catches it */
    memcpy(m, raw, len);
    size_t pk_at = 0;
    for (size_t i = 0; i + 3 < len; i++)
        if (!memcmp(m + i, "\x80\x02}", 3)) { pk_at = i; break; }
    CHECK(pk_at > 0);
    m[pk_at + 2] = 'F';
    p = tmp_path("crc.bin");
    CHECK(yf_write_file_atomic(p, m, len) == 0);
    expect_torch_fails(p, "CRC");

    /* a storage entry renamed away */
    memcpy(m, raw, len);
    for (size_t i = cdoff; i + 16 < len; i++)
        if (!memcmp(m + i, "pytorch_model/data/0", 20) && m[i + 20] != '/' && !(m[i + 20] >= '0' && m[i + 20] <= '9')) {
            m[i + 19] = 'x';
            break;
        }
    p = tmp_path("nostorage.bin");
    CHECK(yf_write_file_atomic(p, m, len) == 0);
    expect_torch_fails(p, "storage 0 is missing");
    free(m);
    free(raw);
}

/* Random damage to data.pkl (re-zipped with a valid CRC so the pickle machine
 * sees it): every load must either succeed or fail with a message naming the
 * file; never crash (this test also runs under ASan/UBSan). */
TEST(torch_bad_random_pickle_mutations) {
    char *raw = NULL;
    size_t len = 0;
    CHECK(yf_read_file(yt_shared_path(GOLDEN "pytorch_model.bin"), &raw, &len) == 0, "%s", yf_last_error());
    if (!raw) return;
    yf_zip z;
    CHECK(yf_zip_open(&z, "golden", (const uint8_t *)raw, len) == 0, "%s", yf_last_error());
    zent *es = yf_calloc((size_t)z.n, sizeof *es);
    int pk = -1;
    for (int i = 0; i < z.n; i++) {
        es[i].name = z.e[i].name;
        es[i].data = raw + z.e[i].data_off;
        es[i].len = (size_t)z.e[i].usize;
        if (strstr(z.e[i].name, "data.pkl")) pk = i;
    }
    CHECK(pk >= 0);
    if (pk < 0) return;
    size_t plen = es[pk].len;
    uint8_t *orig = yf_malloc(plen), *mut = yf_malloc(plen);
    memcpy(orig, es[pk].data, plen);
    yf_rng rng;
    yf_rng_seed(&rng, 1234);
    const char *path = tmp_path("fuzz.bin");
    int ok = 0, failed = 0;
    for (int iter = 0; iter < 150; iter++) {
        memcpy(mut, orig, plen);
        size_t n = plen;
        int kind = (int)(yf_rng_u64(&rng) % 3);
        if (kind == 0) {
            n = (size_t)(yf_rng_u64(&rng) % plen); /* truncate */
        } else {
            int flips = 1 + (int)(yf_rng_u64(&rng) % 4);
            for (int f = 0; f < flips; f++) {
                size_t at = (size_t)(yf_rng_u64(&rng) % plen);
                mut[at] = kind == 1 ? (uint8_t)yf_rng_u64(&rng) : (uint8_t)(mut[at] ^ (1u << (yf_rng_u64(&rng) % 8)));
            }
        }
        es[pk].data = mut;
        es[pk].len = n;
        write_zip(path, es, z.n, iter % 2);
        yf_table t;
        yf_table_init(&t);
        yf_clear_error();
        if (yf_torch_load(path, &t) == 0) ok++;
        else {
            failed++;
            CHECK(strstr(yf_last_error(), "fuzz.bin") != NULL, "iteration %d: %s", iter, yf_last_error());
            CHECK(t.n == 0, "iteration %d left %d tensors", iter, t.n);
        }
        yf_table_free(&t);
    }
    printf("  %d mutated pickles loaded, %d rejected\n", ok, failed);
    CHECK(failed > 0);
    free(orig);
    free(mut);
    free(es);
    yf_zip_close(&z);
    free(raw);
}

/* ---- bounded cost: hostile pickles and archives ------------------------------
 * Each runs under 512 MiB of address space and 20 s of CPU: without the
 * limits in torch_pickle.c / zip.c they would hang or run out of memory
 * (exit 3) instead of failing with one clear message. */

static void bad_archive(const char *name, const buf *pkl, bool deflate, const char *want) {
    yt_limit(512, 20);
    char path[512];
    snprintf(path, sizeof path, "%s/%s.bin", yt_tmpdir(), name);
    zent es[] = {{"archive/data.pkl", pkl->p, pkl->n, deflate}};
    write_zip(path, es, 1, false);
    yf_table tab;
    yf_table_init(&tab);
    double t0 = yf_time();
    int rc = yf_torch_load(path, &tab);
    CHECK(rc == -1 && strstr(yf_last_error(), want), "%s", yf_last_error());
    CHECK(tab.n == 0);
    fprintf(stderr, "    %s: refused in %.2f s: %s\n", name, yf_time() - t0, yf_last_error());
    yf_table_free(&tab);
}

TEST(torch_bad_pickle_dag) {
    /* 9 levels of dicts, each holding 1000 references to the level below:
     * walked as a tree that is 1000^8 entries */
    buf p = {0};
    put(&p, "\x80\x02X\x01\x00\x00\x00kq\x01" "0", 10); /* memo[1] = "k" */
    put(&p, "}q\x02" "0", 4);                            /* memo[2] = level 0 */
    for (int lv = 1; lv <= 8; lv++) {
        put(&p, "}(", 2);
        for (int i = 0; i < 1000; i++) put8(&p, 'h'), put8(&p, 1), put8(&p, 'h'), put8(&p, (unsigned)(lv + 1));
        put8(&p, 'u'), put8(&p, 'q'), put8(&p, (unsigned)(lv + 2)), put8(&p, '0');
    }
    put8(&p, 'h'), put8(&p, 10), put8(&p, '.');
    bad_archive("dag", &p, false, "reached twice");
    free(p.p);
}

/* A pickle of n EMPTY_TUPLE opcodes: a value a byte. */
static buf tuples_pickle(size_t n) {
    buf p = {0};
    put(&p, "\x80\x02", 2);
    char *t = yf_malloc(n);
    memset(t, ')', n);
    put(&p, t, n);
    put8(&p, '.');
    free(t);
    return p;
}

TEST(torch_bad_pickle_nodes) {
    buf p = tuples_pickle((size_t)4 << 20); /* 4 million values */
    bad_archive("nodes", &p, false, "more than a state dict");
    free(p.p);
}

TEST(torch_bad_zip_bomb) {
    buf p = tuples_pickle((size_t)64 << 20); /* 64 MiB, deflated to ~64 KB */
    bad_archive("bomb", &p, true, "zip bomb");
    free(p.p);
}

TEST(torch_bad_pickle_global) {
    /* a 1 MiB string named as module and attribute 100,000 times: 200 GB of names */
    buf p = {0};
    put(&p, "\x80\x02X", 3);
    put32(&p, 1u << 20);
    char *t = yf_malloc((size_t)1 << 20);
    memset(t, 'a', (size_t)1 << 20);
    put(&p, t, (size_t)1 << 20);
    free(t);
    put(&p, "q\x00" "0", 3);
    for (int i = 0; i < 100000; i++) put(&p, "h\x00h\x00\x93" "0", 6);
    put(&p, "}.", 2);
    bad_archive("global", &p, false, "STACK_GLOBAL");
    free(p.p);
}
