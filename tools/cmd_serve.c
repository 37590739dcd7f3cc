/* yuanft serve: the OpenAI-compatible server (src/serve/, docs/serve.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "kernels/cpu/kernels.h"
#include "serve/server.h"

/* Every --adapter value (the option may be given many times; the parser
 * keeps the last). */
static const char **adapter_values(int argc, char **argv, int64_t *n) {
    const char **v = yf_calloc((size_t)argc + 1, sizeof *v);
    *n = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--adapter") && i + 1 < argc) v[(*n)++] = argv[++i];
        else if (!strncmp(a, "--adapter=", 10)) v[(*n)++] = a + 10;
    }
    return v;
}

int cmd_serve(int argc, char **argv) {
    yf_serve_opts o;
    yf_serve_opts_default(&o);
    const char *adapter = NULL;
    bool bf16 = false;
    double shutdown = o.shutdown_timeout;
    yc_opt opts[] = {
        {"model", YC_STR, &o.model_dir, "model directory (config.json + weights) [required]"},
        {"adapter", YC_STR, &adapter, "NAME=DIR: a PEFT adapter served as model NAME; repeat for more"},
        {"tokenizer", YC_STR, &o.tokenizer, "tokenizer.model (default: MODEL/tokenizer.model)"},
        {"host", YC_STR, &o.host, "address to listen on (default 127.0.0.1: this machine only)"},
        {"port", YC_INT, &o.port, "port (default 8080; 0: any free port, printed at the start)"},
        {"parallel", YC_INT, &o.parallel, "requests decoded together, each in a slot of its own (default 4)"},
        {"max-queue", YC_INT, &o.max_queue, "requests waiting for a slot at most; past it 503 (default 64)"},
        {"max-length", YC_INT, &o.max_length, "positions a request may use, prompt + new tokens (default: the model's, at most 2048)"},
        {"api-key", YC_STR, &o.api_key, "require 'Authorization: Bearer KEY' on /v1/* and /metrics (default: none)"},
        {"prompt-template", YC_STR, &o.prompt_template, "template of /v1/extract: resume (the recipe's), none, or a file with {input} (resume)"},
        {"max-body", YC_INT, &o.max_body, "request body bytes at most; past it 413 (default 1048576)"},
        {"shutdown-timeout", YC_FLOAT, &shutdown, "seconds SIGTERM waits for requests in flight before cancelling them (default 10)"},
        {"bf16", YC_FLAG, &bf16, "bf16 compute (activations rounded to bf16 in the matrix products, like torch autocast)"},
    };
    int pr = yc_parse("serve",
                      "Serve a model over HTTP: OpenAI's /v1/completions and /v1/chat/completions, /v1/extract for\n"
                      "résumés, /v1/models, /health, /metrics, and a page at / to try extraction in a browser.\n"
                      "Requests for the base model and any adapter are batched together. Stop with SIGTERM or Ctrl-C.",
                      argc, argv, opts, sizeof opts / sizeof *opts);
    if (pr) return pr == 1 ? 0 : 2;
    if (!o.model_dir) {
        fprintf(stderr, "yuanft serve: --model is required (see --help)\n");
        return 2;
    }
    if (bf16) yf_kernels_set_precision(YF_PREC_BF16);
    o.shutdown_timeout = shutdown;
    const char **ads = adapter_values(argc, argv, &o.nadapters);
    o.adapters = ads;
    int rc = yf_serve_run(&o) ? yc_fail("serve") : 0;
    free(ads);
    return rc;
}
