/* request: the JSON bodies `yuanft serve` accepts, parsed and checked
 * without a socket or a model (so that they can be tested and fuzzed on
 * their own). What depends on the model (the adapter's name, the prompt's
 * length against the context, token ids against the vocabulary) is checked
 * later, by job.c.
 *
 *   POST /v1/completions       {"model", "prompt": string | [string] | [int, ...],
 *                               "max_tokens", "temperature", "top_p", "seed",
 *                               "stop": string | [string] (<= 4), "stream",
 *                               "stream_options": {"include_usage"}, "n": 1,
 *                               "response_format", and the extensions "top_k",
 *                               "repetition_penalty"}
 *   POST /v1/chat/completions  the same with "messages": [{"role", "content":
 *                               string | [{"type": "text", "text"}]}] instead
 *                               of "prompt", and "max_completion_tokens" as
 *                               another name of max_tokens
 *   POST /v1/extract           {"text", "types": [name, ...]?, "adapter"?,
 *                               "max_tokens"?, "constrain": "spans" |
 *                               "schema" | "none"?}
 *
 * Unknown fields are ignored (OpenAI clients send many); fields that are
 * null count as absent. Every error is a yf_api_error naming the field. */
#ifndef YF_REQUEST_H
#define YF_REQUEST_H

#include "base/util.h"

/* An OpenAI-style error: {"error": {"message", "type", "param", "code"}}. */
typedef struct yf_api_error {
    int status;             /* HTTP status: 400, 401, 404, 413, 503, ... */
    const char *type;       /* "invalid_request_error", "authentication_error", "server_error", ... */
    const char *code;       /* or NULL */
    char param[64];         /* the field at fault ("max_tokens", "messages[1].content"), or "" */
    char message[512];
} yf_api_error;

/* Fills e and returns -1. */
int yf_api_fail(yf_api_error *e, int status, const char *type, const char *code, const char *param, const char *fmt,
                ...) __attribute__((format(printf, 6, 7)));

typedef enum yf_api_kind { YF_API_COMPLETION, YF_API_CHAT, YF_API_EXTRACT } yf_api_kind;

typedef enum yf_resp_format {
    YF_FORMAT_TEXT = 0,   /* absent, or {"type": "text"} */
    YF_FORMAT_JSON_OBJECT,
    YF_FORMAT_JSON_SCHEMA
} yf_resp_format;

typedef struct yf_chat_msg {
    char *role;           /* "system", "user", "assistant", "developer", "tool" */
    char *content;        /* the text (parts joined) */
} yf_chat_msg;

#define YF_API_MAX_STOP 4

typedef struct yf_api_request {
    yf_api_kind kind;
    char *model;                  /* completions and chat: required; extract: "adapter", or NULL */
    char *prompt;                 /* completions: the text, or NULL when given as ids */
    int64_t *prompt_ids;          /* completions: token ids (tokenizer ids) */
    int64_t n_prompt_ids;
    yf_chat_msg *msgs;            /* chat */
    size_t nmsgs;
    char *text;                   /* extract: the résumé */
    uint32_t types;               /* extract: bit t = yf_type_names[t]; 0: all */
    int constrain;                /* extract: -1 the server's --constrain, else a yf_constrain_mode
                                   * (task/extract.h): 0 spans, 1 schema, 2 none */
    int64_t max_tokens;           /* -1: the default */
    double temperature;           /* 0: greedy (the default) */
    double top_p;                 /* 1 */
    int64_t top_k;                /* 0 */
    double repetition_penalty;    /* 1 */
    uint64_t seed;
    bool has_seed;
    char *stop[YF_API_MAX_STOP];
    size_t nstop;
    bool stream, include_usage;
    yf_resp_format format;
    char *schema;                 /* json_schema: the schema, as compact JSON text */
    char *schema_name;
    bool schema_strict;
} yf_api_request;

/* Parses body[0..len). Returns 0, or -1 with e filled (status 400). */
int yf_api_parse(yf_api_kind kind, const char *body, size_t len, yf_api_request *out, yf_api_error *e);
void yf_api_request_free(yf_api_request *r);

/* Whether key[0..klen) equals want (NUL-terminated), in time that depends
 * on the lengths only, not on where they differ (API keys). */
bool yf_api_key_equal(const char *key, size_t klen, const char *want);

#endif
