/**
 * The pieces behind cpcc's and cpc-server's everyday words: generated
 * reference documents that must match their schemas, examples for every
 * command, server refusals reworded, names suggested, units in settings.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Writable } from 'node:stream';
import { programFor } from '../../src/client/cli.js';
import type { Io } from '../../src/client/commands/context.js';
import { EXAMPLES } from '../../src/client/commands/examples.js';
import { COMMAND_MANIFEST } from '../../src/client/commands/manifest.js';
import { userMessage } from '../../src/client/server-messages.js';
import { JOB_FIELD_NAMES } from '../../src/core/job-fields.js';
import { closest } from '../../src/core/suggest.js';
import { parseSizeBytes } from '../../src/core/units.js';
import { jobInputSchema } from '../../src/server/jobs/schemas.js';
import { jobFileDoc } from '../../src/server/jobs/job-file-doc.js';
import { configDoc } from '../../src/server/start/config-doc.js';
import { SETTINGS, SETTING_NAMES, configSchema, resolveSettings, settingNamed } from '../../src/server/start/config.js';
import { tempDir } from '../helpers/server.js';
import { join } from 'node:path';

const doc = (name: string) => readFileSync(fileURLToPath(new URL(`../../docs/${name}`, import.meta.url)), 'utf8');

describe('generated references', () => {
  it('docs/JOB-FILE.md is current (npm run job-file-doc writes it) and names every field of the job schema', () => {
    assert.equal(doc('JOB-FILE.md'), jobFileDoc());
    assert.deepEqual(Object.keys(jobInputSchema.shape).sort(), [...JOB_FIELD_NAMES].sort());
    for (const field of JOB_FIELD_NAMES) assert.match(doc('JOB-FILE.md'), new RegExp(`\\| \`${field}\` \\|`));
  });

  it('docs/CONFIG.md is current (npm run config-doc writes it): every setting with its default, variable and when it applies', () => {
    assert.equal(doc('CONFIG.md'), configDoc());
    assert.deepEqual([...SETTING_NAMES].sort(), Object.keys(configSchema.shape).sort());
    for (const key of SETTING_NAMES) {
      const row = doc('CONFIG.md').split('\n').find((l) => l.startsWith(`| \`${key}\` |`));
      assert.ok(row, `a row for ${key}`);
      assert.match(row, SETTINGS[key].live ? /\| at once \|/ : /\| restart \|/);
      if (SETTINGS[key].env) assert.ok(row.includes(`\`${SETTINGS[key].env}\``));
    }
  });
});

function sink(): Io & { text: () => string } {
  let text = '';
  const w = new Writable({
    write(chunk: Buffer, _enc, done) {
      text += chunk.toString();
      done();
    },
  });
  return { stdout: w, stderr: w, stdin: process.stdin, env: { ...process.env, COLUMNS: '120' }, text: () => text };
}

describe('help examples', () => {
  it('every command has two or three, shown at the end of its --help', async () => {
    for (const entry of COMMAND_MANIFEST) {
      const list = EXAMPLES[entry.name];
      assert.ok(list && list.length >= 1 && list.length <= 3, `examples for ${entry.name}`);
      for (const e of list) assert.match(e, /^(cpcc |source |printf |echo )/, `${entry.name}: ${e}`);
      const io = sink();
      const argv = ['node', 'cpcc', entry.name, '--help'];
      const program = await programFor(argv, io);
      await program.parseAsync(argv).catch(() => {});
      const help = io.text().trimEnd();
      const tail = help.slice(help.lastIndexOf('Examples:'));
      assert.ok(help.lastIndexOf('Examples:') > 0, `${entry.name} --help ends with examples: ${help}`);
      assert.deepEqual(tail.split('\n').slice(1).map((l) => l.replace(/^\s+\$ /, '')), [...list]);
    }
  });
});

describe('server refusals in the user’s words', () => {
  it('names flags, jobs and fields instead of request paths, and bounds in words', () => {
    assert.equal(userMessage('query.limit: Too big: expected number to be <=10000'), '--limit must be at most 10000');
    assert.equal(userMessage('query.maxRetries: Too small: expected number to be >=0'), '--max-retries must be at least 0');
    assert.equal(userMessage('body.password: must be at least 8 characters'), 'password: at least 8 characters');
    assert.equal(userMessage('body.jobs.2.memoryMb: Too big: expected number to be <=67108864'), 'job 3: memoryMb: must be at most 67108864');
    assert.equal(userMessage('body.jobs.0.env.1X: must be an environment variable name'), 'job 1: env: 1X: must be an environment variable name');
    assert.equal(userMessage('body.jobs.0.inputs.1.name: Invalid input: expected string, received number'), 'job 1: inputs[2]: name: must be a string, not a number');
    assert.equal(userMessage('body.jobs.0: Unrecognized key: "mem"'), 'job 1: unknown field "mem"');
    assert.equal(userMessage('project demo not found'), 'project demo not found');
    assert.equal(userMessage("jobs[1] depends on unknown job 'prep'"), "job 2 depends on unknown job 'prep'");
    assert.equal(userMessage("jobs[0].key 'a' is used twice"), "job 1: key 'a' is used twice");
    assert.equal(userMessage('jobs[3].inputs[0]: no such output'), 'job 4: inputs[1]: no such output');
    for (const m of ['body.jobs.0.cores: Too big: expected number to be <=4096', 'query.state: Invalid option: expected one of "queued"|"done"']) {
      assert.doesNotMatch(userMessage(m), /body\.|query\.|\bjobs\.\d/);
    }
  });
});

describe('did you mean', () => {
  it('suggests the setting or field meant, and nothing for a name far from all', () => {
    assert.equal(closest('logLevl', SETTING_NAMES), 'logLevel');
    assert.equal(closest('mem', JOB_FIELD_NAMES), 'memoryMb');
    assert.equal(closest('timeout', JOB_FIELD_NAMES), 'timeoutS');
    assert.equal(closest('argc', JOB_FIELD_NAMES), 'argv');
    assert.equal(closest('zzzzzz', JOB_FIELD_NAMES), undefined);
    assert.throws(() => settingNamed('logLevl'), /unknown setting 'logLevl' \(did you mean logLevel\?\)/);
  });
});

describe('settings with units', () => {
  it('reads durations and sizes with units from config.json and the environment, and says where each came from', async () => {
    const home = await tempDir('cpc-units-');
    writeFileSync(join(home, 'config.json'), JSON.stringify({ archiveAfterS: '2h', maxLogBytes: '2M', fileGraceS: 300 }));
    const { config, sources } = resolveSettings(home, { name: 'given' }, { CPC_MAX_BODY_BYTES: '128M', CPC_HEARTBEAT_INTERVAL: '1m' });
    assert.equal(config.archiveAfterS, 7200);
    assert.equal(config.maxLogBytes, 2 * 1024 * 1024);
    assert.equal(config.maxBodyBytes, 128 * 1024 * 1024);
    assert.equal(config.heartbeatIntervalS, 60);
    assert.equal(sources.archiveAfterS, 'config file');
    assert.equal(sources.maxBodyBytes, 'environment CPC_MAX_BODY_BYTES');
    assert.equal(sources.name, 'command line');
    assert.equal(sources.securePort, 'default');
    assert.equal(parseSizeBytes('512K'), 512 * 1024);
    writeFileSync(join(home, 'config.json'), JSON.stringify({ archiveAfterS: 'soon' }));
    assert.throws(() => resolveSettings(home, {}, {}), /setting 'archiveAfterS'/);
    writeFileSync(join(home, 'config.json'), JSON.stringify({ logLevl: 'debug' }));
    assert.throws(() => resolveSettings(home, {}, {}), /unknown setting 'logLevl' \(did you mean logLevel\?\)/);
  });
});
