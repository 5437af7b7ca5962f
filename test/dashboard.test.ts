import type { AddressInfo } from 'node:net';
import { type ServerType, serve } from '@hono/node-server';
import { type Job, Worker } from 'bullmq';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QUEUE_NAMES } from '../jobs/catalog';
import { createRedis } from '../jobs/queues';
import { createApp } from '../src/api/app';
import { SESSION_TTL_SECONDS, createSessions } from '../src/api/auth';
import { type TestContext, TEST_TOKEN, createTestContext } from './support/test-context';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** A deliver-email job that really failed: taken by a worker with a lock token and moved to failed. */
async function failedDelivery(ctx: TestContext, deliveryId: number): Promise<Job> {
  const added = await ctx.deps.queues.get('deliver-email').add('deliver-email', { deliveryId }, { attempts: 1 });
  const worker = new Worker('deliver-email', null, { connection: createRedis(ctx.deps.config.redisUrl), prefix: ctx.deps.config.queuePrefix });
  try {
    const token = `test-${added.id}`;
    const job = (await worker.getNextJob(token)) as Job | undefined;
    if (!job || job.id !== added.id) throw new Error(`expected to take job ${added.id}, got ${job?.id}`);
    await job.moveToFailed(new Error('550 mailbox unavailable'), token, false);
    return job;
  } finally {
    await worker.close();
  }
}

/** Logs in through the form endpoint and returns the session cookie (name=value) it set. */
async function login(app: ReturnType<typeof createApp>, token = TEST_TOKEN): Promise<{ res: Response; cookie: string | undefined }> {
  const res = await app.request('/admin/login', {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token, next: '/admin/queues' }).toString(),
  });
  return { res, cookie: res.headers.get('set-cookie')?.split(';')[0] };
}

describe('the queue dashboard in a browser', () => {
  let ctx: TestContext;
  let server: ServerType;
  let base: string;
  let browser: Browser;

  beforeAll(async () => {
    ctx = await createTestContext();
    // The real API on an ephemeral port, as `billing api` serves it.
    server = serve({ fetch: createApp(ctx.deps).fetch, hostname: '127.0.0.1', port: 0 });
    await new Promise<void>((resolve) => server.once('listening', () => resolve()));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  });

  afterAll(async () => {
    await browser?.close();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    await ctx?.close();
  });

  it('logs in with a token, lists every queue, and retries a failed job from the page', async () => {
    const job = await failedDelivery(ctx, 42);
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.on('console', (m) => {
      // The dashboard links a web font from Google; the content security policy blocks it (nothing
      // leaves this machine) and the page falls back to local fonts. The login form is itself a 401.
      const loginForm = /status of 401/.test(m.text()) && /\/admin\/(queues|login)$/.test(m.location().url);
      if (m.type() === 'error' && !/fonts\.googleapis\.com/.test(m.text()) && !loginForm) problems.push(`console: ${m.text()}`);
    });
    page.on('response', (r) => {
      if (r.url().includes('/admin/queues/api/') && r.status() >= 400) problems.push(`${r.status()} from ${r.url()}`);
    });

    // Not logged in: the page is the login form, answered with 401.
    const first = await page.goto(`${base}/admin/queues`);
    expect(first?.status()).toBe(401);
    await page.fill('#token', 'not-the-token-at-all-000');
    await page.click('button[type=submit]');
    await page.getByText('That token is not valid.').waitFor();

    await page.fill('#token', TEST_TOKEN);
    await Promise.all([page.waitForURL(`${base}/admin/queues`), page.click('button[type=submit]')]);
    const cookies = await page.context().cookies();
    expect(cookies.map((c) => ({ name: c.name, httpOnly: c.httpOnly, sameSite: c.sameSite, secure: c.secure, path: c.path }))).toEqual([
      { name: 'billing_session', httpOnly: true, sameSite: 'Strict', secure: false, path: '/admin' },
    ]);

    // Every queue of the catalog is listed.
    for (const name of QUEUE_NAMES) await page.getByText(name, { exact: true }).first().waitFor();

    // Open the failing queue's failed jobs and retry the job with its Retry button.
    await page.getByText('deliver-email', { exact: true }).first().click();
    await page.locator('a[href$="/queue/deliver-email?status=failed"]').click();
    await page.getByText('550 mailbox unavailable').first().waitFor();
    const retry = page.locator('[data-base-ui-tooltip-trigger] button:has(svg.lucide-refresh-cw)').first();
    await retry.hover();
    await page.getByText('Retry', { exact: true }).waitFor();
    await retry.click();
    await page.getByText('Are you sure that you want to retry this job?').waitFor();
    const [response] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === 'PUT' && r.url().endsWith(`/admin/queues/api/queues/deliver-email/${job.id}/retry`)),
      page.getByRole('button', { name: 'Confirm' }).click(),
    ]);
    expect(response.status()).toBeLessThan(300);

    // Redis says so: out of the failed set, back on the wait list.
    const prefix = `${ctx.deps.config.queuePrefix}:deliver-email`;
    expect(await ctx.deps.redis.zscore(`${prefix}:failed`, job.id!)).toBeNull();
    expect(await ctx.deps.redis.lrange(`${prefix}:wait`, 0, -1)).toContain(job.id);
    expect(await ctx.deps.queues.get('deliver-email').getJobState(job.id!)).toBe('waiting');
    expect(problems).toEqual([]);
    await page.close();
  });

  it('serves the API reference page to a logged-in browser', async () => {
    const page = await browser.newPage();
    await page.goto(`${base}/admin/queues`);
    await page.fill('#token', TEST_TOKEN);
    await Promise.all([page.waitForURL(`${base}/admin/queues`), page.click('button[type=submit]')]);
    const res = await page.goto(`${base}/admin/docs`);
    expect(res?.status()).toBe(200);
    await page.getByText('/queues/{name}/jobs/{id}/retry').first().waitFor();
    // Logging out ends the session: the next page is the login form again.
    await Promise.all([page.waitForURL(`${base}/admin/queues`), page.getByRole('button', { name: 'Log out' }).click()]);
    await page.locator('#token').waitFor();
    expect(await page.context().cookies()).toEqual([]);
    await page.close();
  });
});

