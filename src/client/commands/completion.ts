/**
 * `cpcc completion bash|zsh|fish`: a script that completes cpcc's commands,
 * their options, and job ids of the current project. The commands and
 * options are written into the script from the command files now, so the
 * shell completes them without running cpcc; job ids are asked of the
 * server when a command that takes one is being completed, through
 * `cpcc completion --job-ids`, which gives up after a short wait: a server
 * that does not answer must not hang the shell.
 */
import { ApiClient } from '../api/client.js';
import { shortId } from '../../core/short-ids.js';
import { parseDurationS } from '../../core/units.js';
import { usage } from '../output.js';
import type { Argument, CommandSpec, Context, OptionSpec } from './context.js';

const SHELLS = ['bash', 'zsh', 'fish'] as const;
type Shell = (typeof SHELLS)[number];

/** How long the shell waits for job ids, unless CPCC_COMPLETION_TIMEOUT says otherwise (a slow link: `5s`). */
const IDS_TIMEOUT_MS = 2000;

function idsTimeoutMs(env: NodeJS.ProcessEnv): number {
  const given = env.CPCC_COMPLETION_TIMEOUT;
  const s = given === undefined ? null : parseDurationS(given);
  return s === null || s <= 0 ? IDS_TIMEOUT_MS : s * 1000;
}
const IDS_LIMIT = 200;

interface Described {
  names: string[];
  summary: string;
  options: { long?: string; short?: string; value: boolean; description: string }[];
  takesJobId: boolean;
}

/** `--cores <n>` as its long and short forms and whether a value follows. */
function flagsOf(flags: string, description: string): Described['options'][number] {
  const parts = flags.split(/[ ,|]+/);
  return {
    long: parts.find((p) => p.startsWith('--')),
    short: parts.find((p) => /^-\w$/.test(p)),
    value: /[<[]/.test(flags),
    description,
  };
}

/** Arguments that are job ids: `<id>`, `<ids...>`, `<job-id>`, `<job_id>`, `<job-id-or-@value>`. */
const JOB_ID_ARG = /^[<[](ids?|job[-_]id[\w@-]*)(\.\.\.)?[>\]]$/;

function describe(specs: readonly CommandSpec[]): Described[] {
  return specs.map((spec) => ({
    names: [spec.name, ...(spec.aliases ?? [])],
    summary: spec.summary,
    options: [...(spec.options ?? []).map((o) => flagsOf(o.flags, o.description)), flagsOf('-h, --help', 'show help')],
    takesJobId: (spec.args ?? []).some((a) => JOB_ID_ARG.test(a)),
  }));
}

/** `text` as one single-quoted shell word. */
function quote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

/** cpcc's global options, as cli.ts hands them over (ctx.catalog). */
let GLOBAL_OPTIONS: readonly OptionSpec[] = [];
const globals = () => GLOBAL_OPTIONS.map((o) => flagsOf(o.flags, o.description)).concat(flagsOf('-h, --help', 'show help'), flagsOf('-V, --version', 'show the version'));
const words = (opts: Described['options']) => opts.flatMap((o) => [o.long, o.short].filter((f): f is string => f !== undefined)).join(' ');
/** Global options followed by a value, which the scripts step over when looking for the command. */
const VALUED = () => GLOBAL_OPTIONS.filter((o) => o.flags.includes('<')).flatMap((o) => o.flags.split(/[ ,]+/).filter((f) => f.startsWith('-')));

export function bashScript(cmds: Described[]): string {
  const idCommands = cmds.filter((c) => c.takesJobId).flatMap((c) => c.names);
  return `# cpcc completion for bash; load it with: source <(cpcc completion bash)
_cpcc() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" cmd="" i
  for ((i = 1; i < COMP_CWORD; i++)); do
    case "\${COMP_WORDS[i]}" in
      ${VALUED().join('|')}) ((i++)) ;;
      -*) ;;
      *) cmd="\${COMP_WORDS[i]}"; break ;;
    esac
  done
  local global=${quote(words(globals()))}
  if [[ -z "$cmd" ]]; then
    if [[ "$cur" == -* ]]; then
      COMPREPLY=($(compgen -W "$global" -- "$cur"))
    else
      COMPREPLY=($(compgen -W ${quote(cmds.flatMap((c) => c.names).join(' '))} -- "$cur"))
    fi
    return
  fi
  local opts=""
  case "$cmd" in
${cmds.map((c) => `    ${c.names.join('|')}) opts=${quote(words(c.options))} ;;`).join('\n')}
  esac
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$opts $global" -- "$cur"))
    return
  fi
  case "$cmd" in
    ${idCommands.join('|')}) COMPREPLY=($(compgen -W "$(cpcc completion --job-ids 2>/dev/null)" -- "$cur")) ;;
    completion) COMPREPLY=($(compgen -W ${quote(SHELLS.join(' '))} -- "$cur")) ;;
    *) COMPREPLY=($(compgen -f -- "$cur")) ;;
  esac
}
complete -o default -F _cpcc cpcc
`;
}

