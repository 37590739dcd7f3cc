/* yuanft serve: the OpenAI-compatible server (src/serve/, docs/serve.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "kernels/cpu/kernels.h"
#include "serve/server.h"
#include "session.h"

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
    const char *adapter = NULL, *constrain = "spans", *prefix_cache = "on";
    bool bf16 = false;
    yc_quant qa = {0};
    double shutdown = o.shutdown_timeout;
    const yc_opt opts[] = {
        YC_OPT_MODEL(&o.model_dir),
        YC_OPT("adapter", YC_STR, &adapter, "a PEFT adapter served as model NAME; give it again for more",
               .meta = "NAME=DIR", .def = "none"),
        YC_OPT_TOKENIZER(&o.tokenizer, ""),
        YC_OPT("host", YC_STR, &o.host, "address to listen on; 127.0.0.1 is this machine only", .meta = "ADDR"),
        YC_OPT("port", YC_INT, &o.port, "port; 0: any free one (printed at the start)"),
        YC_OPT("parallel", YC_INT, &o.parallel, "requests decoded together, each in a slot of its own"),
        YC_OPT("max-queue", YC_INT, &o.max_queue, "requests that may wait for a slot; past it: 503"),
        YC_OPT("max-length", YC_INT, &o.max_length, "positions a request may use, prompt + new tokens",
               .def = "the model's, at most 2048"),
        YC_OPT("api-key", YC_STR, &o.api_key, "require 'Authorization: Bearer KEY' on /v1/* and /metrics", .meta = "KEY",
               .def = "none"),
        YC_OPT_PROMPT_TEMPLATE(&o.prompt_template, "of /v1/extract: "),
        YC_OPT_CONSTRAIN(&constrain, "/v1/extract's decoding when a request does not say: "),
        YC_OPT("max-body", YC_INT, &o.max_body, "request body bytes at most; past it: 413"),
        YC_OPT("shutdown-timeout", YC_FLOAT, &shutdown, "seconds SIGTERM waits for requests in flight, then cancels them"),
        YC_OPT("prefix-cache", YC_STR, &prefix_cache, "on: prompts are kept (least recently used dropped) and a prompt "
               "that opens like a kept one computes only the rest; off: each prompt whole", .meta = "on|off"),
        YC_OPT("prefix-cache-mb", YC_INT, &o.prefix_cache_mb, "the prefix cache's memory budget in MiB"),
        YC_OPT_BF16(&bf16),
        YC_QUANT_OPTS(&qa, ""),
    };
    int pr = yc_parse("serve",
                      "Serve a model over HTTP: OpenAI's /v1/completions and /v1/chat/completions, /v1/extract for\n"
                      "résumés, /v1/models, /health, /metrics, and a page at / to try extraction in a browser.\n"
                      "Requests for the base model and any adapter are batched together. Stop with SIGTERM or Ctrl-C.",
                      argc, argv, opts, (int)(sizeof opts / sizeof *opts));
    if (pr) return pr == 1 ? 0 : 2;
    bool no_cache = false;
    if (yc_prefix_cache_flag("serve", prefix_cache, &no_cache)) return 2;
    if (no_cache) o.prefix_cache_mb = 0;
    if (yc_quant_opts("serve", &qa, &o.model)) return 2;
    if (yf_constrain_mode_parse(constrain, &o.extract_constrain)) return yc_fail("serve");
    if (bf16) yf_kernels_set_precision(YF_PREC_BF16);
    o.shutdown_timeout = shutdown;
    const char **ads = adapter_values(argc, argv, &o.nadapters);
    o.adapters = ads;
    int rc = yf_serve_run(&o) ? yc_fail("serve") : 0;
    free(ads);
    return rc;
}
