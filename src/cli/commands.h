/* Sub-commands of the `clgqa` CLI; each returns the process exit status. */
#ifndef CLGQA_CLI_COMMANDS_H
#define CLGQA_CLI_COMMANDS_H

int clgqa_cmd_devices(int argc, char **argv);
int clgqa_cmd_bench(int argc, char **argv); /* src/cli/bench.c */
int clgqa_bench_allreduce(int argc, char **argv); /* src/cli/allreduce.c: bench --allreduce */
int clgqa_cmd_train(int argc, char **argv);
int clgqa_cmd_eval(int argc, char **argv);
int clgqa_cmd_convert(int argc, char **argv);
int clgqa_cmd_plot(int argc, char **argv);

/* Print "clgqa: <message>" for a failed status; returns 1 (exit status). */
int clgqa_cli_error(const char *context);

#endif
