"""/describe: an image -> four candidate prompts, and the prompt of a /blend that has none.

A model entry declares its describer (generation.models.Capabilities): "shapes" (the shipped model)
reads the picture's background, foreground colour and shape (generation.shape_reading) and writes
prompts in the forms the model was trained on. Other models use an optional captioning model (a
transformers "image-to-text" model id or folder, DESCRIBE_MODEL): four beams of its caption. Without
one, /describe says it is not available for that model. No model is recognised by its name here.
"""

from __future__ import annotations

import threading
from typing import Any

import PIL.Image

from .models import ModelSource, model_source
from .request import RequestError
from .shape_reading import article, read_shape_picture

CANDIDATES = 4


def describe_shapes(image: PIL.Image.Image) -> list[str]:
    """Four prompts for a picture of one shape on one background, the full caption first."""
    reading = read_shape_picture(image.convert("RGB"))
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


def blend_prompt(model: str | ModelSource, images: list[PIL.Image.Image]) -> str | None:
    """What a model that declares `blend_prompt` is told when a /blend has no prompt (None: others mix
    unconditionally)."""
    capabilities = model_source(model).capabilities()
    if not capabilities.blend_prompt or capabilities.describer != "shapes":
        return None
    return blend_shapes(images)


def blend_shapes(images: list[PIL.Image.Image]) -> str:
    """A model that draws one shape on one background: the mix of "a red circle" and "a blue square" is
    the first picture's shape in its colour on the colour of the next picture that has another one:
    "a red circle on a blue background"."""
    readings = [read_shape_picture(image.convert("RGB")) for image in images]
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


def check_describer(model: str | ModelSource, captioner: Captioner | None) -> None:
    """RequestError when /describe cannot answer for `model`: it declares no describer and there is no captioner."""
    source = model_source(model)
    if source.capabilities().describer is None and captioner is None:
        raise RequestError(f"/describe needs a captioning model for {source.label}; the operator sets DESCRIBE_MODEL.")


def describe(image: PIL.Image.Image, model: str | ModelSource, captioner: Captioner | None = None) -> list[str]:
    """Candidate prompts for `image` as `model` would understand them (RequestError: no describer)."""
    if model_source(model).capabilities().describer == "shapes":
        return describe_shapes(image)
    check_describer(model, captioner)
    assert captioner is not None  # check_describer refused otherwise
    return captioner.describe(image)
