// One table of error codes for the whole project, and the exit status each maps to.
// An error carries a stable code and one sentence that quotes the bad value; the CLI
// decides exit statuses here and nowhere else.

export const ERROR_CODES = {
  USAGE: { exit: 2, what: 'bad invocation' },
  NOT_FOUND: { exit: 3, what: 'no such event' },
  AMBIGUOUS: { exit: 2, what: 'more than one event matches' },
  CONFIG_INVALID: { exit: 78, what: 'configuration error' },
  PERMISSION: { exit: 77, what: 'permission denied' },
  STORE_UNSAFE: { exit: 78, what: 'store directory is unsafe' },
  STORE_CORRUPT: { exit: 1, what: 'store is damaged' },
  INSTALL_FAILED: { exit: 1, what: 'install failed' },
  TOOL_MISSING: { exit: 69, what: 'a required program is missing' },
  TOOL_FAILED: { exit: 1, what: 'a helper program failed' },
  DAEMON_UNAVAILABLE: { exit: 69, what: 'the daemon is not running' },
  RATE_LIMITED: { exit: 75, what: 'suppressed by cooldown or maxPerDay' },
  ARCHIVE_INVALID: { exit: 65, what: 'the archive is refused' },
  MAIL_FAILED: { exit: 75, what: 'the mail could not be delivered (it stays queued)' },
  INTERNAL: { exit: 1, what: 'internal error' },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class FlightboxError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'FlightboxError';
  }
}

export function exitStatusFor(err: unknown): number {
  if (err instanceof FlightboxError) return ERROR_CODES[err.code].exit;
  return ERROR_CODES.INTERNAL.exit;
}

export function errnoCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string'
    ? err.code
    : undefined;
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
