// The audios detector in the browser: the bundled ONNX graph run by ONNX Runtime Web (wasm backend), with the
// same decoding, resampling, windowing and aggregation as Python's audios.detect.detect_signal, so a file gets
// the same verdict and probability here as from `audios detect` or `audios serve`. Nothing is uploaded.
//
// Stable API (imported by the page of `audios serve`, `audios export-web` and the browser extension):
//
//   import { loadDetector } from "./detector.js";
//   const detector = await loadDetector({
//     modelUrl,   // URL of model.onnx, or its bytes (ArrayBuffer / Uint8Array)
//     configUrl,  // URL of detector.json, or the parsed object
//     wasmPaths,  // where ONNX Runtime's .wasm lies: a folder URL ending in "/" or {wasm: URL};
//                 //   omitted: next to the bundle that contains this module
//   });
//   const result = await detector.detectArrayBuffer(arrayBuffer, "clip.wav");
//   // also: detector.detectSignal(Float32Array at detector.sampleRate, name), detector.release()
//   // detector.name / sampleRate / windowS / hopS / threshold / aggregate: from detector.json
//
// result: {path, p_fake, decision: "fake"|"real", score, threshold, duration_s, latency_ms, model,
//          windows: [{start_s, end_s, p_fake}], flagged_regions: [{start_s, end_s}]}
// Scores are calibrated log-likelihood ratios (higher = more human); p_fake = 1 - sigmoid(score); the file is
// "fake" when score < threshold. Unusable input throws AudioInputError (kind: empty, too-short, silent,
// unreadable, non-finite); a bad model or config throws DetectorLoadError.
//
// The wasm backend runs single-threaded (numThreads = 1), so no cross-origin isolation headers are needed.
// Bundling: this module imports "onnxruntime-web/wasm", resolved from web/node_modules (`npm --prefix web ci`).

import * as ort from "onnxruntime-web/wasm";
import { AudioInputError, checkSignal, decodeToMono } from "./decode.js";

export { AudioInputError } from "./decode.js";
export { resample } from "./resample.js";

const AGGREGATES = ["mean", "min", "median"];
const BATCH_WINDOWS = 16; // as DetectConfig.batch_windows

/** model.onnx or detector.json is missing or does not fit the contract. */
export class DetectorLoadError extends Error {
  constructor(what, reason) {
    super(`${what}: ${reason}`);
    this.name = "DetectorLoadError";
    this.path = what;
    this.reason = reason;
  }
}

/** Window bounds covering n samples: full windows every hop, plus a last one ending at n (audios.detect._windows). */
export function windowBounds(n, win, hop) {
  if (n <= win) return [[0, n]];
  const bounds = [];
  for (let s = 0; s <= n - win; s += hop) bounds.push([s, s + win]);
  if (bounds[bounds.length - 1][1] < n) bounds.push([n - win, n]);
  return bounds;
}

/** Windows whose LLR is below the threshold, merged where they touch or overlap. */
export function mergeFlagged(windows, flagged) {
  const regions = [];
  windows.forEach((w, i) => {
    if (!flagged[i]) return;
    const last = regions[regions.length - 1];
    if (last && w.start_s <= last.end_s) last.end_s = Math.max(last.end_s, w.end_s);
    else regions.push({ start_s: w.start_s, end_s: w.end_s });
  });
  return regions;
}

/** The file score from window scores: length-weighted mean, min or median. */
export function aggregateScores(scores, lengths, how) {
  if (how === "min") return Math.min(...scores);
  if (how === "median") {
    const s = [...scores].sort((a, b) => a - b);
    const mid = s.length >> 1;
    return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  }
  let num = 0;
  let den = 0;
  scores.forEach((v, i) => {
    num += v * lengths[i];
    den += lengths[i];
  });
  return num / den;
}

const sigmoid = (v) => 1 / (1 + Math.exp(-v));
const round = (v, digits) => Math.round(v * 10 ** digits) / 10 ** digits;

function checkConfig(config, where) {
  const c = config || {};
  const need = (key, ok, what) => {
    if (!ok(c[key])) throw new DetectorLoadError(where, `"${key}" must be ${what}, got ${JSON.stringify(c[key])}`);
  };
  const positive = (v) => typeof v === "number" && Number.isFinite(v) && v > 0;
  need("sample_rate", (v) => Number.isInteger(v) && v >= 3000 && v <= 768000, "a sample rate in Hz");
  need("window_s", positive, "a positive number of seconds");
  need("hop_s", positive, "a positive number of seconds");
  need("threshold", (v) => typeof v === "number" && Number.isFinite(v), "a finite number (LLR units)");
  const aggregate = c.aggregate ?? "mean";
  if (!AGGREGATES.includes(aggregate)) {
    throw new DetectorLoadError(where, `"aggregate" must be one of ${AGGREGATES.join(", ")}, got ${JSON.stringify(aggregate)}`);
  }
  return {
    name: typeof c.name === "string" && c.name ? c.name : "audios-default",
    sampleRate: c.sample_rate,
    windowS: c.window_s,
    hopS: c.hop_s,
    threshold: c.threshold,
    aggregate,
    minDurationS: positive(c.min_duration_s) ? c.min_duration_s : 0.05,
    silencePeak: positive(c.silence_peak) ? c.silence_peak : 1e-4,
  };
}

