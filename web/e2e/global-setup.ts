import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const ADMIN_EMAIL = 'admin@example.com';
export const ADMIN_PASSWORD = 'organiser-e2e-password';

/**
 * The address the server's HTTP listener bound: it listens on port 0 and writes its addresses to
 * `portsFile` (MYEVENTS_PORTS_FILE) once every listener is bound, whole or not at all. No free
 * port is guessed beforehand, so nothing can take it in between.
 */
async function waitBound(portsFile: string, child: ChildProcess, deadline: number): Promise<string> {
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`the backend exited with code ${child.exitCode} before it listened`);
    if (existsSync(portsFile)) return (JSON.parse(readFileSync(portsFile, 'utf8')) as { http: string }).http;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`the backend wrote no ${portsFile} in time`);
}

async function waitReady(portsFile: string, child: ChildProcess, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  const base = `http://${await waitBound(portsFile, child, deadline)}`;
  let last = '';
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`the backend exited with code ${child.exitCode} before it was ready`);
    try {
      const res = await fetch(`${base}/health/ready`);
      if (res.status === 200) return base;
      last = `HTTP ${res.status}`;
    } catch (err) {
      last = String(err);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`the backend was not ready within ${timeoutMs / 1000}s (last answer: ${last})`);
}

/** Starts a real `myevents serve` on ports it picks, with a fresh data directory; returns its teardown. */
export default async function globalSetup(): Promise<() => Promise<void>> {
  const bin = process.env.MYEVENTS_BIN ?? join(process.env.CARGO_TARGET_DIR ?? resolve(here, '../../target'), 'debug/myevents');
  if (!existsSync(bin)) throw new Error(`backend binary not found: ${bin} (set MYEVENTS_BIN)`);
  const webDir = resolve(here, '../dist');
  if (!existsSync(join(webDir, 'index.html'))) throw new Error(`no built UI in ${webDir}: run npm run build first`);

  const dataDir = mkdtempSync(join(tmpdir(), 'myevents-e2e-'));
  const logDir = resolve(here, '../test-results');
  mkdirSync(logDir, { recursive: true });
  const log = createWriteStream(join(logDir, 'backend.log'));
  const portsFile = join(dataDir, 'ports.json');

  const child = spawn(bin, ['serve'], {
    env: {
      ...process.env,
      MYEVENTS_LISTEN: '127.0.0.1:0',
      MYEVENTS_METRICS_LISTEN: '127.0.0.1:0',
      MYEVENTS_PORTS_FILE: portsFile,
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

  let base: string;
  try {
    base = await waitReady(portsFile, child, 60_000);
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
