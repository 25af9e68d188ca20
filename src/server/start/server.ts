/**
 * server/start: start-up and assembly. The command line (cli.ts), the server's assembly and
 * listeners (this file), the configuration, the Context handed to route handlers, the home lock, the
 * table of every route (api.ts) and the OpenAPI description made from it.
 * May call anything in src/server: this is where the subsystems are built and wired together.
 * Writes the events of lease recovery at start-up.
 */
import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { planLeaseRecovery } from '../../core/recovery.js';
import type { Model } from '../../core/model.js';
import { JOB_STATES, emptyCounts } from '../../core/types.js';
import { API_PREFIX, EVENTS_PATH, type PeerView } from '../../core/wire.js';
import { Handshake } from '../../federation/handshake.js';
import { loadOrCreateIdentity, type ServerIdentity } from '../../federation/identity.js';
import { LinkManager } from '../../federation/links.js';
import { peerOf } from '../../federation/peer-auth.js';
import { TrustStore } from '../../federation/trust-store.js';
import { packageVersion } from '../../common/version.js';
import { ADMIN_USER, Accounts, generatePassword } from '../accounts/accounts.js';
import { leaseSeconds, resolveSettings, type ServerConfig, type SettingSource } from './config.js';
import type { Context } from './context.js';
import { Delegation } from '../federation/delegation.js';
import { peerView } from '../federation/views.js';
import { WorkAnnouncer } from '../jobs/work-announcer.js';
import { Dispatcher } from '../jobs/dispatcher.js';
import { Control } from '../jobs/control.js';
import { apiRouter } from './api.js';
import { authorizer } from '../http/auth.js';
import { Reply, edgeServerOptions, guardServer, makeRequestListener } from '../http/router.js';
import { openApiDocument } from './openapi.js';
import { LogStore } from '../files/log-store.js';
import { toLogger, type Logger } from '../../common/logger.js';
import { PeerTls } from '../federation/peer-tls.js';
import { pagesHandler } from '../dashboard/serve.js';
import { EventHub } from '../events/hub.js';
import { EventSocket } from '../events/socket.js';
import { Metrics } from '../dashboard/metrics.js';
import { openPilots } from '../pilots/index.js';
import { withRequestId } from '../http/request-id.js';
import { Store } from '../jobs/store.js';
import { Sweeper } from '../jobs/sweeper.js';
import { QueuedUsage } from '../jobs/queued-usage.js';
import { openLoginThrottle } from '../accounts/throttle-file.js';
import { Files, forgetMissingFiles } from '../files/files.js';
import { Transfers } from '../files/transfers.js';
import { BlobStore } from '../../persistence/blob-store.js';
import { unsecureListener, unsecureRoutes } from '../federation/unsecure.js';

export interface ServerOptions extends Partial<ServerConfig> {
  home: string;
  log?: Logger | ((msg: string) => void);
  /**
   * Called when a super user asks the server to stop (`cpcc stop-server`).
   * cpc-server's command line passes its own shutdown (the one SIGTERM takes,
   * which ends the process too); without it the server closes itself.
   */
  onStopRequest?: () => void;
}

export interface RunningServer {
  /** https://host:port of the secure port. */
  url: string;
  unsecureUrl: string;
  securePort: number;
  unsecurePort: number;
  serverId: string;
  caPem: string;
  caFingerprint: string;
  identity: ServerIdentity;
  /** Set on the first start only: the generated password of cpc-admin. */
  adminPassword?: string;
  config: ServerConfig;
  /** Where each setting in force came from (`cpc-server config get`); a setting changed by `config set` says so. */
  settingSources: Record<keyof ServerConfig, SettingSource>;
  model: Model;
  ctx: Context;
  /** The event stream (positions, subscribers). */
  events: EventHub;
  metrics: Metrics;
  /** A new worker token; with `user`, its workers get only that user's jobs. */
  createWorkerToken(name: string, user?: string): Promise<string>;
  /** Gives the secure listener the current trusted CAs, without a restart; done on every trust change. */
  reloadTls(): void;
  /** Stops listening, answers waiting claims, finishes the journal, snapshots. Safe to call twice. */
  close(): Promise<void>;
  /** Resolves when a super user has asked the server to stop. */
  stopRequested: Promise<void>;
}

const INITIAL_PASSWORD_FILE = 'initial-admin-password';

