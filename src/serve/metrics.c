/* metrics: the Prometheus text of /metrics (metrics.h). */
#include "serve/metrics.h"

#include <stdio.h>

#include "base/jsontext.h"

static void metric(yf_sbuf *b, const char *name, const char *type, const char *help, double v) {
    char t[512];
    snprintf(t, sizeof t, "# HELP yuanft_%s %s\n# TYPE yuanft_%s %s\nyuanft_%s %.17g\n", name, help, name, type, name, v);
    yf_sbuf_puts(b, t);
}

char *yf_metrics_text(const yf_sched_stats *st, const yf_http_counters *hc, int64_t http_inflight, bool ready) {
    yf_sbuf b = {0};
    metric(&b, "ready", "gauge", "1 once the model is loaded", ready);
    metric(&b, "requests_processed_total", "counter", "Generation requests that finished (stop or length).",
           (double)st->processed);
    metric(&b, "requests_deferred_total", "counter", "Requests that found every slot busy and waited in the queue.",
           (double)st->deferred);
    metric(&b, "requests_rejected_total", "counter", "Requests refused with 503: the queue was full.",
           (double)st->rejected);
    metric(&b, "requests_cancelled_total", "counter", "Requests cancelled: client gone, or shutdown.",
           (double)st->cancelled);
    metric(&b, "requests_failed_total", "counter", "Requests the model failed on.", (double)st->failed);
    metric(&b, "prompt_tokens_total", "counter", "Prompt tokens prefilled.", (double)st->prompt_tokens);
    metric(&b, "generated_tokens_total", "counter", "Tokens generated.", (double)st->generated_tokens);
    double busy = st->prefill_s + st->decode_s;
    metric(&b, "generated_tokens_per_second", "gauge",
           "Tokens generated per second of model time (prefill and decode), since the start.",
           busy > 0 ? (double)st->generated_tokens / busy : 0);
    metric(&b, "prefill_seconds_total", "counter", "Seconds spent prefilling prompts.", st->prefill_s);
    metric(&b, "decode_seconds_total", "counter", "Seconds spent in decode steps.", st->decode_s);
    metric(&b, "decode_steps_total", "counter", "Decode steps (one token for every running request).",
           (double)st->steps);
    metric(&b, "queue_depth", "gauge", "Requests waiting for a slot.", (double)st->queued);
    metric(&b, "slots_busy", "gauge", "Slots decoding a request now.", (double)st->active);
    metric(&b, "slots", "gauge", "Slots (--parallel).", (double)st->parallel);
    metric(&b, "batch_occupancy", "gauge", "Busy slots / slots, now.",
           st->parallel ? (double)st->active / (double)st->parallel : 0);
    metric(&b, "batch_occupancy_mean", "gauge", "Rows of a decode step / slots, averaged over the steps so far.",
           st->steps && st->parallel ? (double)st->step_rows / (double)st->steps / (double)st->parallel : 0);
    metric(&b, "http_requests_total", "counter", "HTTP requests answered.", (double)hc->requests);
    metric(&b, "http_requests_in_flight", "gauge", "HTTP requests being handled.", (double)http_inflight);
    metric(&b, "http_client_errors_total", "counter", "Answers with a 4xx status.", (double)hc->errors_4xx);
    metric(&b, "http_server_errors_total", "counter", "Answers with a 5xx status.", (double)hc->errors_5xx);
    metric(&b, "http_unauthorized_total", "counter", "401 answers: missing or wrong API key.", (double)hc->unauthorized);
    metric(&b, "http_body_too_large_total", "counter", "413 answers: body over --max-body.", (double)hc->too_large);
    metric(&b, "http_disconnects_total", "counter", "Clients gone before their answer was complete.",
           (double)hc->disconnects);
    metric(&b, "http_overhead_seconds_mean", "gauge",
           "Mean seconds a generation request spends in the HTTP layer (parsing, tokenizing, writing; not the model).",
           hc->overhead_n ? (double)hc->overhead_ns * 1e-9 / (double)hc->overhead_n : 0);
    return yf_sbuf_take(&b);
}
