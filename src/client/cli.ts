/**
 * cpcc's command line: the command tables of each group become one commander
 * program. Only the group of the command that runs is loaded; the others are
 * known from commands/manifest.ts, which is all `--help` needs. Nothing below
 * here exits the process; `main` returns the exit code.
 *
 *   0  ok
 *   1  failure: the server said no, could not be reached, a waited-for job failed
 *   2  usage: bad flags or arguments
 */
import { Command, CommanderError, Help, Option } from 'commander';
import { packageVersion } from '../common/version.js';
import { EXIT_OK, EXIT_USAGE } from './exit-codes.js';
import type { Argument, CommandSpec, GlobalOptions, Io, OptionSpec } from './commands/context.js';
import { COMMAND_MODULES, GROUP_NAMES, loadAllGroups, type CommandGroup } from './commands/index.js';
import { COMMAND_MANIFEST, type ManifestEntry } from './commands/manifest.js';

export const GLOBAL_OPTIONS: OptionSpec[] = [
  { flags: '--json', description: 'print JSON instead of tables and text' },
  { flags: '--no-color', description: 'no colours (NO_COLOR=1 does the same)' },
  { flags: '-s, --server <name>', description: 'use this configured server instead of the current one' },
  { flags: '-p, --project <name>', description: 'use this project instead of the current one' },
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

/** Commands whose group is not loaded yet, with what the help shows of them. */
const stubs = new WeakMap<Command, ManifestEntry>();

function addCommand(parent: Command, spec: CommandSpec, io: Io, state: RunState): void {
  const cmd = parent.command(spec.name).description(spec.summary);
  for (const alias of spec.aliases ?? []) cmd.alias(alias);
  define(cmd, spec, io, state);
}

/** A command as the help lists it, its arguments, options and action added when it is used. */
function addStub(parent: Command, entry: ManifestEntry): void {
  const cmd = parent.command(entry.name).description(entry.summary);
  for (const alias of entry.aliases) cmd.alias(alias);
  stubs.set(cmd, entry);
}

/** The examples of `--help` (commands/examples.ts), loaded by programFor only when help is asked for. */
let examples: typeof import('./commands/examples.js') | undefined;

/** A command's name with its parents', as examples.ts keys it: `worker-token create`. */
function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c?.parent; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

function define(cmd: Command, spec: CommandSpec, io: Io, state: RunState): void {
  for (const arg of spec.args ?? []) cmd.argument(arg);
  for (const opt of spec.options ?? []) addOption(cmd, opt);
  if (spec.help) cmd.addHelpText('after', `\n${spec.help}`);
  const shown = examples?.examplesText(commandPath(cmd));
  if (shown) cmd.addHelpText('after', shown);
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
    // Loaded here, with the output, the config and the API client, for a command that runs (not for help).
    const [{ Context }, { configHome }] = await Promise.all([import('./commands/context.js'), import('./config.js')]);
    const ctx = new Context(io, global, configHome(io.env));
    ctx.catalog = { commands: async () => [...(await loadAllGroups()).values()].flat(), globalOptions: GLOBAL_OPTIONS };
    try {
      state.exitCode = (await run(ctx, args, self.opts() as Record<string, unknown>)) ?? EXIT_OK;
    } finally {
      await ctx.close();
    }
  });
}

/** Gives a stub what its command file says of it, loading that file. */
async function fill(cmd: Command, io: Io, state: RunState): Promise<void> {
  const entry = stubs.get(cmd);
  if (!entry) return;
  let spec = (await COMMAND_MODULES[entry.group]()).find((s) => s.name === entry.name);
  // A manifest older than the command files: look everywhere.
  spec ??= [...(await loadAllGroups()).values()].flat().find((s) => s.name === entry.name);
  if (!spec) throw new Error(`cpcc: no command file defines '${entry.name}'`);
  stubs.delete(cmd);
  define(cmd, spec, io, state);
}

/**
 * The program with every command: those of `groups` complete, the others as
 * stubs that are completed (their file loaded) when commander dispatches to
 * them. The help lists them all alike.
 */
