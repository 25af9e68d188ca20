import type { Low } from 'lowdb';
import { changeDocument, openDocument } from '../../persistence/lowdb-adapter.js';
import type { LauncherKind } from './launcher.js';

/**
 * The pilots this server has submitted, in a small durable document
 * (`<home>/pilots.json`, mode 0600). Pilots are few (bounded by each
 * launcher's maxPilots, plus a short history of ended ones), so the whole
 * list is rewritten on each change.
 *
 * States:
 *
 *   queued     submitted; the batch system has not started it
 *   starting   the batch job runs; its worker has not registered yet
 *   running    its worker has registered
 *   ended      it stopped by itself (idle, out of work)
 *   failed     the batch system refused it, it failed, or its worker never registered
 *   cancelled  someone cancelled its batch job (or its batch time ran out)
 *   lost       its worker fell silent while the batch system still ran it; cancelled by the server
 */
export { PILOT_STATES, type PilotState } from '../../core/wire.js';
import type { PilotState } from '../../core/wire.js';
export const LIVE_STATES: ReadonlySet<PilotState> = new Set(['queued', 'starting', 'running']);

export interface PilotRecord {
  id: string;
  launcher: string;
  kind: LauncherKind;
  state: PilotState;
  /** The batch system's job id; null when the submission failed. */
  batchId: string | null;
  /** The batch system's last word on the job (e.g. PENDING, CANCELLED). */
  batchState: string | null;
  /** The one-time worker token the pilot registers with. */
  tokenId: string | null;
  /** The worker the pilot registered as, once it has. */
  workerId: string | null;
  cores: number;
  memoryMb: number;
  wallTimeS: number;
  /** The pilot's folder (batch script, token, CA, batch output). */
  dir: string;
  submittedAt: number;
  startedAt: number | null;
  registeredAt: number | null;
  endedAt: number | null;
  /** What went wrong last, in words; null when nothing did. */
  lastError: string | null;
  /** Identical submission failures folded into this record. */
  failures: number;
}

interface PilotsDoc {
  pilots: PilotRecord[];
}

/** Ended pilots kept per launcher, for `cpcc pilots`. */
const HISTORY = 50;

export class PilotStore {
  private constructor(private readonly db: Low<PilotsDoc>) {}

  static async open(file: string): Promise<PilotStore> {
    return new PilotStore(await openDocument<PilotsDoc>(file, { pilots: [] }, { mode: 0o600 }));
  }

  all(): readonly PilotRecord[] {
    return this.db.data.pilots;
  }

  live(launcher?: string): PilotRecord[] {
    return this.db.data.pilots.filter((p) => LIVE_STATES.has(p.state) && (launcher === undefined || p.launcher === launcher));
  }

  get(id: string): PilotRecord | undefined {
    return this.db.data.pilots.find((p) => p.id === id);
  }

  async add(record: PilotRecord): Promise<PilotRecord[]> {
    let dropped: PilotRecord[] = [];
    await this.change(() => {
      this.db.data.pilots.push(record);
      dropped = this.prune(record.launcher);
    });
    return dropped;
  }

  /** Changes a pilot; returns the ended pilots that fell out of the history, whose leftovers may go. */
  async update(id: string, patch: Partial<Omit<PilotRecord, 'id' | 'launcher'>>): Promise<PilotRecord[]> {
    let dropped: PilotRecord[] = [];
    await this.change(() => {
      const p = this.get(id);
      if (!p) return;
      Object.assign(p, patch);
      dropped = this.prune(p.launcher);
    });
    return dropped;
  }

  async remove(id: string): Promise<void> {
    await this.change(() => {
      this.db.data.pilots = this.db.data.pilots.filter((p) => p.id !== id);
    });
  }

  /** Keeps every live pilot and the latest ended ones of a launcher. */
  private prune(launcher: string): PilotRecord[] {
    const ended = this.db.data.pilots.filter((p) => p.launcher === launcher && !LIVE_STATES.has(p.state));
    if (ended.length <= HISTORY) return [];
    const drop = new Set(ended.sort((a, b) => (a.endedAt ?? a.submittedAt) - (b.endedAt ?? b.submittedAt)).slice(0, ended.length - HISTORY));
    this.db.data.pilots = this.db.data.pilots.filter((p) => !drop.has(p));
    return [...drop];
  }

  /** Applies a change and writes it; a failed write undoes the change in memory too. */
  private change(apply: () => void): Promise<void> {
    return changeDocument(this.db, apply);
  }
}
