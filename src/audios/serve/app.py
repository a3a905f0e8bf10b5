"""The detection service: a FastAPI app around one detector, loaded once and shared by a bounded worker pool.

Endpoints: ``POST /v1/detect`` (multipart field ``file`` or the raw audio bytes as the body), ``GET /v1/model``,
``GET /healthz``, the OpenAPI schema at ``/openapi.json`` with a local docs page at ``/docs``, and the web page
at ``/`` (static files in ``static/``, no CDN). The page can also judge a file inside the browser, uploading
nothing: ``/ondevice.json`` says whether the runtime is built, ``/ondevice/model.onnx`` and ``/ondevice/detector.json``
serve the bundled portable detector (see ``audios.webexport``).

Protections:
- uploads are capped before decoding: ``Content-Length`` is checked first, then bytes are counted while the
  body streams to disk, and reading stops at the cap (413);
- the decoded duration is capped (422), whatever the header claims;
- one request deadline covers upload, queueing and scoring (504);
- scoring runs in a fixed pool of ``workers`` threads with at most ``max_queue`` jobs waiting; past that the
  service answers 503 instead of piling work up in memory;
- uploads go to tempfile names in a private folder (never the client's filename) and are deleted when the
  job ends, whatever happens;
- every error is JSON ``{"error": "<sentence>"}``; stack traces go to the log, never into a response.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import shutil
import tempfile
import threading
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from audios.audio import AudioConfig, load_audio
from audios.detect import DetectConfig, Detector, detect_signal
from audios.errors import AudioError, ConfigError, TooLongError
from audios.webexport import MODEL_FILES, bundled_model_dir, ondevice_manifest, ondevice_status

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"

# Raw bodies with these media types are taken as audio; anything else is refused with 415. Browsers label
# MediaRecorder output audio/webm or audio/ogg (sometimes video/webm); curl and scripts often send
# application/octet-stream.
_RAW_TYPES = {"application/octet-stream", "application/ogg", "video/webm", "video/mp4", "video/ogg"}
# Multipart framing around the file part (boundaries, part headers, other small fields) is allowed on top
# of the file cap when the whole body is checked.
_MULTIPART_SLACK_BYTES = 64 * 1024
# Suffix of the temp file, from the first bytes: the decoder picks libsndfile or FFmpeg by suffix.
_MAGIC = ((b"RIFF", ".wav"), (b"fLaC", ".flac"), (b"OggS", ".ogg"), (b"\x1a\x45\xdf\xa3", ".webm"),
          (b"ID3", ".mp3"), (b"\xff\xfb", ".mp3"), (b"\xff\xf3", ".mp3"), (b"FORM", ".aiff"))


@dataclass(frozen=True)
class ServeConfig:
    """Limits and scoring options of the service."""

    max_upload_bytes: int = 50 * 1024 * 1024
    max_duration_s: float = 600.0
    request_timeout_s: float = 60.0
    workers: int = 2
    max_queue: int = 16  # jobs allowed to wait for a worker; more get 503
    window_s: float | None = None  # None: the detector's own window
    hop_s: float | None = None
    aggregate: str = "mean"
    # Spectrograms are drawn from the whole decoded signal; longer uploads get the verdict without one.
    max_spectrogram_s: float = 600.0
    tmp_root: str | None = None  # where the private upload folder is made; None: the system temp dir
    # The portable detector (model.onnx + detector.json) the page runs in the browser ("Check on this device");
    # None: the bundled one. It is independent of the server's own detector.
    ondevice_dir: str | None = None
    read_chunk_bytes: int = field(default=64 * 1024, repr=False)

    def __post_init__(self) -> None:
        if self.max_upload_bytes < 1:
            raise ConfigError(f"max_upload_bytes={self.max_upload_bytes} must be at least 1")
        if self.max_duration_s <= 0:
            raise ConfigError(f"max_duration_s={self.max_duration_s} must be positive")
        if self.request_timeout_s <= 0:
            raise ConfigError(f"request_timeout_s={self.request_timeout_s} must be positive")
        if self.workers < 1:
            raise ConfigError(f"workers={self.workers} must be at least 1")
        if self.max_queue < 0:
            raise ConfigError(f"max_queue={self.max_queue} must be >= 0")
        if self.max_spectrogram_s < 0:
            raise ConfigError(f"max_spectrogram_s={self.max_spectrogram_s} must be >= 0")
        if self.read_chunk_bytes < 1:
            raise ConfigError("read_chunk_bytes must be at least 1")
        self.detect_config()  # window_s/hop_s/aggregate are checked by DetectConfig

    def detect_config(self) -> DetectConfig:
        return DetectConfig(window_s=self.window_s, hop_s=self.hop_s, aggregate=self.aggregate,
                            max_duration_s=self.max_duration_s)


class Window(BaseModel):
    start_s: float
    end_s: float
    p_fake: float = Field(description="Probability that this window is machine-generated.")


class Region(BaseModel):
    start_s: float
    end_s: float


class Detection(BaseModel):
    """The verdict on one upload (the result of ``audios.detect.detect_signal`` plus the model name)."""

    path: str = Field(description="The client's filename (display only), or 'upload'.")
    p_fake: float = Field(description="Probability that the recording is machine-generated (1 - sigmoid(score)).")
    decision: str = Field(description="'fake' when score < threshold, else 'real'.")
    score: float = Field(description="Log-likelihood ratio; higher = more human.")
    threshold: float
    duration_s: float
    latency_ms: float = Field(description="Decoding and scoring time on the server.")
    windows: list[Window]
    flagged_regions: list[Region] = Field(description="Merged time ranges of windows judged fake.")
    model: str
    spectrogram_png: str | None = Field(None, description="Base64 PNG, only with ?spectrogram=1; null when the "
                                        "recording is longer than the spectrogram limit.")
    segments: list[Window] | None = Field(None, description="Segment-level p_fake (160 ms every 80 ms, smoothed), "
                                          "only with ?segments=1.")
    segment_regions: list[Region] | None = Field(None, description="Time ranges the segments flag, only with "
                                                 "?segments=1.")
    explanation_png: str | None = Field(None, description="Base64 PNG of the saliency map (evidence for fake over "
                                        "the spectrogram), only with ?explain=1.")


class Limits(BaseModel):
    max_upload_bytes: int
    max_duration_s: float
    request_timeout_s: float


class ModelInfo(BaseModel):
    name: str
    version: str | None = None
    kind: str | None = None
    card: str | None = Field(None, description="Summary of the model card.")
    threshold: float
    window_s: float | None = None
    hop_s: float | None = None
    sample_rate: int | None = None
    calibrated: bool | None = None
    size_bytes: int | None = None
    n_params: int | None = None
    limits: Limits


class Health(BaseModel):
    status: str
    model: str
    pending_jobs: int
    capacity: int


class ErrorBody(BaseModel):
    error: str = Field(description="One sentence saying what was wrong.")


class ServiceError(Exception):
    """A request the service refuses; becomes ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Pool:
    """A fixed thread pool that refuses work beyond ``workers + max_queue`` pending jobs."""

    def __init__(self, workers: int, max_queue: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="audios-detect")
        self.capacity = workers + max_queue
        self._pending = 0
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        return self._pending

    def has_room(self) -> bool:
        return self._pending < self.capacity

    def submit(self, fn, *args) -> Future | None:
        """Start ``fn(*args)`` or return None when the queue is full."""
        with self._lock:
            if self._pending >= self.capacity:
                return None
            self._pending += 1
        try:
            fut = self._executor.submit(fn, *args)
        except BaseException:
            self._release(None)
            raise
        fut.add_done_callback(self._release)
        return fut

    def _release(self, _fut: Future | None) -> None:
        with self._lock:
            self._pending -= 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _display_name(filename: str | None) -> str:
    """The client's filename, for display only: last path component, printable, at most 120 characters."""
    if not filename:
        return "upload"
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable())[:120]
    return name or "upload"