export function zshScript(cmds: Described[]): string {
  const described = (o: Described['options'][number]) => [o.long, o.short].filter((f): f is string => f !== undefined).map((f) => quote(`${f}:${o.description.replace(/:/g, '\\:')}`));
  const idCommands = cmds.filter((c) => c.takesJobId).flatMap((c) => c.names);
  return `#compdef cpcc
# cpcc completion for zsh; load it with: source <(cpcc completion zsh)
# or write it as _cpcc into a folder of $fpath
_cpcc() {
  local cmd i
  local -a commands opts global
  commands=(
${cmds.flatMap((c) => c.names.map((n) => `    ${quote(`${n}:${c.summary.replace(/:/g, '\\:')}`)}`)).join('\n')}
  )
  global=(${globals().flatMap(described).join(' ')})
  for ((i = 2; i < CURRENT; i++)); do
    case "\${words[i]}" in
      ${VALUED().join('|')}) ((i++)) ;;
      -*) ;;
      *) cmd="\${words[i]}"; break ;;
    esac
  done
  if [[ -z "$cmd" ]]; then
    if [[ "\${words[CURRENT]}" == -* ]]; then _describe 'option' global; else _describe 'command' commands; fi
    return
  fi
  case "$cmd" in
${cmds.map((c) => `    ${c.names.join('|')}) opts=(${c.options.flatMap(described).join(' ')}) ;;`).join('\n')}
  esac
  if [[ "\${words[CURRENT]}" == -* ]]; then
    _describe 'option' opts -- global
    return
  fi
  case "$cmd" in
    ${idCommands.join('|')}) compadd -- \${(f)"$(cpcc completion --job-ids 2>/dev/null)"} ;;
    completion) compadd -- ${SHELLS.join(' ')} ;;
    *) _files ;;
  esac
}
if [[ "\${zsh_eval_context[-1]}" == loadautofunc ]]; then
  _cpcc "$@"
else
  compdef _cpcc cpcc
fi
`;
}

export function fishScript(cmds: Described[]): string {
  const option = (cond: string | null, o: Described['options'][number]) =>
    [
      'complete -c cpcc',
      cond === null ? '' : `-n ${quote(cond)}`,
      o.long ? `-l ${o.long.slice(2)}` : '',
      o.short ? `-s ${o.short.slice(1)}` : '',
      o.value ? '-r' : '',
      `-d ${quote(o.description)}`,
    ]
      .filter((p) => p !== '')
      .join(' ');
  const lines = ['# cpcc completion for fish; load it with: cpcc completion fish | source', 'complete -c cpcc -f'];
  for (const o of globals()) lines.push(option(null, o));
  for (const c of cmds) {
    for (const n of c.names) lines.push(`complete -c cpcc -n __fish_use_subcommand -a ${quote(n)} -d ${quote(c.summary)}`);
    const cond = `__fish_seen_subcommand_from ${c.names.join(' ')}`;
    for (const o of c.options) lines.push(option(cond, o));
  }
  const idCommands = cmds.filter((c) => c.takesJobId).flatMap((c) => c.names);
  lines.push(`complete -c cpcc -n ${quote(`__fish_seen_subcommand_from ${idCommands.join(' ')}`)} -a '(cpcc completion --job-ids 2>/dev/null)'`);
  lines.push(`complete -c cpcc -n '__fish_seen_subcommand_from completion' -a ${quote(SHELLS.join(' '))}`);
  return lines.join('\n') + '\n';
}

/** The current project's job ids, newest first as the server lists them, in their short form; nothing when the server is slow or away. */
async function jobIds(ctx: Context): Promise<void> {
  let api: ApiClient | undefined;
  try {
    const { entry } = await ctx.server();
    const project = await ctx.project();
    api = new ApiClient({ url: entry.url, caPem: entry.caPem, serverId: entry.serverId, token: entry.token, timeoutMs: idsTimeoutMs(ctx.io.env) });
    const list = await api.jobs(project, { limit: IDS_LIMIT });
    ctx.out.raw(list.jobs.map((j) => `${shortId(j.id)}\n`).join(''));
  } catch {
    // Completion offers what it can; an error would land in the middle of the command line.
  } finally {
    await api?.destroy().catch(() => {});
  }
}

async function completion(ctx: Context, args: Argument[], opts: Record<string, unknown>): Promise<void> {
  if (opts.jobIds === true) return jobIds(ctx);
  const shell = args[0] as string | undefined;
  if (shell === undefined) usage(`give a shell: cpcc completion ${SHELLS.join('|')}`);
  if (!(SHELLS as readonly string[]).includes(shell)) usage(`no completion for '${shell}'; give one of ${SHELLS.join(', ')}`);
  if (!ctx.catalog) throw new Error('cpcc: the command catalog is not at hand');
  GLOBAL_OPTIONS = ctx.catalog.globalOptions;
  const cmds = describe(await ctx.catalog.commands());
  const make: Record<Shell, (c: Described[]) => string> = { bash: bashScript, zsh: zshScript, fish: fishScript };
  ctx.out.raw(make[shell as Shell](cmds));
}

export const completionCommands: CommandSpec[] = [
  {
    name: 'completion',
    args: ['[shell]'],
    summary: 'print a completion script for bash, zsh or fish (commands, options, job ids)',
    options: [{ flags: '--job-ids', description: "the current project's job ids, one a line (what the scripts complete from; waits 2s at most, or $CPCC_COMPLETION_TIMEOUT)" }],
    run: completion,
  },
];
