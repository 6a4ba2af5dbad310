"""Finishing a render, the same on both queues: per image its PNG (with A1111 metadata and LoRA hashes),
what flagged it (the model's own safety checker, or NSFW_CLASSIFIER), then the stored images and the job
marked done.

The classifier runs on results bound for a channel that is not age-restricted (`classify=True`); with
`classify=False` unflagged images are marked "unchecked", so a /show elsewhere treats them by the policy
of that place. A classifier that fails never loses the render: its images are then held as flagged.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from storage import ImageInput

from ..metadata import rendered_png

if TYPE_CHECKING:
    from storage import GenerationRecord, Store

    from ..request import RenderResult
    from .classifier import ImageClassifier
    from .renderer import RendererLike

log = logging.getLogger(__name__)


class Finisher:
    """Turns a RenderResult into stored images. `classifier` is NSFW_CLASSIFIER's (None: only the model's
    own safety checker flags images)."""

    def __init__(self, renderer: RendererLike, classifier: ImageClassifier | None = None) -> None:
        self.renderer = renderer
        self.classifier = classifier

    async def finish(self, store: Store, generation_id: int, result: RenderResult, *, classify: bool,
                     worker_id: str | None = None) -> GenerationRecord:
        """Store the result's images and mark the job done (LeaseLost if `worker_id` no longer holds it)."""
        images = await self.stored_images(generation_id, result, classify=classify)
        return await store.mark_done(generation_id, images, result.duration_s, worker_id=worker_id)

    async def stored_images(self, generation_id: int, result: RenderResult, *, classify: bool) -> list[ImageInput]:
        flags = await self.nsfw_flags(generation_id, result, classify=classify)
        hashes = self.renderer.lora_hashes(result.request.prompt)
        pngs = await asyncio.to_thread(
            lambda: [rendered_png(result.request, image, hashes) for image in result.images])
        return [ImageInput(index=index, png=png, seed=image.seed, variation_seed=image.variation_seed,
                           variation_strength=image.variation_strength, nsfw=flag,
                           batch_size=image.place.size, batch_index=image.place.index)
                for index, (image, png, flag) in enumerate(zip(result.images, pngs, flags))]

    async def nsfw_flags(self, generation_id: int, result: RenderResult, *, classify: bool) -> list[str | None]:
        """Per image: "safety_checker", "classifier", "unchecked" (not classified) or None."""
        rendered = result.images
        flags: list[str | None] = ["safety_checker" if image.nsfw else None for image in rendered]
        unchecked = [index for index, flag in enumerate(flags) if flag is None]
        if self.classifier is None or not unchecked:
            return flags
        if not classify:
            return [flag or "unchecked" for flag in flags]
        try:
            verdicts = await asyncio.to_thread(self.classifier.flags, [rendered[index].image for index in unchecked])
        except Exception:
            log.exception("job #%s: the NSFW classifier failed; holding the result as flagged", generation_id)
            verdicts = [True] * len(unchecked)
        for index, flagged in zip(unchecked, verdicts):
            if flagged:
                flags[index] = "classifier"
        return flags