def _suffix_for(head: bytes, media_type: str) -> str:
    for magic, suffix in _MAGIC:
        if head.startswith(magic):
            return suffix
    if head[4:8] == b"ftyp":
        return ".m4a"
    by_type = {"audio/webm": ".webm", "video/webm": ".webm", "audio/mp4": ".m4a", "video/mp4": ".m4a",
               "audio/x-m4a": ".m4a", "audio/aac": ".aac", "audio/mpeg": ".mp3", "audio/ogg": ".ogg",
               "application/ogg": ".ogg", "audio/flac": ".flac", "audio/wav": ".wav", "audio/x-wav": ".wav"}
    return by_type.get(media_type, ".bin")


class _UploadSink:
    """Writes upload bytes into a private temp file, refusing to go past ``limit`` bytes."""

    def __init__(self, folder: Path, limit: int) -> None:
        fd, name = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=folder)
        self.path = Path(name)
        self._file = os.fdopen(fd, "wb")
        self.limit = limit
        self.size = 0
        self.head = b""

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise ServiceError(413, f"the upload is larger than the {_mb(self.limit)} limit")
        if len(self.head) < 16:
            self.head += data[: 16 - len(self.head)]
        self._file.write(data)

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB" if n >= 1024 * 1024 else f"{n} bytes"


