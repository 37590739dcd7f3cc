/* yuanft data: not built yet (stub). */
#include <stdio.h>

#include "commands.h"

int cmd_data(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "yuanft data: not implemented yet\n");
    return 2;
}
