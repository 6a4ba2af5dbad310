"""/describe: an image -> four candidate prompts.

For the shipped model (tinyshapes) a describer of shapes and colours built on its own pixel measure
(`generation.tinyshapes.measure`: background, foreground colour and shape), writing prompts in the forms
the model was trained on. For other models an optional captioning model (a transformers
"image-to-text" model id or folder, DESCRIBE_MODEL): four beams of its caption. Without one, /describe
says it is not available for that model.
"""

from __future__ import annotations

import threading
from typing import Any

import PIL.Image

from .request import RequestError

CANDIDATES = 4


def describe_shapes(image: PIL.Image.Image) -> list[str]:
    """Four prompts for a tinyshapes picture, the full caption first."""
    from .tinyshapes import measure
    from .tinyshapes.scenes import article

    reading = measure.read(image.convert("RGB"))
    background = reading.background
    if reading.colour is None or reading.shape is None:
        return [f"{background}", f"a plain {background} background", f"{background} on {background}",
                "a shape"][:CANDIDATES]
    colour, shape = reading.colour, reading.shape
    candidates = [
        f"{article(colour)} {colour} {shape} on {article(background)} {background} background",
        f"{colour} {shape} on {background}",
        f"{article(colour)} {colour} {shape}",
        f"{colour} on {background}",
    ]
    return candidates[:CANDIDATES]


def blend_prompt(images: list[PIL.Image.Image]) -> str:
    """What the shipped model is told when a /blend has no prompt. It draws one shape on one background, so
    the mix of "a red circle" and "a blue square" is the first picture's shape in its colour on the colour
    of the next picture that has another one: "a red circle on a blue background"."""
    from .tinyshapes import measure
    from .tinyshapes.scenes import article

    readings = [measure.read(image.convert("RGB")) for image in images]
    lead = next((reading for reading in readings if reading.colour and reading.shape), readings[0])
    colour = lead.colour or lead.background
    others = [reading.colour or reading.background for reading in readings if reading is not lead]
    others += [reading.background for reading in readings]
    background = next((other for other in others if other != colour), lead.background)
    subject = f"{colour} {lead.shape}" if lead.shape else colour
    return f"{article(subject)} {subject} on {article(background)} {background} background"


class Captioner:
    """A transformers image-to-text model, loaded on first use (one at a time; call from a worker thread)."""

    def __init__(self, model: str, device: str = "cpu") -> None:
        self.model = model
        self.device = device
        self._pipeline: Any = None
        self._lock = threading.Lock()

    def describe(self, image: PIL.Image.Image) -> list[str]:
        with self._lock:
            if self._pipeline is None:
                from transformers import pipeline

                make: Any = pipeline  # "image-to-text" is not among its typed overloads
                try:
                    self._pipeline = make("image-to-text", model=self.model, device=self.device)
                except (OSError, ValueError) as error:
                    raise RequestError(f"The captioning model {self.model!r} could not be loaded: {error}") from None
            outputs = self._pipeline(image.convert("RGB"), generate_kwargs={
                "num_beams": CANDIDATES, "num_return_sequences": CANDIDATES, "max_new_tokens": 40})
        captions = [str(item.get("generated_text", "")).strip() for item in outputs]
        unique = [caption for caption in dict.fromkeys(captions) if caption]
        return unique[:CANDIDATES]


def describe(image: PIL.Image.Image, model: str, captioner: Captioner | None = None) -> list[str]:
    """Candidate prompts for `image` as `model` would understand them (RequestError: no describer)."""
    if model == "tinyshapes":
        return describe_shapes(image)
    if captioner is None:
        raise RequestError(f"/describe needs a captioning model for {model} (the operator sets DESCRIBE_MODEL).")
    return captioner.describe(image)
