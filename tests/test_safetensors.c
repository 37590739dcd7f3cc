#include "formats/config.h"
#include "harness.h"
#include "formats/safetensors.h"
#include "formats/weights.h"

#include <stdlib.h>
#include <string.h>

#define GOLDEN "golden/yuan-tiny/"

/* Every tensor yf_weight_specs lists is in tab with its shape; the only
 * extras allowed are rotary inv_freq buffers and a tied lm_head. */
static void check_specs(const yf_table *tab, const char *what) {
    yf_config c;
    CHECK(yf_config_load(yt_shared_path(GOLDEN "config.json"), &c) == 0, "%s", yf_last_error());
    yf_wspec *specs;
    int64_t n = yf_weight_specs(&c, &specs);
    for (int64_t i = 0; i < n; i++) {
        yf_tensor *t = yf_table_find(tab, specs[i].name);
        CHECK(t != NULL, "%s: %s missing", what, specs[i].name);
        if (!t) continue;
        bool same = t->ndim == specs[i].ndim;
        for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == specs[i].shape[d];
        char buf[64];
        CHECK(same, "%s: %s has shape %s", what, specs[i].name, yf_shape_str(t, buf, sizeof buf));
    }
    for (int i = 0; i < tab->n; i++)
        CHECK(strstr(tab->t[i].name, "rotary_emb.inv_freq") || !strcmp(tab->t[i].name, "lm_head.weight") ||
                  yf_table_find(tab, tab->t[i].name) == &tab->t[i],
              "%s: unexpected %s", what, tab->t[i].name);
    free(specs);
}

TEST(st_load_golden_fp32) {
    yf_table tab;
    yf_table_init(&tab);
    int rc = yf_st_load(yt_shared_path(GOLDEN "model.safetensors"), &tab);
    CHECK(rc == 0, "%s", yf_last_error());
    CHECK(tab.n == 33, "%d tensors", tab.n);
    check_specs(&tab, "model.safetensors");
    yf_tensor *e = yf_table_find(&tab, "model.embed_tokens.weight"), *h = yf_table_find(&tab, "lm_head.weight");
    CHECK(e && h && e->dtype == YF_F32 && h->nbytes == e->nbytes && memcmp(e->data, h->data, e->nbytes) == 0,
          "embedding and lm_head differ");
    for (int i = 0; i < tab.n; i++) CHECK((uintptr_t)tab.t[i].data % 4 == 0, "%s misaligned", tab.t[i].name);
    yf_table_free(&tab);
}

TEST(st_load_index_bf16_matches_fp32_rounded) {
    yf_table f32, b16;
    yf_table_init(&f32);
    yf_table_init(&b16);
    CHECK(yf_st_load(yt_shared_path(GOLDEN "model.safetensors"), &f32) == 0, "%s", yf_last_error());
    int rc = yf_st_load_index(yt_shared_path(GOLDEN "bf16/model.safetensors.index.json"), &b16);
    CHECK(rc == 0, "%s", yf_last_error());
    CHECK(b16.n == f32.n, "%d vs %d tensors", b16.n, f32.n);
    check_specs(&b16, "bf16 shards");
    for (int i = 0; i < f32.n; i++) {
        yf_tensor *a = &f32.t[i], *b = yf_table_find(&b16, a->name);
        CHECK(b != NULL, "%s missing from the shards", a->name);
        if (!b) continue;
        CHECK(b->dtype == YF_BF16 && yf_tensor_numel(a) == yf_tensor_numel(b), "%s", a->name);
        int64_t bad = 0;
        for (int64_t k = 0; k < yf_tensor_numel(a); k++)
            bad += ((uint16_t *)b->data)[k] != yf_f32_to_bf16(((float *)a->data)[k]);
        CHECK(bad == 0, "%s: %lld elements differ from round-to-bf16", a->name, (long long)bad);
    }
    yf_table_free(&f32);
    yf_table_free(&b16);
}

