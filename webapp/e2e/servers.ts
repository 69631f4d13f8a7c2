/**
 * Playwright global setup: starts the real servers on free ports, serving the production
 * build from `dist/`:
 *
 * - "real": `suiftly run` — metering with the API in the process (`[api] in_run`), an sf1 UDP
 *   listener (`E2E_INGEST_UDP`) for the usage tests — without DATABASE_URL, so it starts its
 *   embedded PostgreSQL (a private cluster run as the `postgres` user); it verifies every
 *   wallet signature;
 * - "mock": `MOCK_AUTH=true` on the same database (DATABASE_URL from the first one's
 *   `conninfo` file), for the one test of mock mode;
 * - "billing": a second `suiftly api` with its own embedded PostgreSQL, plus `suiftly manager`
 *   on that database (mock escrow, `watermark = "clock"`, its admin endpoint on a free port),
 *   so the billing tests see real invoices, charges and suspensions, and may move the
 *   manager's clock to the next month without disturbing the other tests' customers.
 *
 * The two clusters start in parallel, then the mock API and the manager (on those databases)
 * in parallel. The JWT secret is fixed so a test can mint an already-expired access token.
 * Logs go to `.e2e/*.log`. The returned function stops them all (SIGTERM: drain, then the
 * embedded PostgreSQL stops) — mock and manager first, since they use the others' databases.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
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

async function freePort(kind: 'tcp' | 'udp' = 'tcp'): Promise<number> {
  if (kind === 'udp') {
    const sock = dgram.createSocket('udp4');
    sock.bind(0, '127.0.0.1');
    await once(sock, 'listening');
    const port = sock.address().port;
    sock.close();
    return port;
  }
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
  /** The sf1 UDP listener (`run` only). */
  udp?: string | undefined;
}

type Command = 'api' | 'run' | 'manager';

async function start(name: string, dir: string, env: Record<string, string>, command: Command = 'api'): Promise<Server> {
  const port = await freePort();
  const dataDir = path.join(dir, name);
  const config = path.join(dir, `${name}.toml`);
  const lines = [
    `data_dir = ${JSON.stringify(dataDir)}`,
    '[api]',
    `listen = "127.0.0.1:${command === 'manager' ? await freePort() : port}"`,
    `metrics_listen = "127.0.0.1:${await freePort()}"`,
    `dashboard_origin = "http://127.0.0.1:${port}"`,
    `dashboard_dir = ${JSON.stringify(path.join(webapp, 'dist'))}`,
    '[manager]',
    // Inside `suiftly run` the manager is off: the "real" set bills nothing on its own, as
    // an API without a manager; the billing tests have their own manager.
    `enabled = ${command !== 'run'}`,
    'watermark = "clock"',
    `admin_listen = "127.0.0.1:${command === 'manager' ? port : await freePort()}"`,
    '[embedded_postgres]',
    'fsync_off = true',
  ];
  let udp: string | undefined;
  if (command === 'run') {
    // Metering with the API in the process (`[api] in_run`, the default): sf1 lines sent to
    // the UDP listener reach the usage page. Short settling delays, as in tests/live_tail.rs.
    udp = `127.0.0.1:${await freePort('udp')}`;
    lines.push(
      '[admin]',
      `listen = "127.0.0.1:${await freePort()}"`,
      '[metrics]',
      `listen = "127.0.0.1:${await freePort()}"`,
      '[aggregate]',
      'allowed_lateness_ms = 1000',
      'idle_lag_ms = 200',
      'settle_interval_ms = 100',
      '[batch]',
      'max_age_ms = 20',
      '[[listener]]',
      'name = "e2e"',
      'kind = "udp"',
      `address = "${udp}"`,
      'framing = "raw"',
      'payload = "sf1"',
    );
  }
  fs.writeFileSync(config, [...lines, ''].join('\n'));
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
      const r = await fetch(`${url}${command === 'manager' ? '/manager/health' : '/health'}`);
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
  return { name, url, proc, log, udp };
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
    const t = Date.now();
    // The mock server and the manager first (they use the others' databases), each pair at
    // the same time.
    const users = started.filter((s) => s.name === 'mock' || s.name === 'manager');
    await Promise.all(users.map(stop));
    await Promise.all(started.filter((s) => !users.includes(s)).map(stop));
    console.log(`servers: stopped in ${((Date.now() - t) / 1000).toFixed(1)} s`);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    const t0 = Date.now();
    // The two embedded clusters start at the same time (most of the set-up time).
    const [real, billing] = await Promise.allSettled([
      start('real', dir, { SUIFTLY_JWT_SECRET: TEST_JWT_SECRET }, 'run'),
      start('billing', dir, { SUIFTLY_JWT_SECRET: TEST_JWT_SECRET }),
    ]);
    for (const r of [real, billing]) if (r.status === 'fulfilled') started.push(r.value);
    for (const r of [real, billing]) if (r.status === 'rejected') throw r.reason;
    const realServer = (real as PromiseFulfilledResult<Server>).value;
    const billingUrl = (billing as PromiseFulfilledResult<Server>).value.url;
    const conninfo = fs.readFileSync(path.join(dir, 'real', 'conninfo'), 'utf8').trim();
    const billingConninfo = fs.readFileSync(path.join(dir, 'billing', 'conninfo'), 'utf8').trim();
    const t1 = Date.now();
    // The two that use those databases, also at the same time.
    const [mock, manager] = await Promise.allSettled([
      start('mock', dir, { SUIFTLY_JWT_SECRET: TEST_JWT_SECRET, DATABASE_URL: conninfo, MOCK_AUTH: 'true' }),
      start('manager', dir, { DATABASE_URL: billingConninfo }, 'manager'),
    ]);
    for (const r of [mock, manager]) if (r.status === 'fulfilled') started.push(r.value);
    for (const r of [mock, manager]) if (r.status === 'rejected') throw r.reason;
    console.log(`servers: metering+API and API with their clusters in ${((t1 - t0) / 1000).toFixed(1)} s, mock API and manager in ${((Date.now() - t1) / 1000).toFixed(1)} s`);
    process.env.E2E_BASE_URL = realServer.url;
    process.env.E2E_INGEST_UDP = realServer.udp;
    process.env.E2E_MOCK_URL = (mock as PromiseFulfilledResult<Server>).value.url;
    process.env.E2E_BILLING_URL = billingUrl;
    process.env.E2E_BILLING_CONNINFO = billingConninfo;
    process.env.E2E_MANAGER_URL = (manager as PromiseFulfilledResult<Server>).value.url;
  } catch (e) {
    await teardown();
    throw e;
  }
  return teardown;
}
