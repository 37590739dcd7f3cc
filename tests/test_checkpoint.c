#include "formats/checkpoint.h"
#include "harness.h"
#include "formats/safetensors.h"
#include "formats/weights.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GOLDEN "golden/yuan-tiny/"

/* A model directory in the test's tmpdir holding config.json and the given
 * golden files (symlinked, so nothing is copied). Returns the path. */
static const char *make_dir(const char *name, const char *config, const char *const *files) {
    static char dir[600];
    snprintf(dir, sizeof dir, "%s/%s", yt_tmpdir(), name);
    CHECK(yf_mkdir_p(dir) == 0, "%s", yf_last_error());
    if (config) CHECK(yt_sh(NULL, 0, "ln -sf \"$(readlink -f '%s')\" '%s/config.json'", yt_shared_path(config), dir) == 0);
    for (int i = 0; files && files[i]; i++) {
        const char *src = yt_shared_path(files[i]);
        const char *base = strrchr(files[i], '/') + 1;
        CHECK(yt_sh(NULL, 0, "ln -sf \"$(readlink -f '%s')\" '%s/%s'", src, dir, base) == 0);
    }
    return dir;
}

/* Opens dir and checks: config as golden, every yf_weight_specs tensor present
 * with its shape, every tensor equal to the fp32 safetensors (rounded to bf16
 * when the checkpoint is bf16). */
static void check_checkpoint(const char *dir, yf_dtype want, const char *what) {
    yf_config cfg;
    yf_table tab, ref;
    yf_table_init(&tab);
    yf_table_init(&ref);
    int rc = yf_checkpoint_open(dir, &cfg, &tab);
    CHECK(rc == 0, "%s: %s", what, yf_last_error());
    CHECK(yf_st_load(yt_shared_path(GOLDEN "model.safetensors"), &ref) == 0, "%s", yf_last_error());
    if (rc == 0) {
        CHECK(cfg.vocab_size == 320 && cfg.hidden_size == 64 && cfg.num_hidden_layers == 2, "%s config", what);
        yf_wspec *specs;
        int64_t n = yf_weight_specs(&cfg, &specs);
        for (int64_t i = 0; i < n; i++) {
            yf_tensor *t = yf_table_find(&tab, specs[i].name);
            CHECK(t != NULL, "%s: %s missing", what, specs[i].name);
            if (!t) continue;
            bool same = t->ndim == specs[i].ndim;
            for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == specs[i].shape[d];
            CHECK(same, "%s: %s has the wrong shape", what, specs[i].name);
        }
        free(specs);
        CHECK(tab.n == ref.n, "%s: %d tensors, expected %d", what, tab.n, ref.n);
        for (int i = 0; i < ref.n; i++) {
            yf_tensor *r = &ref.t[i], *t = yf_table_find(&tab, r->name);
            if (!t) {
                CHECK(false, "%s: %s missing", what, r->name);
                continue;
            }
            CHECK(t->dtype == want, "%s: %s is %s", what, r->name, yf_dtype_name(t->dtype));
            int64_t numel = yf_tensor_numel(r), bad = 0;
            CHECK(yf_tensor_numel(t) == numel, "%s: %s size", what, r->name);
            if (yf_tensor_numel(t) != numel) continue;
            for (int64_t k = 0; k < numel; k++) {
                float x = ((float *)r->data)[k];
                if (want == YF_BF16) bad += ((uint16_t *)t->data)[k] != yf_f32_to_bf16(x);
                else bad += ((float *)t->data)[k] != x;
            }
            CHECK(bad == 0, "%s: %s: %lld elements differ", what, r->name, (long long)bad);
        }
    }
    yf_table_free(&tab);
    yf_table_free(&ref);
}

TEST(ckpt_open_all_four_golden_formats) {
    const char *st[] = {GOLDEN "model.safetensors", NULL};
    const char *pt[] = {GOLDEN "pytorch_model.bin", NULL};
    const char *sh[] = {GOLDEN "bf16/model.safetensors.index.json", GOLDEN "bf16/model-00001-of-00002.safetensors",
                        GOLDEN "bf16/model-00002-of-00002.safetensors", NULL};
    const char *pb[] = {GOLDEN "bf16/pytorch_model.bin", NULL};
    check_checkpoint(make_dir("st", GOLDEN "config.json", st), YF_F32, "model.safetensors");
    check_checkpoint(make_dir("pt", GOLDEN "config.json", pt), YF_F32, "pytorch_model.bin");
    check_checkpoint(make_dir("shards", GOLDEN "bf16/config.json", sh), YF_BF16, "bf16 shards");
    check_checkpoint(make_dir("ptbf16", GOLDEN "bf16/config.json", pb), YF_BF16, "bf16 pytorch_model.bin");
    /* the golden directories themselves: safetensors preferred over .bin */
    check_checkpoint(yt_shared_path("golden/yuan-tiny"), YF_F32, "golden dir");
    check_checkpoint(yt_shared_path("golden/yuan-tiny/bf16"), YF_BF16, "golden bf16 dir");
    char *p = NULL;
    CHECK(yf_checkpoint_weights_path(yt_shared_path("golden/yuan-tiny/bf16"), &p) == 0);
    CHECK(p && strstr(p, "model.safetensors.index.json"), "chose %s", p ? p : "nothing");
    free(p);
}