export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const { home, log: logOption, onStopRequest, ...overrides } = opts;
  mkdirSync(home, { recursive: true, mode: 0o700 });
  // Keys, tokens and the journal live here: nobody else, jobs above all, may look in.
  chmodSync(home, 0o700);
  const { config, sources: settingSources } = resolveSettings(home, overrides);
  const log = toLogger(logOption, config.logLevel, 'cpc-server');
  const leaseMs = leaseSeconds(config) * 1000;

  // The certificate names what clients are told to use: the public host, and the listening address when it is one; names or IP addresses.
  const extraHosts = [...new Set([config.publicHost, config.host])].filter((h) => h !== 'localhost' && h !== '0.0.0.0' && h !== '::');
  // A first start makes two RSA keys and hashes the admin's password: the
  // thread pool's work, done side by side instead of one after the other.
  const [{ identity, created }, { accounts, adminPassword }] = await Promise.all([
    loadOrCreateIdentity(join(home, 'identity'), {
      hostNames: extraHosts,
      log: (m) => log.warn(m),
    }),
    (async () => {
      const accounts = await Accounts.open(home, config.tokenTtlS, config.scryptLogN);
      let adminPassword: string | undefined;
      if (accounts.empty) {
        adminPassword = generatePassword();
        await accounts.addUser(ADMIN_USER, adminPassword, true, { generated: true });
        writeFileSync(join(home, INITIAL_PASSWORD_FILE), adminPassword + '\n', { mode: 0o600 });
      }
      return { accounts, adminPassword };
    })(),
  ]);
  if (created) log.info('created server identity', { serverId: identity.serverId, caFingerprint: identity.caFingerprint });

  // Gauges are read when scraped, from what exists by then.
  const metrics: Metrics = new Metrics({
    jobs: () => {
      const all = emptyCounts();
      for (const name of store.model.projects.keys()) {
        const c = store.model.countsOf(name);
        for (const s of JOB_STATES) all[s] += c[s];
      }
      return all;
    },
    projects: () => store.model.projects.size,
    workers: () => store.model.workers.size,
    leases: () => store.model.leases.size,
    claimsWaiting: () => ctx.dispatcher.waitingCount,
    peers: (): { trusted: number; up: number } => ({ trusted: trust.peers().length, up: links.upCount() }),
    streamClients: () => hub.subscribers,
    journalPosition: () => store.seq,
    refusing: () => store.refusing?.code ?? null,
    peerFrames: () => links.frames,
  });
  const store = await Store.open({
    home,
    snapshotAfterBytes: config.snapshotAfterBytes,
    log,
    onFsync: (ms, records) => metrics.fsync(ms, records),
  });
  store.onEvent((event) => metrics.event(event));
  const blobs = new BlobStore(join(home, 'files'));
  await blobs.open();
  const peerViews = (): PeerView[] => trust.peers().map((p) => peerView(p, ctx.linkState?.(p.serverId) ?? 'down'));
  // Before recovery commits anything, so that the stream has every change of this run.
  const hub = new EventHub(store, { peers: () => peerViews() });
  const { replayed, snapshotSegment, truncated } = store.recovered;
  log.info('state loaded', {
    jobs: store.model.jobs.size,
    leases: store.model.leases.size,
    replayed,
    snapshotSegment,
    truncated,
  });
  for (const event of planLeaseRecovery(store.model, Date.now(), leaseMs)) {
    await store.commit(event);
    log.info(event.t === 'attempts-lost' ? 'leases expired while stopped; jobs re-queued' : 'leases given a fresh period after restart', {
      attempts: event.attempts.length,
    });
  }

  const forgotten = await forgetMissingFiles(store, blobs);
  if (forgotten > 0) log.info('files collected before the last stop forgotten', { files: forgotten });

  let closing = false;
  let stopAsked!: () => void;
  const stopRequested = new Promise<void>((resolve) => (stopAsked = resolve));
  let secure: HttpsServer | null = null;
  let unsecureBound = config.unsecurePort;
  const trust = await TrustStore.open(home);
  const handshake = new Handshake({
    identity,
    store: trust,
    name: config.name,
    publicHost: config.publicHost,
    ports: () => ({ securePort: ctx.securePort(), unsecurePort: ctx.unsecurePort() }),
    log,
  });
  const loginThrottle = await openLoginThrottle(
    home,
    { perUser: config.loginFailuresPerUser, perAddress: config.loginFailuresPerAddress, maxDelayMs: config.loginMaxDelayS * 1000 },
    log,
  );
  const ctx = {
    config,
    identity,
    store,
    accounts,
    loginThrottle: loginThrottle.throttle,
    dispatcher: new Dispatcher(store, () => leaseMs),
    control: new Control(store),
    logs: new LogStore(join(home, 'logs'), config.maxLiveLogBytes ?? config.maxLogBytes),
    files: new Files(blobs, store, config),
    usage: new QueuedUsage(store.model, store, config),
    log,
    leaseMs,
    startedAt: Date.now(),
    version: packageVersion(),
    securePort: () => (secure?.address() as AddressInfo | null)?.port ?? config.securePort,
    unsecurePort: () => unsecureBound,
    trust,
    handshake,
    journaledDeadline: new Map(),
    passwordUsed: (user: string) => {
      if (user === ADMIN_USER) rmSync(join(home, INITIAL_PASSWORD_FILE), { force: true });
    },
    requestStop: () => {
      log.info('asked to stop');
      stopAsked();
      if (onStopRequest) onStopRequest();
      else void close();
    },
  } as Omit<Context, 'delegation'> as Context;
  ctx.delegation = new Delegation(ctx);
  ctx.transfers = new Transfers(ctx);
  ctx.dispatcher.remote = ctx.delegation;

  const router = apiRouter(ctx);
  let openapi: string | undefined;
  const documents = {
    // Made on first request, from the same route table that checks requests.
    '/api/openapi.json': () => Reply.json(JSON.parse((openapi ??= JSON.stringify(openApiDocument(router, unsecureRoutes(ctx), ctx.version))))),
  };

  const peerTls = new PeerTls(identity, trust, log);
  secure = createHttpsServer(
    {
      ...peerTls.secureContext(),
      // Peers prove who they are with client certificates; users and workers
      // send none. peer-tls.ts refuses a bad certificate before any HTTP.
      requestCert: true,
      rejectUnauthorized: false,
      // Slow or silent clients are cut off (a long-poll's wait for its answer does not count).
      ...edgeServerOptions(config),
      keepAliveTimeout: 65_000,
    },
    withRequestId(
      makeRequestListener({
        router,
        prefix: API_PREFIX,
        maxBodyBytes: config.maxBodyBytes,
        log,
        authorize: authorizer(ctx),
        documents,
        closing: () => closing,
        outside: pagesHandler({
          metrics,
          // Read at each scrape: `config set` may change them while the server runs.
          get metricsMode() {
            return config.metrics;
          },
          get metricsToken() {
            return config.metricsToken;
          },
          superuser: (token) => isSuperuser(accounts, token),
        }),
        observe: (method, route, status, ms) => metrics.request(method, route, status, ms),
      }),
    ),
  );
  const unsecure: HttpServer = createHttpServer(edgeServerOptions(config), unsecureListener(ctx, () => closing));
  guardServer(secure, log);
  guardServer(unsecure, log);
  await listen(secure, config.securePort, config.host);
  await listen(unsecure, config.unsecurePort, config.host);
  const securePort = (secure.address() as AddressInfo).port;
  const unsecurePort = (unsecure.address() as AddressInfo).port;
  unsecureBound = unsecurePort;
  peerTls.attach(secure);
  const reloadTls = (): void => peerTls.reload(secure!);

  const peerSeen = new Map<string, number>();
  const links = new LinkManager({
    identity,
    directory: trust,
    peerOf: (socket) => peerOf(socket, trust),
    hello: () => ({
      serverId: identity.serverId,
      name: config.name,
      host: config.publicHost,
      unsecurePort,
      securePort,
      heartbeatIntervalS: config.heartbeatIntervalS,
      leaseS: leaseMs / 1000,
      shapes: ctx.delegation.shapes(),
    }),
    handle: (peerId, method, params) => {
      peerSeen.set(peerId, Date.now());
      if (ctx.transfers.linkFiles.handles(method)) return ctx.transfers.linkFiles.handle(peerId, method, params);
      return ctx.delegation.handle(peerId, method, params);
    },
    onWork: () => ctx.dispatcher.kick(),
    onUp: (peerId) => {
      peerSeen.set(peerId, Date.now());
      ctx.delegation.linkUp(peerId);
    },
    log: (level, msg, fields) => log[level](msg, fields),
  });
  const eventSocket = new EventSocket({
    hub,
    authenticate: (token) => accounts.authenticate(token),
    project: (name) => store.model.projects.get(name),
    log,
    maxClients: config.maxEventClients,
    maxPending: config.maxEventPending,
    helloTimeoutMs: config.eventHelloTimeoutS * 1000,
  });
  // One listener routes websocket upgrades: the event stream, or the peer link.
  secure.on('upgrade', (req, socket, head) => {
    if (new URL(req.url ?? '/', 'http://x').pathname === EVENTS_PATH) eventSocket.upgrade(req, socket, head);
    else links.accept(req, socket, head);
  });
  // Idle stream clients learn the position; super users, changed peer links.
  // The same beat notes which peers are up, for `network`'s last seen (links are pinged every 10 s).
  const hubTimer = setInterval(() => {
    hub.tick();
    for (const p of trust.peers()) if (links.state(p.serverId) === 'up') peerSeen.set(p.serverId, Date.now());
  }, 2000);
  hubTimer.unref();
  ctx.delegation.links = links;
  ctx.transfers.links = links;
  ctx.delegation.directory = trust;
  ctx.linkState = (peerId) => links.state(peerId);
  ctx.peerLastSeen = (peerId) => (links.state(peerId) === 'up' ? Date.now() : (peerSeen.get(peerId) ?? null));
  trust.on('change', (e) => {
    if (e.kind === 'trusted' || e.kind === 'removed') reloadTls();
    if (e.kind === 'trusted' || e.kind === 'moved') links.ensure(e.serverId);
    hub.peersChanged();
    if (e.kind === 'removed') {
      links.drop(e.serverId);
      void ctx.delegation.peerGone(e.serverId).catch((err: unknown) => log.error('could not re-queue a removed peer’s jobs', { err: String(err) }));
    }
  });
  // Peers hear about new work the moment the queue's shapes change.
  const announcer = new WorkAnnouncer(() => ctx.delegation.shapes(), (shapes) => links.announce(shapes));
  store.model.onChange(() => announcer.changed());

  const sweeper = new Sweeper(ctx);
  sweeper.start();
  // Pilots reach the server where it listens, or by its public name when it listens everywhere.
  const pilotHost = config.host === '0.0.0.0' || config.host === '::' ? config.publicHost : config.host;
  ctx.pilots = await openPilots(ctx, home, () => `https://${formatHost(pilotHost)}:${securePort}`);
  ctx.pilots.start();
  // Jobs re-queued by recovery may be waiting for workers that reconnect.
  ctx.dispatcher.kick();

  const urlHost = config.host === '0.0.0.0' || config.host === '::' ? 'localhost' : config.host;
  log.info('listening', { securePort, unsecurePort, serverId: identity.serverId });
  handshake.start();
  links.start();

  let closed: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closed ??= (async () => {
      closing = true;
      sweeper.stop();
      await ctx.pilots?.stop();
      clearInterval(hubTimer);
      eventSocket.close();
      ctx.dispatcher.releaseAll();
      ctx.control.releaseAll();
      ctx.logs.releaseWaits();
      await handshake.close();
      links.close();
      await Promise.all([stop(secure!), stop(unsecure)]);
      await ctx.transfers.close();
      await store.snapshot();
      await ctx.logs.close();
      await store.close();
      await loginThrottle.close();
      hub.close();
      log.info('stopped');
    })();
    return closed;
  };

  return {
    url: `https://${formatHost(urlHost)}:${securePort}`,
    unsecureUrl: `http://${formatHost(urlHost)}:${unsecurePort}`,
    securePort,
    unsecurePort,
    serverId: identity.serverId,
    caPem: identity.caCertPem,
    caFingerprint: identity.caFingerprint,
    identity,
    adminPassword,
    config,
    settingSources,
    model: store.model,
    ctx,
    events: hub,
    metrics,
    createWorkerToken: async (name, user) => (await accounts.issue('worker', name, null, user !== undefined ? { user } : {})).token,
    reloadTls,
    close,
    stopRequested,
  };
}

function isSuperuser(accounts: Accounts, token: string): boolean {
  try {
    const who = accounts.authenticate(token);
    return who.kind === 'user' && who.superuser;
  } catch {
    return false;
  }
}

function formatHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

function listen(server: HttpServer | HttpsServer, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** Stops accepting, lets in-flight requests finish, then drops idle keep-alive connections. */
function stop(server: HttpServer | HttpsServer): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
    // Connections still busy after a grace period are cut.
    setTimeout(() => server.closeAllConnections(), 2000).unref();
  });
}
