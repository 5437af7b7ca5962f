import { setTimeout as sleep } from 'node:timers/promises';
import type { FaultMailbox } from './mailbox';
import type { Rng } from './rng';
import type { OwnPostgres, OwnRedis } from './services';
import type { WorkerPool } from './workers';

/**
 * The fault plan of a run, drawn from its seed before the run starts, and the injector that carries
 * it out. Faults during ingest and rating are tied to progress (a fraction of the rows ingested and
 * rated), so they land in the middle of work however fast the machine is; each then waits a random
 * moment more. Faults of the billing phase are timed from the billing request.
 */

export type Trigger = { phase: 'ingest'; at: number; jitterMs: number } | { phase: 'billing'; afterMs: number };

export type FaultAction =
  | { kind: 'kill-worker' }
  | { kind: 'restart-postgres'; mode: 'fast' | 'immediate'; downMs: number }
  | { kind: 'restart-redis'; mode: 'keep-data' | 'lose-data'; downMs: number }
  | { kind: 'flush-redis' }
  | { kind: 'smtp-451'; forMs: number }
  | { kind: 'kill-all-workers-at-next-accepted-email' };

export interface PlannedFault {
  trigger: Trigger;
  action: FaultAction;
}

export interface PlanOptions {
  kills: number;
  workers: number;
}

/**
 * At least `kills` SIGKILLs of single workers at random moments (and every live worker at once when
 * an email is accepted), a restart of each server, Redis losing its data three times, and the SMTP faults.
 */
export function planFaults(rng: Rng, opts: PlanOptions): PlannedFault[] {
  const plan: PlannedFault[] = [];
  const ingest = (at: number, action: FaultAction) => plan.push({ trigger: { phase: 'ingest', at, jitterMs: rng.int(0, 1500) }, action });
  const billing = (afterMs: number, action: FaultAction) => plan.push({ trigger: { phase: 'billing', afterMs }, action });

  // The single kills alone reach `kills`: the kill at the moment an email is accepted takes down the
  // workers alive then, which may be fewer than all of them (one may be waiting for its replacement).
  const singleKills = Math.max(2, opts.kills);
  const billingKills = Math.max(1, Math.floor(singleKills * 0.2));
  const ingestKills = singleKills - billingKills;
  for (let i = 0; i < ingestKills; i += 1) ingest(rng.between(0, 0.97), { kind: 'kill-worker' });
  for (let i = 0; i < billingKills; i += 1) billing(rng.int(0, 4000), { kind: 'kill-worker' });

  ingest(rng.between(0.2, 0.8), { kind: 'restart-postgres', mode: rng.pick(['fast', 'immediate'] as const), downMs: rng.int(1000, 4000) });
  ingest(rng.between(0.1, 0.9), { kind: 'restart-redis', mode: 'keep-data', downMs: rng.int(500, 3000) });
  // Redis losing its data: the jobs, the schedulers (with the reconciler's), the locks. No worker is
  // restarted for it: the running workers notice on their own (jobs/worker.ts keepRepeatingJobs: a
  // periodic check, SCHEDULE_CHECK_EVERY_MS, finds a scheduler missing; a reconnect reconciles in any
  // case), register the schedulers again and reconcile from PostgreSQL. The injector times that
  // recovery and the report shows it. The random kills above may still land near a loss.
  ingest(rng.between(0.15, 0.7), { kind: 'flush-redis' });
  ingest(rng.between(0.2, 0.75), { kind: 'restart-redis', mode: 'lose-data', downMs: rng.int(500, 2000) });

  // The billing request is a billing_runs row, so losing its job to a flush loses nothing either.
  billing(rng.int(300, 3000), { kind: 'flush-redis' });
  billing(0, { kind: 'smtp-451', forMs: rng.int(4000, 12_000) });
  billing(0, { kind: 'kill-all-workers-at-next-accepted-email' });
  billing(rng.int(200, 2500), { kind: 'restart-postgres', mode: rng.pick(['fast', 'immediate'] as const), downMs: rng.int(500, 3000) });
  if (rng.chance(0.5)) billing(rng.int(0, 5000), { kind: 'restart-redis', mode: 'keep-data', downMs: rng.int(300, 1500) });
  return plan;
}

