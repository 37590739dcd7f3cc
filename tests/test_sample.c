#include "harness.h"
#include "model/sample.h"

#include <math.h>

TEST(sample_greedy_is_argmax) {
    float l[5] = {0.1f, 2.0f, -1.0f, 1.9f, 0.0f};
    yf_sampling s;
    yf_sampling_default(&s);
    CHECK(yf_sample(l, 5, &s, NULL, 0, NULL) == 1);
}

TEST(sample_repetition_penalty_greedy) {
    /* HF: positive logits divided, negative multiplied, each token once */
    float l[4] = {2.0f, 1.5f, -1.0f, 0.5f};
    int64_t hist[3] = {0, 0, 2};
    yf_sampling s;
    yf_sampling_default(&s);
    s.repetition_penalty = 2.0f;
    CHECK(yf_sample(l, 4, &s, hist, 3, NULL) == 1);
    CHECK(l[0] == 1.0f, "l[0] = %g", l[0]);
    CHECK(l[2] == -2.0f, "l[2] = %g", l[2]);
}

TEST(sample_top_k_1_is_greedy) {
    yf_rng rng;
    yf_rng_seed(&rng, 7);
    yf_sampling s;
    yf_sampling_default(&s);
    s.temperature = 1.0f;
    s.top_k = 1;
    for (int i = 0; i < 50; i++) {
        float l[4] = {0.0f, 0.3f, 0.2f, 0.1f};
        CHECK(yf_sample(l, 4, &s, NULL, 0, &rng) == 1);
    }
}

TEST(sample_distribution_matches_softmax) {
    /* 20,000 draws at temperature 1: frequencies within 0.015 of softmax */
    yf_rng rng;
    yf_rng_seed(&rng, 1);
    yf_sampling s;
    yf_sampling_default(&s);
    s.temperature = 1.0f;
    float base[3] = {0.0f, 1.0f, 2.0f};
    double p[3], z = 0, cnt[3] = {0};
    for (int i = 0; i < 3; i++) z += exp(base[i]);
    for (int i = 0; i < 3; i++) p[i] = exp(base[i]) / z;
    int N = 20000;
    for (int n = 0; n < N; n++) {
        float l[3] = {base[0], base[1], base[2]};
        cnt[yf_sample(l, 3, &s, NULL, 0, &rng)]++;
    }
    double worst = 0;
    for (int i = 0; i < 3; i++) worst = fmax(worst, fabs(cnt[i] / N - p[i]));
    CHECK_NEAR("max |freq - softmax|", worst, 0.015);
}

TEST(sample_top_p_cuts_tail) {
    /* probabilities ~ [0.665, 0.245, 0.09]: top_p 0.7 keeps the first two only */
    yf_rng rng;
    yf_rng_seed(&rng, 3);
    yf_sampling s;
    yf_sampling_default(&s);
    s.temperature = 1.0f;
    s.top_p = 0.7f;
    int third = 0;
    for (int n = 0; n < 2000; n++) {
        float l[3] = {2.0f, 1.0f, 0.0f};
        third += yf_sample(l, 3, &s, NULL, 0, &rng) == 2;
    }
    CHECK(third == 0, "token outside the nucleus drawn %d times", third);
}

TEST(sample_bad_parameters_rejected) {
    yf_sampling s;
    yf_sampling_default(&s);
    s.top_p = 0;
    CHECK(yf_sampling_check(&s) != 0);
    yf_sampling_default(&s);
    s.temperature = -1;
    CHECK(yf_sampling_check(&s) != 0);
    yf_sampling_default(&s);
    CHECK(yf_sampling_check(&s) == 0);
}
