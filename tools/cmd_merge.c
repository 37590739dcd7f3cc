/* yuanft merge: PEFT's merge_and_unload: writes a model directory whose
 * projection weights include the adapter (W + s B A; DoRA rescaled per row
 * to its magnitude), in the base model's dtype. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/pool.h"
#include "formats/checkpoint.h"
#include "cli.h"
#include "commands.h"
#include "lora/lora.h"
#include "formats/safetensors.h"

int cmd_merge(int argc, char **argv) {
    const char *model = NULL, *adapter = NULL, *out = NULL;
    const yc_opt opts[] = {
        YC_OPT("model", YC_STR, &model, "base model directory", .meta = "DIR", .required = true),
        YC_OPT("adapter", YC_STR, &adapter, "PEFT adapter directory", .meta = "DIR", .required = true),
        YC_OPT_OUTPUT_DIR(&out, "the merged model directory to write: config.json + model.safetensors"),
    };
    int pr = yc_parse("merge", "Merge an adapter into the base weights (PEFT's merge_and_unload) and write the merged model\n"
                               "in the base model's dtype.",
                      argc, argv, opts, (int)(sizeof opts / sizeof *opts));
    if (pr) return pr == 1 ? 0 : 2;
    char a[PATH_MAX], b[PATH_MAX];
    if (realpath(model, a) && realpath(out, b) && !strcmp(a, b))
        return yc_usage_error("merge", "--output-dir must not be the base model directory (%s)", model);
    yf_par_adapt_to_load();
    double t0 = yf_time();
    yf_config cfg;
    yf_table tab;
    yf_table_init(&tab);
    yf_lora lo = {0};
    int rc = yf_checkpoint_open(model, &cfg, &tab);
    if (rc == 0) rc = yf_lora_load(adapter, &cfg, &lo);
    if (rc == 0) rc = yf_lora_merge_table(&lo, &cfg, &tab);
    if (rc == 0) rc = yf_model_dir_write(out, &cfg, tab.t, tab.n, NULL, NULL, model);
    if (rc == 0)
        printf("merged %s (r=%d%s) into %s: %d tensors, %.1f s, peak RSS %zu MB\n", adapter, lo.cfg.r,
               lo.cfg.use_dora ? ", DoRA" : "", out, tab.n, yf_time() - t0, yf_peak_rss_mb());
    yf_lora_free(&lo);
    yf_table_free(&tab);
    return rc ? yc_fail("merge") : 0;
}
