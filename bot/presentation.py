"""What a generation looks like in Discord: result embeds, grids, upload encodings, status lines.

Pure functions of a record and image bytes; nothing here talks to Discord or the Store, so /show
and the runner build identical messages (`encode_result` then `result_message`).
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import discord
from PIL import Image, ImageFilter
from PIL.PngImagePlugin import PngInfo

from generation import PARAMETERS, GenerationRequest
from generation.editing import describe_edit
from storage import GenerationKind

if TYPE_CHECKING:
    from generation import Progress, QueueEntry
    from storage import GenerationRecord

# Room for the multipart envelope and the embed JSON that share the upload request.
UPLOAD_HEADROOM = 256 * 1024
EMBED_COLOUR = discord.Colour.from_rgb(88, 101, 242)
MAX_PROMPT_IN_TITLE = 256

KIND_LABELS = {
    GenerationKind.IMAGINE: "Imagined",
    GenerationKind.REROLL: "Rerolled",
    GenerationKind.VARIATION: "Variation",
    GenerationKind.UPSCALE: "Upscaled 2×",
    GenerationKind.EDIT: "Edited",
    GenerationKind.PICK: "Picked",
    GenerationKind.ZOOM: "Zoomed out",
    GenerationKind.SQUARE: "Made square",
    GenerationKind.PAN: "Panned",
    GenerationKind.REGION: "Region varied",
    GenerationKind.BLEND: "Blended",
}


@dataclass(frozen=True)
class EncodedImage:
    filename: str
    data: bytes
    shrunk_from: int | None = None  # size of the full PNG when this is a smaller stand-in

    def to_file(self) -> discord.File:
        # A discord.File is consumed by one upload, so every attempt gets a fresh one.
        return discord.File(io.BytesIO(self.data), filename=self.filename)


@dataclass(frozen=True)
class ResultMessage:
    """A result ready to post (the caller attaches the buttons), re-sendable: `files()` builds fresh uploads."""

    embed: discord.Embed
    image: EncodedImage
    content: str | None = None

    def files(self) -> list[discord.File]:
        return [self.image.to_file()]


def png_parameters(data: bytes) -> str | None:
    """The A1111 `parameters` text of a PNG, if it has one."""
    with Image.open(io.BytesIO(data)) as image:
        return image.info.get("parameters")


def compose_grid(images: Sequence[Image.Image]) -> Image.Image:
    """Two columns, as many rows as needed (a 2×2 grid for four images)."""
    if len(images) == 1:
        return images[0]
    cell_w = max(image.width for image in images)
    cell_h = max(image.height for image in images)
    columns = 2
    rows = math.ceil(len(images) / columns)
    grid = Image.new("RGB", (cell_w * columns, cell_h * rows), (0, 0, 0))
    for index, image in enumerate(images):
        grid.paste(image.convert("RGB"), ((index % columns) * cell_w, (index // columns) * cell_h))
    return grid


def _png_bytes(image: Image.Image, parameters: str | None) -> bytes:
    info = PngInfo()
    if parameters:
        info.add_text("parameters", parameters)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def _jpeg_bytes(image: Image.Image, quality: int, parameters: str | None) -> bytes:
    buffer = io.BytesIO()
    extra = {"comment": parameters.encode("utf-8")[:60000]} if parameters else {}
    image.convert("RGB").save(buffer, format="JPEG", quality=quality, **extra)
    return buffer.getvalue()


def fit_upload(png: bytes, *, stem: str, limit: int) -> EncodedImage:
    """The PNG itself when it fits under `limit`, else the best smaller encoding that does.

    JPEG at falling quality first (same pixels count), then halving the area until it fits; the full
    PNG stays in storage either way.
    """
    budget = max(limit - UPLOAD_HEADROOM, 64 * 1024)
    if len(png) <= budget:
        return EncodedImage(f"{stem}.png", png)
    parameters = png_parameters(png)
    with Image.open(io.BytesIO(png)) as opened:
        image = opened.convert("RGB")
    for quality in (90, 75):
        data = _jpeg_bytes(image, quality, parameters)
        if len(data) <= budget:
            return EncodedImage(f"{stem}.jpg", data, shrunk_from=len(png))
    while image.width > 16 and image.height > 16:
        image = image.resize((max(image.width * 7 // 10, 16), max(image.height * 7 // 10, 16)),
                             Image.Resampling.LANCZOS)
        data = _jpeg_bytes(image, 75, parameters)
        if len(data) <= budget:
            return EncodedImage(f"{stem}.jpg", data, shrunk_from=len(png))
    raise ValueError(f"cannot fit the image under {limit} bytes")


def result_png(record: GenerationRecord, image_bytes: list[bytes]) -> bytes:
    """The PNG to show: the stored image itself, or a grid carrying the first image's parameters."""
    if len(image_bytes) == 1:
        return image_bytes[0]
    images = [Image.open(io.BytesIO(data)) for data in image_bytes]
    try:
        return _png_bytes(compose_grid(images), png_parameters(image_bytes[0]))
    finally:
        for image in images:
            image.close()


