/* The extraction task end to end on a model small enough to train in a test:
 * init with a pruned vocabulary, train on text records, extract, eval. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "base/util.h"

/* Four corpus-style records; a 2-layer model memorises them. */
static const char *records =
    "{\"input\": \"高勇：男，中国国籍，无境外居留权，\", \"output\": \"{\\\"姓名\\\": [\\\"高勇\\\"], \\\"国籍\\\": [\\\"中国国籍\\\"]}\"}\n"
    "{\"input\": \"2007年10月至今任人和投资董事；\", \"output\": \"{\\\"职位\\\": [\\\"董事\\\"], \\\"组织名\\\": [\\\"人和投资\\\"]}\"}\n"
    "{\"input\": \"汉族，本科学历，工程师。\", \"output\": \"{\\\"种族\\\": [\\\"汉族\\\"], \\\"职位\\\": [\\\"工程师\\\"], \\\"教育背景\\\": [\\\"本科学历\\\"]}\"}\n"
    "{\"input\": \"毕业于北京大学计算机专业。\", \"output\": \"{\\\"专业\\\": [\\\"计算机专业\\\"], \\\"组织名\\\": [\\\"北京大学\\\"]}\"}\n";

static const char *config =
    "{\"vocab_size\": 135040, \"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 2, "
    "\"num_attention_heads\": 4, \"max_position_embeddings\": 256, \"torch_dtype\": \"float32\"}\n";

static void write(const char *path, const char *text) {
    CHECK(yf_write_file_atomic(path, text, strlen(text)) == 0, "%s", yf_last_error());
}

TEST(extract_train_text_then_extract_and_eval) {
    const char *tok = yt_shared_path("yuan/tokenizer.model");
    const char *d = yt_tmpdir();
    char p[1024], out[16384];
    snprintf(p, sizeof p, "%s/data.jsonl", d);
    write(p, records);
    snprintf(p, sizeof p, "%s/config.json", d);
    write(p, config);
    /* OMP_NUM_THREADS=1: tiny matrices gain nothing from threads */
    int rc = yt_sh(out, sizeof out,
                   "export OMP_NUM_THREADS=1; %s init --config %s/config.json --output-dir %s/base --tokenizer %s "
                   "--vocab-from %s/data.jsonl --prompt-template none",
                   yt_cli(), d, d, tok, d);
    CHECK(rc == 0 && strstr(out, "vocabulary pruned"), "init: %s", out);
    snprintf(p, sizeof p, "%s/base/vocab_map.safetensors", d);
    CHECK(yf_file_exists(p), "no vocab map written");
    rc = yt_sh(out, sizeof out,
               "export OMP_NUM_THREADS=1; %s train --model %s/base --data %s/data.jsonl --prompt-template none "
               "--output-dir %s/full --full-finetune --max-steps 120 --per-device-train-batch-size 4 "
               "--learning-rate 1e-2 --logging-steps 40 --save-strategy no",
               yt_cli(), d, d, d);
    CHECK(rc == 0, "train: exit %d: %s", rc, out);
    snprintf(p, sizeof p, "%s/full/tokenizer.model", d);
    CHECK(yf_file_exists(p), "trained model directory lacks tokenizer.model");
    /* extract: one JSON object per input line, the memorised answers */
    snprintf(p, sizeof p, "%s/in.txt", d);
    write(p, "高勇：男，中国国籍，无境外居留权，\n2007年10月至今任人和投资董事；\n");
    rc = yt_sh(out, sizeof out, "OMP_NUM_THREADS=1 %s extract --model %s/full --input %s --prompt-template none 2>/dev/null",
               yt_cli(), d, p);
    CHECK(rc == 0, "extract: exit %d: %s", rc, out);
    CHECK(strcmp(out, "{\"姓名\": [\"高勇\"], \"国籍\": [\"中国国籍\"]}\n{\"职位\": [\"董事\"], \"组织名\": [\"人和投资\"]}\n") == 0,
          "extract printed:\n%s", out);
    /* eval through the model: every entity right */
    rc = yt_sh(out, sizeof out,
               "OMP_NUM_THREADS=1 %s eval --model %s/full --data %s/data.jsonl --prompt-template none --report %s/r.json "
               "2>/dev/null && cat %s/r.json",
               yt_cli(), d, d, d, d);
    CHECK(rc == 0, "eval: exit %d: %s", rc, out);
    CHECK(strstr(out, "\"micro\"") && strstr(out, "\"per_type\""), "report: %s", out);
    char *m = strstr(out, "\"micro\"");
    char *f1 = m ? strstr(m, "\"f1\"") : NULL;
    double f = f1 ? atof(f1 + 5) : -1;
    CHECK_NEAR("1 - micro F1 on memorised records", 1.0 - f, 1e-9);

    /* a template the prompts share: the prefix cache computes it once, the
     * answers stay the same (ids identical) */
    snprintf(p, sizeof p, "%s/tpl.txt", d);
    write(p, "# 任务\n从简历中识别所有的命名实体，以json格式返回：姓名、国籍、种族、职位、教育背景、专业、组织名、地名。\n{input}");
    char both[2][8192];
    for (int k = 0; k < 2; k++) {
        rc = yt_sh(both[k], sizeof both[k],
                   "OMP_NUM_THREADS=1 %s extract --model %s/full --input %s/in.txt --prompt-template %s --batch 2 "
                   "--max-new-tokens 12 --prefix-cache %s 2>%s/err%d.txt && cat %s/err%d.txt",
                   yt_cli(), d, d, p, k ? "on" : "off", d, k, d, k);
        CHECK(rc == 0, "extract --prefix-cache %s: exit %d: %s", k ? "on" : "off", rc, both[k]);
    }
    char *e0 = strstr(both[0], "extract: "), *e1 = strstr(both[1], "extract: ");
    CHECK(e0 && e1, "no summary lines");
    if (!e0 || !e1) return;
    CHECK(strstr(e0, "; 0 from the prefix cache") && !strstr(e1, "; 0 from the prefix cache"), "prefix cache use:\n%s\n%s",
          e0, e1);
    *e0 = *e1 = 0; /* the answers before the summaries */
    CHECK(strcmp(both[0], both[1]) == 0, "answers differ with the prefix cache:\n%s---\n%s", both[0], both[1]);
}

