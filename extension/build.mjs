// Builds the unpacked extension into dist/: bundles the result page (with web/src/detector.js and
// onnxruntime-web), copies the service worker, page, icons, the runtime's wasm and the bundled detector model.
//
//   npm ci && npm run build
//
// Overrides (for development): AUDIOS_DETECTOR_JS (default ../web/src/detector.js) and
// AUDIOS_MODEL_DIR (default ../src/audios/data/default_detector, must hold model.onnx and detector.json).
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import * as esbuild from 'esbuild';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(HERE, '..');
const DIST = join(HERE, 'dist');
const DETECTOR_JS = resolve(process.env.AUDIOS_DETECTOR_JS || join(REPO, 'web', 'src', 'detector.js'));
const MODEL_DIR = resolve(process.env.AUDIOS_MODEL_DIR || join(REPO, 'src', 'audios', 'data', 'default_detector'));
const MODEL_FILES = ['model.onnx', 'detector.json'];
const ORT_DIST = join(HERE, 'node_modules', 'onnxruntime-web', 'dist');
// The wasm-only (CPU) build of the runtime: no WebGPU/WebGL code, and one .wasm file to ship.
const ORT_ENTRY = join(ORT_DIST, 'ort.wasm.bundle.min.mjs');

function fail(message) {
  console.error(`build: ${message}`);
  process.exit(1);
}

function sha256(path) {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

if (!existsSync(DETECTOR_JS)) fail(`${DETECTOR_JS} not found (the in-browser detector of web/; set AUDIOS_DETECTOR_JS)`);
for (const f of MODEL_FILES) {
  if (!existsSync(join(MODEL_DIR, f))) fail(`${join(MODEL_DIR, f)} not found (the bundled ONNX detector; set AUDIOS_MODEL_DIR)`);
}
if (!existsSync(ORT_ENTRY)) fail(`${ORT_ENTRY} not found: run \`npm ci\` in extension/ first`);

// Every import of onnxruntime-web (from this extension or from web/src/detector.js) gets this extension's copy,
// so the one runtime in the bundle matches the one .wasm file shipped beside it.
const resolveShared = {
  name: 'audios-resolve',
  setup(build) {
    build.onResolve({ filter: /^onnxruntime-web(\/.*)?$/ }, () => ({ path: ORT_ENTRY }));
    build.onResolve({ filter: /^audios-detector$/ }, () => ({ path: DETECTOR_JS }));
  },
};

rmSync(DIST, { recursive: true, force: true });
mkdirSync(join(DIST, 'model'), { recursive: true });
mkdirSync(join(DIST, 'ort'), { recursive: true });
mkdirSync(join(DIST, 'icons'), { recursive: true });

const built = await esbuild.build({
  entryPoints: [join(HERE, 'src', 'result.js')],
  outfile: join(DIST, 'result.js'),
  bundle: true,
  format: 'esm',
  target: ['chrome116'],
  minify: true,
  legalComments: 'linked',
  plugins: [resolveShared],
  logLevel: 'warning',
  metafile: true,
});

// The .wasm files the bundled runtime asks for, with their .mjs loaders: given a wasmPaths prefix, the runtime
// imports the loader from there too instead of using the copy inlined in the bundle.
const bundleText = readFileSync(join(DIST, 'result.js'), 'utf8');
const wasmNames = [...new Set(bundleText.match(/ort-wasm-simd-threaded[a-z.]*\.wasm/g) || [])]
  .filter((n) => existsSync(join(ORT_DIST, n)));
if (wasmNames.length === 0) fail('the bundle references no onnxruntime-web .wasm file');
for (const n of wasmNames) {
  copyFileSync(join(ORT_DIST, n), join(DIST, 'ort', n));
  const loader = n.replace(/\.wasm$/, '.mjs');
  if (existsSync(join(ORT_DIST, loader))) copyFileSync(join(ORT_DIST, loader), join(DIST, 'ort', loader));
}

for (const f of ['background.js', 'result.html', 'result.css']) copyFileSync(join(HERE, 'src', f), join(DIST, f));
for (const f of readdirSync(join(HERE, 'icons'))) copyFileSync(join(HERE, 'icons', f), join(DIST, 'icons', f));
for (const f of MODEL_FILES) copyFileSync(join(MODEL_DIR, f), join(DIST, 'model', f));
copyFileSync(join(HERE, 'manifest.json'), join(DIST, 'manifest.json'));

const info = {
  detector_js: DETECTOR_JS,
  detector_js_sha256: sha256(DETECTOR_JS),
  model_dir: MODEL_DIR,
  model_sha256: Object.fromEntries(MODEL_FILES.map((f) => [f, sha256(join(MODEL_DIR, f))])),
  onnxruntime_web: JSON.parse(readFileSync(join(HERE, 'node_modules', 'onnxruntime-web', 'package.json'), 'utf8')).version,
  wasm: wasmNames,
  bundle_bytes: statSync(join(DIST, 'result.js')).size,
  inputs: Object.keys(built.metafile.inputs).length,
};
writeFileSync(join(DIST, 'build-info.json'), `${JSON.stringify(info, null, 2)}\n`);
console.log(`built ${DIST} (result.js ${Math.round(info.bundle_bytes / 1024)} KiB, ${wasmNames.join(', ')})`);
