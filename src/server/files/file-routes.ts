import { z } from 'zod';
import { planSetValue } from '../../core/commands.js';
import { fail } from '../../core/errors.js';
import { checkValueName } from '../../core/files.js';
import type { FileRef, Job, ProjectValue } from '../../core/types.js';
import type { StoredFile, ValueView } from '../../core/wire.js';
import type { Context } from '../start/context.js';
import type { Router } from '../http/router.js';
import { sha256Schema } from './schemas.js';
import { jobIdParam, jobRefParam } from '../http/schemas.js';
import { workerOf, workerParams } from '../jobs/worker-routes.js';

const projectName = z.string().min(1).max(64);
const projectFileParams = z.strictObject({ project: projectName, sha256: sha256Schema });
const outputParams = z.strictObject({ id: jobRefParam, name: z.string().min(1).max(1024) });
const valueParams = z.strictObject({ project: projectName, name: z.string().min(1).max(256) });
const prefixQuery = z.strictObject({ prefix: z.string().max(256).optional() });
const attemptQuery = z.strictObject({ job: jobIdParam, attempt: z.coerce.number().int().min(1) });
const workerFileParams = workerParams.extend({ sha256: sha256Schema });
const peerFileParams = z.strictObject({ sha256: sha256Schema });
const valueBody = z.union([
  z.strictObject({ text: z.string().max(1024 * 1024) }),
  z.strictObject({ sha256: sha256Schema, size: z.int().min(0).max(Number.MAX_SAFE_INTEGER) }),
]);

export function valueView(name: string, v: ProjectValue): ValueView {
  return 'text' in v ? { name, at: v.at, text: v.text } : { name, at: v.at, sha256: v.sha256, size: v.size, ...(v.job ? { job: v.job } : {}) };
}

function keptFile(job: Job, name: string): FileRef {
  const file = job.outputs?.find((f) => f.name === name);
  if (!file) throw fail('FILE_NOT_FOUND', `job ${job.id} kept no file named '${name}'`);
  return file;
}

/**
 * Files and project values: uploads and downloads for users, the inputs and
 * outputs of running attempts for workers, and the same for peers whose
 * workers run this server's jobs.
 */
export function fileRoutes(router: Router, ctx: Context): void {
  const model = ctx.store.model;
  const valueOf = (project: string, name: string): ProjectValue => {
    const v = model.projects.get(project)?.values?.[checkValueName(name)];
    if (!v) throw fail('VALUE_NOT_FOUND', `project '${project}' has no value '${name}'`);
    return v;
  };

  router.add(
    'PUT',
    '/projects/:project/files/:sha256',
    { auth: 'member', summary: 'upload a file for the project (its bytes must hash to the sha256; Content-Length required)', params: projectFileParams, upload: true },
    async (req): Promise<StoredFile> => ctx.files.receive(req.project.name, req.raw, req.params.sha256),
  );

  router.add(
    'GET',
    '/projects/:project/files/:sha256',
    { auth: 'member', summary: 'download a file the project refers to', params: projectFileParams, download: true },
    (req) => {
      if (model.files.sizeFor(req.project.name, req.params.sha256) === null) {
        throw fail('FILE_NOT_FOUND', `project '${req.project.name}' refers to no file with checksum ${req.params.sha256}`);
      }
      return ctx.files.download(req.params.sha256);
    },
  );

  router.add('GET', '/jobs/:id/outputs', { auth: 'job', summary: 'the files a job kept', params: z.strictObject({ id: jobRefParam }) }, (req) => ({
    outputs: req.job.outputs ?? [],
  }));

  router.add('GET', '/jobs/:id/outputs/:name', { auth: 'job', summary: 'download a file a job kept', params: outputParams, download: true }, (req) => {
    const file = keptFile(req.job, req.params.name);
    return ctx.files.download(file.sha256, file.name);
  });

  router.add(
    'GET',
    '/projects/:project/values',
    { auth: 'member', summary: "the project's values, by name (optionally those starting with a prefix)", params: z.strictObject({ project: projectName }), query: prefixQuery },
    (req): { values: ValueView[] } => {
      const prefix = req.query.prefix ?? '';
      const values = Object.entries(req.project.values ?? {})
        .filter(([name]) => name.startsWith(prefix))
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([name, v]) => valueView(name, v));
      return { values };
    },
  );

  router.add('GET', '/projects/:project/values/:name', { auth: 'member', summary: 'one project value', params: valueParams }, (req): ValueView =>
    valueView(req.params.name, valueOf(req.project.name, req.params.name)),
  );

  router.add(
    'GET',
    '/projects/:project/values/:name/file',
    { auth: 'member', summary: 'download the file of a file value', params: valueParams, download: true },
    (req) => {
      const v = valueOf(req.project.name, req.params.name);
      if ('text' in v) throw fail('INVALID_STATE', `value '${req.params.name}' is text, not a file`);
      return ctx.files.download(v.sha256, req.params.name);
    },
  );

  router.add(
    'PUT',
    '/projects/:project/values/:name',
    { auth: 'member', summary: 'set a project value: text, or a file uploaded before', params: valueParams, body: valueBody, bulk: true },
    async (req): Promise<ValueView> => {
      const project = req.project.name;
      const at = Date.now();
      const body = req.body;
      let value: ProjectValue;
      if ('text' in body) value = { text: body.text, at };
      else {
        await ctx.files.requireHeld(project, [{ name: req.params.name, ...body }], 'value');
        ctx.files.checkQuota(project, [body]);
        value = { sha256: body.sha256, size: body.size, at };
      }
      await ctx.store.commit(planSetValue(model, project, req.params.name, value, at));
      return valueView(req.params.name, value);
    },
  );

  router.add('DELETE', '/projects/:project/values/:name', { auth: 'member', summary: 'remove a project value', params: valueParams }, async (req) => {
    await ctx.store.commit(planSetValue(model, req.project.name, req.params.name, null, Date.now()));
    return { removed: req.params.name };
  });

  router.add(
    'GET',
    '/workers/:id/files/:sha256',
    { auth: 'worker', summary: 'an input of an attempt the worker runs', params: workerFileParams, query: attemptQuery, download: true },
    (req) => {
      const worker = workerOf(model, req.who, req.params.id);
      return ctx.transfers.input(worker.id, req.query.job, req.query.attempt, req.params.sha256);
    },
  );

  router.add(
    'PUT',
    '/workers/:id/files/:sha256',
    { auth: 'worker', summary: 'upload an output of an attempt the worker runs (Content-Length required)', params: workerFileParams, query: attemptQuery, upload: true },
    async (req): Promise<StoredFile> => {
      const worker = workerOf(model, req.who, req.params.id);
      return ctx.transfers.output(worker.id, req.query.job, req.query.attempt, req.params.sha256, req.raw);
    },
  );

  router.add(
    'GET',
    '/peer/files/:sha256',
    { auth: 'peer', summary: "an input of one of this server's jobs that the peer's worker runs", params: peerFileParams, query: attemptQuery, download: true },
    (req) => ctx.transfers.inputForPeer(req.peer, req.query.job, req.query.attempt, req.params.sha256),
  );

  router.add(
    'PUT',
    '/peer/files/:sha256',
    { auth: 'peer', summary: "upload an output of one of this server's jobs that the peer's worker ran", params: peerFileParams, query: attemptQuery, upload: true },
    async (req): Promise<StoredFile> => ctx.transfers.outputFromPeer(req.peer, req.query.job, req.query.attempt, req.params.sha256, req.raw),
  );
}
