// Reading the clicked media's bytes without breaking the browser's same-origin rules.
//
// 1. The result page fetches the URL itself: this works for data: URLs and for servers that allow cross-origin
//    reads (CORS).
// 2. Otherwise it asks the clicked frame to fetch it (chrome.scripting, allowed for that tab by the activeTab grant
//    that the right-click or toolbar click gives). The page can read its own origin's media, and media from other
//    origins only when their server allows it, exactly as the page's own scripts could.
// blob: URLs (MediaSource streams, in-memory files) belong to the page's renderer and cannot be read from here.

export const MAX_BYTES = 200 * 1024 * 1024;
// Bytes come back from the page as base64 text inside one message, so that path has a lower cap.
export const MAX_PAGE_BYTES = 100 * 1024 * 1024;

export class MediaError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'MediaError';
    this.code = code;
  }
}

const SAVE_HINT = 'Save the file and run `audios detect FILE`, or drop it on the page of `audios serve`.';

export function originOf(url) {
  try {
    const u = new URL(url);
    return u.origin === 'null' ? '' : u.origin;
  } catch {
    return '';
  }
}

// 'http' | 'data' | 'stream' | 'file' | 'unsupported' | 'missing'
export function classifyUrl(url) {
  if (!url) return 'missing';
  let u;
  try {
    u = new URL(url);
  } catch {
    return 'unsupported';
  }
  if (u.protocol === 'http:' || u.protocol === 'https:') return 'http';
  if (u.protocol === 'data:') return 'data';
  if (u.protocol === 'blob:' || u.protocol === 'mediastream:') return 'stream';
  if (u.protocol === 'file:') return 'file';
  return 'unsupported';
}

export function displayName(url) {
  try {
    const u = new URL(url);
    if (u.protocol === 'data:') return 'data: URL';
    const last = decodeURIComponent(u.pathname.split('/').filter(Boolean).pop() || '');
    return last || u.host || url;
  } catch {
    return String(url).slice(0, 80);
  }
}

function crossOriginError(src, pageUrl) {
  return new MediaError('cross-origin',
    `The media is served by ${originOf(src)}, a different site from the page (${originOf(pageUrl)}), and that ` +
    'server does not allow other sites to read it (no CORS header), so the browser will not let audios read it. ' +
    `Open the media address itself in a tab and check it there, or: ${SAVE_HINT}`);
}

function httpError(src, status, statusText) {
  return new MediaError('http', `The server answered ${status}${statusText ? ` ${statusText}` : ''} for ${src}.`);
}

function tooLarge(size, cap) {
  const mb = (n) => `${Math.round(n / (1024 * 1024))} MB`;
  return new MediaError('too-large', `The media is ${mb(size)}, more than the ${mb(cap)} this extension reads. ${SAVE_HINT}`);
}

async function fetchFromExtension(src) {
  const res = await fetch(src, { credentials: 'omit' });
  if (!res.ok) throw httpError(src, res.status, res.statusText);
  const declared = Number(res.headers.get('content-length') || 0);
  if (declared > MAX_BYTES) throw tooLarge(declared, MAX_BYTES);
  const bytes = await res.arrayBuffer();
  if (bytes.byteLength > MAX_BYTES) throw tooLarge(bytes.byteLength, MAX_BYTES);
  return bytes;
}

// Runs inside the clicked frame (serialised by chrome.scripting): must not use anything from this module.
async function readInPage(url, maxBytes) {
  try {
    const res = await fetch(url);
    if (!res.ok) return { error: 'http', status: res.status, statusText: res.statusText };
    const buf = await res.arrayBuffer();
    if (buf.byteLength > maxBytes) return { error: 'too-large', size: buf.byteLength };
    const u8 = new Uint8Array(buf);
    let s = '';
    for (let i = 0; i < u8.length; i += 0x8000) s += String.fromCharCode.apply(null, u8.subarray(i, i + 0x8000));
    return { base64: btoa(s) };
  } catch (e) {
    return { error: 'network', message: String(e) };
  }
}

function base64ToArrayBuffer(b64) {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i += 1) out[i] = s.charCodeAt(i);
  return out.buffer;
}

async function fetchThroughPage(src, tabId, frameId, pageUrl) {
  let injected;
  try {
    const target = Number.isInteger(frameId) ? { tabId, frameIds: [frameId] } : { tabId };
    injected = await chrome.scripting.executeScript({ target, func: readInPage, args: [src, MAX_PAGE_BYTES] });
  } catch (e) {
    if (originOf(src) !== originOf(pageUrl)) throw crossOriginError(src, pageUrl);
    throw new MediaError('no-access',
      'The page could not be asked for the media: its permission lasts only while the tab stays on the page that ' +
      `was right-clicked (${String(e.message || e)}). Right-click the element again.`);
  }
  const out = injected && injected[0] && injected[0].result;
  if (!out) throw new MediaError('no-access', 'The page did not answer (it may have navigated away). Try again.');
  if (out.error === 'http') throw httpError(src, out.status, out.statusText);
  if (out.error === 'too-large') throw tooLarge(out.size, MAX_PAGE_BYTES);
  if (out.error) {
    if (originOf(src) !== originOf(pageUrl)) throw crossOriginError(src, pageUrl);
    throw new MediaError('network', `The media could not be downloaded: ${out.message}`);
  }
  return base64ToArrayBuffer(out.base64);
}

/** The media's bytes and how they were read ('extension' or 'page'); throws MediaError with a user-facing message. */
export async function fetchMedia({ src, tabId, frameId, pageUrl }) {
  const kind = classifyUrl(src);
  if (kind === 'missing') {
    throw new MediaError('missing', 'This element has no media address (no src). It may be a stream the page ' +
      `builds in memory. ${SAVE_HINT}`);
  }
  if (kind === 'stream') {
    throw new MediaError('stream', 'Cannot read this stream: the page plays it from a blob: address (a MediaSource ' +
      'stream or an in-memory file), which only the page itself can read, and often only piece by piece. ' +
      SAVE_HINT);
  }
  if (kind === 'unsupported') throw new MediaError('unsupported', `Cannot read media from this address: ${src}`);
  try {
    return { bytes: await fetchFromExtension(src), via: 'extension' };
  } catch (e) {
    if (e instanceof MediaError) throw e;
    if (kind === 'file') {
      throw new MediaError('file', 'Reading local files needs "Allow access to file URLs" for this extension ' +
        '(chrome://extensions, Details).');
    }
    if (kind === 'data') throw new MediaError('network', `This data: address could not be read: ${e.message}`);
    if (!Number.isInteger(tabId)) throw crossOriginError(src, pageUrl);
  }
  return { bytes: await fetchThroughPage(src, tabId, frameId, pageUrl), via: 'page' };
}

// Runs inside each frame of the tab (serialised by chrome.scripting): the page's audio and video elements.
function listPageMedia() {
  return Array.from(document.querySelectorAll('audio, video')).map((el) => ({
    src: el.currentSrc || el.src || (el.querySelector('source[src]') || {}).src || '',
    kind: el.tagName.toLowerCase(),
  }));
}

/** Audio/video elements of a tab (all frames), for the toolbar button; needs the activeTab grant. */
export async function scanTab(tabId) {
  let results;
  try {
    results = await chrome.scripting.executeScript({ target: { tabId, allFrames: true }, func: listPageMedia });
  } catch (e) {
    throw new MediaError('no-access', `This page cannot be read by extensions (${String(e.message || e)}).`);
  }
  const found = [];
  for (const r of results || []) for (const m of r.result || []) found.push({ ...m, frameId: r.frameId });
  return found;
}
