// Writes FILE.gz beside every .js, .css, .html and .svg in DIR (the built console), so the server
// answers gzip without compressing at run time. Deterministic (no name, no mtime in the header),
// so the embedded bytes and the ccache of the generated source stay the same for the same input.
import {readdirSync, readFileSync, statSync, writeFileSync} from 'node:fs';
import {join} from 'node:path';
import {gzipSync} from 'node:zlib';

const dir = process.argv[2];
if (!dir) {
  console.error('usage: node scripts/compress.mjs DIR');
  process.exit(2);
}
let js = 0;
for (const walk = [dir]; walk.length > 0;) {
  const d = walk.pop();
  for (const name of readdirSync(d)) {
    const p = join(d, name);
    if (statSync(p).isDirectory()) walk.push(p);
    else if (/\.(js|css|html|svg)$/.test(name)) {
      const gz = gzipSync(readFileSync(p), {level: 9});
      writeFileSync(`${p}.gz`, gz);
      if (name.endsWith('.js')) js += gz.length;
    }
  }
}
console.log(`console: ${(js / 1024).toFixed(1)} KiB of gzipped JavaScript`);
