/* checkpoint: finds and loads the files of a Hugging Face model directory. */
#include "formats/checkpoint.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/safetensors.h"
#include "formats/torch_pickle.h"

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