export function describeAction(a: FaultAction): string {
  switch (a.kind) {
    case 'kill-worker': return 'SIGKILL a worker';
    case 'restart-postgres': return `restart PostgreSQL (${a.mode}, down ${a.downMs} ms)`;
    case 'restart-redis': return `restart Redis (${a.mode}, down ${a.downMs} ms)`;
    case 'flush-redis': return 'FLUSHALL Redis';
    case 'smtp-451': return `SMTP answers 451 for ${a.forMs} ms`;
    case 'kill-all-workers-at-next-accepted-email': return 'SIGKILL every worker the moment the SMTP server accepts the next email';
  }
}

export function describeTrigger(t: Trigger): string {
  return t.phase === 'ingest' ? `at ${(t.at * 100).toFixed(1)}% of ingest+rating` : `${t.afterMs} ms after the billing request`;
}

export interface Progress {
  phase: 'ingest' | 'billing' | 'done';
  /** Ingest and rating progress, 0..1. */
  fraction: number;
  billingRequestedAt?: number;
}

export interface Injected {
  atMs: number;
  what: string;
  detail: string;
}

/** How the workers came back from one loss of Redis's data, with no worker restarted for it. */
export interface Recovery {
  /** 'FLUSHALL' or 'restart without persistence'. */
  loss: string;
  /** Since the start of the run, when Redis was serving again, empty. */
  atMs: number;
  /** From then until every job scheduler was registered again; undefined: not within RECOVERY_LIMIT_MS. */
  backAfterMs?: number;
  /** Workers running (past their start-up) at the loss. */
  running: number[];
  /** Workers still starting at the loss (only when they took more than 30 s): they register the schedulers as they start. */
  starting: number[];
  /** Those of the running ones that logged finding the schedulers missing, and put them back. */
  noticedBy: number[];
  /** Worker processes started meanwhile (replacements after a random kill), which register the schedulers as they start. */
  startedMeanwhile: number[];
}

/** A loss whose schedulers are not back within this is a problem: the workers' schedule check runs every few seconds in the suite. */
export const RECOVERY_LIMIT_MS = 30_000;

/**
 * Carries out a plan against the run's servers, workers and mailbox. A killed worker is replaced
 * after a random pause, as a supervisor would. After Redis loses its data no worker is restarted:
 * the injector watches for the running workers to register the job schedulers again.
 */
export class FaultInjector {
  readonly injected: Injected[] = [];
  private readonly watched: Array<{ loss: string; lostAt: number; servingAt: number; backAt?: number; running: number[]; starting: number[] }> = [];
  kills = 0;
  private readonly started = Date.now();
  private readonly pending: Array<{ trigger: Trigger; action: FaultAction; due?: number }>;
  private readonly running: Promise<void>[] = [];
  private stopped = false;
  // Server faults run one after another: Redis cannot be flushed while it is down, nor restarted twice at once.
  private serverChain: Promise<void> = Promise.resolve();

  constructor(
    plan: PlannedFault[],
    private readonly env: {
      rng: Rng;
      pool: WorkerPool;
      postgres: OwnPostgres;
      redis: OwnRedis;
      mailbox: FaultMailbox;
      /** The ids of the job schedulers (jobs/worker.ts REPEATING_JOBS) not in Redis now. */
      missingSchedulers: () => Promise<string[]>;
      log: (m: string) => void;
    },
  ) {
    this.pending = [...plan];
  }

  get remaining(): number {
    return this.pending.length;
  }

  private record(what: string, detail: string): void {
    const entry = { atMs: Date.now() - this.started, what, detail };
    this.injected.push(entry);
    this.env.log(`  [fault +${(entry.atMs / 1000).toFixed(1)}s] ${what}${detail ? `: ${detail}` : ''}`);
  }