TEST(st_save_round_trip_all_dtypes) {
    yf_table src;
    yf_table_init(&src);
    yf_dtype dts[] = {YF_F32, YF_BF16, YF_F16, YF_I64, YF_I32, YF_U8};
    for (int i = 0; i < 6; i++) {
        char name[32];
        snprintf(name, sizeof name, "t\"%d\\%s", i, yf_dtype_name(dts[i])); /* names needing JSON escapes */
        yf_tensor *t = yf_table_alloc(&src, name, dts[i], 2, (int64_t[]){3, i + 1});
        for (size_t k = 0; k < t->nbytes; k++) ((uint8_t *)t->data)[k] = (uint8_t)(k * 7 + i);
    }
    yf_table_add(&src, "empty", YF_F32, 2, (int64_t[]){0, 5}, NULL);
    yf_table_add(&src, "scalar", YF_I64, 0, NULL, &(int64_t){42});
    char path[600];
    snprintf(path, sizeof path, "%s/rt.safetensors", yt_tmpdir());
    const char *meta[] = {"format", "pt", "note", "a \"quoted\" value", NULL};
    CHECK(yf_st_save(path, src.t, src.n, meta) == 0, "%s", yf_last_error());
    yf_table back;
    yf_table_init(&back);
    CHECK(yf_st_load(path, &back) == 0, "%s", yf_last_error());
    CHECK(back.n == src.n, "%d tensors back", back.n);
    for (int i = 0; i < src.n && i < back.n; i++) {
        yf_tensor *a = &src.t[i], *b = &back.t[i];
        CHECK(strcmp(a->name, b->name) == 0 && a->dtype == b->dtype && a->ndim == b->ndim, "%s", a->name);
        CHECK(a->nbytes == b->nbytes && (a->nbytes == 0 || memcmp(a->data, b->data, a->nbytes) == 0), "%s data",
              a->name);
        CHECK((uintptr_t)b->data % yf_dtype_size(b->dtype) == 0, "%s misaligned", b->name);
    }
    /* header padded with spaces to a multiple of 8 */
    char *raw = NULL;
    size_t len = 0;
    CHECK(yf_read_file(path, &raw, &len) == 0);
    if (raw && len >= 8) {
        uint64_t h = 0;
        memcpy(&h, raw, 8);
        CHECK(h % 8 == 0 && h + 8 <= len, "header length %llu", (unsigned long long)h);
        CHECK(raw[8] == '{' && (raw[8 + h - 1] == '}' || raw[8 + h - 1] == ' '));
    }
    free(raw);
    yf_table_free(&src);
    yf_table_free(&back);
}

TEST(st_streaming_writer_matches_save) {
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t b[2] = {0x3f80, 0x4000};
    yf_tensor ts[2] = {{.name = "a", .dtype = YF_F32, .ndim = 2, .shape = {2, 3}, .data = a},
                       {.name = "b", .dtype = YF_BF16, .ndim = 1, .shape = {2}, .data = b}};
    char p1[600], p2[600];
    snprintf(p1, sizeof p1, "%s/one.safetensors", yt_tmpdir());
    snprintf(p2, sizeof p2, "%s/two.safetensors", yt_tmpdir());
    CHECK(yf_st_save(p1, ts, 2, NULL) == 0, "%s", yf_last_error());
    yf_st_writer w;
    CHECK(yf_st_writer_open(&w, p2, ts, 2, NULL) == 0, "%s", yf_last_error());
    CHECK(yf_st_writer_put(&w, a, sizeof a) == 0);
    CHECK(yf_st_writer_put(&w, b, sizeof b) == 0);
    CHECK(yf_st_writer_close(&w) == 0, "%s", yf_last_error());
    CHECK(yt_sh(NULL, 0, "cmp -s '%s' '%s'", p1, p2) == 0, "streamed file differs");
}

/* ---- malformed files, generated from the golden one ------------------------ */

typedef struct golden_st {
    char *raw;
    size_t len;
    uint64_t hlen;
} golden_st;

static golden_st read_golden(void) {
    golden_st g = {0};
    CHECK(yf_read_file(yt_shared_path(GOLDEN "model.safetensors"), &g.raw, &g.len) == 0, "%s", yf_last_error());
    if (g.raw) memcpy(&g.hlen, g.raw, 8);
    return g;
}