def _distinct(values: list[int]) -> list[int]:
    return list(dict.fromkeys(values))


def _seeds(record: GenerationRecord) -> list[int]:
    """The images' seeds, each once: variations of one image all share the parent's seed."""
    return _distinct([image.seed for image in record.images] or ([record.seed] if record.seed is not None else []))


def _variation_seeds(record: GenerationRecord) -> list[int]:
    """What tells the images of a variation grid apart (empty for a generation without variations)."""
    if not record.variation_strength:
        return []
    seeds = [image.variation_seed for image in record.images if image.variation_seed is not None]
    return _distinct(seeds or ([record.variation_seed] if record.variation_seed is not None else []))


def _seeds_text(seeds: list[int]) -> str:
    return ", ".join(str(seed) for seed in seeds) or "none"


def _size_text(record: GenerationRecord) -> str:
    if record.images:
        return f"{record.images[0].width}×{record.images[0].height}"
    return f"{record.width}×{record.height}"


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"


def display_prompt(record: GenerationRecord) -> str:
    """The prompt as a title ("Blend" for a /blend without one)."""
    return record.prompt if record.prompt.strip() else "Blend"


def result_embed(record: GenerationRecord, *, image: EncodedImage | None = None,
                 warning: str | None = None) -> discord.Embed:
    prompt = display_prompt(record)
    title = prompt if len(prompt) <= MAX_PROMPT_IN_TITLE else prompt[:MAX_PROMPT_IN_TITLE - 1] + "…"
    embed = discord.Embed(title=title, colour=EMBED_COLOUR)
    seeds = _seeds(record)
    embed.add_field(name="Seed" if len(seeds) <= 1 else "Seeds", value=_seeds_text(seeds), inline=True)
    embed.add_field(name="Size", value=_size_text(record), inline=True)
    rendered = record.kind is not GenerationKind.PICK  # a pick copies an image: no steps, no time of its own
    if rendered:
        embed.add_field(name="Steps", value=str(record.num_inference_steps), inline=True)
    embed.add_field(name="Sampler", value=str(record.sampler), inline=True)
    embed.add_field(name="Guidance", value=f"{record.guidance_scale:g}", inline=True)
    if record.duration_s is not None and rendered:
        embed.add_field(name="Time", value=f"{record.duration_s:.1f} s", inline=True)
    if record.negative_prompt:
        embed.add_field(name="Negative prompt", value=record.negative_prompt[:1024], inline=False)
    variation_seeds = _variation_seeds(record)
    if variation_seeds:
        label = "seed" if len(variation_seeds) == 1 else "seeds"
        embed.add_field(name="Variation", inline=True,
                        value=f"{label} {_seeds_text(variation_seeds)}, strength {record.variation_strength:g}")
    edit = edit_label(record)
    if edit is not None:
        embed.add_field(name="Edit", value=edit, inline=True)
    elif record.has_init_image:
        embed.add_field(name="Init image", value=f"strength {record.strength:g}", inline=True)
    said = turn_line(record)
    if said is not None:
        embed.add_field(name="Turn", value=said[:1024], inline=False)
    if warning is not None:  # e.g. words of the prompt the model could not read (generation.prompt_words)
        embed.add_field(name="⚠️ Note", value=warning[:1024], inline=False)
    footer = f"#{record.id} · {KIND_LABELS[record.kind]} · {record.model}"
    if record.parent_id is not None:
        footer += f" · from #{record.parent_id}"
    if image is not None and image.shrunk_from is not None:
        footer += (f" · shown as a {_mib(len(image.data))} JPEG to fit Discord's upload limit;"
                   f" the full {_mib(image.shrunk_from)} PNG is kept in history")
    embed.set_footer(text=footer)
    if image is not None:
        embed.set_image(url=f"attachment://{image.filename}")
    return embed


