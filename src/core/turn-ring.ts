/**
 * Entries that take turns, by weight: the first is served until it has had
 * `weight` turns in a row, then goes last. Serving an entry further back
 * means those before it had nothing to offer: they go last too, in order.
 *
 * Entries are kept by key in insertion order (a Map), so add, delete, a move
 * to the back and a look at the first are O(1). An entry whose `live` count
 * is 0 is treated as absent: whoever walks the ring drops it, and `put`
 * brings one back at the end, so leaving it in place a while changes no turn.
 */
export class TurnRing<T extends { live: number }> {
  private readonly slots = new Map<string, T>();
  /** Turns in a row of the entry named `usedBy`, which is then the first. */
  private used = 0;
  private usedBy: string | undefined;

  get(key: string): T | undefined {
    return this.slots.get(key);
  }

  /** Entries in turn order, the first first. Deleting while walking is allowed. */
  values(): IterableIterator<T> {
    return this.slots.values();
  }

  /** Adds an entry at the back, or moves it there with its turns in a row forgotten. */
  put(key: string, value: T): void {
    this.slots.delete(key);
    this.slots.set(key, value);
    if (this.usedBy === key) this.usedBy = undefined;
  }

  delete(key: string): void {
    this.slots.delete(key);
  }

  /**
   * Records that `key` was served with `weight` turns per round: the entries
   * before it go to the back (dead ones are dropped), and it goes too once it
   * has used its weight, or is dropped when it has nothing left.
   */
  served(key: string, weight: number): void {
    const entry = this.slots.get(key);
    // Without it the walk below would move the others round for ever.
    if (!entry) return;
    for (const [k, v] of this.slots) {
      if (k === key) break;
      this.slots.delete(k);
      if (v.live > 0) this.slots.set(k, v);
    }
    if (this.usedBy !== key) {
      this.usedBy = key;
      this.used = 0;
    }
    this.used++;
    if (entry.live === 0) {
      this.slots.delete(key);
      this.usedBy = undefined;
    } else if (this.used >= weight) {
      this.put(key, entry);
    }
  }

  /** The live entries in turn order, and the turns the first has had in a row. */
  order(): { keys: string[]; used: number } {
    const keys: string[] = [];
    for (const [k, v] of this.slots) if (v.live > 0) keys.push(k);
    return { keys, used: keys.length > 0 && this.usedBy === keys[0] ? this.used : 0 };
  }

  /** Puts the entries named in `keys` first, in that order, the others after them as they were. */
  restore(keys: readonly string[], used: number): void {
    const before = new Map(this.slots);
    this.slots.clear();
    for (const k of keys) {
      const v = before.get(k);
      if (v && v.live > 0 && !this.slots.has(k)) this.slots.set(k, v);
    }
    for (const [k, v] of before) if (!this.slots.has(k)) this.slots.set(k, v);
    const first = keys[0];
    this.usedBy = used > 0 && first !== undefined && this.slots.keys().next().value === first ? first : undefined;
    this.used = this.usedBy === undefined ? 0 : used;
  }
}