  /** Fires every planned fault whose moment has come; call it often. */
  tick(progress: Progress): void {
    if (this.stopped) return;
    const now = Date.now();
    for (const fault of [...this.pending]) {
      const t = fault.trigger;
      if (fault.due === undefined) {
        if (t.phase === 'ingest' && (progress.phase !== 'ingest' || progress.fraction >= t.at)) fault.due = now + t.jitterMs;
        if (t.phase === 'billing' && progress.billingRequestedAt !== undefined) fault.due = progress.billingRequestedAt + t.afterMs;
      }
      if (fault.due !== undefined && now >= fault.due) {
        this.pending.splice(this.pending.indexOf(fault), 1);
        const where = t.phase === 'ingest' ? `${(progress.fraction * 100).toFixed(1)}% ingested+rated` : `billing phase`;
        const attempt = () => this.perform(fault.action, where).catch((err: unknown) => this.record(`FAILED to inject ${describeAction(fault.action)}`, (err as Error).message));
        const onServer = ['restart-postgres', 'restart-redis', 'flush-redis'].includes(fault.action.kind);
        if (onServer) this.running.push((this.serverChain = this.serverChain.then(attempt)));
        else this.running.push(attempt());
      }
    }
  }

  private replaceLater(): void {
    const pause = this.env.rng.int(300, 3000);
    this.running.push(sleep(pause).then(() => {
      if (this.stopped) return;
      const started = this.env.pool.refill();
      if (started.length > 0) this.env.log(`  [+${((Date.now() - this.started) / 1000).toFixed(1)}s] started worker(s) ${started.join(', ')}`);
    }));
  }

  /**
   * Redis is made to lose its data only while every worker is past its start-up: a worker still
   * starting (waiting for a server that is down, say) registers the schedulers as it starts, and
   * would put them back without any running worker noticing the loss. Waits up to 30 s.
   */
  private async untilWorkersRunning(): Promise<void> {
    const { pool } = this.env;
    const since = Date.now();
    while (pool.runningPids().length < pool.size && Date.now() - since < 30_000) await sleep(100);
    const waited = Date.now() - since;
    if (pool.runningPids().length < pool.size) this.record('workers still starting', `${pool.runningPids().length} of ${pool.size} running after ${(waited / 1000).toFixed(1)} s; losing Redis's data anyway`);
    else if (waited >= 1000) this.record('waited for workers to finish starting', `${(waited / 1000).toFixed(1)} s`);
  }

  private workersNow(): { running: number[]; starting: number[] } {
    const running = this.env.pool.runningPids();
    return { running, starting: this.env.pool.livePids().filter((pid) => !running.includes(pid)) };
  }

  /**
   * Watches, without holding up the faults that follow, for the job schedulers to be back after Redis
   * lost its data at `lostAt`, with `atLoss` the live workers then, past their start-up or not.
   */
  private watchRecovery(loss: string, lostAt: number, atLoss: { running: number[]; starting: number[] }): void {
    const { missingSchedulers } = this.env;
    const watch: (typeof this.watched)[number] = { loss, lostAt, servingAt: Date.now(), ...atLoss };
    this.watched.push(watch);
    this.running.push((async () => {
      // Not cut short by stop(): the run may end before the workers' next check, which is then awaited.
      while (Date.now() - watch.servingAt < RECOVERY_LIMIT_MS) {
        // A failing look is Redis or the connection busy for a moment: look again.
        if ((await missingSchedulers().catch(() => ['?'])).length === 0) {
          watch.backAt = Date.now();
          break;
        }
        await sleep(100);
      }
      if (watch.backAt !== undefined) this.record('job schedulers back', `${((watch.backAt - watch.servingAt) / 1000).toFixed(1)} s after the ${loss}, no worker restarted for it`);
      else this.record('job schedulers NOT back', `within ${RECOVERY_LIMIT_MS / 1000} s after the ${loss}`);
    })());
  }

