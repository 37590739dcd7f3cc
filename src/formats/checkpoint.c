/* checkpoint: finds and loads the files of a Hugging Face model directory,
 * and writes one. */
#include "formats/checkpoint.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/safetensors.h"
#include "formats/torch_pickle.h"
#include "formats/vocab_map.h"

static int load_torch_index(const char *path, yf_table *tab) { return yf_shard_index_load(path, yf_torch_load, tab); }

/* In order of preference: safetensors is checked and mmapped without a
 * pickle machine, so it wins when a directory holds both. */
static const struct { const char *name; yf_shard_loader load; } g_formats[] = {
    {"model.safetensors", yf_st_load},
    {"model.safetensors.index.json", yf_st_load_index},
    {"pytorch_model.bin", yf_torch_load},
    {"pytorch_model.bin.index.json", load_torch_index},
};
#define NFORMATS (int)(sizeof g_formats / sizeof *g_formats)

static int check_dir(const char *dir) {
    if (!yf_dir_exists(dir)) return yf_errorf("%s: no such model directory", dir);
    if (access(dir, R_OK | X_OK) != 0) return yf_errorf("%s: cannot read the model directory: %s", dir, strerror(errno));
    return 0;
}

static int find_format(const char *dir, char **path) {
    for (int i = 0; i < NFORMATS; i++) {
        char *p = yf_path_join(dir, g_formats[i].name);
        if (yf_file_exists(p)) {
            *path = p;
            return i;
        }
        free(p);
    }
    *path = NULL;
    return yf_errorf("%s: no weights found (looked for model.safetensors, model.safetensors.index.json, "
                     "pytorch_model.bin, pytorch_model.bin.index.json)",
                     dir);
}

int yf_checkpoint_weights_path(const char *dir, char **path) {
    *path = NULL;
    if (check_dir(dir)) return -1;
    return find_format(dir, path) < 0 ? -1 : 0;
}

int yf_checkpoint_open(const char *dir, yf_config *cfg, yf_table *tab) {
    if (check_dir(dir)) return -1;
    char *cpath = yf_path_join(dir, "config.json");
    if (!yf_file_exists(cpath)) {
        yf_errorf("%s: no config.json in the model directory", dir);
        free(cpath);
        return -1;
    }
    int rc = yf_config_load(cpath, cfg);
    free(cpath);
    if (rc) return -1;
    char *wpath;
    int f = find_format(dir, &wpath);
    if (f < 0) return -1;
    rc = g_formats[f].load(wpath, tab);
    free(wpath);
    return rc;
}

/* ---- writing a model directory ----------------------------------------------------- */

int yf_model_dir_write(const char *dir, const yf_config *cfg, const yf_tensor *ts, int64_t n, yf_tensor_source src,
                       void *ctx, const char *copy_from) {
    return yf_model_dir_write_meta(dir, cfg, ts, n, src, ctx, copy_from, NULL);
}

int yf_model_dir_write_meta(const char *dir, const yf_config *cfg, const yf_tensor *ts, int64_t n,
                            yf_tensor_source src, void *ctx, const char *copy_from, const char *const *more) {
    if (n <= 0 || n > INT_MAX) return yf_errorf("%s: a model directory needs 1 to %d tensors", dir, INT_MAX);
    int rc = yf_mkdir_p(dir);
    char *wpath = yf_path_join(dir, "model.safetensors"), *cpath = yf_path_join(dir, "config.json");
    /* transformers refuses safetensors files without format=pt metadata */
    const char *meta[32] = {"format", "pt"};
    for (int i = 0; more && more[i]; i++) {
        YF_CHECK(i < 28);
        meta[2 + i] = more[i];
    }
    size_t maxbytes = 1;
    for (int64_t i = 0; i < n; i++)
        if (ts[i].nbytes > maxbytes) maxbytes = ts[i].nbytes;
    yf_st_writer wr;
    if (rc == 0) rc = yf_st_writer_open(&wr, wpath, ts, (int)n, meta);
    void *buf = rc == 0 && src ? yf_aligned_alloc(maxbytes) : NULL;
    for (int64_t i = 0; rc == 0 && i < n; i++) {
        const void *data = ts[i].data;
        if (src) {
            data = buf;
            if (src(ctx, i, buf, &data) != 0) {
                yf_st_writer_abort(&wr);
                rc = -1;
                break;
            }
        }
        rc = yf_st_writer_put(&wr, data, ts[i].nbytes);
    }
    if (rc == 0) rc = yf_st_writer_close(&wr);
    if (rc == 0) {
        yf_config c = *cfg;
        yf_dtype d0 = ts[0].dtype;
        snprintf(c.torch_dtype, sizeof c.torch_dtype, "%s",
                 d0 == YF_BF16 ? "bfloat16" : d0 == YF_F16 ? "float16" : "float32");
        rc = yf_config_save(cpath, &c);
    }
    /* a model directory is complete with its tokenizer and vocabulary map */
    static const char *const extra[] = {"tokenizer.model", YF_VOCAB_MAP_FILE};
    for (size_t k = 0; rc == 0 && copy_from && k < sizeof extra / sizeof *extra; k++) {
        char *from = yf_path_join(copy_from, extra[k]), *to = yf_path_join(dir, extra[k]);
        if (yf_file_exists(from)) rc = yf_copy_file(from, to, k == 0 ? YF_MAX_TOKENIZER_BYTES : YF_MAX_TEXT_BYTES);
        free(from);
        free(to);
    }
    free(buf);
    free(wpath);
    free(cpath);
    return rc;
}
