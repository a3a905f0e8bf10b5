"""The pipeline's stages in order, one line each (``audios tasks``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    name: str
    stage: str
    summary: str


TASKS: tuple[Task, ...] = (
    Task("manifest", "data", "list a corpus (any known layout) with labels, generators, speakers and measured metadata"),
    Task("stats", "data", "hours per class/generator/speaker, distributions, and shortcut warnings"),
    Task("prepare", "data", "convert, normalise, trim silence, add noise, cut clips: streaming and resumable"),
    Task("synth", "data", "make spoofs from bona fide speech by vocoder/codec copy-synthesis and TTS"),
    Task("split", "data", "leak-free train/val/test splits by utterance, content hash and speaker"),
    Task("features", "features", "spectral, MFCC/LFCC, log-mel and SSL embeddings, cached and parallel"),
    Task("visualize", "features", "UMAP/t-SNE/PCA views of a feature table with silhouette scores"),
    Task("train-classic", "models", "scikit-learn back-ends (logreg, SVM, RF, MLP, GMM) on feature tables"),
    Task("hpo", "models", "Optuna hyper-parameter search on validation EER"),
    Task("train", "models", "PyTorch detectors (raw CNN, spectrogram CNN/ViT, AASIST, SSL head)"),
    Task("compare-checkpoints", "models", "score every checkpoint on a folder; where models disagree"),
    Task("ablate", "models", "train a declared grid with the same seeds and data; one EER/minDCF table with CIs"),
    Task("export", "models", "ONNX export (checked with onnxruntime), int8 quantisation and pruning"),
    Task("evaluate", "evaluation", "EER, minDCF, Cllr, AUC, ECE with bootstrap CIs and per-attack tables"),
    Task("model-card", "evaluation", "MODEL_CARD.md generated from a run"),
    Task("detect", "detection", "score files, folders and long recordings"),
    Task("serve", "detection", "web service and page for detection (server-side or on the user's device)"),
    Task("export-web", "detection", "static web page that runs the bundled detector in the browser, no upload"),
    Task("fuse", "beyond", "logistic-regression fusion of several detectors' scores"),
    Task("localize-eval", "beyond", "segment-level EER and boundary precision/recall on partly spoofed audio"),
    Task("explain", "beyond", "saliency over the spectrogram for a verdict"),
    Task("run", "pipeline", "run a whole pipeline from a YAML file, skipping unchanged stages"),
)
