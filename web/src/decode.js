// Decode an audio file in the browser to one mono Float32Array at the model's rate, as audios.audio.load_audio
// does on the server: decode at the file's own rate, average the channels, then resample with resample.js.
//
// Web Audio's decodeAudioData always converts to the sample rate of its context, with the browser's own
// resampler. To keep that out of the way, the file's native rate is read from its header (WAV/RF64, FLAC,
// Ogg Vorbis/Opus, MP3, AIFF) and the decode runs in an OfflineAudioContext at exactly that rate. Other
// containers (MP4/M4A, WebM) are decoded at 48 kHz, the usual rate of their codecs, and resampled from there.

import { resample } from "./resample.js";

/** A file the detector cannot judge; ``kind`` is one of empty, too-short, silent, unreadable, non-finite. */
export class AudioInputError extends Error {
  constructor(name, kind, reason) {
    super(`${name}: ${reason}`);
    this.name = "AudioInputError";
    this.path = name;
    this.kind = kind;
    this.reason = reason;
  }
}

const FALLBACK_RATE = 48000;
const MP3_RATES = { 3: [44100, 48000, 32000], 2: [22050, 24000, 16000], 0: [11025, 12000, 8000] };

function ascii(bytes, at, length) {
  return String.fromCharCode(...bytes.subarray(at, at + length));
}

function wavRate(b, v) {
  // RIFF/RF64/BW64 chunks after the 12-byte header; "fmt " holds the rate at offset 4 of its body.
  let at = 12;
  while (at + 8 <= b.length) {
    const id = ascii(b, at, 4);
    const size = v.getUint32(at + 4, true);
    if (id === "fmt " && at + 16 <= b.length) return v.getUint32(at + 12, true);
    at += 8 + size + (size & 1);
  }
  return null;
}

function flacRate(b) {
  // STREAMINFO is the first metadata block: 4-byte block header, then min/max block (2+2) and frame (3+3)
  // sizes, then the sample rate in 20 bits.
  if (b.length < 21) return null;
  return (b[18] << 12) | (b[19] << 4) | (b[20] >> 4);
}

function oggRate(b, v) {
  // First page: 27-byte header, segment table, then the codec identification packet.
  if (b.length < 28) return null;
  const start = 27 + b[26];
  if (ascii(b, start, 8) === "OpusHead") return 48000; // Opus always decodes at 48 kHz (RFC 7845, 5.1)
  if (b[start] === 1 && ascii(b, start + 1, 6) === "vorbis") return v.getUint32(start + 12, true);
  return null;
}

function mp3Rate(b) {
  let at = 0;
  if (ascii(b, 0, 3) === "ID3" && b.length >= 10) {
    // ID3v2: 10-byte header with a 28-bit "syncsafe" size, plus a 10-byte footer when flagged.
    const size = (b[6] << 21) | (b[7] << 14) | (b[8] << 7) | b[9];
    at = 10 + size + (b[5] & 0x10 ? 10 : 0);
  }
  for (const end = Math.min(b.length - 3, at + 65536); at < end; at++) {
    if (b[at] !== 0xff || (b[at + 1] & 0xe0) !== 0xe0) continue;
    const version = (b[at + 1] >> 3) & 3; // 3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5
    const layer = (b[at + 1] >> 1) & 3;
    const index = (b[at + 2] >> 2) & 3;
    if (version === 1 || layer === 0 || index === 3) continue;
    return MP3_RATES[version][index];
  }
  return null;
}

function aiffRate(b, v) {
  let at = 12;
  while (at + 8 <= b.length) {
    const id = ascii(b, at, 4);
    const size = v.getUint32(at + 4, false);
    if (id === "COMM" && at + 26 <= b.length) {
      // 80-bit IEEE extended float at offset 8 of the COMM body.
      const exponent = (v.getUint16(at + 16, false) & 0x7fff) - 16383;
      const mantissa = v.getUint32(at + 18, false) * 2 ** -31 + v.getUint32(at + 22, false) * 2 ** -63;
      return Math.round(mantissa * 2 ** exponent);
    }
    at += 8 + size + (size & 1);
  }
  return null;
}