  /**
   * How each loss was recovered from, read from the workers' logs (read at the end of the run, so
   * that no line still in a pipe is missed): which running workers found the schedulers gone, and
   * which workers were started meanwhile.
   */
  get recoveries(): Recovery[] {
    const { pool } = this.env;
    return this.watched.map((w) => {
      const until = w.backAt ?? w.servingAt + RECOVERY_LIMIT_MS;
      return {
        loss: w.loss,
        atMs: w.servingAt - this.started,
        ...(w.backAt !== undefined ? { backAfterMs: w.backAt - w.servingAt } : {}),
        running: w.running,
        starting: w.starting,
        // The line is written just before the schedulers are registered again; it reaches the pipe a moment later.
        noticedBy: [...new Set(pool.noticedMissingSchedulers.filter((n) => n.at >= w.lostAt && n.at <= until + 2000 && w.running.includes(n.pid)).map((n) => n.pid))],
        startedMeanwhile: pool.started.filter((s) => s.at >= w.lostAt && s.at <= until).map((s) => s.pid),
      };
    });
  }

  private async perform(action: FaultAction, where: string): Promise<void> {
    const { pool, postgres, redis, mailbox, rng } = this.env;
    switch (action.kind) {
      case 'kill-worker': {
        for (let waited = 0; pool.live().length === 0 && waited < 15_000; waited += 100) await sleep(100);
        const live = pool.live();
        if (live.length === 0) throw new Error('no live worker to kill');
        const pid = pool.kill(rng.pick(live));
        this.kills += 1;
        this.record('SIGKILL worker', `pid ${pid} (${where}; kill #${this.kills})`);
        this.replaceLater();
        return;
      }
      case 'restart-postgres':
        this.record('PostgreSQL down', `${action.mode} stop, ${action.downMs} ms (${where})`);
        await postgres.restart(action.mode, action.downMs);
        this.record('PostgreSQL up', '');
        return;
      case 'restart-redis': {
        if (action.mode === 'lose-data') await this.untilWorkersRunning();
        const downAt = Date.now();
        const atLoss = this.workersNow();
        this.record('Redis down', `${action.mode === 'keep-data' ? 'SHUTDOWN SAVE (data kept)' : 'SIGKILL (data lost)'}, ${action.downMs} ms (${where})`);
        await redis.restart(action.mode, action.downMs);
        if (action.mode === 'lose-data') this.watchRecovery('restart without persistence', downAt, atLoss);
        this.record('Redis up', `${await redis.dbSize()} keys`);
        return;
      }
      case 'flush-redis': {
        await this.untilWorkersRunning();
        const before = await redis.dbSize();
        const flushedAt = Date.now();
        const atLoss = this.workersNow();
        await redis.flushAll();
        this.watchRecovery('FLUSHALL', flushedAt, atLoss);
        this.record('Redis FLUSHALL', `${before} keys lost (${where}); no worker is restarted for it`);
        return;
      }
      case 'smtp-451':
        mailbox.setTransientFailure(true);
        this.record('SMTP 451 on', `for ${action.forMs} ms`);
        await sleep(action.forMs);
        mailbox.setTransientFailure(false);
        this.record('SMTP 451 off', `${mailbox.refusals.transient} message(s) deferred`);
        return;
      case 'kill-all-workers-at-next-accepted-email':
        this.record('armed', 'SIGKILL every worker when the next email is accepted');
        mailbox.whenAccepted((n) => {
          mailbox.whenAccepted(undefined);
          const pids = pool.killAll();
          this.kills += pids.length;
          this.record('SIGKILL all workers at email acceptance', `message #${n} accepted, 250 not yet sent; pids ${pids.join(', ')}`);
          this.replaceLater();
        });
        return;
    }
  }

  /** Stops firing; waits for faults in progress (a server restart) and the recoveries being watched to finish. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.env.mailbox.whenAccepted(undefined);
    // A fault in progress may start watching a recovery meanwhile.
    for (let awaited = 0; awaited < this.running.length;) {
      const batch = this.running.slice(awaited);
      awaited = this.running.length;
      await Promise.all(batch);
    }
  }

  /** Planned faults of a phase not fired yet. */
  pendingIn(phase: Trigger['phase']): number {
    return this.pending.filter((f) => f.trigger.phase === phase).length;
  }
}
