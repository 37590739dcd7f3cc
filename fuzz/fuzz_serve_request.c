/* The request bodies of `yuanft serve` (src/serve/request.c): the first byte
 * picks the endpoint (completions, chat completions, extract), the rest is
 * the body. Properties: parsing never crashes or leaks; a refused body gets
 * a 400 with a message; an accepted one has the fields its endpoint needs,
 * within their ranges, every string valid UTF-8. */
#include <stdint.h>
#include <string.h>

#include "base/jsontext.h"
#include "serve/request.h"

static void need(bool ok) {
    if (!ok) __builtin_trap();
}

static void text_ok(const char *s) { need(s == NULL || yf_utf8_valid(s, strlen(s))); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    if (n < 1) return 0;
    yf_api_kind kind = (yf_api_kind)(data[0] % 3);
    yf_api_request r;
    yf_api_error e;
    if (yf_api_parse(kind, (const char *)data + 1, n - 1, &r, &e) != 0) {
        need(e.status == 400 && e.message[0] != 0);
        return 0;
    }
    need(r.kind == kind);
    need(r.max_tokens == -1 || r.max_tokens >= 1);
    need(r.temperature >= 0 && r.temperature <= 2 && r.top_p > 0 && r.top_p <= 1 && r.top_k >= 0);
    need(r.repetition_penalty > 0 && r.nstop <= YF_API_MAX_STOP);
    for (size_t i = 0; i < r.nstop; i++) need(r.stop[i][0] != 0), text_ok(r.stop[i]);
    text_ok(r.model);
    text_ok(r.prompt);
    text_ok(r.text);
    if (kind == YF_API_COMPLETION) need(r.model && (r.prompt || r.n_prompt_ids > 0));
    if (kind == YF_API_CHAT) need(r.model && r.nmsgs > 0);
    if (kind == YF_API_EXTRACT) need(r.text != NULL && r.types < (1u << 8) && r.constrain >= -1 && r.constrain <= 2);
    for (size_t i = 0; i < r.nmsgs; i++) need(r.msgs[i].role && r.msgs[i].content), text_ok(r.msgs[i].content);
    for (int64_t i = 0; i < r.n_prompt_ids; i++) need(r.prompt_ids[i] >= 0);
    need(r.format != YF_FORMAT_JSON_SCHEMA || r.schema != NULL);
    yf_api_request_free(&r);
    return 0;
}
