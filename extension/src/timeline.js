// SVG timeline of window probabilities: x is time (s), y is p_fake of each window (plotted at its centre),
// flagged regions shaded, the decision threshold dashed.

const NS = 'http://www.w3.org/2000/svg';
const W = 520;
const H = 170;
const PAD = { left: 38, right: 10, top: 10, bottom: 26 };

function el(name, attrs, text) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function niceStep(span) {
  const raw = span / 6;
  const mag = 10 ** Math.floor(Math.log10(raw || 1));
  for (const m of [1, 2, 5, 10]) if (m * mag >= raw) return m * mag;
  return 10 * mag;
}

/** p_fake at the detector's threshold: the score threshold is an LLR, p_fake = 1 - sigmoid(score). */
export function thresholdProbability(threshold) {
  return 1 / (1 + Math.exp(threshold));
}

export function renderTimeline(result) {
  const duration = Math.max(result.duration_s, 1e-3);
  const x = (t) => PAD.left + (t / duration) * (W - PAD.left - PAD.right);
  const y = (p) => PAD.top + (1 - p) * (H - PAD.top - PAD.bottom);
  const svg = el('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img',
    'aria-label': 'Probability AI-generated for each window over time' });

  for (const r of result.flagged_regions || []) {
    svg.append(el('rect', { x: x(r.start_s), y: PAD.top, width: Math.max(1, x(r.end_s) - x(r.start_s)),
      height: H - PAD.top - PAD.bottom, fill: '#b3261e', 'fill-opacity': 0.12 }));
  }
  for (const p of [0, 0.5, 1]) {
    svg.append(el('line', { x1: PAD.left, x2: W - PAD.right, y1: y(p), y2: y(p), stroke: '#d8dde3' }));
    svg.append(el('text', { x: PAD.left - 6, y: y(p) + 4, 'text-anchor': 'end', 'font-size': 11, fill: '#5b6470' },
      p.toFixed(1)));
  }
  const step = niceStep(duration);
  for (let t = 0; t <= duration + 1e-9; t += step) {
    svg.append(el('text', { x: x(t), y: H - 8, 'text-anchor': 'middle', 'font-size': 11, fill: '#5b6470' },
      `${Number(t.toFixed(2))} s`));
  }
  const pt = thresholdProbability(result.threshold);
  svg.append(el('line', { x1: PAD.left, x2: W - PAD.right, y1: y(pt), y2: y(pt), stroke: '#5b6470',
    'stroke-dasharray': '4 3' }));
  svg.append(el('text', { x: W - PAD.right - 2, y: y(pt) - 4, 'text-anchor': 'end', 'font-size': 10, fill: '#5b6470' },
    'threshold'));

  const windows = result.windows || [];
  for (const w of windows) {
    svg.append(el('line', { x1: x(w.start_s), x2: x(w.end_s), y1: y(w.p_fake), y2: y(w.p_fake),
      stroke: w.p_fake > pt ? '#b3261e' : '#1e6b34', 'stroke-opacity': 0.35, 'stroke-width': 3 }));
  }
  const centres = windows.map((w) => [x((w.start_s + w.end_s) / 2), y(w.p_fake), w.p_fake]);
  if (centres.length > 1) {
    svg.append(el('polyline', { points: centres.map(([a, b]) => `${a},${b}`).join(' '), fill: 'none',
      stroke: '#203864', 'stroke-width': 1.5 }));
  }
  for (const [a, b, p] of centres) {
    svg.append(el('circle', { cx: a, cy: b, r: 3.5, fill: p > pt ? '#b3261e' : '#1e6b34' }));
  }
  return svg;
}
