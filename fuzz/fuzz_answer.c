/* Answer parsing, lenient (a model's text: yf_answer_parse never fails) and
 * strict (gold answers: yf_eval_score). Property: a parsed answer, formatted
 * and parsed again, is valid JSON with the same entities. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "task/eval.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    yf_answer a, b;
    yf_answer_parse((const char *)data, n, &a);
    char *f = yf_answer_format(&a);
    yf_answer_parse(f, strlen(f), &b);
    if (b.status != YF_ANS_OK) __builtin_trap();
    for (int t = 0; t < YF_N_TYPES; t++) {
        if (a.ent[t].n != b.ent[t].n) __builtin_trap();
        for (size_t i = 0; i < a.ent[t].n; i++)
            if (strcmp(a.ent[t].s[i], b.ent[t].s[i])) __builtin_trap();
    }
    /* strict: the input as a gold answer and as a prediction */
    char *s = malloc(n + 1);
    memcpy(s, data, n);
    s[n] = 0;
    const char *pred[1] = {f}, *gold[1] = {s};
    yf_eval_result r;
    (void)yf_eval_score(pred, gold, 1, "fuzz", &r);
    free(s);
    free(f);
    yf_answer_free(&a);
    yf_answer_free(&b);
    return 0;
}
