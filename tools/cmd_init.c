/* yuanft init: write a randomly initialised model directory (HF layout:
 * config.json + model.safetensors) for a config. The weights are generated
 * and written one tensor at a time, so Yuan2-2B (4.2 GB in bf16) needs only
 * its largest tensor (the embedding, 553 MB) in memory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "formats/checkpoint.h"
#include "formats/config.h"
#include "formats/safetensors.h"
#include "task/data.h"
#include "tokenizer/tokenizer.h"
#include "formats/vocab_map.h"
#include "formats/weights.h"

/* The tokenizer ids that text data uses: every record's prompt (through the
 * template) and answer, plus the special tokens the recipe relies on. */
static int collect_vocab(const char *files, const char *tok_path, const char *template_spec, yf_vocab_map *vm) {
    yf_tokenizer *tok = NULL;
    yf_template tpl = {0};
    yf_encoder enc;
    int rc = -1;
    int64_t n = 0, cap = 1 << 16;
    int64_t *ids = yf_malloc((size_t)cap * sizeof(int64_t));
    char *list = yf_strdup(files), *save = NULL;
    if (yf_tokenizer_load(tok_path, &tok) || yf_template_load(template_spec, &tpl) || yf_encoder_from_tokenizer(tok, &enc))
        goto out;
    static const char *specials[] = {"<unk>", "<eod>", "<sep>", "<pad>"};
    for (size_t i = 0; i < sizeof specials / sizeof *specials; i++) {
        int64_t id = yf_tokenizer_piece_id(tok, specials[i]);
        if (id >= 0) ids[n++] = id;
    }
    for (char *f = strtok_r(list, ",", &save); f; f = strtok_r(NULL, ",", &save)) {
        yf_records recs;
        yf_dataset ds;
        if (yf_data_load(f, &recs)) goto out;
        int brc = yf_dataset_build(&recs, &tpl, &enc, 0, &ds);
        yf_records_free(&recs);
        if (brc) goto out;
        for (size_t e = 0; e < ds.n; e++)
            for (int64_t t = 0; t < ds.ex[e].len; t++) {
                if (n == cap) ids = yf_realloc(ids, (size_t)(cap *= 2) * sizeof(int64_t));
                ids[n++] = ds.ex[e].ids[t];
            }
        yf_dataset_free(&ds);
    }
    yf_vocab_map_build(vm, ids, n);
    rc = 0;
out:
    free(list);
    free(ids);
    yf_template_free(&tpl);
    if (tok) yf_tokenizer_free(tok);
    return rc;
}

/* The random initialisation, one tensor at a time in checkpoint order (the
 * values yf_weights_init_random gives for the same seed). */
typedef struct init_src {
    const yf_config *cfg;
    const yf_wspec *specs;
    yf_dtype dt;
    yf_rng rng;
} init_src;

static int init_tensor(void *ctx, int64_t i, void *buf, const void **data) {
    init_src *s = ctx;
    yf_weight_fill_random(s->cfg, &s->specs[i], &s->rng, s->dt, buf);
    *data = buf;
    return 0;
}

