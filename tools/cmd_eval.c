/* yuanft eval: entity-level precision / recall / F1 of extraction answers
 * against the gold answers of a data file (eval.h has the rules). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "data.h"
#include "eval.h"

int cmd_eval(int argc, char **argv) {
    const char *pred_path = NULL, *data_path = NULL, *report = NULL;
    yc_opt opts[] = {
        {"predictions", YC_STR, &pred_path, "answers, one a line in the data's order: a JSON string (the model's text) or the JSON object"},
        {"data", YC_STR, &data_path, "gold records: JSON array or JSON Lines of {\"input\", \"output\"}"},
        {"report", YC_STR, &report, "also write the scores as JSON here (keys micro, per_type, ...)"},
    };
    int rc = yc_parse("eval", "Scores extraction answers: entity-level precision, recall and F1 per type and micro-averaged.",
                      argc, argv, opts, 3);
    if (rc) return rc == 1 ? 0 : 2;
    if (!pred_path || !data_path) {
        fprintf(stderr, "yuanft eval: --predictions and --data are required\n");
        return 2;
    }
    yf_records recs;
    if (yf_data_load(data_path, &recs)) return yc_fail("eval");
    char **pred = NULL;
    size_t np = 0;
    if (yf_eval_read_predictions(pred_path, &pred, &np)) {
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
    const char **gold = malloc((recs.n ? recs.n : 1) * sizeof *gold);
    for (size_t i = 0; i < recs.n; i++) gold[i] = recs.r[i].output;
    yf_eval_result res;
    rc = yf_eval_score((const char *const *)pred, gold, recs.n, data_path, &res);
    free(gold);
    yf_strv_free(pred, np);
    yf_records_free(&recs);
    if (rc) return yc_fail("eval");
    yf_eval_print(&res, stdout);
    if (report && yf_eval_write_report(&res, report)) return yc_fail("eval");
    if (report) printf("report written to %s\n", report);
    return 0;
}
