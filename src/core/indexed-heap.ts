/** What an IndexedHeap holds: each item knows where it sits (-1 when not in a heap). */
export interface Placed {
  heapAt: number;
}

/**
 * A binary min-heap ordered by `less` whose items know their place, so any
 * item can be removed, or moved after its key changed, in O(log n).
 */
export class IndexedHeap<T extends Placed> {
  private readonly items: T[] = [];

  constructor(private readonly less: (a: T, b: T) => boolean) {}

  get size(): number {
    return this.items.length;
  }

  peek(): T | undefined {
    return this.items[0];
  }

  push(item: T): void {
    item.heapAt = this.items.length;
    this.items.push(item);
    this.up(item.heapAt);
  }

  pop(): T | undefined {
    const top = this.items[0];
    if (top) this.remove(top);
    return top;
  }

  remove(item: T): void {
    const i = item.heapAt;
    if (i < 0 || this.items[i] !== item) return;
    item.heapAt = -1;
    const last = this.items.pop()!;
    if (last === item) return;
    this.items[i] = last;
    last.heapAt = i;
    this.update(last);
  }

  /** Puts an item whose key changed back in order. */
  update(item: T): void {
    const i = item.heapAt;
    if (i < 0) return;
    this.down(this.up(i));
  }

  private up(i: number): number {
    const items = this.items;
    const item = items[i]!;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = items[parent]!;
      if (!this.less(item, p)) break;
      items[i] = p;
      p.heapAt = i;
      i = parent;
    }
    items[i] = item;
    item.heapAt = i;
    return i;
  }

  private down(i: number): void {
    const items = this.items;
    const n = items.length;
    const item = items[i]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && this.less(items[r]!, items[l]!) ? r : l;
      const child = items[c]!;
      if (!this.less(child, item)) break;
      items[i] = child;
      child.heapAt = i;
      i = c;
    }
    items[i] = item;
    item.heapAt = i;
  }
}
