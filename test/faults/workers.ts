import { type WriteStream, createWriteStream } from 'node:fs';
import { type WorkerProcess, startEngine } from '../../bench/harness';

/**
 * `node bin/billing.js worker` (the benchmarks' startEngine), its output appended to the run's
 * worker log with its pid on each line, and each line given to `onLine`.
 */
function startWorker(env: Record<string, string>, log: WriteStream, onLine: (pid: number, line: string) => void): WorkerProcess {
  let pid = 0;
  const worker = startEngine('worker', env, {
    onLine: (line) => {
      log.write(`${pid} ${line}\n`);
      onLine(pid, line);
    },
  });
  pid = worker.pid;
  void worker.exited.then((outcome) => log.write(`${pid} -- exited: ${outcome}\n`));
  return worker;
}

export interface UnexpectedExit {
  pid: number;
  outcome: string;
  lastLines: string[];
}

/** What a worker logs (jobs/worker.ts keepRepeatingJobs, at warn) when its check finds a job scheduler gone from Redis. */
const SCHEDULERS_MISSING = 'repeating jobs are missing from Redis';
/** What a worker logs (at info) once its BullMQ workers run; its job schedulers are registered a moment later. */
const WORKERS_STARTED = '"msg":"workers started"';

/**
 * `billing worker` child processes, the entry point an operator runs. The suite kills them with
 * SIGKILL and starts a replacement; an exit it did not cause is a crash, recorded (the worker must
 * never crash on its own) and replaced so the run can finish and show everything else.
 */
export class WorkerPool {
  private readonly slots: Array<WorkerProcess | undefined>;
  private readonly killedByUs = new Set<number>();
  private stopping = false;
  readonly unexpectedExits: UnexpectedExit[] = [];
  starts = 0;
  /** Every worker process started, and when (Date.now()). */
  readonly started: Array<{ pid: number; at: number }> = [];
  /** When a worker logged that it found a job scheduler missing from Redis (and registered them again). */
  readonly noticedMissingSchedulers: Array<{ pid: number; at: number }> = [];
  /** When each worker's start-up reached its BullMQ workers (after waiting for PostgreSQL and Redis if they were down). */
  private readonly running = new Map<number, number>();

  private readonly logFile: WriteStream;

  constructor(private readonly env: Record<string, string>, size: number, logPath: string, private readonly log: (message: string) => void) {
    this.slots = Array.from({ length: size }, () => undefined);
    this.logFile = createWriteStream(logPath, { flags: 'a' });
  }

  get size(): number {
    return this.slots.length;
  }

  startAll(): void {
    for (let i = 0; i < this.slots.length; i += 1) this.start(i);
  }

  start(slot: number): WorkerProcess {
    const worker = startWorker(this.env, this.logFile, (pid, line) => {
      if (line.includes(SCHEDULERS_MISSING)) this.noticedMissingSchedulers.push({ pid, at: Date.now() });
      if (line.includes(WORKERS_STARTED)) this.running.set(pid, Date.now());
    });
    this.starts += 1;
    this.started.push({ pid: worker.pid, at: Date.now() });
    this.slots[slot] = worker;
    void worker.exited.then((outcome) => {
      if (this.killedByUs.has(worker.pid) || this.stopping) return;
      this.unexpectedExits.push({ pid: worker.pid, outcome, lastLines: worker.output().slice(-30) });
      this.log(`worker ${worker.pid} exited on its own (${outcome}); starting a replacement`);
      if (this.slots[slot] === worker) this.start(slot);
    });
    return worker;
  }

  /** Slots with a live worker. */
  live(): number[] {
    return this.slots.flatMap((w, i) => (w && !w.hasExited() ? [i] : []));
  }

  /** The pids of the live workers. */
  livePids(): number[] {
    return this.live().flatMap((slot) => this.slots[slot]?.pid ?? []);
  }

  /** The pids of the live workers past their start-up: running jobs, with their job schedulers registered or about to be. */
  runningPids(): number[] {
    return this.livePids().filter((pid) => this.running.has(pid));
  }

  pid(slot: number): number | undefined {
    return this.slots[slot]?.pid;
  }

  /** SIGKILL: no shutdown handler runs, locks are not released, a half-sent email stays half-sent. */
  kill(slot: number): number | undefined {
    const worker = this.slots[slot];
    if (!worker || worker.hasExited()) return undefined;
    this.killedByUs.add(worker.pid);
    process.kill(worker.pid, 'SIGKILL');
    this.slots[slot] = undefined;
    return worker.pid;
  }

  /** Kills every live worker at once; returns their pids. Synchronous, so it can run inside a server callback. */
  killAll(): number[] {
    return this.live().flatMap((slot) => {
      const pid = this.kill(slot);
      return pid === undefined ? [] : [pid];
    });
  }

  /** Starts workers in the empty slots. */
  refill(): number[] {
    const started: number[] = [];
    this.slots.forEach((w, i) => {
      if (!w || w.hasExited()) started.push(this.start(i).pid);
    });
    return started;
  }

  /** SIGTERM every worker (graceful shutdown), SIGKILL after `graceMs`. */
  async stopAll(graceMs = 45_000): Promise<string[]> {
    this.stopping = true;
    return Promise.all(this.slots.map((w) => (w ? w.stop(graceMs) : Promise.resolve('not running'))));
  }

  /** SIGKILL whatever is left, for cleanup after a failure. */
  killRemaining(): void {
    this.stopping = true;
    for (const w of this.slots) if (w && !w.hasExited()) process.kill(w.pid, 'SIGKILL');
    this.logFile.end();
  }
}
