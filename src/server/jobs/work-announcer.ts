import type { Shape } from '../../federation/link.js';

/**
 * Tells peers what this server has queued, when that changes. Job changes
 * come in bursts, so they are gathered to one check per turn of the event
 * loop, and a notice goes out only when the set of queued shapes changed (not
 * on every count), which keeps the links quiet under steady load.
 */
export class WorkAnnouncer {
  private pending = false;
  private last = '';

  constructor(
    private readonly shapes: () => Shape[],
    private readonly send: (shapes: Shape[]) => void,
  ) {}

  changed(): void {
    if (this.pending) return;
    this.pending = true;
    setImmediate(() => {
      this.pending = false;
      const shapes = this.shapes();
      const key = shapes
        .map((s) => `${s.resources.cores}:${s.resources.memoryMb}`)
        .sort()
        .join(',');
      if (key === this.last) return;
      this.last = key;
      this.send(shapes);
    });
  }
}
