"use strict";
// The audios web page: upload or record a clip, POST it to /v1/detect, show the verdict and the spectrogram.
(function () {
  const $ = (id) => document.getElementById(id);
  let maxUploadBytes = null;
  let busy = false;

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

  function showResult(r, roundTripMs) {
    const fake = r.decision === "fake";
    const verdict = $("verdict");
    verdict.className = "verdict " + (fake ? "fake" : "real");
    verdict.textContent = (fake ? "FAKE (machine-generated)" : "REAL (human)") +
      " · p(fake) = " + r.p_fake.toFixed(3);
    $("p-fake").textContent = (100 * r.p_fake).toFixed(1) + " %";
    $("score").textContent = r.score.toFixed(2) + " (threshold " + r.threshold.toFixed(2) + ")";
    $("duration").textContent = r.duration_s.toFixed(2) + " s, " + r.windows.length + " window" +
      (r.windows.length === 1 ? "" : "s");
    $("latency").textContent = Math.round(r.latency_ms) + " ms scoring, " + Math.round(roundTripMs) +
      " ms round trip";
    $("flagged").textContent = r.flagged_regions.length === 0 ? "none" :
      r.flagged_regions.map((g) => g.start_s.toFixed(1) + "–" + g.end_s.toFixed(1) + " s").join(", ");
    const segs = r.segment_regions || [];
    $("segment-flagged").textContent = !r.segments ? "not computed" : segs.length === 0 ? "none" :
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
    $("result").hidden = false;
  }

  async function detect(blob, filename) {
    if (busy) return;
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
      showResult(body, performance.now() - t0);
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
  loadModel();
})();