TEST(ckpt_open_sharded_pytorch_index) {
    const char *pt[] = {GOLDEN "pytorch_model.bin", NULL};
    const char *dir = make_dir("ptidx", GOLDEN "config.json", pt);
    /* rename the .bin so only the index can find it */
    CHECK(yt_sh(NULL, 0, "cd '%s' && mv pytorch_model.bin pytorch_model-00001-of-00001.bin", dir) == 0);
    yf_table ref;
    yf_table_init(&ref);
    CHECK(yf_st_load(yt_shared_path(GOLDEN "model.safetensors"), &ref) == 0);
    char path[700];
    snprintf(path, sizeof path, "%s/pytorch_model.bin.index.json", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f) return;
    fprintf(f, "{\"metadata\": {}, \"weight_map\": {");
    for (int i = 0; i < ref.n; i++)
        fprintf(f, "%s\"%s\": \"pytorch_model-00001-of-00001.bin\"", i ? ", " : "", ref.t[i].name);
    fprintf(f, "}}\n");
    fclose(f);
    yf_table_free(&ref);
    check_checkpoint(dir, YF_F32, "pytorch_model.bin.index.json");
}

static void expect_open_fails(const char *dir, const char *needle) {
    yf_config cfg;
    yf_table tab;
    yf_table_init(&tab);
    yf_clear_error();
    CHECK(yf_checkpoint_open(dir, &cfg, &tab) == -1, "%s opened", dir);
    const char *e = yf_last_error();
    CHECK(strstr(e, needle) != NULL, "error '%s' does not mention '%s'", e, needle);
    CHECK(strchr(e, '\n') == NULL, "error is not one line");
    yf_table_free(&tab);
}

TEST(ckpt_bad_directories) {
    char dir[700];
    snprintf(dir, sizeof dir, "%s/nowhere", yt_tmpdir());
    expect_open_fails(dir, "nowhere: no such model directory");
    /* config only: no weights, the message names the dir and what was looked for */
    const char *d = make_dir("cfgonly", GOLDEN "config.json", NULL);
    expect_open_fails(d, "cfgonly: no weights found (looked for model.safetensors");
    /* weights only */
    const char *st[] = {GOLDEN "model.safetensors", NULL};
    d = make_dir("nocfg", NULL, st);
    expect_open_fails(d, "nocfg: no config.json");
    /* a config with a missing field */
    snprintf(dir, sizeof dir, "%s/badcfg", yt_tmpdir());
    d = make_dir("badcfg", NULL, st);
    CHECK(yt_sh(NULL, 0, "grep -v hidden_size '%s' > '%s/config.json'", yt_shared_path(GOLDEN "config.json"), dir) == 0);
    expect_open_fails(dir, "config.json: missing required field \"hidden_size\"");
    /* weights file that is not what its name says */
    snprintf(dir, sizeof dir, "%s/junk", yt_tmpdir());
    make_dir("junk", GOLDEN "config.json", NULL);
    CHECK(yt_sh(NULL, 0, "echo garbage > '%s/pytorch_model.bin'", dir) == 0);
    expect_open_fails(dir, "pytorch_model.bin: not a zip archive");
    /* unreadable directory (root reads anything: then only the above applies) */
    if (geteuid() != 0) {
        snprintf(dir, sizeof dir, "%s/locked", yt_tmpdir());
        make_dir("locked", GOLDEN "config.json", st);
        CHECK(yt_sh(NULL, 0, "chmod 000 '%s'", dir) == 0);
        expect_open_fails(dir, "cannot read the model directory");
        CHECK(yt_sh(NULL, 0, "chmod 755 '%s'", dir) == 0);
    }
}

/* ---- yuanft init ------------------------------------------------------------ */

