// Generates src/api/openapi.d.ts from the repository's OpenAPI document (api/openapi.json, served
// at /api/v1/openapi.json) with openapi-typescript. Until that document lands, the types are the
// hand-written src/api/contract.ts; this says so and fails rather than writing nothing.
import {execFileSync} from 'node:child_process';
import {existsSync} from 'node:fs';
import {dirname, join} from 'node:path';
import {fileURLToPath} from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const spec = process.env.GANTRY_OPENAPI ?? join(here, '..', '..', 'api', 'openapi.json');
if (!existsSync(spec)) {
  console.error(`gen:api: ${spec} does not exist yet; the console uses src/api/contract.ts until it does`);
  process.exit(1);
}
execFileSync('npx', ['--no-install', 'openapi-typescript', spec, '-o', join(here, '..', 'src', 'api', 'openapi.d.ts')], {stdio: 'inherit'});
