/* yuanft generate: text or ids from a prompt, through the cache. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "kernels/cpu/kernels.h"
#include "session.h"
#include "task/jsonschema.h"

typedef struct stream {
    yc_session *s;
    int64_t *ids;
    int64_t n;
    size_t printed; /* bytes of the decoded text already written */
    bool text;
} stream;

/* Prints the decoded text of ids[0..upto) past what is printed. */
static void print_upto(stream *st, int64_t upto) {
    char *txt = NULL;
    size_t len = 0;
    if (yf_tokenizer_decode_n(st->s->tok, st->ids, (size_t)upto, true, &txt, &len)) return;
    if (len > st->printed) {
        fwrite(txt + st->printed, 1, len - st->printed, stdout);
        fflush(stdout);
        st->printed = len;
    }
    free(txt);
}

/* Prints the text the new token settles. A run of byte pieces decodes
 * together (a character's bytes may come in three or four tokens): the text
 * before the trailing run is final, the run is printed once a text piece
 * follows it or at the end. */
static void on_token(void *ctx, int64_t seq, int64_t id) {
    stream *st = ctx;
    st->ids[st->n++] = yf_vocab_to_orig(&st->s->vmap, id);
    if (!st->text) return;
    int64_t upto = st->n;
    while (upto > 0 && yf_tokenizer_is_byte_piece(st->s->tok, st->ids[upto - 1])) upto--;
    print_upto(st, upto);
}