TEST(init_writes_loadable_model_equal_to_weights_init) {
    const char *cfgpath = yt_shared_path(GOLDEN "config.json");
    char cfgcopy[600];
    snprintf(cfgcopy, sizeof cfgcopy, "%s", cfgpath);
    yf_dtype dts[] = {YF_F32, YF_BF16};
    for (int k = 0; k < 2; k++) {
        char out[700], log[2048];
        snprintf(out, sizeof out, "%s/init-%s", yt_tmpdir(), k ? "bf16" : "f32");
        int rc = yt_sh(log, sizeof log, "%s init --config '%s' --output-dir '%s' --seed 7 --dtype %s", yt_cli(), cfgcopy, out,
                       k ? "bf16" : "f32");
        CHECK(rc == 0, "yuanft init failed (%d): %s", rc, log);
        CHECK(strstr(log, "wrote ") && strstr(log, "30 tensors"), "output: %s", log);
        yf_config cfg;
        yf_table got, want;
        yf_table_init(&got);
        CHECK(yf_checkpoint_open(out, &cfg, &got) == 0, "%s", yf_last_error());
        CHECK(strcmp(cfg.torch_dtype, k ? "bfloat16" : "float32") == 0, "config torch_dtype %s", cfg.torch_dtype);
        CHECK(yf_weights_init_random(&cfg, 7, dts[k], &want) == 0);
        CHECK(got.n == want.n, "%d vs %d tensors", got.n, want.n);
        for (int i = 0; i < want.n && i < got.n; i++) {
            yf_tensor *a = &want.t[i], *b = &got.t[i];
            CHECK(!strcmp(a->name, b->name) && a->dtype == b->dtype && a->nbytes == b->nbytes &&
                      !memcmp(a->data, b->data, a->nbytes),
                  "%s differs from yf_weights_init_random", a->name);
        }
        /* the streamed file is byte for byte what yf_st_save writes */
        char ref[700];
        snprintf(ref, sizeof ref, "%s/ref.safetensors", yt_tmpdir());
        const char *meta[] = {"format", "pt", NULL};
        CHECK(yf_st_save(ref, want.t, want.n, meta) == 0);
        CHECK(yt_sh(NULL, 0, "cmp '%s' '%s/model.safetensors'", ref, out) == 0, "streamed file differs");
        yf_table_free(&got);
        yf_table_free(&want);
    }
}

TEST(init_bad_config_and_arguments) {
    char log[2048], dir[700], cfg[700];
    snprintf(dir, sizeof dir, "%s/out", yt_tmpdir());
    snprintf(cfg, sizeof cfg, "%s/broken-config.json", yt_tmpdir());
    CHECK(yt_sh(NULL, 0, "grep -v num_attention_heads '%s' > '%s'", yt_shared_path(GOLDEN "config.json"), cfg) == 0);
    int rc = yt_sh(log, sizeof log, "%s init --config '%s' --output-dir '%s'", yt_cli(), cfg, dir);
    CHECK(rc == 1, "exit %d: %s", rc, log);
    CHECK(strstr(log, "broken-config.json: missing required field \"num_attention_heads\""), "output: %s", log);
    CHECK(strchr(log, '\n') == strrchr(log, '\n'), "more than one line: %s", log);
    CHECK(!yf_file_exists(dir) || yt_sh(NULL, 0, "test -e '%s/model.safetensors'", dir) != 0,
          "weights written for a bad config");
    /* heads that do not divide hidden_size */
    CHECK(yt_sh(NULL, 0, "sed 's/\"num_attention_heads\": 4/\"num_attention_heads\": 5/' '%s' > '%s'",
                yt_shared_path(GOLDEN "config.json"), cfg) == 0);
    rc = yt_sh(log, sizeof log, "%s init --config '%s' --output-dir '%s'", yt_cli(), cfg, dir);
    CHECK(rc == 1 && strstr(log, "not divisible"), "exit %d: %s", rc, log);
    rc = yt_sh(log, sizeof log, "%s init --config '%s'", yt_cli(), yt_shared_path(GOLDEN "config.json"));
    CHECK(rc == 2 && strstr(log, "--output-dir is required"), "exit %d: %s", rc, log);
    rc = yt_sh(log, sizeof log, "%s init --config '%s' --output-dir '%s' --dtype f64", yt_cli(),
               yt_shared_path(GOLDEN "config.json"), dir);
    CHECK(rc == 2 && strstr(log, "f64"), "exit %d: %s", rc, log);
    /* an output directory that cannot be created */
    rc = yt_sh(log, sizeof log, "%s init --config '%s' --output-dir /proc/no/such/dir", yt_cli(),
               yt_shared_path(GOLDEN "config.json"));
    CHECK(rc == 1 && strstr(log, "/proc/no/such/dir"), "exit %d: %s", rc, log);
}
