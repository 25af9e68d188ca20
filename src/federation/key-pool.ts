/**
 * RSA keys made ahead of need. A first start needs two (the CA's and the
 * server's), each 0.05 – 0.3 s of one core in Node's thread pool. Asked for
 * early, before the server's modules are loaded, they are made on the other
 * core meanwhile and side by side, instead of one after the other once the
 * code that uses them has loaded. Node's crypto only: no forge here, so
 * asking is cheap.
 */
import { generateKeyPair } from 'node:crypto';

const pool: Promise<string>[] = [];

function makeKey(): Promise<string> {
  return new Promise((resolve, reject) =>
    generateKeyPair(
      'rsa',
      { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } },
      (err, _pub, key) => (err ? reject(err) : resolve(key)),
    ),
  );
}

/** Starts making keys until `count` are made or under way. */
export function warmRsaKeys(count: number): void {
  while (pool.length < count) {
    const key = makeKey();
    // A key nobody takes (the start failed) must not become an unhandled rejection.
    key.catch(() => {});
    pool.push(key);
  }
}

/** A new 2048-bit RSA private key in PKCS#8 PEM: one made ahead if there is one, else a fresh one. */
export function takeRsaKey(): Promise<string> {
  return pool.shift() ?? makeKey();
}
