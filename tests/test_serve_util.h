/* What the serve tests share: model folders to serve, a server started for
 * a test, and reading the JSON answers. */
#ifndef YT_SERVE_UTIL_H
#define YT_SERVE_UTIL_H

#include <cjson/cJSON.h>

#include "http_client.h"

/* The golden tiny model (V 320, D 64, 2 layers; random weights) made
 * servable with text: its files linked into a folder with the Yuan
 * tokenizer and a vocab_map of 320 tokenizer ids (those of a few résumé
 * lines and the specials). Adapters fit it: ../shared/golden/yuan-tiny/
 * lora and dora. Returns the folder (under the test's tmpdir). */
const char *yt_serve_golden_model(void);
/* A model of the same shapes trained (full, 120 steps, template none) to
 * answer four résumé lines with their entities: extraction has something
 * to find. The same adapters fit it. */
const char *yt_serve_trained_model(void);
/* A random model of the same width with room for 4096 positions and no
 * <eod> it can emit: a request runs exactly max_tokens steps (~1 s for
 * 4000), long enough to be caught in flight. Serve it with
 * --tokenizer (yt_serve_tokenizer) and prompts as token ids. */
const char *yt_serve_long_model(void);
const char *yt_serve_tokenizer(void);
/* The opening of the test split's first résumé, which it memorised too. */
const char *yt_serve_test_resume(void);
/* The four lines it memorised. */
extern const char *const yt_serve_lines[4];

/* Starts `yuanft serve --model MODEL ARGS` (log in the tmpdir); on failure
 * records it with the log's text and returns -1. */
int yt_serve_up(yt_server *s, const char *model, const char *args);
/* Stops it with SIGTERM; checks the exit status 0. */
void yt_serve_down(yt_server *s);

/* POSTs a JSON body to path; returns the status (0: no answer) and the
 * parsed body in *json (NULL when not JSON). */
int yt_post_json(int port, const char *path, const char *body, const char *headers, cJSON **json);
/* choices[0].text or choices[0].message.content, or NULL. */
const char *yt_choice_text(const cJSON *resp);
/* The value of a metric in a /metrics text, or -1. */
double yt_metric(const char *text, const char *name);

/* The text of tokenizer ids (as the server decodes them: special tokens
 * dropped), malloc'd. */
char *yt_decode_ids(const char *ids_json);

#endif
