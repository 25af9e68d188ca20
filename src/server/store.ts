import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fail } from '../core/errors.js';
import type { Event } from '../core/events.js';
import { Model, type ModelSnapshot } from '../core/model.js';
import type { Job } from '../core/types.js';
import { ArchiveStore } from '../persistence/archive-store.js';
import { Journal } from '../persistence/journal.js';
import { readLatestSnapshot, writeSnapshot } from '../persistence/snapshot-store.js';
import type { Logger } from './logger.js';

/**
 * Durable job state: the in-memory model, fed by the journal.
 *
 * Every change is an event that is applied to the model and appended to the
 * journal; `commit` resolves once the journal has fsynced it, and callers
 * answer their clients only then. Changes made together share an fsync.
 *
 * Applying before the fsync lets other requests see a change a moment before
 * it is durable. That is safe because the journal is written in order: any
 * answer that depends on the change waits for a later (or the same) fsync.
 * If the journal fails, the model can no longer be trusted to match the disk,
 * so the store refuses all further changes until the server restarts.
 */

export interface StoreOptions {
  home: string;
  snapshotAfterBytes: number;
  log: Logger;
  onFsync?: (ms: number, records: number) => void;
}

export interface Recovered {
  replayed: number;
  snapshotSegment: number | null;
  truncated: boolean;
}

export class Store {
  readonly model: Model;
  readonly archive: ArchiveStore;
  private readonly journal: Journal;
  private snapshotting: Promise<void> | null = null;
  private failed: Error | null = null;

  private constructor(
    model: Model,
    journal: Journal,
    archive: ArchiveStore,
    private readonly opts: StoreOptions,
    readonly recovered: Recovered,
  ) {
    this.model = model;
    this.journal = journal;
    this.archive = archive;
  }

  /** Loads the newest snapshot and replays the journal after it. */
  static async open(opts: StoreOptions): Promise<Store> {
    const stateDir = join(opts.home, 'state');
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    const warn = (msg: string) => opts.log.warn(msg);
    const snapshot = await readLatestSnapshot(stateDir, { log: warn });
    const model = snapshot ? Model.fromSnapshot(snapshot.data as ModelSnapshot) : new Model();
    const { journal, replayed, truncated } = await Journal.open({
      dir: join(stateDir, 'journal'),
      fromSegment: snapshot?.segment ?? 1,
      onRecord: (record) => model.apply(record as Event),
      log: warn,
      onFsync: opts.onFsync,
    });
    const archive = new ArchiveStore(join(opts.home, 'archive'));
    return new Store(model, journal, archive, opts, {
      replayed,
      snapshotSegment: snapshot?.segment ?? null,
      truncated,
    });
  }

  /** Applies an event and resolves when it is durable. */
  commit(event: Event): Promise<void> {
    if (this.failed) return Promise.reject(fail('JOURNAL_FAILED', 'the journal failed; the server must be restarted'));
    this.model.apply(event);
    const done = this.journal.append(event).catch((err: unknown) => this.fatal(err));
    this.maybeSnapshot();
    return done;
  }

  /** Applies an event whose loss in a crash costs nothing but precision (lease renewals). */
  commitLater(event: Event): void {
    if (this.failed) return;
    this.model.apply(event);
    this.journal.appendNoWait(event);
  }

  journalStats() {
    return this.journal.stats();
  }

  /** Moves finished jobs to the archive: written and fsynced there first, then journaled as gone. */
  async archiveJobs(ids: string[], at: number): Promise<void> {
    const jobs = ids.map((id) => this.model.job(id)).filter((j): j is Job => j !== undefined);
    if (jobs.length === 0) return;
    await this.archive.append(jobs);
    await this.commit({ t: 'jobs-archived', at, ids: jobs.map((j) => j.id) });
  }

  /** Writes a snapshot now (also used at shutdown so start-up replays little). */
  snapshot(): Promise<void> {
    if (this.snapshotting) return this.snapshotting;
    // The journal is rotated and the state serialised in one synchronous step
    // (writeSnapshot serialises before its first await), so the snapshot
    // covers exactly the segments before the new one.
    const segment = this.journal.rotate();
    const written = writeSnapshot(join(this.opts.home, 'state'), this.model.toSnapshot(), segment);
    this.snapshotting = (async () => {
      try {
        await written;
        await this.journal.removeSegmentsBefore(segment);
      } catch (err) {
        this.opts.log.error('snapshot failed; the journal keeps everything', { err: String(err) });
      } finally {
        this.snapshotting = null;
      }
    })();
    return this.snapshotting;
  }

  async close(): Promise<void> {
    await this.snapshotting;
    await this.journal.close();
  }

  private maybeSnapshot(): void {
    if (this.snapshotting || this.journal.bytesSinceRotate() < this.opts.snapshotAfterBytes) return;
    void this.snapshot();
  }

  private fatal(err: unknown): never {
    this.failed = err instanceof Error ? err : new Error(String(err));
    this.opts.log.error('journal write failed; refusing further changes', { err: String(err) });
    throw fail('JOURNAL_FAILED', 'the journal failed; the server must be restarted');
  }
}
