import { fail } from './errors.js';
import type { FileRef } from './types.js';

/**
 * Files belong to projects by reference. The bytes live once per server in a
 * content-addressed store (by sha256); what the model keeps is who refers to
 * which content: a job's inputs, an attempt's outputs, a project value. A
 * blob no one refers to may be collected; a project's quota counts each of
 * its distinct blobs once, however many jobs refer to it. A project may name
 * by checksum only content it refers to or sent the bytes of itself.
 */

export const SHA256 = /^[0-9a-f]{64}$/;

/** Paths inside a job's work folder, and project value names: relative, no `..`, no NUL. */
export const MAX_PATH_CHARS = 1024;

export function checkFileName(name: string, what = 'file name'): string {
  if (name.length === 0 || name.length > MAX_PATH_CHARS) throw fail('INVALID_PATH', `${what} must be 1-${MAX_PATH_CHARS} characters`);
  if (name.includes('\0')) throw fail('INVALID_PATH', `${what} holds a NUL character`);
  if (name.startsWith('/') || /^[A-Za-z]:/.test(name)) throw fail('INVALID_PATH', `${what} '${name}' must be relative`);
  if (name.includes('\\')) throw fail('INVALID_PATH', `${what} '${name}' must use '/' between folders`);
  for (const part of name.split('/')) {
    if (part === '' || part === '.' || part === '..') throw fail('INVALID_PATH', `${what} '${name}' must not hold empty, '.' or '..' parts`);
  }
  return name;
}

/**
 * Project value names, Copernicus style: `fe.out.conf` or `runs/3/result`.
 * No `:`, which separates a value from the file name it is given on the command line.
 */
export const VALUE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_./-]{0,255}$/;

export function checkValueName(name: string): string {
  // Values live in a plain object: names JavaScript gives meaning to there would read or change the wrong thing.
  if (name === '__proto__' || Object.hasOwn(Object.prototype, name)) throw fail('INVALID_PATH', `value name '${name}' is reserved`);
  if (!VALUE_NAME.test(name)) throw fail('INVALID_PATH', `value name '${name}' must be 1-256 letters, digits, _ . / -, starting with a letter, digit or _`);
  return checkFileName(name, 'value name');
}

/**
 * A glob over paths in a work folder: `*` and `?` stay within one folder,
 * `**` crosses folders. Everything else is literal.
 */
