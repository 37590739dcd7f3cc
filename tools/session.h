/* session: what the inference commands (generate, extract, eval) load: the
 * model, an optional adapter, the tokenizer and the vocabulary map. */
#ifndef YF_SESSION_H
#define YF_SESSION_H

#include "cli.h"
#include "model/generate.h"
#include "lora/lora.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "formats/vocab_map.h"

typedef struct yc_session {
    yf_model *model;
    yf_lora lora;
    bool has_lora;
    yf_tokenizer *tok;   /* NULL when not asked for */
    yf_vocab_map vmap;   /* identity when the model has none */
} yc_session;

/* tokenizer: a path, or NULL for DIR/tokenizer.model (need_tok: fail if
 * absent); mo: how to load the model (NULL: as it is). Applies the thread
 * rule (yf_par_adapt_to_load) before loading. */
int yc_session_open(yc_session *s, const char *model_dir, const char *adapter_dir, const char *tokenizer,
                    bool need_tok, const yf_model_opts *mo);

/* --quantize TYPE and --quantize-head, the same in every command that loads
 * a model: YC_QUANT_OPTS(&q) among a command's options, then
 * yc_quant_opts(cmd, &q, &mo) after parsing (0, or 2 with a usage message
 * printed: an unknown TYPE, --quantize-head alone). */
typedef struct yc_quant {
    const char *type;
    bool head;
    bool int8_act;
} yc_quant;
#define YC_QUANT_OPTS(q, when)                                                                                  \
    YC_OPT("quantize", YC_STR, &(q)->type, when "quantize the frozen projection weights at load: int8 or q4 "        \
           "(docs/quantization.md)", .meta = "TYPE", .def = "none"),                                                  \
    YC_OPT("quantize-head", YC_FLAG, &(q)->head, when "with --quantize: the LM head (the tied embedding) too"),       \
    YC_OPT("int8-activations", YC_FLAG, &(q)->int8_act, "quantized weights (--quantize, or stored so): decoding "     \
           "rounds the activations to int8 per group for integer dot products; faster, not exact in them")
int yc_quant_opts(const char *cmd, const yc_quant *q, yf_model_opts *mo);
void yc_session_close(yc_session *s);

/* --prefix-cache VALUE: on (false into *off) or off (true); anything else
 * is a usage error (yc_usage_error: message, returns 2). */
int yc_prefix_cache_flag(const char *cmd, const char *value, bool *off);
/* "CMD: prefill: N tokens in S s (R tokens/s; K from the prefix cache);
 * decode: ..." on stderr. */
void yc_print_gen_stats(const char *cmd, const yf_gen_stats *st);

/* Parses "1,2,3" into ids (malloc'd). */
int yc_parse_ids(const char *s, int64_t **ids, int64_t *n);

#endif
