import type { PeerLinkState, PeerView } from '../../core/wire.js';
import type { Peer } from '../../federation/trust-store.js';

/** Turns a trusted peer into its shape in the API (core/wire.ts). */

/** A trusted peer as admins see it, with the state of its link. */
export function peerView(p: Peer, link: PeerLinkState): PeerView {
  return {
    serverId: p.serverId,
    name: p.name,
    host: p.host,
    unsecurePort: p.unsecurePort,
    securePort: p.securePort,
    caFingerprint: p.caFingerprint,
    priority: p.priority,
    trustedAt: p.trustedAt,
    link,
  };
}
