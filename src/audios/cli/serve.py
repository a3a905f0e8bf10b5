"""CLI: run the detection service and its web page."""

from __future__ import annotations

import typer

from audios.cli.app import app, console, friendly_errors


@app.command()
@friendly_errors
def serve(
    model: str = typer.Option(None, "--model", "-m", help="Run folder, model.joblib, portable detector folder, "
                              "aasist=PATH, aasist-l=PATH; default: the bundled detector."),
    backend: str = typer.Option("onnx", help="Portable detectors (the bundled one): onnx (ONNX Runtime, no PyTorch "
                                "needed) or torch (the same graph in PyTorch)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 exposes it to the network)."),
    port: int = typer.Option(8000, help="TCP port."),
    workers: int = typer.Option(2, help="Recordings scored at the same time (threads sharing one model)."),
    max_queue: int = typer.Option(16, help="Requests allowed to wait for a worker; more get 503."),
    max_upload_mb: float = typer.Option(50.0, help="Largest upload accepted, in MB (413 above)."),
    max_duration_s: float = typer.Option(600.0, help="Longest recording accepted, in seconds (422 above)."),
    timeout_s: float = typer.Option(60.0, help="Deadline for one request: upload, queue and scoring (504 after)."),
    window_s: float = typer.Option(None, help="Window length in seconds (default: the model's)."),
    hop_s: float = typer.Option(None, help="Hop between windows in seconds (default: the model's)."),
    aggregate: str = typer.Option("mean", help="File score from window scores: mean, median or min (most fake)."),
) -> None:
    """Serve the detector over HTTP: a web page at /, the JSON API at /v1/detect, docs at /docs.

    The model is loaded once. Uploads are capped in size before decoding and in duration after; a fixed pool
    of workers scores them and extra requests queue up to --max-queue.

    Examples:
      audios serve
      audios serve --port 9000 --workers 4 --max-upload-mb 20
      curl -F file=@clip.wav http://127.0.0.1:8000/v1/detect
    """
    import uvicorn

    from audios.detect import load_detector
    from audios.serve import ServeConfig, create_app

    config = ServeConfig(max_upload_bytes=int(max_upload_mb * 1024 * 1024), max_duration_s=max_duration_s,
                         request_timeout_s=timeout_s, workers=workers, max_queue=max_queue, window_s=window_s,
                         hop_s=hop_s, aggregate=aggregate)
    detector = load_detector(model, backend=backend)
    service = create_app(detector, config)
    console.print(f"serving [bold]{detector.name}[/bold] on http://{host}:{port}  (API docs: /docs)")
    # limit_concurrency bounds open connections beyond the job queue, so /healthz still answers under load.
    uvicorn.run(service, host=host, port=port, log_level="info", timeout_keep_alive=5,
                limit_concurrency=config.workers + config.max_queue + 32)
