/**
 * Taking a worker's result, built from the four narrow services it uses
 * (store, files, logs, dispatcher) instead of a whole server: logs are
 * durable before the result, outputs must be held by the job's project, and
 * a repeat changes nothing.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fail } from '../../src/core/errors.js';
import type { Event } from '../../src/core/events.js';
import type { FileRef } from '../../src/core/types.js';
import type { ResultRequest } from '../../src/core/wire.js';
import { acceptResult, TAIL_CHARS, type ResultServices } from '../../src/server/jobs/results.js';
import { World } from '../helpers/core.js';

function setUp() {
  const world = new World();
  world.project('p');
  world.worker('w1');
  const jobId = world.one('p');
  world.claim('w1');
  const steps: string[] = [];
  let refuse = false;
  let live = false;
  const services: ResultServices = {
    store: {
      model: world.model,
      commit: async (e: Event) => {
        steps.push(`commit ${e.t}`);
        world.apply(e);
      },
    },
    files: {
      requireHeld: async (project: string, refs: readonly FileRef[]) => {
        steps.push(`held ${project} ${refs.map((r) => r.name).join(',')}`);
        if (refuse) throw fail('FILE_NOT_FOUND', 'not held');
      },
    },
    logs: {
      complete: async (id: string, attempt: number, stream: string) => {
        steps.push(`logs ${id}/${attempt} ${stream}`);
      },
      sync: async (id: string, attempt: number) => {
        steps.push(`sync ${id}/${attempt}`);
      },
      forget: () => {},
      holds: () => live,
    },
    dispatcher: { kick: () => steps.push('kick') },
  };
  const result = (over: Partial<ResultRequest> = {}): ResultRequest => ({
    jobId,
    attempt: 1,
    how: 'exited',
    exitCode: 0,
    signal: null,
    durationMs: 10,
    stdout: 'hi\n',
    stderr: '',
    stdoutBytes: 3,
    stderrBytes: 0,
    ...over,
  });
  return { world, jobId, steps, services, result, refuseOutputs: () => (refuse = true), streamed: () => (live = true) };
}

describe('acceptResult', () => {
  it('commits a short result with its output in the job record in the same turn, then wakes the dispatcher', async () => {
    const { world, jobId, steps, services, result } = setUp();
    const taking = acceptResult(services, 'w1', result(), 'local');
    // Applied before anything is awaited: a claim that carries it fills the room it frees.
    assert.equal(world.state(jobId), 'done');
    const reply = await taking;
    assert.equal(reply.duplicate, false);
    assert.deepEqual(steps, ['commit attempt-finished', 'kick']);
    assert.equal(world.job(jobId).attempts.at(-1)?.stdoutTail, 'hi\n');
  });

  it('makes the live chunks that came before durable before the result', async () => {
    const { world, jobId, steps, services, result, streamed } = setUp();
    streamed();
    await acceptResult(services, 'w1', result(), 'local');
    assert.equal(world.state(jobId), 'done');
    assert.deepEqual(steps, [`sync ${jobId}/1`, 'commit attempt-finished', 'kick']);
  });

  it('writes the logs before the result when the output does not fit in the record', async () => {
    const { world, jobId, steps, services, result } = setUp();
    const long = 'x'.repeat(TAIL_CHARS + 10);
    await acceptResult(services, 'w1', result({ stdout: long, stdoutBytes: long.length }), 'local');
    assert.deepEqual(steps, [`logs ${jobId}/1 stdout`, `logs ${jobId}/1 stderr`, `sync ${jobId}/1`, 'commit attempt-finished', 'kick']);
    assert.equal(world.job(jobId).attempts.at(-1)?.stdoutTail?.length, TAIL_CHARS);
  });

  it('answers a repeat as a duplicate and changes nothing', async () => {
    const { world, jobId, steps, services, result } = setUp();
    await acceptResult(services, 'w1', result(), 'local');
    const events = world.events.length;
    steps.length = 0;
    const again = await acceptResult(services, 'w1', result(), 'local');
    assert.deepEqual(again, { accepted: true, duplicate: true, state: 'done' });
    assert.deepEqual(steps, []);
    assert.equal(world.events.length, events);
  });

  it("checks the named outputs against the job's project first, and commits nothing when they are not held", async () => {
    const { world, jobId, steps, services, result, refuseOutputs } = setUp();
    const outputs: FileRef[] = [{ name: 'out.dat', sha256: 'a'.repeat(64), size: 1 }];
    refuseOutputs();
    await assert.rejects(acceptResult(services, 'w1', result({ outputs }), 'local'), { code: 'FILE_NOT_FOUND' });
    assert.deepEqual(steps, ['held p out.dat']);
    assert.equal(world.state(jobId), 'running');
  });
});
