/* yuanft: the command-line entry point; one subcommand per tools/cmd_*.c. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "yuanft.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} g_cmds[] = {
    {"init", cmd_init, "Write a randomly initialised model directory for a config"},
    {"score", cmd_score, "Score one batch: logits, loss and adapter gradients"},
    {"tokenize", cmd_tokenize, "Encode strings to token ids, or decode ids (strings <-> ids)"},
    {"params", cmd_params, "Print trainable parameter counts for a LoRA set-up"},
    {"train", cmd_train, "Fine-tune (LoRA, DoRA or full) with the HF Trainer's semantics"},
    {"merge", cmd_merge, "Merge an adapter into the base weights (merge_and_unload)"},
    {"quantize", cmd_quantize, "Write a model directory with its weights stored int8 or q4"},
    {"generate", cmd_generate, "Generate text or ids from a prompt"},
    {"data", cmd_data, "Prepare training data: records, checks, training tensors"},
    {"extract", cmd_extract, "Extract entities from resumes as JSON, one a line"},
    {"eval", cmd_eval, "Score extraction: precision, recall and F1 against gold data"},
    {"serve", cmd_serve, "Serve a model over HTTP: OpenAI API, batching, adapters, an extraction page"},
};

static void usage(FILE *f) {
    fprintf(f, "yuanft %s: fine-tuning and inference for Yuan 2.0 models\n\nusage: yuanft COMMAND [options]\n\ncommands:\n",
            YUANFT_VERSION);
    for (size_t i = 0; i < sizeof g_cmds / sizeof *g_cmds; i++) fprintf(f, "  %-10s %s\n", g_cmds[i].name, g_cmds[i].help);
    fprintf(f, "\n'yuanft COMMAND --help' shows a command's options.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("yuanft %s\n", YUANFT_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof g_cmds / sizeof *g_cmds; i++)
        if (!strcmp(argv[1], g_cmds[i].name)) return g_cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "yuanft: unknown command '%s' (see yuanft --help)\n", argv[1]);
    return 2;
}
