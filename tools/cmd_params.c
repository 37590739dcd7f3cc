/* yuanft params: PEFT's print_trainable_parameters line for a LoRA/DoRA set-up,
 * by arithmetic on the config (no weights are read). */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "commands.h"
#include "formats/config.h"
#include "lora/params.h"

int cmd_params(int argc, char **argv) {
    const char *model_dir = NULL, *config = NULL;
    const char *targets = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj";
    int64_t r = 8;
    double alpha = 32;
    bool dora = false, rslora = false, full = false;
    const yc_opt opts[] = {
        YC_OPT("model", YC_STR, &model_dir, "model directory (its config.json is read)", .meta = "DIR"),
        YC_OPT("config", YC_STR, &config, "a config.json file (instead of --model)", .meta = "FILE"),
        YC_OPT("lora-r", YC_INT, &r, "LoRA rank"),
        YC_OPT("lora-alpha", YC_FLOAT, &alpha, "LoRA alpha; does not change the counts"),
        YC_OPT("target-modules", YC_STR, &targets, "comma-separated projections, or all-linear (the seven projections)",
               .meta = "LIST"),
        YC_OPT("use-dora", YC_FLAG, &dora, "add DoRA magnitude vectors (one per output row)"),
        YC_OPT("use-rslora", YC_FLAG, &rslora, "rank-stabilised scaling (does not change the counts)"),
        YC_OPT("full-finetune", YC_FLAG, &full, "every weight trainable, no adapter"),
    };
    int prc = yc_parse("params", "Print PEFT's print_trainable_parameters line for a model config and a LoRA set-up\n"
                                 "(arithmetic on the config: no weights are read).",
                       argc, argv, opts, (int)(sizeof opts / sizeof *opts));
    if (prc) return prc == 1 ? 0 : 2;
    if (!model_dir == !config) return yc_usage_error("params", "give exactly one of --model DIR or --config FILE");
    yf_config cfg;
    char *path = config ? yf_strdup(config) : yf_path_join(model_dir, "config.json");
    int rc = yf_config_load(path, &cfg);
    free(path);
    if (rc) return yc_fail("params");
    yf_param_counts n;
    char line[200];
    if (full) {
        if (yf_count_params(&cfg, NULL, &n)) return yc_fail("params");
        yf_format_trainable(line, sizeof line, n.base, n.base);
    } else {
        if (r <= 0 || r > 65536) {
            yf_errorf("--lora-r must be a positive rank (got %lld)", (long long)r);
            return yc_fail("params");
        }
        yf_lora_cfg lc = {.r = (int)r, .alpha = (float)alpha, .use_dora = dora, .use_rslora = rslora};
        if (yf_lora_parse_targets(targets, &lc.targets) || yf_count_params(&cfg, &lc, &n)) return yc_fail("params");
        yf_format_trainable(line, sizeof line, n.adapter, n.base + n.adapter);
    }
    printf("%s\n", line);
    return 0;
}