/* Writes the golden file with its header text edited (first occurrence of
 * `from` replaced by `to`) and the length field updated; returns the path. */
static const char *write_edited(const golden_st *g, const char *name, const char *from, const char *to) {
    static char path[600];
    snprintf(path, sizeof path, "%s/%s", yt_tmpdir(), name);
    char *h = yf_malloc(g->hlen + 1);
    memcpy(h, g->raw + 8, g->hlen);
    h[g->hlen] = 0;
    char *at = strstr(h, from);
    CHECK(at != NULL, "'%s' not in the golden header", from);
    size_t nh = g->hlen - strlen(from) + strlen(to);
    char *out = yf_malloc(8 + nh + (g->len - 8 - g->hlen));
    uint64_t nh64 = nh;
    memcpy(out, &nh64, 8);
    size_t pre = at ? (size_t)(at - h) : 0;
    memcpy(out + 8, h, pre);
    memcpy(out + 8 + pre, to, strlen(to));
    size_t post_from = at ? pre + strlen(from) : 0;
    memcpy(out + 8 + pre + strlen(to), h + post_from, g->hlen - post_from);
    memcpy(out + 8 + nh, g->raw + 8 + g->hlen, g->len - 8 - g->hlen);
    CHECK(yf_write_file_atomic(path, out, 8 + nh + (g->len - 8 - g->hlen)) == 0);
    free(h);
    free(out);
    return path;
}

static void expect_load_fails(const char *path, const char *needle) {
    yf_table tab;
    yf_table_init(&tab);
    yf_clear_error();
    int rc = yf_st_load(path, &tab);
    CHECK(rc == -1, "%s loaded", path);
    CHECK(tab.n == 0, "%d tensors left in the table after a failed load", tab.n);
    const char *e = yf_last_error();
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    CHECK(strstr(e, base) != NULL, "error does not name the file: %s", e);
    CHECK(strstr(e, needle) != NULL, "error '%s' does not mention '%s'", e, needle);
    CHECK(strchr(e, '\n') == NULL, "error is not one line");
    yf_table_free(&tab);
}

TEST(st_bad_truncated) {
    golden_st g = read_golden();
    if (!g.raw) return;
    char path[600];
    size_t cuts[] = {0, 4, 7, 8 + (size_t)g.hlen / 2, g.len - 1};
    const char *why[] = {"truncated", "truncated", "truncated", "header length", "outside the data area"};
    for (int i = 0; i < 5; i++) {
        snprintf(path, sizeof path, "%s/cut%zu.safetensors", yt_tmpdir(), cuts[i]);
        CHECK(yf_write_file_atomic(path, g.raw, cuts[i]) == 0);
        expect_load_fails(path, why[i]);
    }
    free(g.raw);
}

TEST(st_bad_header_length_past_end) {
    golden_st g = read_golden();
    if (!g.raw) return;
    char path[600];
    snprintf(path, sizeof path, "%s/hlen.safetensors", yt_tmpdir());
    uint64_t huge = (uint64_t)g.len; /* one page of header too many */
    memcpy(g.raw, &huge, 8);
    CHECK(yf_write_file_atomic(path, g.raw, g.len) == 0);
    expect_load_fails(path, "header length");
    huge = UINT64_MAX; /* must not overflow the bounds check */
    memcpy(g.raw, &huge, 8);
    CHECK(yf_write_file_atomic(path, g.raw, g.len) == 0);
    expect_load_fails(path, "header length");
    free(g.raw);
}

