/* openai: the response bodies of `yuanft serve`, in the OpenAI API's shapes
 * (https://platform.openai.com/docs/api-reference): errors, completions,
 * chat completions, their server-sent-event chunks, the model list; and
 * the answer of /v1/extract. All are malloc'd NUL-terminated JSON text;
 * texts may hold any bytes of valid UTF-8 (NUL included: escaped). */
#ifndef YF_OPENAI_H
#define YF_OPENAI_H

#include "serve/request.h"
#include "serve/spans.h"

typedef struct yf_api_usage {
    int64_t prompt_tokens, completion_tokens;
} yf_api_usage;

/* {"error": {"message", "type", "param", "code"}} */
char *yf_api_error_json(const yf_api_error *e);

/* A fresh id: prefix + 24 hex digits ("cmpl-", "chatcmpl-", "extract-"). */
void yf_api_new_id(char *buf, size_t cap, const char *prefix);

/* A whole (non-streamed) completion or chat completion: one choice with
 * text[0..len) and finish ("stop" / "length"), and the usage. */
char *yf_api_completion_json(yf_api_kind kind, const char *id, int64_t created, const char *model, const char *text,
                             size_t len, const char *finish, const yf_api_usage *u);

/* One server-sent event "data: {...}\n\n" of a stream: a piece of text
 * (chat: the first one also says the role), or with finish the last chunk
 * of the choice, or (choices empty) the usage; yf_api_done_event ends it. */
char *yf_api_chunk_event(yf_api_kind kind, const char *id, int64_t created, const char *model, const char *delta,
                         size_t len, bool first, const char *finish, const yf_api_usage *usage);
const char *yf_api_done_event(void); /* "data: [DONE]\n\n" */

/* {"object": "list", "data": [{"id", "object": "model", "created", "owned_by"}, ...]}:
 * "base", then the adapters (with "parent": "base"). */
char *yf_api_models_json(const char *const *adapters, size_t n, int64_t created);

/* /v1/extract's answer: {"id", "object": "extraction", "model", "entities":
 * {"姓名": [...], ...} (the answer as yuanft extract prints it, restricted to
 * the types of mask, 0: all), "spans": [{"type", "text", "start", "end"}],
 * "raw" (the model's answer text[0..len), as yuanft extract --raw writes
 * it), "usage", "time_ms"}. */
char *yf_api_extract_json(const char *id, const char *model, const yf_answer *a, uint32_t mask, const yf_span *spans,
                          size_t nspans, const char *raw, size_t len, const yf_api_usage *u, double time_ms);

#endif
