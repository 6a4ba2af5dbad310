"""An optional NSFW image classifier (NSFW_CLASSIFIER): any `transformers` image-classification model,
by hub id or local folder, run on results that are going to a channel that is not age-restricted.

An image is flagged when the scores of the labels named in NSFW_CLASSIFIER_LABELS add up to at least
NSFW_CLASSIFIER_THRESHOLD. The model loads on first use, in the caller's thread (the finish step calls
`flags` through `asyncio.to_thread`). Tests swap `Finisher.classifier` for any object with `flags`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)


class ImageClassifier(Protocol):
    def flags(self, images: Sequence[Image.Image]) -> list[bool]:
        """One verdict per image: True = not safe for work. Blocking."""
        ...


class TransformersClassifier:
    """A `transformers` image-classification pipeline, loaded on first use."""

    def __init__(self, model: str, labels: Sequence[str], threshold: float, device: str = "cpu") -> None:
        self.model = model
        self.labels = {label.strip().casefold() for label in labels if label.strip()}
        self.threshold = threshold
        self.device = device
        self._pipeline: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._pipeline is None:
                from transformers import pipeline

                self._pipeline = pipeline("image-classification", model=self.model, device=self.device)
                log.info("NSFW classifier %s loaded (labels %s)", self.model, sorted(self.labels))
            return self._pipeline

    def flags(self, images: Sequence[Image.Image]) -> list[bool]:
        if not images:
            return []
        classify = self._load()
        results = classify([image.convert("RGB") for image in images], top_k=None)
        verdicts = []
        for scores in results:
            nsfw = sum(float(entry["score"]) for entry in scores if str(entry["label"]).casefold() in self.labels)
            verdicts.append(nsfw >= self.threshold)
        return verdicts


def build_classifier(model: str | None, labels: Sequence[str], threshold: float) -> ImageClassifier | None:
    """The classifier NSFW_CLASSIFIER names (`model`), or None when it is empty."""
    if not model:
        return None
    return TransformersClassifier(model, labels, threshold)