describe('dashboard sessions', () => {
  let ctx: TestContext;
  let app: ReturnType<typeof createApp>;

  beforeAll(async () => {
    ctx = await createTestContext();
    app = createApp(ctx.deps);
  });

  afterAll(async () => {
    await ctx?.close();
  });

  it('exchanges a valid token for an HttpOnly, SameSite=Strict session cookie and sends the browser back', async () => {
    const { res, cookie } = await login(app);
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/admin/queues');
    expect(res.headers.get('set-cookie')).toBe(`${cookie}; Path=/admin; Max-Age=${SESSION_TTL_SECONDS}; HttpOnly; SameSite=Strict`);
    expect((await app.request('/admin/queues/api/queues', { headers: { Cookie: cookie! } })).status).toBe(200);
  });

  it('marks the cookie Secure when the request came over HTTPS', async () => {
    const res = await app.request('/admin/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', 'X-Forwarded-Proto': 'https' },
      body: new URLSearchParams({ token: TEST_TOKEN }).toString(),
    });
    expect(res.headers.get('set-cookie')).toMatch(/; HttpOnly; SameSite=Strict; Secure$/);
  });

  it('refuses a wrong token with 401 and no cookie', async () => {
    const { res, cookie } = await login(app, 'wrong-token-wrong-token');
    expect(res.status).toBe(401);
    expect(cookie).toBeUndefined();
    expect(await res.text()).toContain('That token is not valid.');
  });

  it('never redirects outside the admin pages after login', async () => {
    for (const next of ['https://evil.example/', '//evil.example/x', '/queues', '/admin/../x\\y']) {
      const res = await app.request('/admin/login', {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token: TEST_TOKEN, next }).toString(),
      });
      expect(res.headers.get('location'), next).toBe('/admin/queues');
    }
  });

  it('refuses forged, tampered and expired cookies', async () => {
    const { cookie } = await login(app);
    const value = cookie!.split('=')[1]!;
    const [version, expires, signature] = value.split('.');
    const otherKey = createSessions(['some-other-token-0123456789']);
    const expired = createSessions([TEST_TOKEN]).issue(Date.now() - (SESSION_TTL_SECONDS + 60) * 1000);
    for (const [label, forged] of [
      ['a later expiry with the old signature', `${version}.${Number(expires) + 3600}.${signature}`],
      ['a signature made with another key', otherKey.issue(Date.now())],
      ['an expired session', expired],
      ['the token itself', TEST_TOKEN],
      ['garbage', 'v1.1.x'],
    ] as const) {
      const res = await app.request('/admin/queues/api/queues', { headers: { Cookie: `billing_session=${forged}` } });
      expect(res.status, label).toBe(401);
    }
  });

  it('refuses a cookie-authenticated change from another site (403), and allows it from the page', async () => {
    const job = await failedDelivery(ctx, 7);
    const { cookie } = await login(app);
    const retry = (headers: Record<string, string>) => app.request(`/admin/queues/api/queues/deliver-email/${job.id}/retry`, { method: 'PUT', headers: { Cookie: cookie!, Host: 'localhost', ...headers } });
    expect((await retry({ Origin: 'https://evil.example' })).status).toBe(403);
    expect((await retry({ 'Sec-Fetch-Site': 'cross-site' })).status).toBe(403);
    expect(await ctx.deps.queues.get('deliver-email').getJobState(job.id!)).toBe('failed');
    expect((await retry({ Origin: 'http://localhost', 'Sec-Fetch-Site': 'same-origin' })).status).toBeLessThan(300);
    expect(await ctx.deps.queues.get('deliver-email').getJobState(job.id!)).toBe('waiting');
  });

  it('accepts the bearer token on the dashboard too, and never the cookie on the JSON API', async () => {
    expect((await app.request('/admin/queues/api/queues', { headers: { Authorization: `Bearer ${TEST_TOKEN}` } })).status).toBe(200);
    const { cookie } = await login(app);
    expect((await app.request('/queues', { headers: { Cookie: cookie! } })).status).toBe(401);
    expect((await app.request('/metrics', { headers: { Cookie: cookie! } })).status).toBe(401);
  });

  it('answers a page request without a session with the login form, and an API call with JSON', async () => {
    const page = await app.request('/admin/queues/queue/deliver-email', { headers: { Accept: 'text/html' } });
    expect(page.status).toBe(401);
    const html = await page.text();
    expect(html).toContain('<form method="post" action="/admin/login">');
    expect(html).toContain('name="next" value="/admin/queues/queue/deliver-email"');
    const api = await app.request('/admin/queues/api/queues', { headers: { Accept: 'application/json' } });
    expect(api.status).toBe(401);
    expect(await api.json()).toEqual({ error: 'unauthorized', message: 'a valid bearer token is required' });
  });
});
