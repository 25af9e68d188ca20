/**
 * The delaying relays of the WAN figures (lib.ts delegatingPair), in a
 * process of their own so that their timers keep time while the servers
 * work. Prints `{"ready":true}` once every relay listens.
 *
 *   wan-relay.ts ONE_WAY_MS JITTER_MS LISTEN_HOST:TARGET_HOST:PORT,PORT...
 */
import { DelayRelay } from '../test/faults/delay-relay.js';

const [oneWay, jitter, ...fronts] = process.argv.slice(2);
const relays = fronts.map((front) => {
  const [listenHost, targetHost, ports] = front.split(':') as [string, string, string];
  return new DelayRelay({ listenHost, targetHost, ports: ports.split(',').map(Number), oneWayMs: Number(oneWay), jitterMs: Number(jitter) });
});
await Promise.all(relays.map((r) => r.listen()));
process.stdout.write(JSON.stringify({ ready: true }) + '\n');
process.on('SIGTERM', () => void Promise.all(relays.map((r) => r.close())).then(() => process.exit(0)));
