/**
 * Client certificates on the secure listener. Users and workers come with
 * tokens and no certificate; peer servers come with their server certificate.
 * The listener asks every client for one but lets TLS finish without it
 * (`requestCert`, not `rejectUnauthorized`), then, before any HTTP is read,
 * destroys a connection whose certificate is not one this server accepts:
 *
 *   - it must chain to this server's own CA or a trusted peer's CA (TLS says so);
 *   - a peer's certificate must carry the id of the peer whose CA issued it.
 *
 * When trust changes the TLS context is replaced without a restart, and open
 * connections whose certificate is no longer accepted are cut at once.
 */
import { X509Certificate } from 'node:crypto';
import type { Server as HttpsServer } from 'node:https';
import type { SecureContextOptions, TLSSocket } from 'node:tls';
import { issuedBy, peerOfCertificate, presentedCertificate } from '../../federation/peer-auth.js';
import type { ServerIdentity } from '../../federation/identity.js';
import type { TrustStore } from '../../federation/trust-store.js';
import type { Logger } from '../../common/logger.js';

export class PeerTls {
  /** Open connections that presented a certificate: those are re-checked when trust changes. */
  private readonly withCertificate = new Set<TLSSocket>();
  private readonly ownCa: X509Certificate;

  constructor(
    private readonly identity: ServerIdentity,
    private readonly store: TrustStore,
    private readonly log: Logger,
  ) {
    this.ownCa = new X509Certificate(identity.caCertPem);
  }

  /** The TLS options of the secure listener as trust stands now. */
  secureContext(): SecureContextOptions {
    return { key: this.identity.keyPem, cert: this.identity.certPem, ca: [this.identity.caCertPem, ...this.store.trustedCaPems()] };
  }

  /** Starts checking every connection of `server`. */
  attach(server: HttpsServer): void {
    server.on('secureConnection', (socket: TLSSocket) => {
      if (!presentedCertificate(socket)) return;
      if (!this.accepted(socket)) {
        this.log.debug('refused a client certificate', { remote: socket.remoteAddress, why: socket.authorizationError ?? 'not a trusted peer' });
        socket.destroy();
        return;
      }
      this.withCertificate.add(socket);
      socket.once('close', () => this.withCertificate.delete(socket));
    });
  }

  /** New connections get the new CA list; open ones that lost their trust are cut. */
  reload(server: HttpsServer): void {
    server.setSecureContext(this.secureContext());
    for (const socket of this.withCertificate) {
      if (!this.accepted(socket)) {
        this.log.info('closed a connection whose peer is no longer trusted', { remote: socket.remoteAddress });
        socket.destroy();
      }
    }
  }

  private accepted(socket: TLSSocket): boolean {
    if (!socket.authorized) return false;
    const cert = presentedCertificate(socket);
    if (!cert) return true;
    // Our own CA issues only this server's certificate.
    if (issuedBy(cert, this.ownCa)) return true;
    return peerOfCertificate(cert, this.store) !== null;
  }
}