int cmd_generate(int argc, char **argv) {
    const char *model = NULL, *adapter = NULL, *prompt = NULL, *prompt_ids = NULL, *tokenizer = NULL, *schema = NULL;
    int64_t max_new = 64, max_length = 0, top_k = 0, seed = 42;
    double temperature = 0, top_p = 1, rep = 1;
    bool json = false, keep_special = false;
    bool bf16 = false;
    yc_quant qa = {0};
    const yc_opt opts[] = {
        YC_OPT_MODEL(&model),
        YC_OPT_ADAPTER(&adapter, ""),
        YC_QUANT_OPTS(&qa, ""),
        YC_OPT("prompt", YC_STR, &prompt, "prompt text (encoded with the tokenizer)", .meta = "TEXT"),
        YC_OPT("prompt-ids", YC_STR, &prompt_ids, "or: the prompt as token ids, 1,2,3", .meta = "IDS"),
        YC_OPT_TOKENIZER(&tokenizer, ""),
        YC_OPT("max-new-tokens", YC_INT, &max_new, "new tokens at most"),
        YC_OPT("max-length", YC_INT, &max_length, "prompt + new tokens at most", .def = "the model's maximum"),
        YC_OPT("temperature", YC_FLOAT, &temperature, "0: greedy; > 0: sample"),
        YC_OPT("top-k", YC_INT, &top_k, "sample among the k most likely; 0: off"),
        YC_OPT("top-p", YC_FLOAT, &top_p, "nucleus sampling mass; 1: off"),
        YC_OPT("repetition-penalty", YC_FLOAT, &rep, "penalty for repeated tokens; 1: off"),
        YC_OPT("seed", YC_INT, &seed, "sampling seed"),
        YC_OPT("json", YC_FLAG, &json, "print the new ids as one JSON array"),
        YC_OPT("keep-special-tokens", YC_FLAG, &keep_special, "text mode: keep <eod> and other special tokens"),
        YC_OPT("json-schema", YC_STR, &schema, "write only JSON valid against this schema (a subset of JSON Schema: "
               "docs/constrained-decoding.md), complete within --max-new-tokens", .meta = "FILE"),
        YC_OPT_BF16(&bf16),
    };
    int pr = yc_parse("generate", "Generate text or ids from a prompt: greedy by default, stopping at <eod>.", argc, argv,
                      opts, (int)(sizeof opts / sizeof *opts));
    if (pr) return pr == 1 ? 0 : 2;
    if (bf16) yf_kernels_set_precision(YF_PREC_BF16);
    yf_model_opts mo = {0};
    if (yc_quant_opts("generate", &qa, &mo)) return 2;
    if (max_new < 1 || max_new > (1 << 24))
        return yc_usage_error("generate", "--max-new-tokens must be between 1 and %d", 1 << 24);
    if (!prompt == !prompt_ids) return yc_usage_error("generate", "give exactly one of --prompt / --prompt-ids");
    yf_gen_opts go;
    yf_gen_opts_default(&go);
    go.max_new_tokens = max_new;
    go.max_length = max_length;
    go.samp.temperature = (float)temperature;
    go.samp.top_k = top_k;
    go.samp.top_p = (float)top_p;
    go.samp.repetition_penalty = (float)rep;
    go.seed = (uint64_t)seed;
    go.batch = 1;
    if (yf_sampling_check(&go.samp)) return yc_fail("generate");

    yf_constraint *grammar = NULL;
    if (schema) {
        char *text = NULL;
        size_t len = 0;
        int src = yf_read_file(schema, &text, &len);
        if (src == 0) src = yf_constraint_json_schema(text, len, schema, &grammar);
        free(text);
        if (src) return yc_fail("generate");
    }
    yc_session s;
    double t_load = yf_time();
    if (yc_session_open(&s, model, adapter, tokenizer, prompt != NULL || schema != NULL, &mo)) {
        yf_constraint_free(grammar);
        return yc_fail("generate");
    }
    t_load = yf_time() - t_load;
    /* the schema's constraint on the one sequence */
    yf_cvocab *cv = NULL;
    yf_cstate *cst = NULL;
    yf_gen_hook hook;
    int64_t *ids = NULL, n = 0;
    int rc = 0;
    stream st = {.s = &s, .ids = yf_malloc((size_t)max_new * sizeof(int64_t)), .text = (prompt || schema) && !json};
    if (grammar && (yf_cvocab_build(s.tok, &s.vmap, yf_model_config(s.model)->vocab_size, &cv) ||
                    yf_cstate_new(grammar, cv, NULL, 0, &cst))) {
        rc = yc_fail("generate");
        goto out;
    }
    if (cst) {
        yf_cstate_hook(&cst, &hook);
        go.hook = &hook;
        int64_t need = yf_cstate_cost(cst);
        if (need > max_new)
            fprintf(stderr, "yuanft generate: warning: the shortest JSON this schema allows takes %lld tokens, more than "
                            "--max-new-tokens %lld: the output will be cut\n",
                    (long long)need, (long long)max_new);
    }
    if (prompt) {
        size_t nn = 0;
        if (yf_tokenizer_encode(s.tok, prompt, strlen(prompt), &ids, &nn)) {
            rc = yc_fail("generate");
            goto out;
        }
        n = (int64_t)nn;
    } else if (yc_parse_ids(prompt_ids, &ids, &n)) {
        rc = yc_fail("generate");
        goto out;
    }
    int64_t eod = s.tok ? yf_tokenizer_piece_id(s.tok, "<eod>") : yf_model_config(s.model)->eod_token;
    yf_vocab_map_ids(&s.vmap, ids, n);
    go.stop_id = yf_vocab_to_model(&s.vmap, eod >= 0 ? eod : yf_model_config(s.model)->eod_token);
    go.on_token = on_token;
    go.ctx = &st;
    const int64_t *pp = ids;
    yf_gen_out out;
    yf_gen_stats stats;
    if (yf_generate(s.model, s.has_lora ? &s.lora : NULL, &pp, &n, 1, &go, &out, &stats)) {
        rc = yc_fail("generate");
    } else {
        if (!st.text) {
            printf("[");
            for (int64_t i = 0; i < st.n; i++) printf("%s%lld", i ? "," : "", (long long)st.ids[i]);
            printf("]\n");
        } else {
            print_upto(&st, st.n);
            if (keep_special) { /* re-print with the special tokens */
                char *txt = NULL;
                size_t len = 0;
                if (yf_tokenizer_decode_n(s.tok, st.ids, (size_t)st.n, false, &txt, &len) == 0) {
                    printf("\r");
                    fwrite(txt, 1, len, stdout);
                    free(txt);
                }
            }
            printf("\n");
        }
        fflush(stdout);
        size_t qb, wb = yf_model_weight_bytes(s.model, &qb);
        fprintf(stderr, "model: loaded in %.2f s; weights read a token %.1f MB (%.1f MB of them quantized%s)\n", t_load,
                wb / 1e6, qb / 1e6, mo.int8_act && qb > 0 ? ", int8 activations" : "");
        fprintf(stderr, "prefill: %lld tokens in %.3f s (%.1f tokens/s); decode: %lld tokens in %.3f s (%.2f tokens/s)\n",
                (long long)stats.prefill_tokens, stats.prefill_s,
                stats.prefill_s > 0 ? stats.prefill_tokens / stats.prefill_s : 0.0, (long long)stats.decode_tokens,
                stats.decode_s, stats.decode_s > 0 ? stats.decode_tokens / stats.decode_s : 0.0);
        yf_gen_out_free(&out, 1);
    }
out:
    free(st.ids);
    free(ids);
    yf_cstate_free(cst);
    yf_cvocab_free(cv);
    yf_constraint_free(grammar);
    yc_session_close(&s);
    return rc;
}
