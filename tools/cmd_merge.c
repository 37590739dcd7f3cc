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
#include "session.h"

int cmd_merge(int argc, char **argv) {
    const char *model = NULL, *adapter = NULL, *out = NULL;
    yc_quant qa = {0};
    const yc_opt opts[] = {
        YC_OPT("model", YC_STR, &model, "base model directory", .meta = "DIR", .required = true),
        YC_OPT("adapter", YC_STR, &adapter, "PEFT adapter directory", .meta = "DIR", .required = true),
        YC_OPT("quantize", YC_STR, &qa.type, "the adapter was trained over the base quantized so (train --quantize "
               "int8|q4): merge into those dequantized weights, written in the base's dtype", .meta = "TYPE",
               .def = "none"),
        YC_OPT("quantize-head", YC_FLAG, &qa.head, "with --quantize: the head was quantized too (train --quantize-head)"),
        YC_OPT_OUTPUT_DIR(&out, "the merged model directory to write: config.json + model.safetensors"),
    };
    int pr = yc_parse("merge", "Merge an adapter into the base weights (PEFT's merge_and_unload) and write the merged model\n"
                               "in the base model's dtype.",
                      argc, argv, opts, (int)(sizeof opts / sizeof *opts));
    if (pr) return pr == 1 ? 0 : 2;
    yf_model_opts mo = {0};
    if (yc_quant_opts("merge", &qa, &mo)) return 2;
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
    if (rc == 0 && yf_table_has_stored_quant(&tab))
        rc = yf_errorf("%s holds weights stored quantized (yuanft quantize): merge onto the model it was made "
                       "from, with --quantize TYPE", model);
    bool quant = mo.quant.type != YF_QT_NONE;
    /* W_deq + s B A: what the adapter was trained with */
    if (rc == 0 && quant) rc = yf_table_dequantized(&cfg, &tab, &mo);
    if (rc == 0) rc = yf_lora_merge_table(&lo, &cfg, &tab);
    if (rc == 0) rc = yf_model_dir_write(out, &cfg, tab.t, tab.n, NULL, NULL, model);
    if (rc == 0) {
        char sb[64], q[160] = "";
        if (quant)
            snprintf(q, sizeof q, " (into the base's weights quantized to %s and dequantized, written in their dtype)",
                     yf_qspec_str(&mo.quant, sb, sizeof sb));
        printf("merged %s (r=%d%s) into %s%s: %d tensors, %.1f s, peak RSS %zu MB\n", adapter, lo.cfg.r,
               lo.cfg.use_dora ? ", DoRA" : "", out, q, tab.n, yf_time() - t0, yf_peak_rss_mb());
    }
    yf_lora_free(&lo);
    yf_table_free(&tab);
    return rc ? yc_fail("merge") : 0;
}
