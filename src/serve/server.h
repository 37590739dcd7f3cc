/* server: `yuanft serve` — an OpenAI-compatible HTTP server over one model,
 * any number of adapters and the résumé extraction task (docs/serve.md).
 *
 * The pieces, each a module of this folder:
 *   server.c   loading, the process's life (signals, drain), the shared state
 *   http.c     libmicrohttpd: routing, limits, the API key, responses, SSE,
 *              the text of /metrics
 *   request.c  the request bodies (no socket, no model: tested and fuzzed alone)
 *   job.c      one request's life: its prompt, the scheduler, its text, stop strings
 *   sched.c    the continuous-batching scheduler thread that runs the model
 *   openai.c   the response bodies (OpenAI shapes), the /v1/extract answer and
 *              where each extracted entity occurs in the text
 *   page.html  the page at / (built into http.o) */
#ifndef YF_SERVER_H
#define YF_SERVER_H

#include "base/util.h"
#include "formats/vocab_map.h"
#include "lora/lora.h"
#include "model/model.h"
#include "serve/prefix.h"
#include "serve/sched.h"
#include "task/constrain.h"
#include "task/data.h"
#include "task/extract.h"
#include "tokenizer/tokenizer.h"

typedef struct yf_serve_opts {
    const char *model_dir;
    const char *tokenizer;          /* NULL: MODEL/tokenizer.model */
    const char *const *adapters;    /* [nadapters] "NAME=DIR" */
    int64_t nadapters;
    const char *host;               /* "127.0.0.1" */
    int64_t port;                   /* 8080; 0: any free port (printed) */
    int64_t parallel;               /* slots decoded together (4) */
    int64_t max_queue;              /* requests waiting for a slot at most (64) */
    int64_t max_length;             /* positions a request may use; 0: min(the model's, 2048) */
    int64_t max_body;               /* request body bytes at most (1 MiB) */
    const char *api_key;            /* NULL: none */
    const char *prompt_template;    /* of /v1/extract: resume, none or a file ("resume") */
    double shutdown_timeout;        /* seconds SIGTERM waits for requests in flight (10) */
    int64_t extract_max_length;     /* /v1/extract prompt truncation (384, as yuanft extract) */
    int64_t extract_max_new;        /* /v1/extract answer cap (128, as yuanft extract) */
    yf_constrain_mode extract_constrain; /* /v1/extract's decoding when a request does not say (spans) */
    int64_t prefix_cache_mb;        /* the prefix cache's budget in MiB (1024; serve/prefix.h); 0: no cache */
    yf_model_opts model;            /* how the model is loaded: quantized weights (docs/quantization.md) */
} yf_serve_opts;

void yf_serve_opts_default(yf_serve_opts *o);
/* Binds, loads, serves until SIGTERM or SIGINT, drains. Returns 0 after a
 * clean shutdown, -1 (yf_last_error) when it cannot start. */
int yf_serve_run(const yf_serve_opts *o);

/* ---- the shared state (the modules of this folder) ------------------------ */

typedef struct yf_serve_adapter {
    char *name;
    yf_lora lo;
    float **dora_n;                 /* yf_dora_norms_new */
} yf_serve_adapter;

/* Counters of the HTTP side (atomics). */
typedef struct yf_http_counters {
    int64_t requests;               /* every request answered */
    int64_t errors_4xx, errors_5xx;
    int64_t unauthorized, too_large;
    int64_t disconnects;            /* clients gone before their answer */
    int64_t overhead_ns;            /* time of generation requests in the HTTP layer (not the model's), summed */
    int64_t overhead_n;
} yf_http_counters;

typedef struct yf_server {
    yf_serve_opts o;
    yf_model *model;
    yf_tokenizer *tok;
    yf_vocab_map vmap;
    yf_template tpl;
    yf_encoder enc;
    yf_serve_adapter *ad;           /* [nad] */
    int64_t nad;
    const yf_lora **los;            /* [nad] for the scheduler */
    float ***dns;
    yf_sched *sched;
    yf_serve_prefix *prefix;        /* NULL: no prefix cache (--prefix-cache off) */
    int64_t V, ctx;                 /* the model's rows; positions a request may use */
    int64_t eod_row;                /* <eod> as a model row */
    int64_t n_tok_ids;              /* ids the tokenizer knows */
    yf_cvocab *cv;                  /* the model's rows as bytes: constrained decoding */
    const char *turn_sep;           /* between chat messages */
    int64_t created;                /* unix time of the start (the models' "created") */
    bool ready;                     /* atomic: loaded (GET /health 200) */
    bool draining;                  /* atomic: SIGTERM seen: new requests get 503 */
    int64_t http_inflight;          /* atomic: requests being handled */
    yf_http_counters hc;
    void *mhd;                      /* struct MHD_Daemon * */
} yf_server;

/* The adapter a request names: -1 for "base", its index, or -2 (unknown). */
int32_t yf_server_adapter(const yf_server *s, const char *name);

/* http.c: the page at / (static, NUL-terminated) and the text of /metrics
 * (malloc'd) from the scheduler's, the prefix cache's (pc: NULL without
 * one) and the HTTP side's counters. */
const char *yf_serve_page(void);
char *yf_metrics_text(const yf_sched_stats *st, const yf_http_counters *hc, const yf_prefix_cache_stats *pc,
                      int64_t http_inflight, bool ready);

/* http.c: starts / stops the daemon on s->o.host:port (port written back). */
int yf_http_start(yf_server *s, int64_t *port);
void yf_http_quiesce(yf_server *s);
void yf_http_stop(yf_server *s);

#endif
