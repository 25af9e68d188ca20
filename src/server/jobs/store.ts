/**
 * server/jobs: the queue. Projects, jobs, workers and their leases.
 * Owns the store (model + journal + archive, this file), the long-poll dispatcher, control polls, the sweeper
 * (lease expiry, archiving, file collection), results, ids, per-user limits, project name probes,
 * work announcements to peers, and the routes of projects, jobs, workers, weights and admin commands
 * with their request schemas, the worker routes' quick checks, and the views of jobs and projects.
 * May call: src/core (every change is planned there), src/persistence, src/federation (work
 * announcements), server/http, server/files (outputs named by results, log parts). Writes project-created,
 * project-removed, jobs-submitted, worker-registered, jobs-claimed, claims-returned, leases-renewed,
 * attempt-finished, jobs-cancelled, jobs-retried, jobs-archived, attempts-lost, attempts-stopped,
 * weight-set, files-collected.
 */
import { mkdirSync } from 'node:fs';
import { statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { fail } from '../../core/errors.js';
import type { Event } from '../../core/events.js';
import { Model, type ModelSnapshot } from '../../core/model.js';
import type { Job } from '../../core/types.js';
import { ArchiveStore } from '../../persistence/archive-store.js';
import { Journal } from '../../persistence/journal.js';
import { readLatestSnapshot, writeSnapshot } from '../../persistence/snapshot-store.js';
import type { Logger } from '../../common/logger.js';

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

/** How often a store that refuses changes for want of room looks at the disk again. */
const ROOM_CHECK_MS = 1000;
/** Room the disk must have before changes are taken again: enough for a burst of journal writes and a snapshot's start. */
const ROOM_MARGIN_BYTES = 8 * 1024 * 1024;

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
  /** Why changes are refused for now (the disk is full), until the disk has room again; null while they are taken. */
  private noRoom: string | null = null;
  private roomTimer: NodeJS.Timeout | null = null;
  /**
   * Events applied since the state began, and how many of those are durable.
   * The count is the position in the journal: snapshots carry it, and replay
   * continues it, so the event stream's resume cursors survive restarts.
   */
  private applied: number;
  private durable: number;
  private readonly eventListeners: ((event: Event, seq: number) => void)[] = [];
  private readonly durableListeners: ((seq: number) => void)[] = [];

  private constructor(
    model: Model,
    journal: Journal,
    archive: ArchiveStore,
    private readonly opts: StoreOptions,
    readonly recovered: Recovered,
    seq: number,
  ) {
    this.model = model;
    this.journal = journal;
    this.archive = archive;
    this.applied = this.durable = seq;
  }

  /** Number of events applied so far (the last one's journal position). */
  get seq(): number {
    return this.applied;
  }

  /** Number of events known to be on disk; they become durable in order. */
  get durableSeq(): number {
    return this.durable;
  }

  /** Told of every event right after it is applied, with its position. */
  onEvent(listener: (event: Event, seq: number) => void): () => void {
    return addListener(this.eventListeners, listener);
  }

  /** Told after every fsync, with the position up to which events are durable. */
  onDurable(listener: (seq: number) => void): () => void {
    return addListener(this.durableListeners, listener);
  }

  private applyEvent(event: Event): void {
    this.model.apply(event);
    const seq = ++this.applied;
    // An observer must never come between applying an event and journaling it.
    for (const listener of this.eventListeners) {
      try {
        listener(event, seq);
      } catch (err) {
        this.observerFailed(err);
      }
    }
  }

  private synced(records: number): void {
    this.durable += records;
    for (const listener of this.durableListeners) {
      try {
        listener(this.durable);
      } catch (err) {
        this.observerFailed(err);
      }
    }
  }

  private observerFailed(err: unknown): void {
    this.opts.log.error('an event observer failed', { err: String(err) });
  }

  /** Loads the newest snapshot and replays the journal after it. */
  static async open(opts: StoreOptions): Promise<Store> {
    const stateDir = join(opts.home, 'state');
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    const warn = (msg: string) => opts.log.warn(msg);
    const snapshot = await readLatestSnapshot(stateDir, { log: warn });
    const model = snapshot ? Model.fromSnapshot(snapshot.data as ModelSnapshot) : new Model();
    let store: Store | undefined;
    const { journal, replayed, truncated } = await Journal.open({
      dir: join(stateDir, 'journal'),
      fromSegment: snapshot?.segment ?? 1,
      onRecord: (record) => model.apply(record as Event),
      log: warn,
      onFsync: (ms, records) => {
        store?.synced(records);
        opts.onFsync?.(ms, records);
      },
      onStall: (stalled, cause) => store?.journalStalled(stalled, cause),
    });
    const archive = new ArchiveStore(join(opts.home, 'archive'));
    if (!model.archivedIndexComplete) {
      model.indexArchived(await archive.allIds());
      opts.log.info('archived job ids indexed from the archive');
    }
    const base = (snapshot?.data as { eventSeq?: unknown } | undefined)?.eventSeq;
    store = new Store(
      model,
      journal,
      archive,
      opts,
      { replayed, snapshotSegment: snapshot?.segment ?? null, truncated },
      (typeof base === 'number' && Number.isSafeInteger(base) && base >= 0 ? base : 0) + replayed,
    );
    return store;
  }

  /** Why changes are refused for now, or null while they are taken. */
  get refusing(): { code: 'JOURNAL_FAILED' | 'DISK_FULL'; message: string } | null {
    if (this.journalFailed()) return { code: 'JOURNAL_FAILED', message: this.failedMessage() };
    return this.noRoom ? { code: 'DISK_FULL', message: this.noRoom } : null;
  }

  /** Applies an event and resolves when it is durable. */
  commit(event: Event): Promise<void> {
    if (this.journalFailed()) return Promise.reject(fail('JOURNAL_FAILED', this.failedMessage()));
    // Refused before it is applied: nothing changes that could not be written.
    if (this.noRoom) return Promise.reject(fail('DISK_FULL', this.noRoom, { retryAfterS: ROOM_CHECK_MS / 1000 }));
    this.applyEvent(event);
    const done = this.journal.append(event).catch((err: unknown) => this.fatal(err));
    this.maybeSnapshot();
    return done;
  }

  /** Applies an event whose loss in a crash costs nothing but precision (lease renewals). */
  commitLater(event: Event): void {
    if (this.journalFailed()) return;
    this.applyEvent(event);
    this.journal.appendNoWait(event);
  }

  /**
   * True once a journal write failed, whichever change's write it was (one
   * nobody waits for fails the journal too). The state on disk after a failed
   * write is unknown, so no later change may be acknowledged until a restart
   * replays what is there.
   */
  private journalFailed(): boolean {
    if (!this.failed && this.journal.failedWith) {
      this.failed = this.journal.failedWith;
      this.opts.log.error('journal write failed; refusing further changes', { err: String((this.failed.cause as Error | undefined) ?? this.failed) });
    }
    return this.failed !== null;
  }

  private failedMessage(): string {
    const cause = (this.failed?.cause as Error | undefined)?.message ?? this.failed?.message ?? 'unknown error';
    return `the journal failed (${cause}); changes are refused until the server is restarted`;
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
    let segment: number;
    try {
      segment = this.journal.rotate();
    } catch (err) {
      // A failed journal is reported by the change that finds it; the state stays in the journal it has.
      this.opts.log.error('snapshot not started', { err: String(err) });
      return Promise.resolve();
    }
    const written = writeSnapshot(join(this.opts.home, 'state'), { ...this.model.toSnapshot(), eventSeq: this.applied }, segment, {
      beforeWrite: () => this.journal.durableBefore(segment),
    });
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
    if (this.roomTimer) clearInterval(this.roomTimer);
    await this.snapshotting;
    await this.journal.close();
  }

  private maybeSnapshot(): void {
    if (this.snapshotting || this.noRoom || this.journal.currentSegmentBytes() < this.opts.snapshotAfterBytes) return;
    void this.snapshot();
  }

  /**
   * The journal found the disk full: the write it caught waits for room
   * (it is applied but not yet acknowledged), and new changes are refused
   * with DISK_FULL until the journal writes again and the disk has a margin
   * of room, checked every second. Readers are not affected; lease renewals
   * still queue, being small and already applied.
   */
  private journalStalled(stalled: boolean, cause?: Error): void {
    if (!stalled) return void this.checkRoom();
    if (this.noRoom) return;
    this.noRoom = `the server's disk is full (${cause?.message ?? 'no space'}); changes are refused until there is room again`;
    this.opts.log.error('disk full: refusing changes until there is room', { err: String(cause), home: this.opts.home });
    this.roomTimer ??= setInterval(() => void this.checkRoom(), ROOM_CHECK_MS);
    this.roomTimer.unref();
  }

  private async checkRoom(): Promise<void> {
    if (!this.noRoom || this.journal.stalled) return;
    let free: number;
    try {
      const s = await statfs(join(this.opts.home, 'state'));
      free = s.bavail * s.bsize;
    } catch {
      return;
    }
    if (free < ROOM_MARGIN_BYTES || this.journal.stalled || !this.noRoom) return;
    this.noRoom = null;
    if (this.roomTimer) clearInterval(this.roomTimer);
    this.roomTimer = null;
    this.opts.log.info('the disk has room again; taking changes', { freeBytes: free });
  }

  private fatal(err: unknown): never {
    if (!this.failed) {
      this.failed = err instanceof Error ? err : new Error(String(err));
      this.opts.log.error('journal write failed; refusing further changes', { err: String((this.failed.cause as Error | undefined) ?? err) });
    }
    throw fail('JOURNAL_FAILED', this.failedMessage());
  }
}

function addListener<T>(list: T[], listener: T): () => void {
  list.push(listener);
  return () => {
    const i = list.indexOf(listener);
    if (i >= 0) list.splice(i, 1);
  };
}
