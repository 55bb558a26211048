// Checks every dashboard of deploy/grafana/dashboards against schema.ts (Grafana's published
// types): writes each JSON as a typed constant into generated/dashboards.ts and runs tsc on it.
// Prints `ok …` / `FAILED …` per dashboard and exits non-zero on any failure.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dashboards = join(here, '..', 'dashboards');
const files = readdirSync(dashboards).filter((f) => f.endsWith('.json')).sort();
if (files.length === 0) {
  console.log('FAILED no dashboard in deploy/grafana/dashboards');
  process.exit(1);
}

// One constant per dashboard; the line each starts on tells which dashboard an error is in.
let source = "import type { DashboardJson } from '../schema';\n";
const starts = [];
for (const [i, file] of files.entries()) {
  const json = JSON.stringify(JSON.parse(readFileSync(join(dashboards, file), 'utf8')), null, 2);
  starts.push([source.split('\n').length, file]);
  source += `// ${file}\nexport const dashboard${i}: DashboardJson = ${json};\n`;
}
mkdirSync(join(here, 'generated'), { recursive: true });
writeFileSync(join(here, 'generated', 'dashboards.ts'), source);

let output = '';
try {
  execFileSync(join(here, 'node_modules', '.bin', 'tsc'), ['--noEmit', '-p', here], { encoding: 'utf8' });
} catch (error) {
  output = `${error.stdout ?? ''}${error.stderr ?? ''}`;
  if (!output.trim()) output = String(error);
}
const fileOf = (line) => starts.filter(([start]) => start <= line).at(-1)?.[1];
const errors = new Map(files.map((f) => [f, []]));
const other = [];
for (const message of output.split(/\n(?=\S)/).filter((m) => m.trim())) {
  const at = message.match(/generated\/dashboards\.ts\((\d+),\d+\)/);
  const file = at && fileOf(Number(at[1]));
  (file ? errors.get(file) : other).push(message.trim());
}
let failed = 0;
for (const [file, messages] of errors) {
  if (messages.length === 0) {
    console.log(`ok     ${file} matches @grafana/schema`);
  } else {
    failed++;
    console.log(`FAILED ${file} does not match @grafana/schema`);
    for (const m of messages) console.log(m.replace(/^/gm, '       '));
  }
}
if (other.length > 0) {
  failed++;
  console.log('FAILED tsc');
  for (const m of other) console.log(m.replace(/^/gm, '       '));
}
process.exit(failed ? 1 : 0);