int cmd_init(int argc, char **argv) {
    const char *config = NULL, *out = NULL, *dtype_s = NULL, *tokenizer = NULL, *vocab_from = NULL;
    const char *template_spec = "resume";
    int64_t seed = 42;
    const yc_opt opts[] = {
        YC_OPT("config", YC_STR, &config, "the config.json to initialise", .meta = "FILE", .required = true),
        YC_OPT_OUTPUT_DIR(&out, "the model directory to write, created if needed"),
        YC_OPT("seed", YC_INT, &seed, "random seed"),
        YC_OPT("dtype", YC_STR, &dtype_s, "bf16 or f32", .meta = "NAME", .def = "the config's torch_dtype: bf16 for bfloat16, else f32"),
        YC_OPT("tokenizer", YC_STR, &tokenizer, "tokenizer.model to copy into the model directory", .meta = "FILE"),
        YC_OPT("vocab-from", YC_STR, &vocab_from, "prune the vocabulary to the ids these record files (.jsonl, "
               "comma-separated) use; writes vocab_map.safetensors (needs --tokenizer)", .meta = "FILES"),
        YC_OPT_PROMPT_TEMPLATE(&template_spec, "with --vocab-from: "),
    };
    int pr = yc_parse("init", "Write a model directory for a config: config.json and model.safetensors with the HF model's\n"
                              "random initialisation, generated and written one tensor at a time.",
                      argc, argv, opts, (int)(sizeof opts / sizeof *opts));
    if (pr) return pr == 1 ? 0 : 2;
    yf_config cfg;
    if (yf_config_load(config, &cfg)) return yc_fail("init");
    yf_dtype dt;
    if (!dtype_s) dt = strcmp(cfg.torch_dtype, "bfloat16") == 0 ? YF_BF16 : YF_F32;
    else if (!strcmp(dtype_s, "bf16") || !strcmp(dtype_s, "bfloat16")) dt = YF_BF16;
    else if (!strcmp(dtype_s, "f32") || !strcmp(dtype_s, "float32")) dt = YF_F32;
    else return yc_usage_error("init", "--dtype must be bf16 or f32, not '%s'", dtype_s);
    strcpy(cfg.torch_dtype, dt == YF_BF16 ? "bfloat16" : "float32");
    if (vocab_from && !tokenizer) return yc_usage_error("init", "--vocab-from needs --tokenizer");
    yf_vocab_map vm = {0};
    if (vocab_from) {
        if (collect_vocab(vocab_from, tokenizer, template_spec, &vm)) return yc_fail("init");
        /* the model works in its own ids: the special tokens of the config follow */
        cfg.vocab_size = vm.n;
        cfg.eod_token = yf_vocab_to_model(&vm, cfg.eod_token);
        cfg.sep_token = yf_vocab_to_model(&vm, cfg.sep_token);
        cfg.pad_token_id = yf_vocab_to_model(&vm, cfg.pad_token_id);
        printf("vocabulary pruned to %lld ids used by %s\n", (long long)vm.n, vocab_from);
    }
    if (yf_mkdir_p(out)) return yc_fail("init");
    if (vm.n && yf_vocab_map_save(&vm, out)) return yc_fail("init");
    yf_vocab_map_free(&vm);
    if (tokenizer) {
        char *tdst = yf_path_join(out, "tokenizer.model");
        int trc = yf_copy_file(tokenizer, tdst, YF_MAX_TOKENIZER_BYTES);
        free(tdst);
        if (trc) return yc_fail("init");
    }

    double t0 = yf_time();
    yf_wspec *specs;
    int64_t n = yf_weight_specs(&cfg, &specs);
    yf_tensor *ts = yf_calloc((size_t)n, sizeof *ts);
    int64_t nparams = 0;
    uint64_t total = 0;
    for (int64_t i = 0; i < n; i++) {
        ts[i].name = specs[i].name;
        ts[i].dtype = dt;
        ts[i].ndim = specs[i].ndim;
        for (int d = 0; d < specs[i].ndim; d++) ts[i].shape[d] = specs[i].shape[d];
        int64_t numel = yf_tensor_numel(&ts[i]);
        ts[i].nbytes = (size_t)numel * yf_dtype_size(dt);
        nparams += numel;
        total += ts[i].nbytes;
    }
    init_src src = {.cfg = &cfg, .specs = specs, .dt = dt};
    yf_rng_seed(&src.rng, (uint64_t)seed);
    int rc = yf_model_dir_write(out, &cfg, ts, n, init_tensor, &src, NULL);
    char *wpath = yf_path_join(out, "model.safetensors"), *cpath = yf_path_join(out, "config.json");
    if (rc == 0)
        printf("wrote %s (%lld tensors, %lld parameters, %s, %.1f MB) and %s: seed %lld, %.1f s, peak RSS %zu MB\n",
               wpath, (long long)n, (long long)nparams, dt == YF_BF16 ? "bf16" : "f32", (double)total / 1e6, cpath,
               (long long)seed, yf_time() - t0, yf_peak_rss_mb());
    free(ts);
    free(specs);
    free(wpath);
    free(cpath);
    return rc ? yc_fail("init") : 0;
}
