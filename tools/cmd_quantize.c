/* yuanft quantize: a model directory whose frozen weights are stored
 * quantized (docs/quantization.md), so that loading it does not quantize
 * again: the commands that load a model take it as they take any model
 * directory, without --quantize. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/pool.h"
#include "commands.h"
#include "session.h"

int cmd_quantize(int argc, char **argv) {
    const char *model = NULL, *out = NULL;
    yc_quant qa = {0};
    const yc_opt opts[] = {
        YC_OPT_MODEL(&model),
        YC_OPT_OUTPUT_DIR(&out, "the quantized model directory to write: config.json + model.safetensors"),
        YC_OPT("type", YC_STR, &qa.type, "int8 or q4", .meta = "TYPE", .required = true),
        YC_OPT("quantize-head", YC_FLAG, &qa.head, "the LM head (the tied embedding) too"),
    };
    int pr = yc_parse("quantize", "Write a model directory with the projection weights (and with --quantize-head the head)\n"
                                  "stored quantized, which the other commands load without quantizing again.",
                      argc, argv, opts, (int)(sizeof opts / sizeof *opts));
    if (pr) return pr == 1 ? 0 : 2;
    yf_model_opts mo = {0};
    if (yc_quant_opts("quantize", &qa, &mo)) return 2;
    if (mo.quant.type == YF_QT_NONE) return yc_usage_error("quantize", "--type must be int8 or q4");
    char a[PATH_MAX], b[PATH_MAX];
    if (realpath(model, a) && realpath(out, b) && !strcmp(a, b))
        return yc_usage_error("quantize", "--output-dir must not be the model directory (%s)", model);
    yf_par_adapt_to_load();
    double t0 = yf_time();
    yf_model *m = NULL;
    if (yf_model_load(model, &mo, &m)) return yc_fail("quantize");
    double tq = yf_time() - t0;
    size_t qb, wb = yf_model_weight_bytes(m, &qb);
    int rc = yf_model_save_quantized(m, out, model);
    if (rc == 0) {
        char sb[64];
        printf("quantized %s to %s in %s: weights a token reads %.1f MB (%.1f MB of them quantized); loaded and "
               "quantized in %.1f s, %.1f s in all, peak RSS %zu MB\n",
               model, yf_qspec_str(&mo.quant, sb, sizeof sb), out, wb / 1e6, qb / 1e6, tq, yf_time() - t0,
               yf_peak_rss_mb());
    }
    yf_model_free(m);
    return rc ? yc_fail("quantize") : 0;
}