TEST(st_bad_header_json_and_offsets) {
    golden_st g = read_golden();
    if (!g.raw) return;
    expect_load_fails(write_edited(&g, "json.safetensors", "{\"model.embed", "[\"model.embed"), "JSON");
    expect_load_fails(write_edited(&g, "dtype.safetensors", "\"dtype\":\"F32\"", "\"dtype\":\"F64\""),
                      "unsupported dtype \"F64\"");
    expect_load_fails(write_edited(&g, "shape.safetensors", "\"shape\":[320,64]", "\"shape\":[320,65]"),
                      "needs 83200 bytes");
    expect_load_fails(write_edited(&g, "negshape.safetensors", "\"shape\":[320,64]", "\"shape\":[-320,64]"),
                      "shape[0]");
    expect_load_fails(write_edited(&g, "overlap.safetensors", "[81920,98304]", "[81916,98300]"), "overlap");
    expect_load_fails(write_edited(&g, "range.safetensors", "[0,81920]", "[600000,681920]"), "outside the data area");
    expect_load_fails(write_edited(&g, "reversed.safetensors", "[0,81920]", "[81920,0]"), "outside the data area");
    expect_load_fails(write_edited(&g, "noofs.safetensors", "\"data_offsets\":[0,81920]", "\"data_offsets\":[0]"),
                      "data_offsets");
    expect_load_fails(write_edited(&g, "dup.safetensors", "model.layers.0.self_attn.o_proj.weight",
                                   "model.layers.0.self_attn.v_proj.weight"),
                      "twice");
    free(g.raw);
}

TEST(st_bad_index) {
    const char *dir = yt_tmpdir();
    char p[700];
    const char *shard = yt_shared_path(GOLDEN "bf16/model-00001-of-00002.safetensors");
    CHECK(yt_sh(NULL, 0, "cp '%s' '%s/model-00001-of-00002.safetensors'", shard, dir) == 0);
    struct { const char *json, *needle; } cases[] = {
        {"{\"weight_map\": {\"model.norm.weight\": \"missing.safetensors\"}}", "missing.safetensors"},
        {"{\"weight_map\": {\"no.such.tensor\": \"model-00001-of-00002.safetensors\"}}", "no.such.tensor"},
        {"{\"weight_map\": {\"model.norm.weight\": \"../escape.safetensors\"}}", "inside the checkpoint"},
        {"{\"weight_map\": {}}", "empty"},
        {"{\"metadata\": {}}", "weight_map"},
        {"{\"weight_map\": ", "JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
        CHECK(yf_write_file_atomic(p, cases[i].json, strlen(cases[i].json)) == 0);
        yf_table tab;
        yf_table_init(&tab);
        CHECK(yf_st_load_index(p, &tab) == -1, "accepted %s", cases[i].json);
        CHECK(strstr(yf_last_error(), cases[i].needle) != NULL, "error '%s' lacks '%s'", yf_last_error(),
              cases[i].needle);
        yf_table_free(&tab);
    }
}

/* Random damage to the header bytes: load succeeds or fails cleanly, never
 * crashes (also run under ASan/UBSan). */
TEST(st_bad_random_header_mutations) {
    golden_st g = read_golden();
    if (!g.raw) return;
    char *m = yf_malloc(g.len);
    char path[600];
    snprintf(path, sizeof path, "%s/fuzz.safetensors", yt_tmpdir());
    yf_rng rng;
    yf_rng_seed(&rng, 99);
    int ok = 0, failed = 0;
    for (int iter = 0; iter < 200; iter++) {
        memcpy(m, g.raw, g.len);
        int flips = 1 + (int)(yf_rng_u64(&rng) % 3);
        for (int f = 0; f < flips; f++) {
            size_t at = (size_t)(yf_rng_u64(&rng) % (8 + g.hlen));
            m[at] = (char)(iter % 2 ? "0123456789[]{},:\"-eE."[yf_rng_u64(&rng) % 21] : (char)yf_rng_u64(&rng));
        }
        CHECK(yf_write_file_atomic(path, m, g.len) == 0);
        yf_table t;
        yf_table_init(&t);
        if (yf_st_load(path, &t) == 0) {
            ok++;
            for (int i = 0; i < t.n; i++) /* touch every byte: ASan would see an escape */
                for (size_t k = 0; k < t.t[i].nbytes; k += 64) (void)*(volatile char *)((char *)t.t[i].data + k);
        } else {
            failed++;
            CHECK(strstr(yf_last_error(), "fuzz.safetensors") != NULL, "%s", yf_last_error());
        }
        yf_table_free(&t);
    }
    printf("  %d mutated headers loaded, %d rejected\n", ok, failed);
    free(m);
    free(g.raw);
}
