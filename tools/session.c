#include "session.h"

#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/pool.h"

int yc_session_open(yc_session *s, const char *model_dir, const char *adapter_dir, const char *tokenizer,
                    bool need_tok, const yf_model_opts *mo) {
    memset(s, 0, sizeof *s);
    if (!model_dir) return yf_errorf("--model DIR is required");
    yf_par_adapt_to_load(); /* the thread rule of every command that runs the model */
    if (yf_model_load(model_dir, mo, &s->model)) return -1;
    if (adapter_dir) {
        if (yf_lora_load(adapter_dir, yf_model_config(s->model), &s->lora)) goto fail;
        s->has_lora = true;
    }
    char *tp = tokenizer ? yf_strdup(tokenizer) : yf_path_join(model_dir, "tokenizer.model");
    if (tokenizer || yf_file_exists(tp)) {
        int rc = yf_tokenizer_load(tp, &s->tok);
        free(tp);
        if (rc) goto fail;
    } else {
        free(tp);
        if (need_tok) {
            yf_errorf("%s has no tokenizer.model: pass --tokenizer FILE", model_dir);
            goto fail;
        }
    }
    /* after the tokenizer: the map's ids are checked against its size */
    if (yf_vocab_map_load(model_dir, s->tok ? yf_tokenizer_n_ids(s->tok) : 0, &s->vmap)) goto fail;
    if (s->vmap.n && s->vmap.n != yf_model_config(s->model)->vocab_size) {
        yf_errorf("%s/%s: maps %lld ids but the model has vocab_size %lld", model_dir, YF_VOCAB_MAP_FILE,
                  (long long)s->vmap.n, (long long)yf_model_config(s->model)->vocab_size);
        goto fail;
    }
    return 0;
fail:
    yc_session_close(s);
    return -1;
}

void yc_session_close(yc_session *s) {
    if (s->has_lora) yf_lora_free(&s->lora);
    if (s->model) yf_model_free(s->model);
    if (s->tok) yf_tokenizer_free(s->tok);
    yf_vocab_map_free(&s->vmap);
    memset(s, 0, sizeof *s);
}

int yc_prefix_cache_flag(const char *cmd, const char *value, bool *off) {
    if (!strcmp(value, "on") || !strcmp(value, "off")) {
        *off = !strcmp(value, "off");
        return 0;
    }
    return yc_usage_error(cmd, "--prefix-cache must be on or off (got '%s')", value);
}

void yc_print_gen_stats(const char *cmd, const yf_gen_stats *st) {
    fprintf(stderr,
            "%s: prefill: %lld tokens in %.3f s (%.1f tokens/s; %lld from the prefix cache); decode: %lld tokens in "
            "%.3f s (%.2f tokens/s)\n",
            cmd, (long long)st->prefill_tokens, st->prefill_s, st->prefill_s > 0 ? st->prefill_tokens / st->prefill_s : 0.0,
            (long long)st->prefill_reused, (long long)st->decode_tokens, st->decode_s,
            st->decode_s > 0 ? st->decode_tokens / st->decode_s : 0.0);
}

int yc_parse_ids(const char *s, int64_t **ids, int64_t *n) {
    size_t cap = 16;
    *n = 0;
    *ids = yf_malloc(cap * sizeof(int64_t));
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno) {
            free(*ids);
            *ids = NULL;
            return yf_errorf("--prompt-ids: expected comma-separated integers, got '%s'", s);
        }
        if ((size_t)*n == cap) *ids = yf_realloc(*ids, (cap *= 2) * sizeof(int64_t));
        (*ids)[(*n)++] = v;
        p = end;
        while (*p == ' ') p++;
        if (*p == ',') p++;
        else if (*p) {
            free(*ids);
            *ids = NULL;
            return yf_errorf("--prompt-ids: expected comma-separated integers, got '%s'", s);
        }
    }
    if (*n == 0) {
        free(*ids);
        *ids = NULL;
        return yf_errorf("--prompt-ids: no ids given");
    }
    return 0;
}

int yc_quant_opts(const char *cmd, const yc_quant *q, yf_model_opts *mo) {
    mo->int8_act = q->int8_act;
    if (!q->type || !strcmp(q->type, "none"))
        return q->head ? yc_usage_error(cmd, "--quantize-head needs --quantize int8 or q4") : 0;
    if (yf_qtype_parse(q->type, &mo->quant.type)) return yc_usage_error(cmd, "--quantize: %s", yf_last_error());
    mo->quantize_head = q->head;
    return 0;
}