export function buildProgram(
  io: Io = processIo(),
  state: RunState = { exitCode: EXIT_OK },
  groups: ReadonlyMap<CommandGroup, readonly CommandSpec[]> = new Map(),
): Command {
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
    .configureHelp({
      subcommandTerm(this: Help, cmd: Command): string {
        return stubs.get(cmd)?.term ?? Help.prototype.subcommandTerm.call(this, cmd);
      },
    })
    .showSuggestionAfterError(true)
    .hook('preSubcommand', (_program, sub) => fill(sub, io, state));
  for (const opt of GLOBAL_OPTIONS) addOption(program, opt);
  for (const group of GROUP_NAMES) {
    const specs = groups.get(group);
    if (specs) for (const spec of specs) addCommand(program, spec, io, state);
    else for (const entry of COMMAND_MANIFEST) if (entry.group === group) addStub(program, entry);
  }
  return program;
}

/** Global options followed by a value, as `-s NAME`. */
const VALUE_FLAGS = new Set(GLOBAL_OPTIONS.filter((o) => o.flags.includes('<')).flatMap((o) => o.flags.split(/[ ,]+/).filter((f) => f.startsWith('-'))));

/** The command the arguments name (`help NAME` names NAME), read past the global options as commander reads them. */
export function commandWord(args: readonly string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (VALUE_FLAGS.has(a)) i++;
    else if (!a.startsWith('-')) return a === 'help' && args[i + 1] !== undefined ? args[i + 1] : a;
  }
  return undefined;
}

/** The program for these arguments, with the one group of commands they name loaded. */
export async function programFor(argv: readonly string[], io: Io = processIo(), state: RunState = { exitCode: EXIT_OK }): Promise<Command> {
  const word = commandWord(argv.slice(2));
  if (helpWanted(argv.slice(2))) examples ??= await import('./commands/examples.js');
  const entry = word === undefined ? undefined : COMMAND_MANIFEST.find((e) => e.name === word || e.aliases.includes(word));
  // A name the manifest lacks is a mistake, or a command newer than the manifest: every file says which.
  if (!entry && word !== undefined && word !== 'help') return buildProgram(io, state, await loadAllGroups());
  const groups = new Map<CommandGroup, readonly CommandSpec[]>();
  if (entry) groups.set(entry.group, await COMMAND_MODULES[entry.group]());
  return buildProgram(io, state, groups);
}

/** What manifest.ts holds, read from the command files (scripts/write-command-manifest.ts writes it; a test compares). */
export async function describeCommands(): Promise<ManifestEntry[]> {
  const groups = await loadAllGroups();
  const program = buildProgram(processIo(), { exitCode: EXIT_OK }, groups);
  const help = program.createHelp();
  const byName = new Map(program.commands.map((c) => [c.name(), c]));
  return GROUP_NAMES.flatMap((group) =>
    groups.get(group)!.map((spec) => ({
      group,
      name: spec.name,
      aliases: spec.aliases ?? [],
      term: help.subcommandTerm(byName.get(spec.name)!),
      summary: spec.summary,
    })),
  );
}

/** `-h`, `--help` or `help` before any `--`: the examples are wanted. */
function helpWanted(args: readonly string[]): boolean {
  const end = args.indexOf('--');
  const before = end < 0 ? args : args.slice(0, end);
  return before.includes('--help') || before.includes('-h') || commandWord(args) === 'help' || before[before.findIndex((a) => !a.startsWith('-'))] === 'help';
}

/** `--json` among the options, read as commander reads them: not past `--`, not as the value of `-s`/`-p`. */
export function jsonWanted(args: readonly string[]): boolean {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') return false;
    if (a === '--json') return true;
    if (VALUE_FLAGS.has(a)) i++;
  }
  return false;
}

const SUBMIT_HINT = "; put the job's command after --, as in: cpcc submit -- COMMAND ARGS...";

export async function main(argv: string[] = process.argv, io: Io = processIo()): Promise<number> {
  const state: RunState = { exitCode: EXIT_OK };
  try {
    const program = await programFor(argv, io, state);
    await program.parseAsync(argv);
    return state.exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return EXIT_OK;
      // `cpcc help [NAME]` asked for it (0); help on stderr because a command was missing is a usage error.
      if (err.code === 'commander.help') return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
      if (err.code === 'commander.unknownOption' && argv.slice(2).includes('submit') && !argv.includes('--')) {
        err.message += SUBMIT_HINT;
      }
    }
    const { reportError } = await import('./output.js');
    return reportError(err, io.stderr, io.env, jsonWanted(argv.slice(2)));
  }
}
