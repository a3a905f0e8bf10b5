// The result page: reads the clicked media, runs the bundled detector in this page, shows the verdict.
// `audios-detector` is web/src/detector.js (the same in-browser detector as the `audios serve` page),
// resolved by build.mjs.
import * as ort from 'onnxruntime-web';
import { loadDetector } from 'audios-detector';

import { MediaError, displayName, fetchMedia, scanTab } from './media.js';
import { renderTimeline } from './timeline.js';

// Extension pages are not cross-origin isolated, so the wasm runtime gets no threads anyway; say so up front.
ort.env.wasm.numThreads = 1;

const $ = (id) => document.getElementById(id);

function intParam(params, name) {
  const v = params.get(name);
  return v !== null && /^-?\d+$/.test(v) ? Number(v) : undefined;
}

function setStatus(text) {
  $('status').textContent = text;
}

function errorCode(err) {
  if (err instanceof MediaError) return err.code;
  if (err && err.name === 'AudioInputError') return 'audio'; // undecodable, silent, too short (web/src/decode.js)
  if (err && err.name === 'DetectorLoadError') return 'detector-load';
  return 'detector';
}

function showError(err) {
  const code = errorCode(err);
  document.body.dataset.state = 'error';
  document.body.dataset.errorCode = code;
  const box = $('error');
  box.replaceChildren();
  const h = document.createElement('h2');
  h.textContent = code.startsWith('detector') ? 'The detector could not check this media' : 'Cannot check this media';
  const p = document.createElement('p');
  p.textContent = err && err.message ? err.message : String(err);
  box.append(h, p);
  box.hidden = false;
  $('status').hidden = true;
  document.title = 'audios: cannot check';
}

let detectorPromise = null;
function detector() {
  if (!detectorPromise) {
    detectorPromise = loadDetector({
      modelUrl: chrome.runtime.getURL('model/model.onnx'),
      configUrl: chrome.runtime.getURL('model/detector.json'),
      wasmPaths: chrome.runtime.getURL('ort/'),
    });
  }
  return detectorPromise;
}

function fmtPct(p) {
  return `${(100 * p).toFixed(1)} %`;
}

function showResult(result, meta) {
  document.body.dataset.state = 'done';
  document.body.dataset.decision = result.decision;
  $('verdict-badge').textContent = result.decision === 'fake' ? 'Likely AI-generated' : 'Likely human speech';
  $('p-fake').textContent = fmtPct(result.p_fake);
  $('details').textContent =
    `p_fake ${result.p_fake.toFixed(4)} · score ${result.score.toFixed(3)} (threshold ${result.threshold.toFixed(3)}, ` +
    `lower is more fake) · ${result.duration_s.toFixed(1)} s of audio, ${result.windows.length} window` +
    `${result.windows.length === 1 ? '' : 's'} · ${(meta.elapsed_ms / 1000).toFixed(1)} s in this browser`;
  $('timeline').replaceChildren(renderTimeline(result));
  const regions = result.flagged_regions || [];
  $('regions').textContent = regions.length
    ? `Flagged: ${regions.map((r) => `${r.start_s.toFixed(1)}–${r.end_s.toFixed(1)} s`).join(', ')}`
    : 'No window falls below the threshold.';
  $('verdict').hidden = false;
  $('status').hidden = true;
  $('result-json').textContent = JSON.stringify({ ...result, ...meta });
  document.title = `audios: ${result.decision === 'fake' ? 'likely AI-generated' : 'likely human'} (${fmtPct(result.p_fake)})`;
}

function showSource(src) {
  const el = $('source');
  el.replaceChildren();
  const strong = document.createElement('strong');
  strong.textContent = displayName(src);
  el.append(strong);
  if (src && !src.startsWith('data:')) el.append(document.createTextNode(` — ${src}`));
}

async function check({ src, tabId, frameId, pageUrl }) {
  showSource(src);
  document.body.dataset.state = 'loading';
  $('verdict').hidden = true;
  $('error').hidden = true;
  $('status').hidden = false;
  const t0 = performance.now();
  try {
    detector().catch(() => {}); // start loading the model while the media downloads
    setStatus('Reading the media…');
    const { bytes, via } = await fetchMedia({ src, tabId, frameId, pageUrl });
    setStatus('Loading the detector…');
    const det = await detector();
    setStatus('Decoding and checking…');
    const result = await det.detectArrayBuffer(bytes, displayName(src));
    showResult(result, { src, read_via: via, bytes: bytes.byteLength, elapsed_ms: Math.round(performance.now() - t0) });
  } catch (e) {
    console.error(e);
    showError(e);
  }
}

async function chooseFromPage(tabId, pageUrl) {
  setStatus('Looking for audio and video on the page…');
  let found;
  try {
    found = (await scanTab(tabId)).filter((m) => m.src);
  } catch (e) {
    showError(e);
    return;
  }
  if (found.length === 0) {
    showError(new MediaError('none', 'No <audio> or <video> element with a media address was found on this page.'));
    return;
  }
  if (found.length === 1) {
    await check({ src: found[0].src, tabId, frameId: found[0].frameId, pageUrl });
    return;
  }
  setStatus('Pick the media to check.');
  const list = $('media-list');
  for (const m of found) {
    const li = document.createElement('li');
    const button = document.createElement('button');
    button.textContent = `${m.kind}: ${displayName(m.src)}`;
    button.addEventListener('click', () => check({ src: m.src, tabId, frameId: m.frameId, pageUrl }));
    li.append(button);
    list.append(li);
  }
  $('chooser').hidden = false;
}

async function main() {
  const params = new URLSearchParams(location.search);
  const tabId = intParam(params, 'tab');
  const pageUrl = params.get('page') || '';
  if (params.get('scan') && tabId !== undefined) {
    await chooseFromPage(tabId, pageUrl);
    return;
  }
  await check({ src: params.get('src') || '', tabId, frameId: intParam(params, 'frame'), pageUrl });
}

main();
