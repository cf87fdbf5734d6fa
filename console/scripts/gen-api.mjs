// Generates src/api/openapi.d.ts from the repository's OpenAPI document (api/openapi.json, served
// at /api/v1/openapi.json) with openapi-typescript; src/api/contract.ts names its schemas. CMake
// runs it before every build (GANTRY_OPENAPI names the document there).
import {execFileSync} from 'node:child_process';
import {existsSync} from 'node:fs';
import {dirname, join} from 'node:path';
import {fileURLToPath} from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const spec = process.env.GANTRY_OPENAPI ?? join(here, '..', '..', 'api', 'openapi.json');
if (!existsSync(spec)) {
  console.error(`gen:api: ${spec} does not exist (set GANTRY_OPENAPI to the repository's api/openapi.json)`);
  process.exit(1);
}
execFileSync('npx', ['--no-install', 'openapi-typescript', spec, '-o', join(here, '..', 'src', 'api', 'openapi.d.ts')], {stdio: 'inherit'});
