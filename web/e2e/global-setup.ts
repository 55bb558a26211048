import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const ADMIN_EMAIL = 'admin@example.com';
export const ADMIN_PASSWORD = 'organiser-e2e-password';

function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.once('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => ok(port));
    });
  });
}

async function waitReady(base: string, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`the backend exited with code ${child.exitCode} before it was ready`);
    try {
      const res = await fetch(`${base}/health/ready`);
      if (res.status === 200) return;
      last = `HTTP ${res.status}`;
    } catch (err) {
      last = String(err);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`the backend was not ready within ${timeoutMs / 1000}s (last answer: ${last})`);
}

/** Starts a real `myevents serve` on free ports with a fresh data directory; returns its teardown. */
export default async function globalSetup(): Promise<() => Promise<void>> {
  const bin = process.env.MYEVENTS_BIN ?? join(process.env.CARGO_TARGET_DIR ?? resolve(here, '../../target'), 'debug/myevents');
  if (!existsSync(bin)) throw new Error(`backend binary not found: ${bin} (set MYEVENTS_BIN)`);
  const webDir = resolve(here, '../dist');
  if (!existsSync(join(webDir, 'index.html'))) throw new Error(`no built UI in ${webDir}: run npm run build first`);

  const [port, metricsPort] = [await freePort(), await freePort()];
  const dataDir = mkdtempSync(join(tmpdir(), 'myevents-e2e-'));
  const logDir = resolve(here, '../test-results');
  mkdirSync(logDir, { recursive: true });
  const log = createWriteStream(join(logDir, 'backend.log'));
  const base = `http://127.0.0.1:${port}`;

  const child = spawn(bin, ['serve'], {
    env: {
      ...process.env,
      MYEVENTS_LISTEN: `127.0.0.1:${port}`,
      MYEVENTS_METRICS_LISTEN: `127.0.0.1:${metricsPort}`,
      MYEVENTS_GRPC_LISTEN: '127.0.0.1:0',
      MYEVENTS_DATA_DIR: dataDir,
      MYEVENTS_WEB_DIR: webDir,
      MYEVENTS_ADMIN_EMAIL: ADMIN_EMAIL,
      MYEVENTS_ADMIN_PASSWORD: ADMIN_PASSWORD,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);

  try {
    await waitReady(base, child, 60_000);
  } catch (err) {
    child.kill('SIGKILL');
    throw new Error(`${(err as Error).message}; see test-results/backend.log`);
  }
  // Workers start after global setup and inherit its environment.
  process.env.MYEVENTS_BASE_URL = base;
  process.env.MYEVENTS_E2E_ADMIN_EMAIL = ADMIN_EMAIL;
  process.env.MYEVENTS_E2E_ADMIN_PASSWORD = ADMIN_PASSWORD;

  return async () => {
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      await new Promise<void>((r) => {
        const t = setTimeout(() => {
          child.kill('SIGKILL');
          r();
        }, 5000);
        child.once('exit', () => {
          clearTimeout(t);
          r();
        });
      });
    }
    log.end();
    rmSync(dataDir, { recursive: true, force: true });
  };
}
