/* metrics: GET /metrics, the Prometheus text exposition format (version
 * 0.0.4): one "# HELP", one "# TYPE" and one sample line a metric, every
 * name prefixed yuanft_. */
#ifndef YF_METRICS_H
#define YF_METRICS_H

#include "serve/server.h"

/* The text (malloc'd) from the scheduler's and the HTTP side's counters. */
char *yf_metrics_text(const yf_sched_stats *st, const yf_http_counters *hc, int64_t http_inflight, bool ready);

#endif
