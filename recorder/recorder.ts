// The flight-recorder interface every backend implements. A recorder runs all the time;
// freeze() stops it overwriting its history as fast as possible (the crash handler asks
// for this before it reads a core), snapshot() copies the frozen history into a directory,
// thaw() resumes recording. Any number of recorders run at once.

export const RECORDER_NAMES = ['metrics', 'ftrace', 'lttng'] as const;
export type RecorderName = (typeof RECORDER_NAMES)[number];

export type RecorderState = 'stopped' | 'starting' | 'running' | 'frozen' | 'failed';

export interface RecorderStatus {
  name: RecorderName;
  state: RecorderState;
  /** total buffer capacity in bytes (all CPUs), when known */
  bufferBytes: number | null;
  /** bytes currently held, when known */
  usedBytes: number | null;
  /** events the backend had to drop (overruns, lost sub-buffers), when known */
  eventsLost: number | null;
  /** one line for humans: what is recorded, where */
  detail: string;
  /** the last error, for a failed recorder */
  error: string | null;
}

export interface SnapshotResult {
  /** files written, relative to the snapshot directory */
  files: string[];
  /** problems that did not prevent the snapshot ("kernel domain unavailable, user space only") */
  warnings: string[];
  /** time span covered, when known (ms since the epoch) */
  from: number | null;
  to: number | null;
}

export interface Recorder {
  readonly name: RecorderName;
  /** Begin recording. Throws RecorderUnavailable when the backend cannot run here. */
  start(): Promise<void>;
  /** Stop overwriting the history. Fast (milliseconds); idempotent. */
  freeze(): Promise<void>;
  /**
   * Write the recorded history into `dir` (an existing, empty directory of ours). Must
   * finish before `deadline` (ms since the epoch) or give up with what it has. Freezes
   * first if not frozen; does not thaw.
   */
  snapshot(dir: string, deadline: number): Promise<SnapshotResult>;
  /** Resume recording after freeze/snapshot; idempotent. */
  thaw(): Promise<void>;
  /** Stop and leave nothing behind (tracefs instance, lttng session). Safe to call twice. */
  stop(): Promise<void>;
  status(): RecorderStatus;
}

/** The backend cannot run on this machine (no tracefs, no lttng, not root): say why. */
export class RecorderUnavailable extends Error {
  constructor(readonly recorder: RecorderName, message: string) {
    super(message);
    this.name = 'RecorderUnavailable';
  }
}