def turn_line(record: GenerationRecord) -> str | None:
    """A conversation turn's words and what they were read as: “make it green” → a green circle … · seed 7 kept."""
    if record.turn_text is None:
        return None
    reading = record.turn_reading or {}
    words = " ".join(record.turn_text.split())
    words = words if len(words) <= 200 else words[:199] + "…"
    line = f"“{words}” {reading.get('summary') or ''}".strip()
    if reading.get("reading"):  # the words allowed more than one reading: which one was chosen
        line += f" ({reading['reading']})"
    if reading.get("fallback"):
        line += " (read by the built-in rules: the interpreter model was not usable)"
    return line


def edit_label(record: GenerationRecord) -> str | None:
    """"zoom out 2×", "pan right", "region centre", "blend" — or None for a generation that is no edit."""
    if not record.edit_mode:
        return None
    return describe_edit(GenerationRequest("-", edit_mode=record.edit_mode, edit_factor=record.edit_factor,
                                           edit_direction=record.edit_direction, edit_region=record.edit_region))


def result_text(embed: discord.Embed) -> tuple[str, str]:
    """The gallery layout's text, from the same embed the classic layout posts: (heading and fields, footer).

    Fields read `**Seed:** 7 · **Size:** 64×64 …` (inline ones on one line), the footer is Discord's small
    text (`-# #12 · Imagined · tinyshapes`), so both layouts say the same things.
    """
    lines = [f"### {discord.utils.escape_markdown(embed.title or '')}"]
    inline: list[str] = []
    for field in embed.fields:
        text = f"**{field.name}:** {field.value}"
        if field.inline:
            inline.append(text)
            continue
        if inline:
            lines.append(" · ".join(inline))
            inline = []
        lines.append(text)
    if inline:
        lines.append(" · ".join(inline))
    return "\n".join(lines), f"-# {embed.footer.text or ''}"


def footer_generation_id(embed: discord.Embed) -> int | None:
    """The generation a result embed shows (its footer starts with "#<id> ·"), if it is one of ours."""
    match = re.match(r"#([0-9]+) ·", embed.footer.text or "")
    return int(match.group(1)) if match else None


def message_generation_ids(message: discord.Message) -> set[int]:
    """The generations a posted result shows: from its embed footer (classic) or footer text (gallery)."""
    found = {footer_generation_id(embed) for embed in message.embeds}
    stack: list[object] = list(message.components)
    while stack:
        component = stack.pop()
        content = getattr(component, "content", None)
        if isinstance(content, str):
            match = re.match(r"-# #([0-9]+) ·", content)
            if match:
                found.add(int(match.group(1)))
        stack.extend(getattr(component, "children", None) or [])
    return {generation_id for generation_id in found if generation_id is not None}


def encode_result(record: GenerationRecord, image_bytes: list[bytes], *, size_limit: int) -> EncodedImage:
    """The picture to upload (CPU-heavy for big images: callers on the event loop use a thread)."""
    return fit_upload(result_png(record, image_bytes), stem=f"imagine_{record.id}", limit=size_limit)


def result_message(record: GenerationRecord, image: EncodedImage, *, mention_owner: bool = False,
                   warning: str | None = None) -> ResultMessage:
    """The embed around an encoded picture; a result of a button press says who pressed it."""
    return ResultMessage(result_embed(record, image=image, warning=warning), image,
                         requester_line(record, mention_owner=mention_owner))


def requester_line(record: GenerationRecord, *, mention_owner: bool = False) -> str | None:
    """"Rerolled by @bob" under a result built on another (a button press); the owner's mention alone where
    the result goes to the channel; None for a command's own result in its reply."""
    if record.parent_id is not None:
        return f"{KIND_LABELS[record.kind]} by <@{record.owner_id}>"
    return f"<@{record.owner_id}>" if mention_owner else None


# ----------------------------------------------------------------------------- status message

def status_header(request: GenerationRequest) -> str:
    prompt = request.prompt if len(request.prompt) <= 200 else request.prompt[:199] + "…"
    count = f" ×{request.count}" if request.count > 1 else ""
    return f"**{discord.utils.escape_markdown(prompt)}**{count} · {request.width}×{request.height}"


def queued_status(request: GenerationRequest, entry: QueueEntry | None) -> str:
    """The first status line: where the job stands and when it should be done."""
    if entry is None:
        return f"{status_header(request)}\n⏳ Starting…"
    eta = "under a second" if entry.eta_s < 1 else f"~{entry.eta_s:.0f} s"
    where = "Starting now" if entry.position == 0 else f"Queued — {queue_place(entry)}"
    return f"{status_header(request)}\n⏳ {where}, ETA {eta}"


