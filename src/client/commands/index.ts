/**
 * Where each group of cpcc commands lives, loaded only when one of its
 * commands runs: a start that runs `cpcc pwd` reads one command file, not
 * twelve (and not what they import: the HTTP client, WebSocket, tables).
 * manifest.ts says which group holds which command, for the help and the
 * routing, without loading any.
 */
import type { CommandSpec } from './context.js';

export const COMMAND_MODULES = {
  servers: async () => (await import('./servers.js')).serverCommands,
  users: async () => (await import('./users.js')).userCommands,
  projects: async () => (await import('./projects.js')).projectCommands,
  'project-defaults': async () => (await import('./project-defaults.js')).projectDefaultCommands,
  jobs: async () => (await import('./jobs.js')).jobCommands,
  stats: async () => (await import('./stats.js')).statsCommands,
  watch: async () => (await import('./watch.js')).watchCommands,
  files: async () => (await import('./files.js')).fileCommands,
  'save-load': async () => (await import('./save-load.js')).saveLoadCommands,
  workers: async () => (await import('./workers.js')).workerCommands,
  pilots: async () => (await import('./pilots.js')).pilotCommands,
  federation: async () => (await import('./federation.js')).federationCommands,
  network: async () => (await import('./network.js')).networkCommands,
  admin: async () => (await import('./admin.js')).adminCommands,
  completion: async () => (await import('./completion.js')).completionCommands,
} satisfies Record<string, () => Promise<readonly CommandSpec[]>>;

export type CommandGroup = keyof typeof COMMAND_MODULES;

export const GROUP_NAMES = Object.keys(COMMAND_MODULES) as CommandGroup[];

/** Every group's commands, in the order of the help. */
export async function loadAllGroups(): Promise<Map<CommandGroup, readonly CommandSpec[]>> {
  const specs = await Promise.all(GROUP_NAMES.map((g) => COMMAND_MODULES[g]()));
  return new Map(GROUP_NAMES.map((g, i) => [g, specs[i]!]));
}