TEST(extract_bad_input) {
    char out[4096];
    const char *d = yt_tmpdir();
    int rc = yt_sh(out, sizeof out, "%s extract --input /dev/null", yt_cli());
    CHECK(rc == 2 && strstr(out, "--model"), "no model: exit %d: %s", rc, out);
    rc = yt_sh(out, sizeof out, "%s extract --model %s/none --input /dev/null", yt_cli(), d);
    CHECK(rc == 1 && strstr(out, "/dev/null: not a regular file"), "a device as input: exit %d: %s", rc, out);
    rc = yt_sh(out, sizeof out, ": > %s/empty.txt; %s extract --model %s/none --input %s/empty.txt", d, yt_cli(), d, d);
    CHECK(rc == 1 && strstr(out, "none"), "missing model dir: exit %d: %s", rc, out);
    rc = yt_sh(out, sizeof out, "%s extract --model %s --input %s/missing.txt", yt_cli(), yt_shared_path("golden/yuan-tiny"), d);
    CHECK(rc == 1 && strstr(out, "missing.txt"), "missing input: exit %d: %s", rc, out);
    rc = yt_sh(out, sizeof out, "%s eval --data %s/missing.jsonl --model x", yt_cli(), d);
    CHECK(rc == 1 && strstr(out, "missing.jsonl"), "missing data: exit %d: %s", rc, out);
    rc = yt_sh(out, sizeof out, "%s extract --model x --batch 0 --input /dev/null", yt_cli());
    CHECK(rc == 2 && strstr(out, "--batch"), "batch 0: exit %d: %s", rc, out);
    rc = yt_sh(out, sizeof out, "%s eval --data x.jsonl --model y --max-new-tokens 0", yt_cli());
    CHECK(rc == 2 && strstr(out, "--max-new-tokens"), "eval max-new-tokens 0: exit %d: %s", rc, out);
    rc = yt_sh(out, sizeof out, "%s eval --data x.jsonl", yt_cli());
    CHECK(rc == 2, "neither --model nor --predictions: exit %d: %s", rc, out);
    rc = yt_sh(out, sizeof out, "%s init --config %s --output-dir %s/m --vocab-from x.jsonl", yt_cli(),
               yt_shared_path("golden/yuan-tiny/config.json"), d);
    CHECK(rc == 2 && strstr(out, "--tokenizer"), "vocab without tokenizer: exit %d: %s", rc, out);
}