async function fetchBytes(url, what) {
  let response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new DetectorLoadError(String(url), `${what} could not be fetched (${e.message})`);
  }
  if (!response.ok) throw new DetectorLoadError(String(url), `${what} could not be fetched (HTTP ${response.status})`);
  return new Uint8Array(await response.arrayBuffer());
}

function defaultWasmPaths() {
  // The .wasm file is copied next to the bundle by web/build.mjs.
  return { wasm: new URL("ort-wasm-simd-threaded.wasm", import.meta.url).href };
}

/**
 * Load the detector: fetch detector.json and model.onnx, start ONNX Runtime Web (wasm, one thread).
 * @param {{modelUrl: string|ArrayBuffer|Uint8Array, configUrl: string|object, wasmPaths?: string|object}} options
 */
export async function loadDetector({ modelUrl, configUrl, wasmPaths } = {}) {
  if (!modelUrl) throw new DetectorLoadError("loadDetector", "modelUrl is required");
  if (!configUrl) throw new DetectorLoadError("loadDetector", "configUrl is required");
  let rawConfig = configUrl;
  if (typeof configUrl === "string" || configUrl instanceof URL) {
    const bytes = await fetchBytes(configUrl, "detector.json");
    try {
      rawConfig = JSON.parse(new TextDecoder().decode(bytes));
    } catch (e) {
      throw new DetectorLoadError(String(configUrl), `not valid JSON (${e.message})`);
    }
  }
  const config = checkConfig(rawConfig, typeof configUrl === "object" && !(configUrl instanceof URL) ? "detector.json" : String(configUrl));
  let model = modelUrl;
  if (typeof modelUrl === "string" || modelUrl instanceof URL) model = await fetchBytes(modelUrl, "model.onnx");
  else if (modelUrl instanceof ArrayBuffer) model = new Uint8Array(modelUrl);

  ort.env.wasm.numThreads = 1; // threads need SharedArrayBuffer, i.e. cross-origin isolation headers
  ort.env.wasm.proxy = false;
  ort.env.wasm.wasmPaths = wasmPaths ?? defaultWasmPaths();
  let session;
  try {
    session = await ort.InferenceSession.create(model, { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
  } catch (e) {
    throw new DetectorLoadError(typeof modelUrl === "string" ? modelUrl : "model.onnx", `ONNX Runtime could not load the model (${e.message || e})`);
  }
  const inputName = session.inputNames.includes("waveform") ? "waveform" : session.inputNames[0];
  const outputName = session.outputNames.includes("llr") ? "llr" : session.outputNames[0];
  const sr = config.sampleRate;
  const win = Math.max(1, Math.round(config.windowS * sr));
  const hop = Math.min(Math.max(1, Math.round(config.hopS * sr)), win);
  const checks = { minDurationS: config.minDurationS, silencePeak: config.silencePeak };

  /** LLR of each window (all of one length), in batches of BATCH_WINDOWS. */
  async function scoreWindows(signals) {
    const scores = [];
    for (let i = 0; i < signals.length; i += BATCH_WINDOWS) {
      const batch = signals.slice(i, i + BATCH_WINDOWS);
      const length = batch[0].length;
      const data = new Float32Array(batch.length * length);
      batch.forEach((s, j) => data.set(s, j * length));
      const feeds = { [inputName]: new ort.Tensor("float32", data, [batch.length, length]) };
      const output = (await session.run(feeds))[outputName];
      scores.push(...Array.from(output.data, Number));
      output.dispose?.();
    }
    return scores;
  }

  async function detectSignal(samples, name = "<signal>", t0 = performance.now()) {
    checkSignal(name, samples, sr, checks);
    const bounds = windowBounds(samples.length, win, hop);
    const scores = await scoreWindows(bounds.map(([s, e]) => samples.subarray(s, e)));
    if (!scores.every(Number.isFinite)) throw new AudioInputError(name, "non-finite", "the detector produced a non-finite score");
    const lengths = bounds.map(([s, e]) => e - s);
    const score = aggregateScores(scores, lengths, config.aggregate);
    const windows = bounds.map(([s, e], i) => ({
      start_s: round(s / sr, 3),
      end_s: round(s / sr + (e - s) / sr, 3),
      p_fake: round(1 - sigmoid(scores[i]), 6),
    }));
    return {
      path: name,
      p_fake: 1 - sigmoid(score),
      decision: score < config.threshold ? "fake" : "real",
      score,
      threshold: config.threshold,
      duration_s: round(samples.length / sr, 3),
      latency_ms: round(performance.now() - t0, 2),
      model: config.name,
      windows,
      flagged_regions: mergeFlagged(windows, scores.map((v) => v < config.threshold)),
    };
  }

  async function detectArrayBuffer(arrayBuffer, name = "<file>") {
    const t0 = performance.now();
    const { samples } = await decodeToMono(arrayBuffer, sr, name, checks);
    return detectSignal(samples, name, t0);
  }

  return {
    name: config.name,
    sampleRate: sr,
    windowS: config.windowS,
    hopS: config.hopS,
    threshold: config.threshold,
    aggregate: config.aggregate,
    config: rawConfig,
    detectArrayBuffer,
    detectSignal: (samples, name) => detectSignal(samples, name),
    scoreWindows,
    release: () => session.release(),
  };
}
