/** cpcc's exit codes (cli.ts says what each means), apart from output.ts so that a start that prints nothing needs not load it. */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
