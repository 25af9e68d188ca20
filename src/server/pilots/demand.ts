/**
 * How many pilots the queue asks for. Pure arithmetic over counts, so that
 * the policy can be tested without a server or a batch system.
 *
 * The queued jobs (by resource shape) are first placed, greedily, into the
 * free room of the workers that are connected and of the pilots that are on
 * their way (submitted, not yet registered). What is left waits for a worker
 * that does not exist: that is the demand. It is then packed into new pilots
 * of the launcher's size; jobs larger than a pilot cannot be helped by it.
 */

export interface Room {
  cores: number;
  memoryMb: number;
}

export interface ShapeCount {
  resources: Room;
  count: number;
}

export interface Demand {
  /** Queued jobs that no connected worker or coming pilot has room for. */
  waiting: number;
  /** Pilots of the given size that would give those jobs room (at most `limit`). */
  pilots: number;
  /** Waiting jobs too large for one pilot of this size. */
  tooLarge: number;
}

/** How many jobs of `need` fit into `room` at once. */
export function fitCount(room: Room, need: Room): number {
  const byCores = need.cores > 0 ? Math.floor(room.cores / need.cores) : Infinity;
  const byMemory = need.memoryMb > 0 ? Math.floor(room.memoryMb / need.memoryMb) : Infinity;
  return Math.max(0, Math.min(byCores, byMemory));
}

/** Jobs of each shape left over after filling `rooms` (which are used up as they fill). */
export function unplaced(shapes: readonly ShapeCount[], rooms: Room[]): ShapeCount[] {
  const left: ShapeCount[] = [];
  // Larger jobs first: small ones fit into the gaps the large ones leave.
  const ordered = [...shapes].sort((a, b) => b.resources.cores - a.resources.cores || b.resources.memoryMb - a.resources.memoryMb);
  for (const shape of ordered) {
    let count = shape.count;
    for (const room of rooms) {
      if (count === 0) break;
      const n = Math.min(count, fitCount(room, shape.resources));
      if (n === 0) continue;
      room.cores -= n * shape.resources.cores;
      room.memoryMb -= n * shape.resources.memoryMb;
      count -= n;
    }
    if (count > 0) left.push({ resources: shape.resources, count });
  }
  return left;
}

/**
 * The demand for pilots of size `pilot`: queued jobs by shape, the free room
 * of connected workers, the room of pilots that are coming, and the most
 * pilots that may be asked for now.
 */
export function pilotDemand(shapes: readonly ShapeCount[], free: readonly Room[], coming: readonly Room[], pilot: Room, limit: number): Demand {
  const rooms = [...free, ...coming].map((r) => ({ ...r }));
  const left = unplaced(shapes, rooms);
  let waiting = 0;
  let tooLarge = 0;
  for (const s of left) {
    waiting += s.count;
    if (fitCount(pilot, s.resources) === 0) tooLarge += s.count;
  }
  // Pack what fits into new pilots, one pilot at a time, up to the limit.
  let rest = left.filter((s) => fitCount(pilot, s.resources) > 0);
  let pilots = 0;
  while (rest.length > 0 && pilots < limit) {
    pilots++;
    rest = unplaced(rest, [{ ...pilot }]);
  }
  return { waiting, pilots, tooLarge };
}
