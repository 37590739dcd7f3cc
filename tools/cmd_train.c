/* yuanft train: not built yet (stub). */
#include <stdio.h>

#include "commands.h"

int cmd_train(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "yuanft train: not implemented yet\n");
    return 2;
}
