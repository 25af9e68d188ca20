/**
 * `cpc-server config set` on a running server: the new value is checked as
 * at start, and applied at once when the setting is one the server reads as
 * it goes (SETTINGS[key].live: limits, the log level, metrics, the archive
 * and file sweeps); the others wait for the next start.
 */
import { fail } from '../../core/errors.js';
import type { Level } from '../../common/logger.js';
import { SETTINGS, configSchema, settingNamed, settingValue, type ServerConfig, type SettingSource } from './config.js';
import type { RunningServer } from './server.js';

export interface SetOutcome {
  key: keyof ServerConfig;
  value: unknown;
  /** True when the running server uses the value from now on. */
  applied: boolean;
  /** Where the value in force came from before. */
  was: SettingSource;
}

export function applySetting(server: Pick<RunningServer, 'config' | 'settingSources' | 'ctx'>, name: string, raw: unknown): SetOutcome {
  const key = settingNamed(name);
  const r = configSchema.safeParse({ ...server.config, [key]: settingValue(key, raw) });
  if (!r.success) throw fail('INVALID_FIELD', `setting '${key}': ${r.error.issues[0]!.message}`);
  const value = r.data[key];
  const was = server.settingSources[key];
  if (!SETTINGS[key].live) return { key, value, applied: false, was };
  (server.config as Record<string, unknown>)[key] = value;
  server.settingSources[key] = 'config set';
  if (key === 'logLevel') server.ctx.log.setLevel?.(value as Level);
  server.ctx.log.info('setting changed', { setting: key });
  return { key, value, applied: true, was };
}