def _discard(path: Path | None) -> None:
    if path is not None:
        try:
            path.unlink(missing_ok=True)
        except OSError:  # pragma: no cover - the folder is ours; log and go on
            log.warning("could not delete temp file %s", path)


async def _read_raw(request: Request, sink: _UploadSink) -> str | None:
    async for chunk in request.stream():
        if chunk:
            sink.write(chunk)
    return None


async def _read_multipart(request: Request, sink: _UploadSink, boundary: bytes, body_limit: int) -> str | None:
    """Stream a multipart body, writing the first file part (field ``file``, else any part with a filename)."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    state: dict[str, Any] = {"field": b"", "value": b"", "headers": {}, "writing": False, "done": False,
                             "filename": None, "found": False}

    def on_part_begin() -> None:
        state["headers"] = {}
        state["writing"] = False

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["field"].lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_headers_finished() -> None:
        _, params = parse_options_header(state["headers"].get(b"content-disposition", b""))
        name, filename = params.get(b"name"), params.get(b"filename")
        if not state["found"] and (name == b"file" or filename is not None):
            state["writing"] = True
            state["found"] = True
            state["filename"] = filename.decode("utf-8", "replace") if filename is not None else None

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state["writing"]:
            sink.write(data[start:end])

    def on_part_end() -> None:
        state["writing"] = False

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data, "on_part_end": on_part_end,
    })
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > body_limit:
                raise ServiceError(413, f"the upload is larger than the {_mb(sink.limit)} limit")
            parser.write(chunk)
        parser.finalize()
    except ServiceError:
        raise
    except Exception as exc:  # python-multipart raises its own parse errors on malformed bodies
        raise ServiceError(400, "the multipart body is malformed") from exc
    if not state["found"]:
        raise ServiceError(422, "the multipart body has no file part (send the audio in a field named 'file')")
    return state["filename"]


def _spectrogram_png(x, sample_rate: int, result: dict[str, Any], folder: Path) -> str:
    """The spectrogram with the per-window p_fake drawn over it, as base64 PNG."""
    from audios.detect_plot import plot_detection

    fd, name = tempfile.mkstemp(prefix="spectrogram-", suffix=".png", dir=folder)
    os.close(fd)
    png = Path(name)
    try:
        plot_detection(x, sample_rate, result, png)
        return base64.b64encode(png.read_bytes()).decode("ascii")
    finally:
        _discard(png)


def _explanation_png(detector: Detector, x, title: str, folder: Path) -> str:
    """The saliency map of ``audios explain`` as base64 PNG."""
    from audios.explain import explain_signal, plot_explanation

    explanation = explain_signal(detector, x)
    fd, name = tempfile.mkstemp(prefix="explain-", suffix=".png", dir=folder)
    os.close(fd)
    png = Path(name)
    try:
        n = int(round(6.0 * detector.sample_rate))  # ExplainConfig's default max_duration_s
        plot_explanation(x[:n], detector.sample_rate, explanation, title, png)
        return base64.b64encode(png.read_bytes()).decode("ascii")
    finally:
        _discard(png)


def _score_upload(detector: Detector, config: ServeConfig, path: Path, name: str, with_spectrogram: bool,
                  folder: Path, with_segments: bool = False, with_explanation: bool = False) -> dict[str, Any]:
    """Decode, check and score one uploaded file (runs in a worker thread). Deletes ``path`` when done."""
    try:
        # load_audio caps the decoded length too, so a header that lies about the duration changes nothing.
        audio_config = AudioConfig(sample_rate=detector.sample_rate, max_duration_s=config.max_duration_s)
        x = load_audio(path, audio_config)
        detect_config = config.detect_config()
        if with_segments:
            from dataclasses import replace

            from audios.localize import SegmentConfig

            detect_config = replace(detect_config, segments=SegmentConfig())
        result = detect_signal(detector, x, detector.sample_rate, name, detect_config)
        if with_explanation:
            title = f"{name}: {result['decision'].upper()}  p_fake={result['p_fake']:.3f}"
            result["explanation_png"] = _explanation_png(detector, x, title, folder)
        if with_spectrogram:
            result["spectrogram_png"] = None
            if result["duration_s"] <= config.max_spectrogram_s:
                try:
                    result["spectrogram_png"] = _spectrogram_png(x, detector.sample_rate, result, folder)
                except ModuleNotFoundError as exc:  # the light install has no matplotlib: verdict without a picture
                    log.info("no spectrogram image: %s is not installed", exc.name)
        return result
    finally:
        _discard(path)


def _audio_error_message(exc: AudioError, tmp_dir: Path) -> str:
    reason = exc.reason.replace(exc.path, "<upload>").replace(str(tmp_dir), "<upload>")
    if isinstance(exc, TooLongError):
        return f"the audio is too long: {reason}"
    kinds = {"empty": "the audio is empty", "silent": "the audio is silent", "too-short": "the audio is too short",
             "non-finite": "the audio holds invalid samples"}
    return f"{kinds.get(exc.kind, 'the upload is not readable audio')}: {reason}"


def create_app(detector: Detector, config: ServeConfig = ServeConfig()) -> FastAPI:
    """The service for ``detector`` (already loaded; it is shared by every request)."""
    tmp_dir = Path(tempfile.mkdtemp(prefix="audios-serve-", dir=config.tmp_root))
    pool = _Pool(config.workers, config.max_queue)
    info = {k: v for k, v in detector.info().items() if k != "path"}  # no server paths in responses
    ondevice_dir = Path(config.ondevice_dir) if config.ondevice_dir else None

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        try:
            yield
        finally:
            pool.shutdown()
            shutil.rmtree(tmp_dir, ignore_errors=True)

    app = FastAPI(
        title="audios detection service",
        version=str(info.get("version", "")),
        summary="Tell human speech from machine-generated speech.",
        description="Upload a recording to `POST /v1/detect` (multipart field `file`, or the raw bytes with an "
                    "audio content type). Scores are log-likelihood ratios (higher = more human); `p_fake` is "
                    "the probability that the recording is machine-generated.",
        docs_url=None,  # the stock pages load Swagger/ReDoc from a CDN; /docs below is served locally
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.detector = detector
    app.state.config = config
    app.state.tmp_dir = tmp_dir
    app.state.pool = pool
    # The lifespan removes the folder at shutdown; this also removes it when the app is dropped or the
    # interpreter exits without a lifespan (ASGI hosts that skip it, tests).
    weakref.finalize(app, shutil.rmtree, tmp_dir, True)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(ServiceError)
    async def _service_error(_request: Request, exc: ServiceError) -> JSONResponse:
        return error(exc.status, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        messages = {404: "not found", 405: "method not allowed"}
        detail = exc.detail if isinstance(exc.detail, str) else ""
        return error(exc.status_code, messages.get(exc.status_code, detail or "request refused"))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "query")
        return error(422, f"invalid parameter {where}: {first.get('msg', 'bad value')}".strip())

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error while serving a request")
        return error(500, "internal error; the request could not be completed")

    @app.get("/healthz", summary="Liveness: the model is loaded and the pool is up", response_model=Health)
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "model": detector.name, "pending_jobs": pool.pending, "capacity": pool.capacity}

    @app.get("/v1/model", summary="The detector: name, version, card summary, threshold and the service limits",
             response_model=ModelInfo)
    async def model() -> dict[str, Any]:
        keys = ("name", "version", "kind", "card", "threshold", "window_s", "hop_s", "sample_rate", "calibrated",
                "size_bytes", "n_params")
        return {**{k: info.get(k) for k in keys},
                "limits": {"max_upload_bytes": config.max_upload_bytes, "max_duration_s": config.max_duration_s,
                           "request_timeout_s": config.request_timeout_s}}

    @app.post(
        "/v1/detect",
        summary="Judge one recording: real (human) or fake (machine-generated)",
        description="Send the audio as multipart field `file`, or as the raw body with an `audio/*` or "
                    "`application/octet-stream` content type. Returns p_fake, the decision, the score (LLR), "
                    "the threshold, the duration, the latency, per-window probabilities and flagged regions. "
                    "Errors: 413 too large, 415 wrong content type, 422 not usable audio (empty, unreadable, "
                    "silent, too long), 501 option not installed (light install), 503 busy, 504 timed out.",
        response_model=Detection,
        response_model_exclude_unset=True,
        # The body is read as a stream (to cap it before decoding), so it is described here by hand.
        openapi_extra={"requestBody": {"required": True, "content": {
            "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
                "file": {"type": "string", "format": "binary", "description": "The recording."}}}},
            "audio/*": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        }}},
        responses={code: {"model": ErrorBody, "description": text} for code, text in (
            (400, "Malformed request"), (413, "Upload too large"), (415, "Wrong content type"),
            (422, "Not usable audio"), (500, "Internal error (no details)"),
            (501, "Option (segments, explain) not available in this install"), (503, "Too many requests queued"),
            (504, "Timed out"))},
    )
    async def detect(request: Request,
                     spectrogram: bool = Query(False, description="Add `spectrogram_png`: base64 PNG of the "
                                               "spectrogram with the per-window p_fake drawn over it."),
                     segments: bool = Query(False, description="Add `segments` and `segment_regions`: "
                                            "segment-level p_fake for partly spoofed recordings."),
                     explain: bool = Query(False, description="Add `explanation_png`: base64 PNG of a saliency "
                                           "map over the spectrogram (slower: the model rescoring occluded copies).")
                     ) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + config.request_timeout_s
        media = _media_type(request.headers.get("content-type"))
        multipart = media == "multipart/form-data"
        if not (multipart or media == "" or media.startswith("audio/") or media in _RAW_TYPES):
            raise ServiceError(415, f"content type {media!r} is not accepted: send multipart/form-data with a "
                                    "'file' field, or the raw audio with an audio/* or application/octet-stream type")
        body_limit = config.max_upload_bytes + (_MULTIPART_SLACK_BYTES if multipart else 0)
        length = request.headers.get("content-length")
        if length is not None:
            if not length.strip().isdigit():
                raise ServiceError(400, "the Content-Length header is not a number")
            if int(length) > body_limit:
                raise ServiceError(413, f"the upload ({_mb(int(length))}) is larger than the "
                                        f"{_mb(config.max_upload_bytes)} limit")
        if not pool.has_room():
            raise ServiceError(503, "the service is busy; try again in a moment")

        sink = _UploadSink(tmp_dir, config.max_upload_bytes)
        path: Path | None = sink.path
        try:
            try:
                if multipart:
                    from python_multipart.multipart import parse_options_header

                    boundary = parse_options_header(request.headers["content-type"])[1].get(b"boundary")
                    if not boundary:
                        raise ServiceError(400, "the multipart content type has no boundary")
                    reader = _read_multipart(request, sink, boundary, body_limit)
                else:
                    reader = _read_raw(request, sink)
                filename = await asyncio.wait_for(reader, max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise ServiceError(504, f"the upload took longer than {config.request_timeout_s:g} s") from None
            finally:
                sink.close()
            if sink.size == 0:
                raise ServiceError(422, "the upload is empty (0 bytes)")
            # Rename to a suffix from the content so the decoder picks the right library; still our own name.
            final = sink.path.with_suffix(_suffix_for(sink.head, media))
            os.replace(sink.path, final)
            path = final
            name = _display_name(filename)
            fut = pool.submit(_score_upload, detector, config, final, name, spectrogram, tmp_dir, segments, explain)
            if fut is None:
                raise ServiceError(503, "the service is busy; try again in a moment")
            path = None  # the job owns the file now
            fut.add_done_callback(lambda f, p=final: f.cancelled() and _discard(p))
            try:
                result = await asyncio.wait_for(asyncio.wrap_future(fut), max(0.0, deadline - loop.time()))
            except TimeoutError:
                fut.cancel()  # only stops a job still queued; a running one finishes and deletes its file
                raise ServiceError(504, f"scoring took longer than the {config.request_timeout_s:g} s "
                                        "request timeout") from None
            except AudioError as exc:
                raise ServiceError(422, _audio_error_message(exc, tmp_dir)) from None
            except ModuleNotFoundError as exc:  # segments / explain on the light install
                package = (exc.name or "a package").split(".")[0]
                raise ServiceError(501, f"this option needs {package!r}, which this server's install lacks "
                                        "(pip install 'audios[all]'); plain detection works") from None
        finally:
            _discard(path)
        result["model"] = detector.name
        log.info("detect %s: %s p_fake=%.3f %.1fs in %.0f ms", name, result["decision"], result["p_fake"],
                 result["duration_s"], result["latency_ms"])
        return result

    @app.get("/ondevice.json", include_in_schema=False)
    async def ondevice() -> dict[str, Any]:
        """Whether the page can run the detector in the browser, and where its model and runtime are."""
        detector_json, reason = ondevice_status(ondevice_dir)
        return ondevice_manifest(detector_json, reason, server=True, model_base="ondevice/",
                                 runtime_base="static/ondevice/")

    @app.get("/ondevice/{name}", include_in_schema=False)
    async def ondevice_file(name: str) -> FileResponse:
        """model.onnx and detector.json of the in-browser detector (from the package data, not from static/)."""
        path = (ondevice_dir or bundled_model_dir()) / name
        if name not in MODEL_FILES or not path.is_file():
            raise ServiceError(404, "not found")
        return FileResponse(path, media_type="application/json" if name.endswith(".json") else
                            "application/octet-stream")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> FileResponse:
        return FileResponse(STATIC_DIR / "docs.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
