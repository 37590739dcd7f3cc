/* openai: the response bodies of `yuanft serve`, in the OpenAI API's shapes
 * (https://platform.openai.com/docs/api-reference): errors, completions,
 * chat completions, their server-sent-event chunks, the model list; and
 * the answer of /v1/extract with the places of its entities in the text.
 * All are malloc'd NUL-terminated JSON text; texts may hold any bytes of
 * valid UTF-8 (NUL included: escaped). */
#ifndef YF_OPENAI_H
#define YF_OPENAI_H

#include "serve/request.h"
#include "task/eval.h"

typedef struct yf_api_usage {
    int64_t prompt_tokens, completion_tokens;
} yf_api_usage;

/* ---- where extracted entities are ----------------------------------------
 * For /v1/extract's "spans" and the page's highlighting. Offsets count
 * Unicode characters (code points) of the text, as Python's str and
 * JavaScript's Array.from(text) index it. */
typedef struct yf_span {
    int type;             /* index into yf_type_names */
    const char *entity;   /* the answer's string (not owned) */
    int64_t start, end;   /* characters [start, end) */
    size_t bstart, bend;  /* the same in bytes */
} yf_span;

/* Every occurrence of every entity of a (restricted to the types in mask,
 * 0: all) in text[0..len) (UTF-8): for each entity, its occurrences left to
 * right, not overlapping each other. Sorted by start, then longer first,
 * then type. *out malloc'd ([*n], NULL when none). Entities that do not
 * occur (a model that paraphrased) give no span. */
void yf_spans_find(const yf_answer *a, uint32_t mask, const char *text, size_t len, yf_span **out, size_t *n);

/* ---- response bodies ---------------------------------------------------- */

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
