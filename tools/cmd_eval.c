/* yuanft eval: entity-level precision / recall / F1 of extraction answers
 * against the gold answers of a data file (eval.h has the rules). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "task/data.h"
#include "task/eval.h"
#include "base/jsontext.h"
#include "task/extract.h"
#include "kernels/cpu/kernels.h"
#include "session.h"

int cmd_eval(int argc, char **argv) {
    const char *pred_path = NULL, *data_path = NULL, *report = NULL;
    const char *model = NULL, *adapter = NULL, *tokenizer = NULL, *tpl = "resume", *save_pred = NULL;
    const char *constrain = "spans", *types = NULL;
    int64_t max_new = 128, batch = 16, limit = 0;
    const char *prefix_cache = "on";
    bool bf16 = false, lenient = false;
    yc_quant qa = {0};
    const yc_opt opts[] = {
        YC_OPT("data", YC_STR, &data_path, "gold records: JSON array or JSON Lines of {\"input\", \"output\"}",
               .meta = "FILE", .required = true),
        YC_OPT("predictions", YC_STR, &pred_path, "answers, one a line in the data's order: a JSON string (the model's "
               "text) or the JSON object", .meta = "FILE"),
        YC_OPT("model", YC_STR, &model, "or: a model directory to extract with (greedy, batched)", .meta = "DIR"),
        YC_OPT_ADAPTER(&adapter, "with --model: "),
        YC_QUANT_OPTS(&qa, "with --model: "),
        YC_OPT_TOKENIZER(&tokenizer, "with --model: "),
        YC_OPT_PROMPT_TEMPLATE(&tpl, "with --model: "),
        YC_OPT("max-new-tokens", YC_INT, &max_new, "with --model: answer length cap in tokens"),
        YC_OPT("batch", YC_INT, &batch, "with --model: prompts decoded together"),
        YC_OPT_CONSTRAIN(&constrain, "with --model: "),
        YC_OPT_TYPES(&types, "with --model: "),
        YC_OPT("lenient", YC_FLAG, &lenient, "recover what can be read from answers that are not valid JSON (the strict "
               "score, such an answer empty, is printed beside it)"),
        YC_OPT("limit", YC_INT, &limit, "score only the first N records; 0: all"),
        YC_OPT("save-predictions", YC_STR, &save_pred, "with --model: write the answers here, one JSON string a line",
               .meta = "FILE"),
        YC_OPT("report", YC_STR, &report, "also write the scores as JSON here (keys micro, per_type, ...)", .meta = "FILE"),
        YC_OPT("prefix-cache", YC_STR, &prefix_cache, "with --model: on: the prompts' common prefix (the template) is "
               "computed once and copied into every prompt's cache; off: each prompt whole", .meta = "on|off"),
        YC_OPT_BF16(&bf16),
    };
    int rc = yc_parse("eval", "Score extraction answers: entity-level precision, recall and F1 per type and micro-averaged,\n"
                              "from a predictions file or by running a model (and adapter) over the data's inputs\n"
                              "(constrained decoding by default). Strict by default: an answer that is not valid JSON\n"
                              "counts as empty, as the recipe's json.loads would; --lenient recovers them.",
                      argc, argv, opts, (int)(sizeof opts / sizeof *opts));
    if (rc) return rc == 1 ? 0 : 2;
    bool no_cache = false;
    if (yc_prefix_cache_flag("eval", prefix_cache, &no_cache)) return 2;
    if (bf16) yf_kernels_set_precision(YF_PREC_BF16);
    yf_model_opts mo = {0};
    if (yc_quant_opts("eval", &qa, &mo)) return 2;
    if (!pred_path == !model) return yc_usage_error("eval", "give exactly one of --predictions / --model");
    yf_constrain_mode mode;
    uint32_t type_mask = 0;
    if (yf_constrain_mode_parse(constrain, &mode) || (types && yf_types_parse(types, &type_mask)))
        return yc_usage_error("eval", "%s", yf_last_error());
    if (model && (batch < 1 || batch > 4096 || max_new < 1 || max_new > 65536))
        return yc_usage_error("eval", "--batch must be in [1, 4096] and --max-new-tokens in [1, 65536]");
    yf_records recs;
    if (yf_data_load(data_path, &recs)) return yc_fail("eval");
    if (limit > 0 && (size_t)limit < recs.n) {
        for (size_t i = (size_t)limit; i < recs.n; i++) free(recs.r[i].input), free(recs.r[i].output);
        recs.n = (size_t)limit;
    }
    char **pred = NULL;
    size_t np = 0;
    if (model) {
        yc_session s;
        if (yc_session_open(&s, model, adapter, tokenizer, true, &mo)) {
            yf_records_free(&recs);
            return yc_fail("eval");
        }
        yf_extractor x = {.model = s.model, .lora = s.has_lora ? &s.lora : NULL, .tok = s.tok, .vmap = &s.vmap,
                          .max_new_tokens = max_new, .max_length = 384, .batch = batch, .progress = true,
                          .no_prefix_cache = no_cache, .constrain = mode, .types = type_mask};
        const char **in = yf_malloc((recs.n ? recs.n : 1) * sizeof *in);
        for (size_t i = 0; i < recs.n; i++) in[i] = recs.r[i].input;
        int xrc = yf_template_load(tpl, &x.tpl);
        if (xrc == 0) xrc = yf_extract_run(&x, in, recs.n, &pred);
        if (xrc == 0) yc_print_gen_stats("eval", &x.stats);
        np = recs.n;
        free(in);
        yf_template_free(&x.tpl);
        yc_session_close(&s);
        if (xrc) {
            yf_records_free(&recs);
            return yc_fail("eval");
        }
        if (save_pred && yf_write_json_lines(save_pred, (const char *const *)pred, np)) {
            yf_strv_free(pred, np);
            yf_records_free(&recs);
            return yc_fail("eval");
        }
    } else if (yf_eval_read_predictions(pred_path, &pred, &np)) {
        yf_records_free(&recs);
        return yc_fail("eval");
    }
    if (np != recs.n) {
        fprintf(stderr, "yuanft eval: %s has %zu lines but %s has %zu records: one answer a line is needed, in the data's order\n",
                pred_path, np, data_path, recs.n);
        yf_strv_free(pred, np);
        yf_records_free(&recs);
        return 1;
    }
    const char **gold = malloc((recs.n ? recs.n : 1) * sizeof *gold), **inputs = malloc((recs.n ? recs.n : 1) * sizeof *inputs);
    for (size_t i = 0; i < recs.n; i++) gold[i] = recs.r[i].output, inputs[i] = recs.r[i].input;
    yf_eval_result res;
    rc = (lenient ? yf_eval_score_lenient : yf_eval_score)((const char *const *)pred, gold, recs.n, data_path, &res);
    int64_t invented = yf_eval_not_in_input((const char *const *)pred, inputs, recs.n);
    free(gold);
    free(inputs);
    yf_strv_free(pred, np);
    yf_records_free(&recs);
    if (rc) return yc_fail("eval");
    yf_eval_print(&res, stdout);
    printf("predicted strings not found in the input %lld\n", (long long)invented);
    if (report && yf_eval_write_report(&res, report)) return yc_fail("eval");
    if (report) printf("report written to %s\n", report);
    return 0;
}
