// Build the in-browser detector: one ES module bundle (src/detector.js + ONNX Runtime Web, wasm backend) and the
// ONNX Runtime .wasm it loads, written to src/audios/serve/static/ondevice/ (served by `audios serve` under
// /static/ondevice/ and copied by `audios export-web`). Run: npm --prefix web ci && npm --prefix web run build
import { build } from "esbuild";
import { copyFileSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "src", "audios", "serve", "static", "ondevice");
const require = createRequire(import.meta.url);
const ortDist = dirname(require.resolve("onnxruntime-web/wasm"));
const ortVersion = JSON.parse(readFileSync(join(ortDist, "..", "package.json"), "utf8")).version;
const WASM = "ort-wasm-simd-threaded.wasm";

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [join(here, "src", "detector.js")],
  outfile: join(out, "audios-ondevice.js"),
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["es2020"],
  minify: true,
  legalComments: "eof",
  logLevel: "warning",
});
copyFileSync(join(ortDist, WASM), join(out, WASM));
const files = ["audios-ondevice.js", WASM];
const manifest = {
  onnxruntime_web: ortVersion,
  files: Object.fromEntries(files.map((f) => [f, statSync(join(out, f)).size])),
};
writeFileSync(join(out, "build.json"), JSON.stringify(manifest, null, 2) + "\n");
for (const [f, size] of Object.entries(manifest.files)) console.log(`${(size / 1e6).toFixed(2)} MB  ${join(out, f)}`);
