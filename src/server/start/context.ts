import type { PeerLinkState } from '../../core/wire.js';
import type { Handshake } from '../../federation/handshake.js';
import type { ServerIdentity } from '../../federation/identity.js';
import type { TrustStore } from '../../federation/trust-store.js';
import type { Accounts } from '../accounts/accounts.js';
import type { ServerConfig } from './config.js';
import type { Delegation } from '../federation/delegation.js';
import type { Dispatcher } from '../jobs/dispatcher.js';
import type { Control } from '../jobs/control.js';
import type { Files } from '../files/files.js';
import type { Transfers } from '../files/transfers.js';
import type { LogStore } from '../files/log-store.js';
import type { Logger } from '../../common/logger.js';
import type { PilotManager } from '../pilots/pilot-manager.js';
import type { Store } from '../jobs/store.js';
import type { QueuedUsage } from '../jobs/queued-usage.js';
import type { LoginThrottle } from '../accounts/throttle.js';

/** What every route handler may use: one object, built once at start-up. */
export interface Context {
  config: ServerConfig;
  identity: ServerIdentity;
  store: Store;
  accounts: Accounts;
  dispatcher: Dispatcher;
  /** Control polls: tells workers and borrowing peers at once which attempts must stop. */
  control: Control;
  /** Work borrowed from and lent to trusted peers. */
  delegation: Delegation;
  logs: LogStore;
  /** The file store and its rules (quota, limits). */
  files: Files;
  /** Unfinished jobs and their bytes per user, for the limits on what one user leaves waiting. */
  usage: QueuedUsage;
  /** Attempts' inputs and outputs, for this server's workers, through to home for delegated jobs. */
  transfers: Transfers;
  log: Logger;
  leaseMs: number;
  /** When this server started: workers not heard from since get a lease's length to come back (worker-presence.ts). */
  startedAt: number;
  version: string;
  /** The secure port actually bound (differs from config when it was 0). */
  securePort: () => number;
  /** The unsecure port actually bound. */
  unsecurePort: () => number;
  /** Trusted peers and connection requests (`<home>/peers.json`). */
  trust: TrustStore;
  /** The connect/trust handshake and the signed notices between peers. */
  handshake: Handshake;
  /** The state of the link to a peer, where peer links run; 'down' is shown otherwise. */
  linkState?: (serverId: string) => PeerLinkState;
  /** Heartbeat renewals last journaled per worker (renewals are journaled coarsely). */
  journaledDeadline: Map<string, number>;
  /** When a peer was last seen with its link up (since start), where peer links run. */
  peerLastSeen?: (serverId: string) => number | null;
  /**
   * Asks whoever runs the server to stop it cleanly (`cpcc stop-server`):
   * cpc-server's command line takes the path SIGTERM takes; a server started
   * in code closes itself unless its starter said otherwise (ServerOptions).
   */
  requestStop: () => void;
  /** Failed logins slow further ones down (throttle.ts); kept across restarts. */
  loginThrottle: LoginThrottle;
  /** A user logged in or has a new password: cpc-admin's first password, kept in the home, is of no more use. */
  passwordUsed: (user: string) => void;
  /** Pilots on batch systems (docs/PILOTS.md); set once the server listens. */
  pilots?: PilotManager;
}
