"""The tiny SDXL, SD3 and Flux models through GenerationService, next to tinyshapes."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from gen_helpers import fast_request

from generation import GenerationService, JobCancelled, Limits, RequestError, upscale_request, variation_request

MODELS = ("tinyshapes", "sdxl", "sd3", "flux")


@pytest.fixture
async def service(family_renderer):
    service = GenerationService(family_renderer, Limits(models=MODELS))
    await service.start()
    yield service
    await service.close()


def for_model(service, model, **changes):
    defaults = service.renderer.defaults(model)
    return fast_request(model=model, **{**defaults, "num_inference_steps": 4, **changes})


async def run(service, request, owner="alice"):
    job = service.submit(service.prepare(request), owner=owner)
    events = []
    job.add_progress_listener(events.append)
    return await job.result(), events


async def test_switching_between_families_renders_each_reproducibly(service):
    first = {}
    for model in ("sdxl", "flux", "sd3", "tinyshapes", "sdxl"):
        result, events = await run(service, for_model(service, model, seed=3, count=2))
        assert service.renderer.loaded.source.name == model
        assert [image.seed for image in result.images] == [3, 4]
        assert events and events[-1].step == events[-1].total == 4  # both images in one call
        if model in first:
            assert np.array_equal(np.asarray(first[model]), np.asarray(result.images[0].image))
        first[model] = result.images[0].image


async def test_variation_upscale_and_img2img_through_the_service(service):
    for model in ("sd3", "flux"):
        parent, _ = await run(service, for_model(service, model, seed=7))
        image = parent.images[0]
        varied, _ = await run(service, variation_request(parent.request, image.seed, strong=True, count=2))
        assert [(i.seed, i.variation_strength) for i in varied.images] == [(7, 0.5), (7, 0.5)]
        upscaled, _ = await run(service, upscale_request(parent.request, image.image, image.seed))
        assert upscaled.images[0].image.size == (128, 128)


async def test_family_rules_are_checked_by_prepare_before_queueing(service):
    with pytest.raises(RequestError, match="choose one of: Euler, DPM\\+\\+ 2M, UniPC"):
        service.prepare(for_model(service, "flux", sampler="LMS"))
    assert service.snapshot().entries == []


async def test_cancel_a_flux_render(service):
    job = service.submit(service.prepare(for_model(service, "flux", num_inference_steps=40, count=4)), owner="bob")
    started = asyncio.Event()
    job.add_progress_listener(lambda progress: started.set())
    await asyncio.wait_for(started.wait(), 60)
    assert service.cancel(job.key)
    with pytest.raises(JobCancelled):
        await job.result()
