/**
 * cpcc lists and routes its commands from manifest.ts without loading the
 * command files; the manifest must say what the files say.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { buildProgram, commandWord, describeCommands, programFor, type RunState } from '../../src/client/cli.js';
import type { Io } from '../../src/client/commands/context.js';
import { loadAllGroups } from '../../src/client/commands/index.js';
import { COMMAND_MANIFEST } from '../../src/client/commands/manifest.js';

function io(): Io & { text: () => string } {
  let text = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      text += chunk.toString();
      done();
    },
  });
  return { stdout: sink, stderr: sink, stdin: process.stdin, env: { ...process.env, COLUMNS: '120' }, text: () => text };
}

describe('the command manifest', () => {
  it('is what the command files define (npm run command-manifest writes it)', async () => {
    assert.deepEqual(await describeCommands(), COMMAND_MANIFEST);
  });

  it('gives the same help as the command files themselves', async () => {
    const state: RunState = { exitCode: 0 };
    const fromFiles = buildProgram(io(), state, await loadAllGroups()).helpInformation();
    const fromManifest = buildProgram(io(), state).helpInformation();
    assert.equal(fromManifest, fromFiles);
    assert.match(fromManifest, /^ {2}submit \[options\] \[command\.\.\.\] +submit a job/m);
  });

  it('names the command past the global options, and the command help is asked for', () => {
    assert.equal(commandWord(['--json', '-s', 'other', '--project', 'p', 'jobs', '--limit', '5']), 'jobs');
    assert.equal(commandWord(['help', 'submit']), 'submit');
    assert.equal(commandWord(['help']), 'help');
    assert.equal(commandWord(['--json']), undefined);
    assert.equal(commandWord(['-p', 'pwd', 'status']), 'status');
  });

  it('completes a command whose file was not loaded when commander dispatches to it', async () => {
    // Built without the arguments, so every command is a stub until used.
    const out = io();
    const state: RunState = { exitCode: 0 };
    const program = buildProgram(out, state);
    await assert.rejects(program.parseAsync(['node', 'cpcc', 'submit', '--help']), { code: 'commander.helpDisplayed' });
    assert.match(out.text(), /--cores <n> +cores the job needs/);
  });

  it('loads every file for a name the manifest lacks, so a newer command still runs and a typo gets its suggestion', async () => {
    const program = await programFor(['node', 'cpcc', 'submitt']);
    const submit = program.commands.find((c) => c.name() === 'submit')!;
    assert.ok(submit.options.some((o) => o.long === '--cores'), 'submit completed from its file');
  });

  it('loads the group of the command named, and that only', async () => {
    const program = await programFor(['node', 'cpcc', '-p', 'x', 'cd', 'y']);
    const complete = program.commands.filter((c) => c.registeredArguments.length > 0 || c.options.length > 0).map((c) => c.name());
    const projects = COMMAND_MANIFEST.filter((e) => e.group === 'projects' && /[<[]/.test(e.term)).map((e) => e.name);
    assert.deepEqual(complete, projects);
  });
});
