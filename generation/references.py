"""Style and object references, named as Midjourney's: --sref URL --sw 0–1000, --oref URL --ow 0–1000.

How a model takes a reference depends on its family:

- SD 1.x/2.x and SDXL: an IP-Adapter the operator provides (`ip_adapter` in the models file, a weight
  file inside IP_ADAPTER_DIR with its CLIP image encoder in an `image_encoder` folder next to it, as in
  h94/IP-Adapter). Loaded twice with diffusers' `load_ip_adapter` (a style slot and an object slot);
  `set_ip_adapter_scale` gives the style slot InstantStyle's per-block scale (SDXL: only the
  up_blocks.0 attention that carries style; SD 1.x: the up blocks) and the object slot every block.
- Instruction-edit models that take several pictures (FLUX.2 [klein], Qwen-Image-Edit Plus): the
  references follow the edited picture in the pipeline's image list (their weight is not adjustable).
- Anything else: a RequestError saying so (the bot shows it privately).

A weight w maps to an IP-Adapter scale of 0.6·√(w/100): 100 (the default) is 0.6, 400 is 1.2, 1000 is
1.9, 0 turns the reference off. Importing this module does not import torch.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .request import GenerationRequest, RequestError

DEFAULT_WEIGHT = 100
MAX_WEIGHT = 1000
SCALE_AT_DEFAULT = 0.6
KINDS = ("sref", "oref")
_NAMES = {"sref": ("Style reference", "Style weight", "--sref"), "oref": ("Object reference", "Object weight", "--oref")}


@dataclass(frozen=True)
class Reference:
    kind: str  # "sref" (style) or "oref" (object)
    image: bytes
    weight: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.image).hexdigest()

    def picture(self) -> Any:
        import PIL.Image

        return PIL.Image.open(io.BytesIO(self.image)).convert("RGB")


def weight_of(request: GenerationRequest, kind: str) -> int:
    weight = getattr(request, f"{kind}_weight")
    return DEFAULT_WEIGHT if weight is None else weight


def references_of(request: GenerationRequest) -> list[Reference]:
    """The request's downloaded references, style first."""
    return [Reference(kind, image, weight_of(request, kind))
            for kind in KINDS if (image := getattr(request, f"{kind}_image")) is not None]


def has_references(request: GenerationRequest) -> bool:
    return any(getattr(request, f"{kind}_image") is not None or getattr(request, f"{kind}_url") for kind in KINDS)


def adapter_scale(weight: int) -> float:
    return SCALE_AT_DEFAULT * math.sqrt(max(weight, 0) / DEFAULT_WEIGHT)


def check_reference_fields(request: GenerationRequest) -> None:
    """RequestError for a weight out of range, a weight without its reference or an unreadable picture."""
    import PIL.Image

    for kind in KINDS:
        label, weight_label, flag = _NAMES[kind]
        weight = getattr(request, f"{kind}_weight")
        if weight is not None and (not isinstance(weight, int) or isinstance(weight, bool)
                                   or not 0 <= weight <= MAX_WEIGHT):
            raise RequestError(f"{weight_label} must be a whole number from 0 to {MAX_WEIGHT}, got {weight!r}.")
        url, image = getattr(request, f"{kind}_url"), getattr(request, f"{kind}_image")
        if weight is not None and url is None and image is None:
            raise RequestError(f"{weight_label} weighs the {label.lower()}: add {flag} with a picture's URL.")
        if url is not None and (not isinstance(url, str) or not url.startswith(("https://", "http://"))):
            raise RequestError(f"{flag} needs a picture's URL (https://…), got {url!r}.")
        if image is not None:
            try:
                with PIL.Image.open(io.BytesIO(image)) as opened:
                    opened.verify()
            except Exception:
                raise RequestError(f"The {label.lower()} is not a readable image; use a PNG or JPEG file.") from None


def check_references(request: GenerationRequest, info: Any, adapters: IpAdapters, source: Any) -> None:
    """RequestError when the request has references its model cannot take (the message says which can)."""
    from .edit_families import pictures_per_call

    kinds = [kind for kind in KINDS if getattr(request, f"{kind}_image") is not None or getattr(request, f"{kind}_url")]
    if not kinds:
        return
    family = info.family
    what = " and ".join(_NAMES[kind][0].lower() for kind in kinds)
    if family.edits_by_instruction:
        room = pictures_per_call(info) - (1 if request.init_image is not None else 0)
        if room < len(kinds):
            raise RequestError(
                f"{info.label} ({family.title}) takes {pictures_per_call(info)} picture(s) per render, so it cannot "
                f"take a {what} here; use FLUX.2 [klein] or Qwen-Image-Edit Plus, or remove {_flags(kinds)}."
            )
        return
    if family.key in ("sd", "sdxl"):
        if request.edit_mode is not None:
            raise RequestError(f"A {what} works with new pictures and image-to-image, not with a {request.edit_mode} "
                               f"edit; remove {_flags(kinds)}.")
        if adapters.name_for(source) is None:
            raise RequestError(
                f"{info.label} cannot take a {what}: no IP-Adapter is set up for it (the operator sets "
                f"ip_adapter in the models file, in IP_ADAPTER_DIR). Remove {_flags(kinds)}."
            )
        return
    raise RequestError(f"{info.label} ({family.title}) cannot take a {what}; remove {_flags(kinds)}.")


