/**
 * Playwright global setup: starts the real `suiftly api` on free ports, serving the
 * production build from `dist/`:
 *
 * - "real": no DATABASE_URL, so it starts its embedded PostgreSQL (a private cluster run as
 *   the `postgres` user) and verifies every wallet signature;
 * - "mock": `MOCK_AUTH=true` on the same database (DATABASE_URL from the first one's
 *   `conninfo` file), for the one test of mock mode;
 * - "billing": a second `suiftly api` with its own embedded PostgreSQL, plus `suiftly manager`
 *   on that database (mock escrow, `watermark = "clock"`, its admin endpoint on a free port),
 *   so the billing tests see real invoices, charges and suspensions, and may move the
 *   manager's clock to the next month without disturbing the other tests' customers.
 *
 * The JWT secret is fixed so a test can mint an already-expired access token. Logs go to
 * `.e2e/*.log`. The returned function stops both (SIGTERM: drain, then the embedded
 * PostgreSQL stops) — mock first, since it uses the other's database.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

export const TEST_JWT_SECRET = 'e2e-jwt-secret-for-the-dashboard-tests-0123456789';

const webapp = path.resolve(import.meta.dirname, '..');
const repo = path.resolve(webapp, '..');

function binary(): string {
  if (process.env.SUIFTLY_BIN) return path.resolve(process.env.SUIFTLY_BIN);
  const target = process.env.CARGO_TARGET_DIR ? path.resolve(repo, process.env.CARGO_TARGET_DIR) : path.join(repo, 'target');
  return path.join(target, 'debug', 'suiftly');
}

async function freePort(): Promise<number> {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = (srv.address() as net.AddressInfo).port;
  srv.close();
  await once(srv, 'close');
  return port;
}

interface Server {
  name: string;
  url: string;
  proc: ChildProcess;
  log: string;
}

async function start(name: string, dir: string, env: Record<string, string>, command: 'api' | 'manager' = 'api'): Promise<Server> {
  const port = await freePort();
  const metricsPort = await freePort();
  const dataDir = path.join(dir, name);
  const config = path.join(dir, `${name}.toml`);
  fs.writeFileSync(
    config,
    [
      `data_dir = ${JSON.stringify(dataDir)}`,
      '[api]',
      `listen = "127.0.0.1:${command === 'api' ? port : await freePort()}"`,
      `metrics_listen = "127.0.0.1:${metricsPort}"`,
      `dashboard_origin = "http://127.0.0.1:${port}"`,
      `dashboard_dir = ${JSON.stringify(path.join(webapp, 'dist'))}`,
      '[manager]',
      'watermark = "clock"',
      `admin_listen = "127.0.0.1:${command === 'manager' ? port : await freePort()}"`,
      '[embedded_postgres]',
      'fsync_off = true',
      '',
    ].join('\n'),
  );
  const logDir = path.join(webapp, '.e2e');
  fs.mkdirSync(logDir, { recursive: true });
  const log = path.join(logDir, `${name}.log`);
  const out = fs.openSync(log, 'w');
  const childEnv: Record<string, string | undefined> = { ...process.env, ...env, RUST_LOG: process.env.RUST_LOG ?? 'info' };
  if (!('DATABASE_URL' in env)) delete childEnv.DATABASE_URL;
  if (!('MOCK_AUTH' in env)) delete childEnv.MOCK_AUTH;
  delete childEnv.SUIFTLY_API_LISTEN;
  delete childEnv.SUIFTLY_DASHBOARD_DIR;
  const proc = spawn(binary(), ['-c', config, command], { env: childEnv, stdio: ['ignore', out, out] });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 90_000;
  const exit: { code: number | null } = { code: null };
  proc.on('exit', (code) => (exit.code = code ?? -1));
  for (;;) {
    if (exit.code !== null) {
      throw new Error(`suiftly api (${name}) exited with ${exit.code} during start-up:\n${fs.readFileSync(log, 'utf8').slice(-3000)}`);
    }
    try {
      const r = await fetch(`${url}${command === 'api' ? '/health' : '/manager/health'}`);
      if (r.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`suiftly api (${name}) not healthy after 90 s:\n${fs.readFileSync(log, 'utf8').slice(-3000)}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { name, url, proc, log };
}

async function stop(s: Server) {
  if (s.proc.exitCode !== null || s.proc.signalCode !== null) return;
  const done = once(s.proc, 'exit');
  s.proc.kill('SIGTERM');
  const timeout = new Promise((r) => setTimeout(r, 20_000, 'timeout'));
  if ((await Promise.race([done, timeout])) === 'timeout') {
    console.error(`suiftly api (${s.name}) did not stop in 20 s: killing it (see ${s.log})`);
    s.proc.kill('SIGKILL');
  }
}

export default async function globalSetup() {
  const bin = binary();
  if (!fs.existsSync(bin)) throw new Error(`${bin} not found: build it with \`cargo build\` (or set SUIFTLY_BIN)`);
  if (!fs.existsSync(path.join(webapp, 'dist', 'index.html'))) throw new Error('webapp/dist is missing: run `npm run build` first');
  const dir = fs.mkdtempSync('/tmp/suiftly-e2e-');
  // The embedded cluster runs as the postgres user, which must be able to reach its data dir.
  fs.chmodSync(dir, 0o755);
  const started: Server[] = [];
  const teardown = async () => {
    // Reverse order: the mock server and the manager use the others' databases.
    for (const s of started.reverse()) await stop(s);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    // The two embedded clusters start at the same time (most of the set-up time).
    const [real, billing] = await Promise.allSettled([
      start('real', dir, { SUIFTLY_JWT_SECRET: TEST_JWT_SECRET }),
      start('billing', dir, { SUIFTLY_JWT_SECRET: TEST_JWT_SECRET }),
    ]);
    for (const r of [real, billing]) if (r.status === 'fulfilled') started.push(r.value);
    for (const r of [real, billing]) if (r.status === 'rejected') throw r.reason;
    const realUrl = (real as PromiseFulfilledResult<Server>).value.url;
    const billingUrl = (billing as PromiseFulfilledResult<Server>).value.url;
    const conninfo = fs.readFileSync(path.join(dir, 'real', 'conninfo'), 'utf8').trim();
    const billingConninfo = fs.readFileSync(path.join(dir, 'billing', 'conninfo'), 'utf8').trim();
    const mock = await start('mock', dir, { SUIFTLY_JWT_SECRET: TEST_JWT_SECRET, DATABASE_URL: conninfo, MOCK_AUTH: 'true' });
    started.push(mock);
    const manager = await start('manager', dir, { DATABASE_URL: billingConninfo }, 'manager');
    started.push(manager);
    process.env.E2E_BASE_URL = realUrl;
    process.env.E2E_MOCK_URL = mock.url;
    process.env.E2E_BILLING_URL = billingUrl;
    process.env.E2E_BILLING_CONNINFO = billingConninfo;
    process.env.E2E_MANAGER_URL = manager.url;
  } catch (e) {
    await teardown();
    throw e;
  }
  return teardown;
}
