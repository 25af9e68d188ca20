/**
 * A federation membership file: the servers of one federation, one a line, each
 * with the SHA-256 fingerprint of its CA as its own admin reads it off
 * `cpcc server-info`:
 *
 *   # host        [port]   CA fingerprint (SHA-256)                       [name]
 *   hub1.example  14807    3F:0A:…:9C                                     hub-1
 *   leaf7.example          sha256:9be1…04                                 leaf-7
 *
 * The fingerprints are what is trusted: `cpcc connect-server --file` pins each
 * listed CA before any request is sent, and `cpcc trust --all --from` trusts
 * only waiting requests whose CA is listed, from the host and port listed with
 * it. The file itself is no secret, but whoever may change it decides who
 * joins, so admins compare its digest (printed by both commands) over a channel
 * they already trust instead of one fingerprint per server.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { fail, usage } from '../output.js';
import { DEFAULT_UNSECURE_PORT, normalizeFingerprint } from './servers.js';

export interface Member {
  host: string;
  port: number;
  /** Bare lower-case hex, 64 digits. */
  caFingerprint: string;
  name: string;
  line: number;
}

export interface MembersFile {
  members: Member[];
  /** SHA-256 of the members as read (host, port, fingerprint, sorted), for admins to compare. */
  digest: string;
}

const HOST = /^[A-Za-z0-9._:-]+$/;

/** Parses the text of a membership file; `where` names it in errors. */
export function parseMembers(text: string, where: string): MembersFile {
  const members: Member[] = [];
  const seen = new Map<string, number>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = i + 1;
    const words = raw.replace(/#.*$/, '').trim().split(/\s+/).filter((w) => w !== '');
    if (words.length === 0) return;
    const [host, second, third, ...rest] = words as [string, string | undefined, string | undefined, ...string[]];
    const bad = (why: string): never => usage(`${where} line ${line}: ${why}`);
    if (!HOST.test(host) || host.length > 253) bad(`'${host}' is not a host name or an IP address`);
    let port = DEFAULT_UNSECURE_PORT;
    let fp: string | undefined = second;
    let nameWords = third === undefined ? rest : [third, ...rest];
    if (second !== undefined && /^\d+$/.test(second)) {
      port = Number(second);
      if (port < 1 || port > 65535) bad(`port ${second} is not from 1 to 65535`);
      fp = third;
      nameWords = rest;
    }
    if (fp === undefined) bad('expected HOST [PORT] FINGERPRINT [NAME]');
    const caFingerprint = normalizeFingerprint(fp!);
    if (caFingerprint.length !== 64 || /[^0-9a-f:]/i.test(fp!.replace(/^sha-?256[:=]?/i, ''))) {
      bad(`'${fp}' is not a SHA-256 fingerprint (64 hex digits)`);
    }
    const earlier = seen.get(caFingerprint);
    if (earlier !== undefined) bad(`the fingerprint is listed already on line ${earlier}; one line per server`);
    seen.set(caFingerprint, line);
    members.push({ host, port, caFingerprint, name: nameWords.join(' '), line });
  });
  if (members.length === 0) usage(`${where} lists no servers`);
  const canonical = members
    .map((m) => `${m.host} ${m.port} ${m.caFingerprint}`)
    .sort()
    .join('\n');
  return { members, digest: createHash('sha256').update(canonical).digest('hex') };
}

export async function readMembers(file: string): Promise<MembersFile> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    return fail(`cannot read membership file ${file}: ${(err as Error).message}`);
  }
  return parseMembers(text, file);
}

/** The digest as admins read it to each other: groups of eight hex digits. */
export function showDigest(digest: string): string {
  return digest.match(/.{1,8}/g)!.join(' ');
}
