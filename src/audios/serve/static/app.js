"use strict";
// The audios web page: upload or record a clip, then either POST it to /v1/detect (server) or judge it inside
// this browser with the bundled detector (ONNX Runtime Web; nothing is uploaded). Shows the verdict, the
// per-window timeline and, from the server, the spectrogram. ondevice.json (served by `audios serve`, written by
// `audios export-web`) says whether the in-browser detector is available and whether a server is behind the page.
(function () {
  const $ = (id) => document.getElementById(id);
  let maxUploadBytes = null;
  let busy = false;
  let ondevice = null; // the parsed ondevice.json
  let deviceDetector = null; // promise of the loaded in-browser detector

  function showStatus(text, isError) {
    const el = $("status");
    el.textContent = text;
    el.classList.toggle("error", Boolean(isError));
  }

  function fmtBytes(n) {
    return n >= 1048576 ? (n / 1048576).toFixed(1) + " MB" : Math.round(n / 1024) + " kB";
  }

  async function loadModel() {
    try {
      const r = await fetch("/v1/model");
      const m = await r.json();
      $("model").textContent = "Model: " + m.name + " " + (m.version || "") + " · threshold " +
        Number(m.threshold).toFixed(3) + (m.card ? " · " + m.card : "");
      maxUploadBytes = m.limits.max_upload_bytes;
      $("limits").textContent = "Limits: " + fmtBytes(m.limits.max_upload_bytes) + " per upload, " +
        Math.round(m.limits.max_duration_s) + " s of audio.";
    } catch (e) {
      $("model").textContent = "Model information unavailable.";
    }
  }

  function onDevice() {
    return $("where-device").checked;
  }

  function absolute(url) {
    return new URL(url, document.baseURI).href;
  }

  async function setUpOnDevice() {
    try {
      const r = await fetch("ondevice.json", { cache: "no-store" });
      ondevice = r.ok ? await r.json() : null;
    } catch (e) {
      ondevice = null;
    }
    const status = $("device-status");
    if (ondevice && ondevice.server === false) {
      // A static export: no server to upload to, so the page only checks on this device.
      document.body.classList.add("static");
      $("where-server").disabled = true;
      $("where-server-label").hidden = true;
      $("explain-label").hidden = true;
      $("footer").hidden = true;
    }
    if (ondevice && ondevice.available) {
      $("where-device").disabled = false;
      status.textContent = "model " + ondevice.name + "; loaded once, then runs offline";
      if (ondevice.server === false) {
        $("where-device").checked = true;
        $("model").textContent = "Model: " + ondevice.name + " · runs in this browser, nothing is uploaded";
      }
    } else {
      status.textContent = "unavailable: " + ((ondevice && ondevice.reason) || "no ondevice.json");
    }
    if (!ondevice || ondevice.server !== false) loadModel();
    syncOptions();
  }

  function syncOptions() {
    // Saliency maps and segments need the server.
    $("explain").disabled = onDevice();
  }

  function loadDeviceDetector() {
    if (!deviceDetector) {
      const t0 = performance.now();
      deviceDetector = import(absolute(ondevice.script_url))
        .then((mod) => mod.loadDetector({
          modelUrl: absolute(ondevice.model_url),
          configUrl: absolute(ondevice.config_url),
          wasmPaths: { wasm: absolute(ondevice.wasm_url) },
        }))
        .then((detector) => ({ detector, loadMs: performance.now() - t0 }));
      deviceDetector.catch(() => { deviceDetector = null; }); // let a later click retry
    }
    return deviceDetector;
  }

  function drawTimeline(r) {
    // The bottom panel of the server's spectrogram picture, as SVG: each window's p_fake as a grey span and
    // an orange point at its centre, the threshold dotted, flagged regions shaded red.
    const svg = $("timeline");
    const parts = [];
    const W = 900, H = 150, left = 44, right = 12, top = 8, bottom = 26;
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    const duration = Math.max(r.duration_s, ...r.windows.map((w) => w.end_s), 1e-3);
    const x = (t) => left + (t / duration) * (W - left - right);
    const y = (p) => top + (1 - p) * (H - top - bottom);
    // Markup assigned to an <svg> element's innerHTML is parsed as SVG; every value here is a number or fixed text.
    const add = (name, attrs, text) => {
      const a = Object.entries(attrs).map(([k, v]) => k + '="' + (typeof v === "number" ? v.toFixed(2) : v) + '"').join(" ");
      parts.push("<" + name + " " + a + (text === undefined ? "/>" : ">" + text + "</" + name + ">"));
    };
    add("rect", { x: left, y: top, width: W - left - right, height: H - top - bottom, class: "tl-frame" });
    r.flagged_regions.forEach((g) => add("rect", { x: x(g.start_s), y: top, width: Math.max(1, x(g.end_s) - x(g.start_s)),
      height: H - top - bottom, class: "tl-flagged" }));
    [0, 0.5, 1].forEach((p) => {
      add("line", { x1: left, x2: W - right, y1: y(p), y2: y(p), class: "tl-grid" });
      add("text", { x: left - 6, y: y(p) + 4, class: "tl-label", "text-anchor": "end" }, p.toFixed(1));
    });
    const step = [0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300].find((s) => duration / s <= 10) || 600;
    for (let t = 0; t <= duration + 1e-9; t += step) {
      add("text", { x: x(t), y: H - 8, class: "tl-label", "text-anchor": "middle" }, (step < 1 ? t.toFixed(1) : t) + " s");
    }
    const pThreshold = 1 - 1 / (1 + Math.exp(-r.threshold));
    add("line", { x1: left, x2: W - right, y1: y(pThreshold), y2: y(pThreshold), class: "tl-threshold" });
    r.windows.forEach((w) => add("line", { x1: x(w.start_s), x2: x(w.end_s), y1: y(w.p_fake), y2: y(w.p_fake), class: "tl-span" }));
    const centres = r.windows.map((w) => [x((w.start_s + w.end_s) / 2), y(w.p_fake)]);
    add("polyline", { points: centres.map((c) => c.join(",")).join(" "), class: "tl-line" });
    centres.forEach(([cx, cy]) => add("circle", { cx, cy, r: 3, class: "tl-point" }));
    svg.innerHTML = parts.join("");
  }

  function showResult(r, roundTripMs, source, loadMs) {
    const fake = r.decision === "fake";
    const verdict = $("verdict");
    verdict.className = "verdict " + (fake ? "fake" : "real");
    verdict.textContent = (fake ? "FAKE (machine-generated)" : "REAL (human)") +
      " · p(fake) = " + r.p_fake.toFixed(3);
    $("p-fake").textContent = (100 * r.p_fake).toFixed(1) + " %";
    $("score").textContent = r.score.toFixed(2) + " (threshold " + r.threshold.toFixed(2) + ")";
    $("duration").textContent = r.duration_s.toFixed(2) + " s, " + r.windows.length + " window" +
      (r.windows.length === 1 ? "" : "s");
    $("latency").textContent = source === "device"
      ? Math.round(r.latency_ms) + " ms on this device (decode, resample, model)" +
        (loadMs ? "; detector loaded in " + Math.round(loadMs) + " ms" : "")
      : Math.round(r.latency_ms) + " ms scoring, " + Math.round(roundTripMs) + " ms round trip";
    $("flagged").textContent = r.flagged_regions.length === 0 ? "none" :
      r.flagged_regions.map((g) => g.start_s.toFixed(1) + "–" + g.end_s.toFixed(1) + " s").join(", ");
    const segs = r.segment_regions || [];
    $("segment-flagged").textContent = source === "device" ? "not computed (server only)" :
      !r.segments ? "not computed" : segs.length === 0 ? "none" :
      segs.map((g) => g.start_s.toFixed(2) + "–" + g.end_s.toFixed(2) + " s").join(", ");
    const explanation = $("explanation");
    if (r.explanation_png) {
      explanation.src = "data:image/png;base64," + r.explanation_png;
    } else {
      explanation.removeAttribute("src");
    }
    $("p-bar").style.left = "calc(" + (100 * r.p_fake).toFixed(2) + "% - 2px)";
    // The threshold is on the LLR scale; p_fake = 1 - sigmoid(score), so it sits at 1 - sigmoid(threshold).
    const pThreshold = 1 - 1 / (1 + Math.exp(-r.threshold));
    $("p-threshold").style.left = (100 * pThreshold).toFixed(2) + "%";
    const img = $("spectrogram");
    if (r.spectrogram_png) {
      img.src = "data:image/png;base64," + r.spectrogram_png;
    } else {
      img.removeAttribute("src");
    }
    drawTimeline(r);
    const result = $("result");
    // Full-precision values for scripts and tests (the text above is rounded).
    result.dataset.source = source;
    result.dataset.pFake = String(r.p_fake);
    result.dataset.score = String(r.score);
    result.dataset.decision = r.decision;
    result.dataset.latencyMs = String(r.latency_ms);
    result.hidden = false;
  }

  async function detectOnDevice(blob, filename) {
    busy = true;
    const t0 = performance.now();
    try {
      let loaded = deviceDetector;
      if (!loaded) showStatus("Loading the detector into this browser…", false);
      loaded = await loadDeviceDetector();
      showStatus("Analysing " + filename + " (" + fmtBytes(blob.size) + ") on this device…", false);
      const r = await loaded.detector.detectArrayBuffer(await blob.arrayBuffer(), filename);
      showStatus("", false);
      const firstLoad = loaded.shown ? 0 : loaded.loadMs;
      loaded.shown = true;
      showResult(r, performance.now() - t0, "device", firstLoad);
    } catch (e) {
      showStatus("Error on this device: " + (e && e.message ? e.message : e), true);
    } finally {
      busy = false;
    }
  }

  async function detect(blob, filename) {
    if (busy) return;
    if (onDevice()) return detectOnDevice(blob, filename);
    if (maxUploadBytes !== null && blob.size > maxUploadBytes) {
      showStatus(filename + " is " + fmtBytes(blob.size) + ", above the " + fmtBytes(maxUploadBytes) +
        " limit.", true);
      return;
    }
    busy = true;
    showStatus("Analysing " + filename + " (" + fmtBytes(blob.size) + ")…", false);
    const form = new FormData();
    form.append("file", blob, filename);
    const t0 = performance.now();
    try {
      const explain = $("explain") && $("explain").checked;
      const url = "/v1/detect?spectrogram=1&segments=1" + (explain ? "&explain=1" : "");
      const response = await fetch(url, { method: "POST", body: form });
      let body = null;
      try { body = await response.json(); } catch (e) { body = null; }
      if (!response.ok) {
        showStatus("Error " + response.status + ": " + ((body && body.error) || response.statusText), true);
        return;
      }
      showStatus("", false);
      showResult(body, performance.now() - t0, "server", 0);
    } catch (e) {
      showStatus("The upload failed: " + e.message, true);
    } finally {
      busy = false;
    }
  }

  function setUpInput() {
    const drop = $("drop");
    const input = $("file");
    input.addEventListener("change", () => {
      if (input.files.length) detect(input.files[0], input.files[0].name);
      input.value = "";
    });
    ["dragenter", "dragover"].forEach((ev) => drop.addEventListener(ev, (e) => {
      e.preventDefault();
      drop.classList.add("over");
    }));
    ["dragleave", "drop"].forEach((ev) => drop.addEventListener(ev, (e) => {
      e.preventDefault();
      drop.classList.remove("over");
    }));
    drop.addEventListener("drop", (e) => {
      const files = e.dataTransfer && e.dataTransfer.files;
      if (files && files.length) detect(files[0], files[0].name);
    });
    drop.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); }
    });
  }

  function setUpRecorder() {
    const button = $("record");
    const status = $("record-status");
    if (!navigator.mediaDevices || !window.MediaRecorder) {
      button.disabled = true;
      status.textContent = "Recording needs a browser with MediaRecorder on https or localhost.";
      return;
    }
    let recorder = null;
    let chunks = [];
    let started = 0;
    let timer = null;
    button.addEventListener("click", async () => {
      if (recorder && recorder.state === "recording") {
        recorder.stop();
        return;
      }
      let stream;
      try {
        stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      } catch (e) {
        status.textContent = "No microphone access: " + e.message;
        return;
      }
      const type = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/webm", "audio/mp4"]
        .find((t) => MediaRecorder.isTypeSupported(t));
      recorder = type ? new MediaRecorder(stream, { mimeType: type }) : new MediaRecorder(stream);
      chunks = [];
      recorder.ondataavailable = (e) => { if (e.data.size) chunks.push(e.data); };
      recorder.onstop = () => {
        stream.getTracks().forEach((t) => t.stop());
        clearInterval(timer);
        button.classList.remove("recording");
        button.textContent = "● Record from microphone";
        status.textContent = "";
        const mime = recorder.mimeType || "audio/webm";
        const ext = mime.includes("ogg") ? "ogg" : mime.includes("mp4") ? "m4a" : "webm";
        detect(new Blob(chunks, { type: mime }), "recording." + ext);
      };
      recorder.start(250);
      started = performance.now();
      button.classList.add("recording");
      button.textContent = "■ Stop and analyse";
      timer = setInterval(() => {
        status.textContent = "recording " + ((performance.now() - started) / 1000).toFixed(1) + " s";
      }, 200);
    });
  }

  setUpInput();
  setUpRecorder();
  document.querySelectorAll('input[name="where"]').forEach((el) => el.addEventListener("change", syncOptions));
  setUpOnDevice();
})();
