/* job: one generation request inside the server, from its parsed body to
 * its text. yf_job_new checks what depends on the model and builds the
 * prompt; yf_job_submit queues it on the scheduler; the scheduler thread
 * then hands it tokens (on_token): they are decoded, stop strings are
 * looked for, and the text that can no longer change is published for the
 * HTTP thread, which waits on it (yf_job_wait) to answer or stream.
 *
 * Prompts:
 *   completions  the prompt's text through the tokenizer (special tokens
 *                such as <sep> split out), or its token ids as given;
 *   chat         the messages' contents joined by "<n>", then "<sep>"
 *                (Yuan 2.0's turn format; the roles are not written);
 *   extract      the server's template + "<sep>", as yuanft extract builds
 *                it (the end kept when longer than 384 tokens), greedy, at
 *                most 128 new tokens, constrained as yuanft extract's
 *                --constrain (spans by default; the keys limited to
 *                "types"); an answer a pruned vocabulary could not finish
 *                gets its shortest completion, as there.
 * response_format json_schema constrains completions and chat to the
 * schema (task/jsonschema.h), as yuanft generate --json-schema does.
 * Generation stops at <eod> (not part of the text), at a stop string (cut
 * off before it), or at max_tokens / the context. */
#ifndef YF_JOB_H
#define YF_JOB_H

#include <pthread.h>

#include "serve/request.h"
#include "serve/server.h"

typedef struct yf_job {
    yf_sched_req req;          /* what the scheduler runs */
    yf_server *srv;
    yf_api_request q;          /* the parsed body (owned) */
    int32_t adapter;
    const char *model_name;    /* "base" or the adapter's name */
    int64_t *prompt;           /* [plen] model ids */
    int64_t plen;
    double t_start, t_first, t_end; /* yf_time(): submitted, first token, done */
    /* constrained decoding (response_format, /v1/extract's spans): the
     * grammar, the one sequence's state and the scheduler's hook over it */
    yf_constraint *grammar;
    yf_cstate *cst;
    yf_sched_hook hook;
    /* guarded by mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int64_t *ids;              /* [n] the new tokens (tokenizer ids) */
    int64_t n, cap;
    char *text;                /* their text so far (len bytes; NUL-terminated) */
    size_t len;
    size_t safe;               /* bytes of text that are final */
    size_t searched;           /* stop strings were looked for before here */
    bool submitted, done;
    yf_finish why;
    char error[256];
} yf_job;

/* A job for a parsed request (taken over: q is left empty). Returns 0, or
 * -1 with e: 404 for an unknown model / adapter, 400 for a prompt that does
 * not fit the context, max_tokens too large, token ids outside the
 * vocabulary, a JSON Schema outside the subset or longer than max_tokens
 * allows, response_format json_object (free-form JSON: not supported). */
int yf_job_new(yf_server *s, yf_api_request *q, yf_job **out, yf_api_error *e);
/* Queues it. -1 with e: 503 when the queue is full or the server stops. */
int yf_job_submit(yf_job *j, yf_api_error *e);
/* Waits until text past `have` bytes is final or the job is done, at most
 * timeout_s seconds. Returns the final bytes now (*done: nothing will follow). */
size_t yf_job_wait(yf_job *j, size_t have, double timeout_s, bool *done);
/* A copy of the text's bytes [from, to) (to <= what yf_job_wait returned),
 * NUL-terminated. */
char *yf_job_text(yf_job *j, size_t from, size_t to);
void yf_job_cancel(yf_job *j);
/* Cancels the job if it still runs, waits until the scheduler is done with
 * it, frees it. */
void yf_job_free(yf_job *j);

/* "stop" / "length" for the response (a cancelled job answers nothing). */
const char *yf_job_finish_reason(const yf_job *j);

#endif