def queue_place(entry: QueueEntry) -> str:
    """Where a waiting job stands: batches ahead of it, and the jobs that share its batch (one call renders
    them together, so they share its place and ETA)."""
    others = entry.batch_jobs - 1
    with_others = f", with {others} other{'s' if others != 1 else ''}" if others else ""
    if entry.position == 1 and others:
        return f"next batch{with_others}"
    return f"position {entry.position}" + (f" (a batch{with_others})" if others else "")


def rendering_status(request: GenerationRequest, progress: Progress, blurred: bool = False) -> str:
    note = " · preview blurred by this server's content rules" if blurred else ""
    return f"{status_header(request)}\n🎨 Rendering step {progress.step}/{progress.total}{note}"


# A blurred preview keeps the layout and colours, nothing recognisable (radius: this share of the longer side).
PREVIEW_BLUR_SHARE = 0.12


def preview_file(progress: Progress, blurred: bool = False) -> discord.File | None:
    if progress.preview is None:
        return None
    buffer = io.BytesIO()
    preview = progress.preview.convert("RGB")
    if blurred:
        preview = preview.filter(ImageFilter.GaussianBlur(max(4.0, PREVIEW_BLUR_SHARE * max(preview.size))))
    preview.save(buffer, format="PNG")
    buffer.seek(0)
    return discord.File(buffer, filename="preview.png")


def info_embed(record: GenerationRecord, request: GenerationRequest, prompt_line: str,
               options: Sequence[str] = ()) -> discord.Embed:
    """Every parameter of a generation (labels from the parameter table), and the prompt that reproduces it
    pasted into `/imagine prompt:` (with `options`, the ones that have no inline flag)."""
    embed = discord.Embed(title=f"Generation #{record.id}", colour=EMBED_COLOUR)
    seeds, variation_seeds = _seeds(record), _variation_seeds(record)
    rows: list[tuple[str, str]] = []
    for parameter in PARAMETERS:
        value = getattr(request, parameter.field)
        if parameter.field == "seed":
            rows.append(("Seed" if len(seeds) <= 1 else "Seeds", _seeds_text(seeds)))
        elif parameter.field == "strength":
            if record.has_init_image and record.edit_mode == "instruction":  # no strength: the words say what changes
                rows.append(("Init image", "yes (the picture the words edit)"))
            elif record.has_init_image:
                rows.append(("Init image", f"yes (strength {value:g})"))
        elif parameter.field == "negative_prompt":
            rows.append((parameter.label, value or "none"))
        elif parameter.field == "width":
            rows.append(("Size", f"{request.width}×{request.height}"))
        elif parameter.field == "height":
            continue
        elif parameter.kind == "bool":
            if value:
                rows.append((parameter.label, "yes"))
        elif value is not None:
            rows.append((parameter.label, f"{value:g}" if isinstance(value, float) else str(value)))
    if variation_seeds:
        label = "Variation seed" if len(variation_seeds) == 1 else "Variation seeds"
        rows.append((label, f"{_seeds_text(variation_seeds)} (strength {request.variation_strength:g})"))
    edit = edit_label(record)
    if edit is not None:
        rows.append(("Edit", edit))
    rows.append(("Kind", KIND_LABELS[record.kind] + (f" from #{record.parent_id}" if record.parent_id else "")))
    said = turn_line(record)
    if said is not None:
        rows.append(("Turn", said))
    rows.append(("Status", record.status.value))
    if record.duration_s is not None:
        rows.append(("Time", f"{record.duration_s:.2f} s"))
    embed.description = "\n".join(f"**{name}:** {discord.utils.escape_markdown(value)}" for name, value in rows)
    # One unbroken line in a code block (Discord wraps it on screen): copied, it pastes into prompt: as is.
    extra = f"\nwith the options {' '.join(options)}" if options else ""
    embed.add_field(name="Reproduce: paste into /imagine prompt:", value=f"```\n{prompt_line[:980]}\n```{extra}",
                    inline=False)
    if edit is not None and record.edit_mode != "instruction":  # an instruction edit is /imagine with its picture
        embed.set_footer(text="An edit has no /imagine option: the line above renders its prompt on a blank canvas; "
                              "the record (and the PNG) keep what re-makes the edit.")
    elif variation_seeds:
        embed.set_footer(text="Variation seeds have no /imagine option: the line above renders the base image; "
                              "use the V / Vary buttons for variations.")
    return embed
