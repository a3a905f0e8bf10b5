// Service worker: registers the "Check with audios" menu items and opens the result page on a click.
// Service workers have no Web Audio, so decoding and detection run in the result page, never here.
// A classic (non-module) script, so its top-level functions are reachable from DevTools for tests.

const MEDIA_MENU_ID = 'audios-check-media';
const LINK_MENU_ID = 'audios-check-link';

// Links get the item only when they point at an audio or video file (query strings allowed).
const MEDIA_EXTENSIONS = ['wav', 'mp3', 'flac', 'ogg', 'oga', 'opus', 'm4a', 'aac', 'webm', 'mp4', 'weba', 'aif', 'aiff'];
const LINK_PATTERNS = MEDIA_EXTENSIONS.flatMap((ext) =>
  [ext, ext.toUpperCase()].flatMap((e) => [`*://*/*.${e}`, `*://*/*.${e}?*`]));

const MENUS = [
  { id: MEDIA_MENU_ID, title: 'Check with audios', contexts: ['audio', 'video'] },
  { id: LINK_MENU_ID, title: 'Check with audios', contexts: ['link'], targetUrlPatterns: LINK_PATTERNS },
];

const RESULT_WINDOW = { type: 'popup', width: 560, height: 720 };

function createMenu(item) {
  return new Promise((resolve, reject) => {
    chrome.contextMenus.create(item, () => {
      const err = chrome.runtime.lastError;
      if (err) reject(new Error(`contextMenus.create(${item.id}): ${err.message}`));
      else resolve(item.id);
    });
  });
}

async function setupMenus() {
  await chrome.contextMenus.removeAll();
  const ids = [];
  for (const item of MENUS) ids.push(await createMenu(item));
  // Recorded so that tests (and a curious user in DevTools) can see what this worker registered.
  await chrome.storage.session.set({ menus: MENUS.map((m) => ({ id: m.id, title: m.title, contexts: m.contexts })) });
  return ids;
}

// The URL to check for a context-menu click: the element's media for audio/video, the target for links.
function mediaUrlOf(info) {
  if (info.menuItemId === MEDIA_MENU_ID) return info.srcUrl || '';
  if (info.menuItemId === LINK_MENU_ID) return info.linkUrl || '';
  return null;
}

function resultPageUrl(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null) q.set(k, String(v));
  return chrome.runtime.getURL(`result.html?${q}`);
}

async function openResult(params) {
  const url = resultPageUrl(params);
  const win = await chrome.windows.create({ url, ...RESULT_WINDOW });
  await chrome.storage.session.set({ lastOpened: { url, windowId: win.id, params } });
  return url;
}

async function onMenuClicked(info, tab) {
  const src = mediaUrlOf(info);
  if (src === null) return null;
  return openResult({
    src,
    kind: info.menuItemId === MEDIA_MENU_ID ? (info.mediaType || 'media') : 'link',
    page: info.pageUrl || (tab && tab.url) || '',
    tab: tab && tab.id >= 0 ? tab.id : undefined,
    frame: Number.isInteger(info.frameId) ? info.frameId : undefined,
  });
}

// Toolbar button: for pages whose player hides the browser's context menu. The click grants activeTab, and the
// result page lists the page's <audio>/<video> elements itself.
async function onActionClicked(tab) {
  return openResult({ scan: 1, page: tab.url || '', tab: tab.id });
}

chrome.runtime.onInstalled.addListener(() => { setupMenus().catch((e) => console.error(e)); });
chrome.runtime.onStartup.addListener(() => { setupMenus().catch((e) => console.error(e)); });
chrome.contextMenus.onClicked.addListener((info, tab) => { onMenuClicked(info, tab).catch((e) => console.error(e)); });
chrome.action.onClicked.addListener((tab) => { onActionClicked(tab).catch((e) => console.error(e)); });