export function globToRegExp(glob: string): RegExp {
  checkFileName(glob, 'output pattern');
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*' && glob[i + 1] === '*') {
      // `**/` also matches no folder at all.
      if (glob[i + 2] === '/') {
        out += '(?:.*/)?';
        i += 2;
      } else {
        out += '.*';
        i += 1;
      }
    } else if (c === '*') out += '[^/]*';
    else if (c === '?') out += '[^/]';
    else out += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${out}$`);
}

export function matchesGlob(glob: string, path: string): boolean {
  return globToRegExp(glob).test(path);
}

interface Holding {
  size: number;
  refs: number;
}

export interface FileRegistrySnapshot {
  /** [project, sha256, size, references] */
  holdings: [string, string, number, number][];
  /** [project, sha256, size]: content the project sent the bytes of (see FileReceived). */
  received?: [string, string, number][];
}

/**
 * Reference counts per project and content. Changed only from Model.apply,
 * so replay rebuilds the same counts; the snapshot keeps them because the
 * archived jobs that hold some of them are no longer in memory.
 */
export class FileRegistry {
  private readonly byProject = new Map<string, Map<string, Holding>>();
  private readonly bytes = new Map<string, number>();
  /** Projects holding each blob. */
  private readonly holders = new Map<string, number>();
  /**
   * Content each project sent the bytes of, with its size. It lets the
   * project name that content before anything refers to it (a submit after
   * an upload), but does not keep it from the collector.
   */
  private readonly received = new Map<string, Map<string, number>>();
  /** Projects that sent each content. */
  private readonly senders = new Map<string, Set<string>>();

  hold(project: string, file: Pick<FileRef, 'sha256' | 'size'>): void {
    let held = this.byProject.get(project);
    if (!held) this.byProject.set(project, (held = new Map()));
    const h = held.get(file.sha256);
    if (h) {
      h.refs++;
      return;
    }
    held.set(file.sha256, { size: file.size, refs: 1 });
    this.bytes.set(project, (this.bytes.get(project) ?? 0) + file.size);
    this.holders.set(file.sha256, (this.holders.get(file.sha256) ?? 0) + 1);
  }

  release(project: string, file: Pick<FileRef, 'sha256'>): void {
    const held = this.byProject.get(project);
    const h = held?.get(file.sha256);
    if (!held || !h) return;
    if (--h.refs > 0) return;
    held.delete(file.sha256);
    this.bytes.set(project, (this.bytes.get(project) ?? 0) - h.size);
    this.forgetHolder(file.sha256);
  }

  dropProject(project: string): void {
    for (const sha of this.received.get(project)?.keys() ?? []) this.forgetSender(sha, project);
    this.received.delete(project);
    const held = this.byProject.get(project);
    if (!held) return;
    for (const sha of held.keys()) this.forgetHolder(sha);
    this.byProject.delete(project);
    this.bytes.delete(project);
  }

  /** The project sent these bytes itself. */
  receive(project: string, sha256: string, size: number): void {
    let got = this.received.get(project);
    if (!got) this.received.set(project, (got = new Map()));
    got.set(sha256, size);
    let who = this.senders.get(sha256);
    if (!who) this.senders.set(sha256, (who = new Set()));
    who.add(project);
  }

  /** The content is gone from the store: nobody sent it any longer. */
  collected(sha256: string): void {
    for (const project of this.senders.get(sha256) ?? []) this.received.get(project)?.delete(sha256);
    this.senders.delete(sha256);
  }

  private forgetSender(sha: string, project: string): void {
    const who = this.senders.get(sha);
    who?.delete(project);
    if (who?.size === 0) this.senders.delete(sha);
  }

  /** Whether the project sent this content itself (it may hold it too). */
  sentBy(project: string, sha256: string): boolean {
    return this.received.get(project)?.has(sha256) ?? false;
  }

  /**
   * The size of the content as this project knows it, or null when the
   * project may not name it: it neither refers to it nor sent its bytes.
   * A project may name by checksum only what it holds; anything else is
   * answered as if it did not exist.
   */
  sizeFor(project: string, sha256: string): number | null {
    return this.byProject.get(project)?.get(sha256)?.size ?? this.received.get(project)?.get(sha256) ?? null;
  }

  /** Content sent by some project that nothing refers to: what the collector may have removed. */
  *sentOnly(): Iterable<string> {
    for (const sha of this.senders.keys()) if (!this.holders.has(sha)) yield sha;
  }

  private forgetHolder(sha: string): void {
    const n = (this.holders.get(sha) ?? 1) - 1;
    if (n > 0) this.holders.set(sha, n);
    else this.holders.delete(sha);
  }

  /** Whether anything on this server refers to the content. */
  isHeld(sha256: string): boolean {
    return this.holders.has(sha256);
  }

  heldBy(project: string, sha256: string): boolean {
    return this.byProject.get(project)?.has(sha256) ?? false;
  }

  /** Bytes of distinct content the project refers to (what its quota counts). */
  bytesOf(project: string): number {
    return this.bytes.get(project) ?? 0;
  }

  /** Bytes the project would hold once it also refers to `files`. */
  bytesWith(project: string, files: Iterable<Pick<FileRef, 'sha256' | 'size'>>): number {
    let total = this.bytesOf(project);
    const seen = new Set<string>();
    for (const f of files) {
      if (seen.has(f.sha256) || this.heldBy(project, f.sha256)) continue;
      seen.add(f.sha256);
      total += f.size;
    }
    return total;
  }

  toSnapshot(): FileRegistrySnapshot {
    const holdings: [string, string, number, number][] = [];
    for (const [project, held] of this.byProject) for (const [sha, h] of held) holdings.push([project, sha, h.size, h.refs]);
    const received: [string, string, number][] = [];
    for (const [project, got] of this.received) for (const [sha, size] of got) received.push([project, sha, size]);
    return { holdings, received };
  }

  static fromSnapshot(s: FileRegistrySnapshot | undefined): FileRegistry {
    const r = new FileRegistry();
    for (const [project, sha256, size, refs] of s?.holdings ?? []) {
      r.hold(project, { sha256, size });
      r.byProject.get(project)!.get(sha256)!.refs = refs;
    }
    for (const [project, sha256, size] of s?.received ?? []) r.receive(project, sha256, size);
    return r;
  }
}
