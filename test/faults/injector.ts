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
  /** A fault that follows this one after a pause, whatever the progress (which may stop meanwhile). */
  then?: { afterMs: number; action: FaultAction };
}

export interface PlanOptions {
  kills: number;
  workers: number;
}

/** At least `kills` SIGKILLs in all, a restart of each server, Redis losing its data twice, and the SMTP faults. */
export function planFaults(rng: Rng, opts: PlanOptions): PlannedFault[] {
  const plan: PlannedFault[] = [];
  const ingest = (at: number, action: FaultAction, then?: PlannedFault['then']) =>
    plan.push({ trigger: { phase: 'ingest', at, jitterMs: rng.int(0, 1500) }, action, ...(then ? { then } : {}) });
  const billing = (afterMs: number, action: FaultAction) => plan.push({ trigger: { phase: 'billing', afterMs }, action });

  // The kill at the moment an email is accepted takes every live worker down at once.
  const singleKills = Math.max(2, opts.kills - opts.workers);
  const billingKills = Math.max(1, Math.floor(singleKills * 0.2));
  const ingestKills = singleKills - billingKills;
  for (let i = 0; i < ingestKills; i += 1) ingest(rng.between(0, 0.97), { kind: 'kill-worker' });
  for (let i = 0; i < billingKills; i += 1) billing(rng.int(0, 4000), { kind: 'kill-worker' });

  ingest(rng.between(0.2, 0.8), { kind: 'restart-postgres', mode: rng.pick(['fast', 'immediate'] as const), downMs: rng.int(1000, 4000) });
  ingest(rng.between(0.1, 0.9), { kind: 'restart-redis', mode: 'keep-data', downMs: rng.int(500, 3000) });
  // Redis losing its data: the jobs, the schedulers, the locks. What brings the work back is the
  // reconciler, which a worker runs when it starts; a running worker does not notice the loss (see
  // the report), so each loss is followed by a worker kill a few seconds later, as progress may stop.
  const followUp = () => ({ afterMs: rng.int(2000, 8000), action: { kind: 'kill-worker' } as const });
  ingest(rng.between(0.15, 0.7), { kind: 'flush-redis' }, followUp());
  const downMs = rng.int(500, 2000);
  ingest(rng.between(0.2, 0.75), { kind: 'restart-redis', mode: 'lose-data', downMs }, { ...followUp(), afterMs: downMs + rng.int(2000, 8000) });

  // The billing request is a billing_runs row, so losing its job to a flush loses nothing either.
  plan.push({ trigger: { phase: 'billing', afterMs: rng.int(300, 3000) }, action: { kind: 'flush-redis' }, then: followUp() });
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

/**
 * Carries out a plan against the run's servers, workers and mailbox. A killed worker is replaced
 * after a random pause, as a supervisor would.
 */
export class FaultInjector {
  readonly injected: Injected[] = [];
  kills = 0;
  private readonly started = Date.now();
  private readonly pending: Array<{ trigger: Trigger; action: FaultAction; then?: PlannedFault['then']; due?: number }>;
  private readonly running: Promise<void>[] = [];
  private stopped = false;
  // Server faults run one after another: Redis cannot be flushed while it is down, nor restarted twice at once.
  private serverChain: Promise<void> = Promise.resolve();

  constructor(
    plan: PlannedFault[],
    private readonly env: { rng: Rng; pool: WorkerPool; postgres: OwnPostgres; redis: OwnRedis; mailbox: FaultMailbox; log: (m: string) => void },
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
        if (fault.then) this.pending.push({ trigger: fault.trigger, action: fault.then.action, due: now + fault.then.afterMs });
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
      case 'restart-redis':
        this.record('Redis down', `${action.mode === 'keep-data' ? 'SHUTDOWN SAVE (data kept)' : 'SIGKILL (data lost)'}, ${action.downMs} ms (${where})`);
        await redis.restart(action.mode, action.downMs);
        this.record('Redis up', `${await redis.dbSize()} keys`);
        return;
      case 'flush-redis': {
        const before = await redis.dbSize();
        await redis.flushAll();
        this.record('Redis FLUSHALL', `${before} keys lost (${where})`);
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

  /** Stops firing; waits for faults in progress (a server restart) to finish. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.env.mailbox.whenAccepted(undefined);
    await Promise.all(this.running);
  }

  /** Planned faults of a phase not fired yet. */
  pendingIn(phase: Trigger['phase']): number {
    return this.pending.filter((f) => f.trigger.phase === phase).length;
  }
}