/** The sample rate stated in the file's header, or null when the container is not one read here. */
export function sniffSampleRate(arrayBuffer) {
  const b = new Uint8Array(arrayBuffer, 0, Math.min(arrayBuffer.byteLength, 1 << 20));
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const magic = ascii(b, 0, 4);
  let rate = null;
  if ((magic === "RIFF" || magic === "RF64" || magic === "BW64") && ascii(b, 8, 4) === "WAVE") rate = wavRate(b, v);
  else if (magic === "fLaC") rate = flacRate(b);
  else if (magic === "OggS") rate = oggRate(b, v);
  else if (magic === "FORM" && (ascii(b, 8, 4) === "AIFF" || ascii(b, 8, 4) === "AIFC")) rate = aiffRate(b, v);
  else if (magic.startsWith("ID3") || (b[0] === 0xff && (b[1] & 0xe0) === 0xe0)) rate = mp3Rate(b);
  // Web Audio contexts accept 3 kHz to 768 kHz; anything else is not a rate a browser decodes at.
  return Number.isInteger(rate) && rate >= 3000 && rate <= 768000 ? rate : null;
}

function mixToMono(buffer) {
  const n = buffer.length;
  const channels = buffer.numberOfChannels;
  if (channels === 1) return buffer.getChannelData(0).slice();
  // Mean of the channels in float32 (numpy's block.mean(axis=1, dtype=float32) on the server).
  const mono = new Float32Array(n);
  for (let c = 0; c < channels; c++) {
    const data = buffer.getChannelData(c);
    for (let i = 0; i < n; i++) mono[i] += data[i];
  }
  for (let i = 0; i < n; i++) mono[i] /= channels;
  return mono;
}

function peakOf(x) {
  let peak = 0;
  for (let i = 0; i < x.length; i++) {
    const a = Math.abs(x[i]);
    if (a > peak) peak = a;
    else if (Number.isNaN(a)) return NaN;
  }
  return peak;
}

/** Check a signal as audios.detect does: not empty, at least minDurationS long, not silent, finite. */
export function checkSignal(name, x, rate, { minDurationS = 0.05, silencePeak = 1e-4 } = {}) {
  if (x.length === 0) throw new AudioInputError(name, "empty", "decodes to 0 samples");
  const peak = peakOf(x);
  if (!Number.isFinite(peak)) throw new AudioInputError(name, "non-finite", "contains NaN or infinite samples");
  if (x.length < minDurationS * rate) {
    throw new AudioInputError(name, "too-short", `${((x.length / rate) * 1000).toFixed(1)} ms is too short to ` +
      `judge (minimum ${Math.round(minDurationS * 1000)} ms)`);
  }
  if (peak < silencePeak) throw new AudioInputError(name, "silent", "all samples are silent");
}

/**
 * Decode ``arrayBuffer`` (any format the browser reads) to mono float32 at ``rate``.
 * @returns {Promise<{samples: Float32Array, nativeRate: number, rateFromHeader: boolean}>}
 */
export async function decodeToMono(arrayBuffer, rate, name = "<file>", checks = {}) {
  if (!arrayBuffer || arrayBuffer.byteLength === 0) throw new AudioInputError(name, "empty", "the file is empty (0 bytes)");
  const headerRate = sniffSampleRate(arrayBuffer);
  const nativeRate = headerRate || FALLBACK_RATE;
  const context = new OfflineAudioContext({ numberOfChannels: 1, length: 1, sampleRate: nativeRate });
  let buffer;
  try {
    // decodeAudioData detaches the buffer it is given: decode a copy so the caller's stays usable.
    buffer = await context.decodeAudioData(arrayBuffer.slice(0));
  } catch (e) {
    throw new AudioInputError(name, "unreadable", `the browser cannot decode this file (${e && e.message ? e.message : e})`);
  }
  const native = mixToMono(buffer);
  checkSignal(name, native, buffer.sampleRate, checks); // load_audio's checks at the native rate
  const samples = resample(native, buffer.sampleRate, rate);
  checkSignal(name, samples, rate, checks); // detect_signal's checks after resampling
  return { samples, nativeRate: buffer.sampleRate, rateFromHeader: headerRate !== null };
}
