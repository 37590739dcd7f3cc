/* yuanft extract: one résumé a line in, one JSON object a line out. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "task/eval.h"
#include "base/jsontext.h"
#include "task/extract.h"
#include "kernels/cpu/kernels.h"
#include "session.h"

/* Reads lines (without their newline); a final line without newline counts. */
static int read_lines(FILE *f, const char *name, char ***lines, size_t *n) {
    size_t cap = 64;
    *n = 0;
    *lines = yf_malloc(cap * sizeof **lines);
    char *buf = NULL;
    size_t bcap = 0;
    ssize_t len;
    while ((len = getline(&buf, &bcap, f)) >= 0) {
        while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r')) buf[--len] = 0;
        if (*n == cap) *lines = yf_realloc(*lines, (cap *= 2) * sizeof **lines);
        (*lines)[(*n)++] = yf_strdup(buf);
    }
    free(buf);
    if (ferror(f)) {
        yf_strv_free(*lines, *n);
        return yf_errorf("%s: read error", name);
    }
    return 0;
}

static int read_file_lines(const char *path, char ***lines, size_t *n) {
    char *buf;
    size_t len;
    if (yf_read_file_max(path, YF_MAX_TEXT_BYTES, &buf, &len)) return -1;
    if (len == 0) { /* no lines (fmemopen refuses a 0-byte stream) */
        free(buf);
        *lines = yf_malloc(sizeof **lines);
        *n = 0;
        return 0;
    }
    FILE *f = fmemopen(buf, len, "r");
    int rc = f ? read_lines(f, path, lines, n) : yf_errorf("%s: cannot read", path);
    if (f) fclose(f);
    free(buf);
    return rc;
}

int cmd_extract(int argc, char **argv) {
    const char *model = NULL, *adapter = NULL, *input = NULL, *tokenizer = NULL, *tpl = "resume", *raw_out = NULL;
    const char *constrain = "spans", *types = NULL;
    int64_t max_new = 128, batch = 16, max_length = 384;
    bool bf16 = false;
    const char *prefix_cache = "on";
    yc_quant qa = {0};
    const yc_opt opts[] = {
        YC_OPT_MODEL(&model),
        YC_OPT_ADAPTER(&adapter, ""),
        YC_QUANT_OPTS(&qa, ""),
        YC_OPT("input", YC_STR, &input, "résumé text, one a line", .meta = "FILE", .def = "stdin"),
        YC_OPT_TOKENIZER(&tokenizer, ""),
        YC_OPT_PROMPT_TEMPLATE(&tpl, ""),
        YC_OPT("max-new-tokens", YC_INT, &max_new, "answer length cap in tokens"),
        YC_OPT("max-length", YC_INT, &max_length, "prompt length cap in tokens"),
        YC_OPT("batch", YC_INT, &batch, "prompts decoded together"),
        YC_OPT("raw", YC_STR, &raw_out, "also write the model's raw answer texts here, one JSON string a line", .meta = "FILE"),
        YC_OPT_CONSTRAIN(&constrain, ""),
        YC_OPT_TYPES(&types, ""),
        YC_OPT_BF16(&bf16),
        YC_OPT("prefix-cache", YC_STR, &prefix_cache, "on: the prompts' common prefix (the template) is computed once "
               "and copied into every prompt's cache; off: each prompt whole", .meta = "on|off"),
    };
    int pr = yc_parse("extract", "Extract named entities from résumés: one line in, one JSON object out, greedy decoding,\n"
                                 "constrained by default to valid answers whose strings all come from the input\n"
                                 "(docs/constrained-decoding.md). With --constrain none, answers that are not valid JSON\n"
                                 "are recovered as far as possible (noted on stderr) and a hopeless one gives {}.\n"
                                 "Every input line gives exactly one output line.",
                      argc, argv, opts, (int)(sizeof opts / sizeof *opts));
    if (pr) return pr == 1 ? 0 : 2;
    bool no_cache = false;
    if (yc_prefix_cache_flag("extract", prefix_cache, &no_cache)) return 2;
    if (bf16) yf_kernels_set_precision(YF_PREC_BF16);
    yf_model_opts mo = {0};
    if (yc_quant_opts("extract", &qa, &mo)) return 2;
    if (batch < 1 || batch > 4096 || max_new < 1 || max_new > 65536)
        return yc_usage_error("extract", "--batch must be in [1, 4096] and --max-new-tokens in [1, 65536]");
    yf_constrain_mode mode;
    uint32_t type_mask = 0;
    if (yf_constrain_mode_parse(constrain, &mode) || (types && yf_types_parse(types, &type_mask)))
        return yc_usage_error("extract", "%s", yf_last_error());
    char **lines = NULL;
    size_t n = 0;
    /* a file: checked (a regular file, within the size cap) and read whole */
    if (input ? read_file_lines(input, &lines, &n) : read_lines(stdin, "stdin", &lines, &n)) return yc_fail("extract");

    yc_session s;
    if (yc_session_open(&s, model, adapter, tokenizer, true, &mo)) {
        yf_strv_free(lines, n);
        return yc_fail("extract");
    }
    yf_extractor x = {.model = s.model, .lora = s.has_lora ? &s.lora : NULL, .tok = s.tok, .vmap = &s.vmap,
                      .max_new_tokens = max_new, .max_length = max_length, .batch = batch, .progress = true,
                      .no_prefix_cache = no_cache, .constrain = mode, .types = type_mask};
    int rc = 0;
    char **ans = NULL;
    if (yf_template_load(tpl, &x.tpl) || yf_extract_run(&x, (const char *const *)lines, n, &ans)) {
        rc = yc_fail("extract");
    } else {
        int64_t recovered = 0, hopeless = 0;
        for (size_t i = 0; i < n; i++) {
            yf_answer a;
            yf_answer_parse(ans[i], strlen(ans[i]), &a);
            if (a.status == YF_ANS_RECOVERED) {
                recovered++;
                fprintf(stderr, "line %zu: answer was not valid JSON; recovered what could be\n", i + 1);
            } else if (a.status == YF_ANS_UNPARSABLE) {
                hopeless++;
                fprintf(stderr, "line %zu: answer could not be parsed; writing {}\n", i + 1);
            }
            char *js = yf_answer_format(&a);
            printf("%s\n", js);
            free(js);
            yf_answer_free(&a);
        }
        if (raw_out && yf_write_json_lines(raw_out, (const char *const *)ans, n)) rc = yc_fail("extract");
        fprintf(stderr, "extract: %zu lines, %lld answers recovered, %lld unparsable\n", n, (long long)recovered,
                (long long)hopeless);
        yc_print_gen_stats("extract", &x.stats);
        yf_strv_free(ans, n);
    }
    yf_template_free(&x.tpl);
    yc_session_close(&s);
    yf_strv_free(lines, n);
    return rc;
}
