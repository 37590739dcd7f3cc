/* Every subcommand: int cmd_NAME(int argc, char **argv), argv[0] = "NAME".
 * Returns the process exit status. */
#ifndef YF_COMMANDS_H
#define YF_COMMANDS_H

int cmd_init(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_params(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_extract(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_serve(int argc, char **argv);

#endif
