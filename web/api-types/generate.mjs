// Writes the UI's API types (web/src/api-schema.ts) from the OpenAPI document on standard input
// (`myevents openapi`), or with --check only says whether the committed file is what the
// document makes. Run through scripts/api-types.sh.
import { readFileSync, writeFileSync } from 'node:fs';
import openapiTS, { astToString } from 'openapi-typescript';

const check = process.argv.includes('--check');
const target = new URL('../src/api-schema.ts', import.meta.url);
const document = JSON.parse(readFileSync(0, 'utf8'));
const banner =
  '// Generated from the OpenAPI document of the server (`myevents openapi`) by scripts/api-types.sh:\n' +
  '// do not edit. The hand-written names the UI uses are in types.ts.\n\n';
const generated = banner + astToString(await openapiTS(document));

if (!check) {
  writeFileSync(target, generated);
  console.log(`wrote ${target.pathname}`);
} else if (readFileSync(target, 'utf8') === generated) {
  console.log('ok     web/src/api-schema.ts is what the server code generates');
} else {
  console.log('FAILED web/src/api-schema.ts differs from what the server code generates: run scripts/api-types.sh');
  process.exitCode = 1;
}
