"""Requests before they are queued: validation against the operator's limits and the model family's
rules, the size and seeds chosen, and the model lookups the bot shows (defaults, labels, LoRAs)."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from ..metadata import rendered_png
from ..prompt_words import check_readable, skipped_words
from ..prompts import encoded_text
from ..request import SEED_RANGE, GenerationRequest, Limits, RenderedImage, RequestError
from ..size_limits import picture_limits
from ..validation import check_model, check_prompt_length, validate_request
from .renderer import RendererLike

log = logging.getLogger(__name__)


class RequestChecker:
    """What every queue does with a request before queueing it, on `renderer` within `limits`."""

    def __init__(self, renderer: RendererLike, limits: Limits = Limits()) -> None:
        self.renderer = renderer
        self.limits = limits

    def _read_model_files(self) -> None:
        for model in self.limits.models:
            try:
                self.renderer.tokenizer(model)
                self.renderer.native_size(model)
            except Exception as error:  # reported again, to the user, when a request names the model
                log.warning("could not read the tokenizer or config of model %s: %s", model, error)

    def model_defaults(self, model: str) -> dict[str, Any]:
        """Request fields for `model` when nobody sets them (its family's, or its ModelSpec's)."""
        return dict(self.renderer.defaults(model))

    def size_multiple(self, model: str) -> int:
        """What width and height of `model` must be multiples of (8, or 16 for SD3 and Flux)."""
        try:
            return int(self.renderer.model_info(model).family.size_multiple)
        except RequestError:
            return 8  # an unusable model: prepare() reports it with its reason

    def picture_limits(self, model: str) -> Limits:
        """The limits a picture made from one of `model`'s (Zoom Out, Pan, Make Square) is shrunk to fit: the
        operator's, within the model's own limit for pictures (generation.size_limits)."""
        try:
            return picture_limits(self.limits, self.renderer.model_info(model).max_size)
        except RequestError:
            return self.limits  # an unusable model: prepare() reports it with its reason

    def instruction_pictures(self, model: str) -> int:
        """How many pictures (the edited one plus references) `model` takes in an instruction edit; 0: it
        does not edit by instruction (generation.edit_families)."""
        from ..edit_families import pictures_per_call

        try:
            return pictures_per_call(self.renderer.model_info(model))
        except RequestError:
            return 0

    def lora_names(self) -> list[str]:
        """The LoRAs members may pick (the renderer's LORA_DIR), for the /imagine lora option."""
        return list(self.renderer.lora_names())

    def model_label(self, model: str) -> str:
        """How to show a model to users (a ModelSpec's display name, else its name)."""
        return str(self.renderer.source(model).label)

    def skipped_words(self, model: str, prompt: str) -> list[str]:
        """The words of `prompt` that `model` cannot read (generation.prompt_words); [] where its tokenizer
        cannot be read (prepare() already spoke for that)."""
        try:
            tokenizer = self.renderer.tokenizer(model)
        except Exception:
            return []
        return skipped_words(prompt, tokenizer) if tokenizer is not None else []

    def native_size(self, model: str) -> int:
        """The model's native image side in pixels (the base size for --ar); RequestError if unusable."""
        check_model(model, self.limits)
        return self._model_files(model)[1]

    def _model_files(self, model: str) -> tuple[Any, int]:
        """(tokenizer, native size) of a configured model; cached by the renderer after start()."""
        try:
            return self.renderer.tokenizer(model), self.renderer.native_size(model)
        except RequestError:
            raise  # the renderer already names what is wrong (a missing path, an unsupported pipeline)
        except Exception:  # configured, but its files are missing or unreadable: an operator problem
            log.exception("model %s: could not read its tokenizer or config", model)
            raise RequestError(f"Model {model!r} is not available right now; try another model.") from None

    def prepare(self, request: GenerationRequest) -> GenerationRequest:
        """Validate `request` (RequestError) and fill in what was left open: size and seeds.

        The chosen seeds are part of the returned request, so every image can be rendered again.
        """
        if request.init_image is not None and request.edit_mode is None and self.instruction_pictures(request.model):
            request = request.replace(edit_mode="instruction")  # the picture to change: recorded as such
        validate_request(request, self.limits)
        self.renderer.check_request(request)  # the model's family rules, naming what is allowed
        tokenizer, native = self._model_files(request.model)
        if tokenizer is not None:
            check_prompt_length("prompt", encoded_text(request.prompt), tokenizer)
            check_readable(request.prompt, tokenizer, request.model)  # not only words it cannot read
            if request.negative_prompt:
                check_prompt_length("negative prompt", encoded_text(request.negative_prompt), tokenizer)
        changes: dict[str, Any] = {}
        if request.width is None or request.height is None:
            changes["width"] = request.width if request.width is not None else native
            changes["height"] = request.height if request.height is not None else native
        if request.seed is None:
            changes["seed"] = secrets.randbelow(SEED_RANGE)
        if request.variation_strength > 0 and request.variation_seed is None:
            changes["variation_seed"] = secrets.randbelow(SEED_RANGE)
        prepared = request.replace(**changes)
        validate_request(prepared, self.limits)  # the filled-in size must fit the limits too
        return prepared

    def png(self, request: GenerationRequest, rendered: RenderedImage) -> bytes:
        """The PNG file of one rendered image, with its A1111 parameters (LoRA hashes included)."""
        return rendered_png(request, rendered, self.renderer.lora_hashes(request.prompt))
