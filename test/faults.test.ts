import { describe, expect, it } from 'vitest';
import { randomSeed } from './faults/rng';
import { runFaultSuite } from './faults/suite';

/**
 * The fault suite (`npm run test:faults`, test/faults/) in a size CI can afford: the whole pipeline
 * twice on generated data, once undisturbed and once while worker processes are SIGKILLed, the
 * suite's own PostgreSQL and Redis are restarted, Redis loses its data (no worker is restarted for
 * that: the running ones must put their job schedulers back within 30 s) and the SMTP server
 * defers and refuses mail; the two runs must end the same. It runs its own servers on free ports, never the
 * shared ones. FAULTS_SEED replays a run; FAULTS_CI_USAGES and FAULTS_CI_KILLS change its size;
 * FAULTS_KEEP=1 keeps its work directory (servers' data, worker logs, received mail).
 */

const SEED = Number(process.env.FAULTS_SEED ?? randomSeed());
const USAGES = Number(process.env.FAULTS_CI_USAGES ?? 10_000);
const KILLS = Number(process.env.FAULTS_CI_KILLS ?? 6);

describe('nothing lost, nothing billed twice (the fault suite, short)', () => {
  it(`a run disturbed by kills, server restarts, Redis data loss and SMTP failures ends as the undisturbed run (seed ${SEED})`, { timeout: 40 * 60_000 }, async () => {
    const lines: string[] = [];
    const report = await runFaultSuite({
      seed: SEED,
      usages: USAGES,
      files: 10,
      partnerships: 5,
      kills: KILLS,
      workers: 2,
      chunkRows: 500,
      keep: process.env.FAULTS_KEEP === '1',
      stallTimeoutMs: 10 * 60_000,
      log: (m) => lines.push(m),
    });
    console.log(lines.join('\n'));
    expect(report.problems, `fault suite seed ${SEED} (replay: npm run test:faults -- --seed ${SEED} --usages ${USAGES} --files 10 --kills ${KILLS} --workers 2 --chunk-rows 500)`).toEqual([]);
    expect(report.disturbed?.injector?.kills ?? 0).toBeGreaterThanOrEqual(KILLS);
    expect(report.ok).toBe(true);
  });
});
