/**
 * docs/CONFIG.md: every server setting, its default, its environment
 * variable, and whether a running server takes a change at once, from the
 * settings table (config.ts). Written by `npm run config-doc`; a test fails
 * when the file is out of date.
 */
import { formatDurationS, formatSizeMb } from '../../core/units.js';
import { DEFAULTS, SETTINGS, SETTING_NAMES, configSchema, type ServerConfig } from './config.js';

const MACHINE_DEPENDENT: Partial<Record<keyof ServerConfig, string>> = {
  name: "this machine's host name",
  publicHost: "this machine's host name",
};

/** A default as the table shows it: with its unit where the name has one. */
export function shownValue(key: keyof ServerConfig, value: unknown): string {
  if (value === undefined) return '';
  if (typeof value === 'number' && key.endsWith('S') && value >= 60 && Number.isInteger(value)) return `${value} (${formatDurationS(value)})`;
  if (typeof value === 'number' && key.endsWith('Bytes') && value >= 1024 * 1024 && value % (1024 * 1024) === 0) return `${value} (${formatSizeMb(value / (1024 * 1024))})`;
  if (typeof value === 'number' && key.endsWith('Bytes') && value >= 1024 && value % 1024 === 0) return `${value} (${value / 1024}K)`;
  return JSON.stringify(value);
}

export function configDoc(): string {
  const rows = SETTING_NAMES.map((key) => {
    const info = SETTINGS[key];
    const optional = configSchema.shape[key].safeParse(undefined).success;
    const def = MACHINE_DEPENDENT[key] ?? (DEFAULTS[key] === undefined ? (optional ? '(none)' : '') : shownValue(key, DEFAULTS[key]));
    return `| \`${key}\` | ${def.replace(/\|/g, '\\|')} | ${info.env ? `\`${info.env}\`` : ''} | ${info.live ? 'at once' : 'restart'} | ${info.doc.replace(/\|/g, '\\|')} |`;
  });
  return [
    '# Server settings',
    '',
    '<!-- Written by `npm run config-doc` from the settings table (src/server/start/config.ts); do not edit by hand. -->',
    '',
    'cpc-server reads its settings in this order, each overriding the one before: the defaults below,',
    '`<home>/config.json`, the environment variables below, and the command line of `cpc-server start`',
    '(`--name`, `--host`, `--public-host`, `--port`, `--unsecure-port`, `--heartbeat-interval`).',
    '`cpc-server config get` shows the settings in force and where each came from (of the running server,',
    'when one runs on the home); `cpc-server config set NAME VALUE` writes `config.json` and hands the new value',
    'to a running server, which applies it at once where the table says so, and otherwise at its next start.',
    '',
    'Durations (names ending in `S`) are seconds and may be written with a unit: `90s`, `30m`, `2h`, `1d12h`.',
    'Sizes (names ending in `Bytes`) are bytes and may be written with a unit: `512K`, `64M`, `4G` (binary).',
    'This holds in `config.json` (as strings), in the environment and for `config set`.',
    '',
    '| setting | default | environment | applies | meaning |',
    '| --- | --- | --- | --- | --- |',
    ...rows,
    '',
  ].join('\n');
}
