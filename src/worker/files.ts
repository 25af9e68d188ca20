import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { checkFileName, globToRegExp } from '../core/files.js';
import type { FileRef } from '../core/types.js';
import type { ClaimedJob, StoredFile } from '../core/wire.js';
import type { ApiClient } from '../client/api/client.js';
import { downloadFile, hashFile, uploadFile } from '../client/api/files.js';
import { OpenFolder } from './open-beneath.js';

/**
 * An attempt's files on the worker's side: its inputs fetched into the
 * attempt folder before it starts, and the files its job asked to keep
 * uploaded after it ends, before the result that names them.
 */

/** The attempt folder's own files, which are neither inputs nor outputs. */
export const LOG_FILES: ReadonlySet<string> = new Set(['stdout.log', 'stderr.log']);

const filesPath = (workerId: string, sha256: string) => `/workers/${workerId}/files/${sha256}`;

export async function fetchInputs(client: ApiClient, workerId: string, job: ClaimedJob, dir: string, signal?: AbortSignal): Promise<void> {
  for (const input of job.inputs ?? []) {
    checkFileName(input.name, 'input name');
    if (LOG_FILES.has(input.name)) throw new Error(`input '${input.name}': the name is taken by the job's log`);
    const dest = join(dir, input.name);
    await mkdir(dirname(dest), { recursive: true });
    if ('text' in input) {
      await writeFile(dest, input.text);
      continue;
    }
    try {
      await downloadFile(client, filesPath(workerId, input.sha256), dest, {
        query: { job: job.id, attempt: job.attempt },
        expect: input,
        signal,
      });
    } catch (err) {
      const code = (err as { code?: string }).code;
      throw new Error(`input '${input.name}': ${code ? `${code}: ` : ''}${(err as Error).message}`);
    }
  }
}

/** How deep folders are walked for outputs; deeper ones are not looked into. */
const MAX_DEPTH = 64;

/** Regular files under an open folder (symbolic links are not followed), as paths relative to it. */
async function filesUnder(folder: OpenFolder, prefix = '', depth = 0): Promise<string[]> {
  const out: string[] = [];
  for (const name of await folder.names()) {
    const rel = prefix ? `${prefix}/${name}` : name;
    const c = await folder.child(name);
    if (!c) continue;
    try {
      if (c.folder) {
        if (depth < MAX_DEPTH) out.push(...(await filesUnder(c.folder, rel, depth + 1)));
      } else if (!(prefix === '' && LOG_FILES.has(name))) out.push(rel);
    } finally {
      await c.handle.close().catch(() => undefined);
    }
  }
  return out;
}

export type KeptOutputs = { outputs: FileRef[] } | { failed: string };

/**
 * Uploads the files matching the job's output patterns. A pattern that
 * stores a project value must match something when the job succeeded.
 *
 * The job may still be changing its folder (a process it left behind), so
 * each file is opened once, through the open folders above it and without
 * following a symbolic link (open-beneath.ts), and hashed and sent from that
 * one handle: a name swapped for a link to a file outside, or a folder
 * swapped for a link, never sends what it points at.
 */
export async function keepOutputs(client: ApiClient, workerId: string, job: ClaimedJob, dir: string, succeeded: boolean): Promise<KeptOutputs> {
  const specs = job.outputs ?? [];
  if (specs.length === 0) return { outputs: [] };
  const patterns = specs.map((s) => ({ ...s, re: globToRegExp(s.glob) }));
  let root: OpenFolder;
  try {
    root = await OpenFolder.open(dir);
  } catch (err) {
    return { failed: `the job's folder cannot be read: ${(err as Error).message}` };
  }
  try {
    let all: string[];
    try {
      all = await filesUnder(root);
    } catch (err) {
      return { failed: `the job's folder cannot be read: ${(err as Error).message}` };
    }
    const outputs: FileRef[] = [];
    for (const p of patterns) {
      if (succeeded && p.to !== undefined && !all.some((f) => p.re.test(f))) {
        return { failed: `no file matched '${p.glob}' for the value '${p.to}'` };
      }
    }
    for (const name of all.filter((f) => patterns.some((p) => p.re.test(f)))) {
      const file = await root.openFile(name).catch((err: unknown) => err as Error);
      if (file instanceof Error) return { failed: `output '${name}': ${file.message}` };
      if (!file) return { failed: `output '${name}': it is no longer a file in the job's folder` };
      try {
        const sum = await hashFile(file.handle);
        await uploadFile<StoredFile>(client, filesPath(workerId, sum.sha256), file.handle, sum, { job: job.id, attempt: job.attempt }, `output '${name}'`);
        outputs.push({ name, ...sum });
      } catch (err) {
        const code = (err as { code?: string }).code;
        return { failed: `output '${name}': ${code ? `${code}: ` : ''}${(err as Error).message}` };
      } finally {
        await file.handle.close().catch(() => undefined);
      }
    }
    return { outputs };
  } finally {
    await root.close();
  }
}
