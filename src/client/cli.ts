/**
 * cpcc's command line: the command tables of each group become one commander
 * program. Nothing below here exits the process; `main` returns the exit code.
 *
 *   0  ok
 *   1  failure: the server said no, could not be reached, a waited-for job failed
 *   2  usage: bad flags or arguments
 */
import { Command, CommanderError, Option } from 'commander';
import { packageVersion } from '../common/version.js';
import { configHome } from './config.js';
import { EXIT_OK, EXIT_USAGE, reportError } from './output.js';
import { Context, type Argument, type CommandSpec, type GlobalOptions, type Io, type OptionSpec } from './commands/context.js';
import { adminCommands } from './commands/admin.js';
import { federationCommands } from './commands/federation.js';
import { fileCommands } from './commands/files.js';
import { jobCommands } from './commands/jobs.js';
import { networkCommands } from './commands/network.js';
import { pilotCommands } from './commands/pilots.js';
import { projectCommands } from './commands/projects.js';
import { saveLoadCommands } from './commands/save-load.js';
import { serverCommands } from './commands/servers.js';
import { userCommands } from './commands/users.js';
import { watchCommands } from './commands/watch.js';
import { workerCommands } from './commands/workers.js';

export const GLOBAL_OPTIONS: OptionSpec[] = [
  { flags: '--json', description: 'print JSON instead of tables and text' },
  { flags: '--no-color', description: 'no colours (NO_COLOR=1 does the same)' },
  { flags: '-s, --server <name>', description: 'use this configured server instead of the current one' },
  { flags: '-p, --project <name>', description: 'use this project instead of the current one' },
];

export const COMMAND_GROUPS: readonly (readonly CommandSpec[])[] = [
  serverCommands,
  userCommands,
  projectCommands,
  jobCommands,
  watchCommands,
  fileCommands,
  saveLoadCommands,
  workerCommands,
  pilotCommands,
  federationCommands,
  networkCommands,
  adminCommands,
];

export function processIo(): Io {
  return { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env };
}

function addOption(cmd: Command, spec: OptionSpec): void {
  const opt = new Option(spec.flags, spec.description);
  if (spec.parse) opt.argParser(spec.parse as (value: string, previous: unknown) => unknown);
  if (spec.default !== undefined) opt.default(spec.default);
  cmd.addOption(opt);
}

export interface RunState {
  exitCode: number;
}

function addCommand(parent: Command, spec: CommandSpec, io: Io, state: RunState): void {
  const cmd = parent.command(spec.name).description(spec.summary);
  for (const alias of spec.aliases ?? []) cmd.alias(alias);
  for (const arg of spec.args ?? []) cmd.argument(arg);
  for (const opt of spec.options ?? []) addOption(cmd, opt);
  if (spec.help) cmd.addHelpText('after', `\n${spec.help}`);
  for (const sub of spec.commands ?? []) addCommand(cmd, sub, io, state);
  const run = spec.run;
  if (!run) return;
  cmd.action(async (...params: unknown[]) => {
    const self = params[params.length - 1] as Command;
    const args = params.slice(0, -2) as Argument[];
    const all = self.optsWithGlobals() as Record<string, unknown>;
    const global: GlobalOptions = {
      json: all.json === true,
      color: all.color !== false,
      server: all.server as string | undefined,
      project: all.project as string | undefined,
    };
    const ctx = new Context(io, global, configHome(io.env));
    try {
      state.exitCode = (await run(ctx, args, self.opts() as Record<string, unknown>)) ?? EXIT_OK;
    } finally {
      await ctx.close();
    }
  });
}

export function buildProgram(io: Io = processIo(), state: RunState = { exitCode: EXIT_OK }): Command {
  const program = new Command('cpcc');
  program
    .description('the command line of cpc: projects, jobs and workers on a cpc server')
    .version(packageVersion(), '-V, --version')
    // Usage errors are reported by main as one line, with exit code 2.
    .exitOverride()
    .configureOutput({
      writeOut: (s) => void io.stdout.write(s),
      writeErr: (s) => void io.stderr.write(s),
      outputError: () => {},
    })
    .showSuggestionAfterError(true);
  for (const opt of GLOBAL_OPTIONS) addOption(program, opt);
  for (const group of COMMAND_GROUPS) for (const spec of group) addCommand(program, spec, io, state);
  return program;
}

const SUBMIT_HINT = "; put the job's command after --, as in: cpcc submit -- COMMAND ARGS...";

export async function main(argv: string[] = process.argv, io: Io = processIo()): Promise<number> {
  const state: RunState = { exitCode: EXIT_OK };
  const program = buildProgram(io, state);
  try {
    await program.parseAsync(argv);
    return state.exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return EXIT_OK;
      // Help went to stderr because a command was missing: that is a usage error too.
      if (err.code === 'commander.help') return EXIT_USAGE;
      if (err.code === 'commander.unknownOption' && argv.slice(2).includes('submit') && !argv.includes('--')) {
        err.message += SUBMIT_HINT;
      }
    }
    return reportError(err, io.stderr, io.env);
  }
}
