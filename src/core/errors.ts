/**
 * The one errors module. Every failure a client can see has a stable `code`;
 * clients branch on the code, never on the message. The HTTP status for each
 * code is decided here and nowhere else.
 */

export const ERROR_STATUS = {
  // 400: the request itself is malformed or names something invalid
  BAD_REQUEST: 400,
  INVALID_JSON: 400,
  INVALID_FIELD: 400,
  UNKNOWN_DEPENDENCY: 400,
  DEPENDENCY_CYCLE: 400,
  TOO_MANY_JOBS: 400,
  /** A job priority outside PRIORITY_MIN…PRIORITY_MAX. */
  PRIORITY_OUT_OF_RANGE: 400,
  INVALID_CERTIFICATE: 400,
  /** A file or value name that is absolute, climbs out with `..`, or holds NUL. */
  INVALID_PATH: 400,
  /** A name (of a job, worker or project) holding characters that act on a terminal: C0, DEL, C1, bidirectional controls. */
  CONTROL_CHARACTERS: 400,
  /** Bytes that do not hash to the checksum they were sent with. */
  CHECKSUM_MISMATCH: 400,
  /** A transfer that ended before its announced size. */
  TRANSFER_INCOMPLETE: 400,
  // 401/403: who you are, and what you may do
  UNAUTHENTICATED: 401,
  BAD_CREDENTIALS: 401,
  FORBIDDEN: 403,
  // federation: an answer or notice that does not prove where it comes from
  BAD_NONCE: 403,
  BAD_SIGNATURE: 403,
  // 404: the thing does not exist (or you may not know it exists)
  ROUTE_NOT_FOUND: 404,
  PROJECT_NOT_FOUND: 404,
  JOB_NOT_FOUND: 404,
  WORKER_NOT_FOUND: 404,
  TOKEN_NOT_FOUND: 404,
  ATTEMPT_NOT_FOUND: 404,
  LOG_NOT_FOUND: 404,
  PEER_NOT_FOUND: 404,
  USER_NOT_FOUND: 404,
  REQUEST_NOT_FOUND: 404,
  FILE_NOT_FOUND: 404,
  VALUE_NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  // 409: the request conflicts with the current state
  PROJECT_EXISTS: 409,
  USER_EXISTS: 409,
  /** A loaded project names a job id this server already has. */
  JOB_EXISTS: 409,
  INVALID_STATE: 409,
  /** A local file a download would replace, and no --force to say it may. */
  FILE_EXISTS: 409,
  /** A part of a job or worker id that fits more than one; the message lists them. */
  AMBIGUOUS_ID: 409,
  STALE_ATTEMPT: 409,
  PEER_CA_MISMATCH: 409,
  /** A worker token that has as many workers registered as it allows. */
  TOO_MANY_WORKERS: 409,
  /** A worker whose jobs would share its identity, with a token not bound to one user, and not told to share. */
  ISOLATION_REQUIRED: 409,
  FINGERPRINT_MISMATCH: 409,
  /** A connection request that other requests in the same server's name contradict: trusting it needs its fingerprint. */
  CONFLICTING_REQUESTS: 409,
  /** The user's projects already hold as many unfinished jobs, or bytes of them, as the server allows. */
  QUEUE_FULL: 409,
  // 408/413/415/429/431: limits at the edge, each with its own code
  HEADERS_TIMEOUT: 408,
  REQUEST_TIMEOUT: 408,
  BODY_TOO_LARGE: 413,
  LOG_TOO_LARGE: 413,
  FILE_TOO_LARGE: 413,
  QUOTA_EXCEEDED: 413,
  /** A job's command or environment too large to start a process with, or over the server's limit. */
  ARGV_TOO_LARGE: 413,
  ENV_TOO_LARGE: 413,
  LENGTH_REQUIRED: 411,
  UNSUPPORTED_MEDIA_TYPE: 415,
  TOO_MANY_REQUESTS: 429,
  HEADERS_TOO_LARGE: 431,
  // 5xx: our fault or our state
  INTERNAL: 500,
  SHUTTING_DOWN: 503,
  JOURNAL_FAILED: 503,
  /** The server's disk has no room: changes are refused until it has (reads go on). */
  DISK_FULL: 503,
  // 502: a peer server could not be reached or answered wrongly
  PEER_UNREACHABLE: 502,
  PEER_BAD_ANSWER: 502,
  PEER_REFUSED: 502,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

export class CpcError extends Error {
  readonly code: ErrorCode;
  readonly details?: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'CpcError';
    this.code = code;
    this.details = details;
  }

  get status(): number {
    return ERROR_STATUS[this.code];
  }
}

/** Shorthand used throughout the domain: `throw fail('JOB_NOT_FOUND', ...)`. */
export function fail(code: ErrorCode, message: string, details?: Record<string, unknown>): CpcError {
  return new CpcError(code, message, details);
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERROR_STATUS, value);
}