def _flags(kinds: list[str]) -> str:
    return " and ".join(_NAMES[kind][2] for kind in kinds)


def reference_text_fields(params: dict[str, Any]) -> list[tuple[str, Any]]:
    """A1111-style PNG text fields: `Style reference: <sha256>, Style weight: 100` (from the picture's bytes,
    or the stored `sref_sha256`), likewise Object reference/weight."""
    fields: list[tuple[str, Any]] = []
    for kind in KINDS:
        label, weight_label, _ = _NAMES[kind]
        image = params.get(f"{kind}_image")
        digest = hashlib.sha256(image).hexdigest() if isinstance(image, bytes) else params.get(f"{kind}_sha256")
        if digest:
            weight = params.get(f"{kind}_weight")
            fields += [(label, digest), (weight_label, DEFAULT_WEIGHT if weight is None else weight)]
    return fields


class IpAdapters:
    """IP-Adapter weights in IP_ADAPTER_DIR, loaded into an SD 1.x/SDXL pipeline while requests have references."""

    def __init__(self, folder: str | Path | None):
        self.folder = Path(folder).expanduser() if folder else None

    def name_for(self, source: Any) -> str | None:
        """The model's configured IP-Adapter file (None: none, or no IP_ADAPTER_DIR); RequestError when the
        models file names one that is not there."""
        name = getattr(source, "ip_adapter", None)
        if not name or self.folder is None:
            return None
        self.path(name)
        return str(name)

    def path(self, name: str) -> Path:
        assert self.folder is not None
        path = self.folder / name
        if not path.is_file():
            raise RequestError(f"The IP-Adapter {name!r} is not in IP_ADAPTER_DIR ({self.folder}).")
        return path

    def call_arguments(self, pipes: list[Any], source: Any, request: GenerationRequest) -> dict[str, Any]:
        """Load (or unload) the adapter for `request` on the pipelines sharing one UNet; the extra call
        arguments (`ip_adapter_image`, one picture per slot)."""
        pipe = pipes[0]
        references = references_of(request)
        loaded = getattr(pipe, "_imagine_ip_adapter", None)
        if not references:
            if loaded is not None:
                pipe.unload_ip_adapter()  # the original attention processors: the exact base model again
                for other in pipes[1:]:
                    other.register_modules(image_encoder=None, feature_extractor=None)
                pipe._imagine_ip_adapter = None
            return {}
        name = self.name_for(source)
        assert name is not None, "check_references refused references without an IP-Adapter"
        path = self.path(name)
        if loaded != str(path):
            if loaded is not None:
                pipe.unload_ip_adapter()
            pipe.load_ip_adapter(str(path.parent), subfolder="", weight_name=[path.name, path.name],
                                 image_encoder_folder="image_encoder")
            for other in pipes[1:]:
                other.register_modules(image_encoder=pipe.image_encoder, feature_extractor=pipe.feature_extractor)
            pipe._imagine_ip_adapter = str(path)
        by_kind = {reference.kind: reference for reference in references}
        style, subject = by_kind.get("sref"), by_kind.get("oref")
        scales = [_style_scale(pipe.unet, adapter_scale(style.weight) if style else 0.0),
                  adapter_scale(subject.weight) if subject else 0.0]
        for each in pipes:
            each.set_ip_adapter_scale(scales)
        first = (style or subject)
        assert first is not None
        images = [(style or first).picture(), (subject or first).picture()]  # a slot at scale 0 adds nothing
        return {"ip_adapter_image": images}


def _style_scale(unet: Any, scale: float) -> Any:
    """InstantStyle: SDXL's style lives in the middle attention of up_blocks.0; elsewhere the up blocks."""
    first_up = unet.up_blocks[0]
    attentions = len(getattr(first_up, "attentions", []) or [])
    if attentions == 3:
        return {"up": {"block_0": [0.0, scale, 0.0]}}
    return {"up": scale}
