"""/imagine: a prompt (with optional inline --flags) and options, handed to the bot's one entry point.

The command's options are derived from the request's parameter table (`generation.PARAMETERS`):
names, descriptions, ranges (from the operator's limits) and choices, so a new parameter needs no
code here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Optional

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import send_ephemeral
from bot.intake import Refused, WorkOrder, check_attachment
from generation import ASPECT_RATIOS, PARAMETERS, SAMPLERS, Limits, Parameter, RequestError
from storage import GenerationKind

if TYPE_CHECKING:
    from bot.host import Host

DEFAULT_LORA_WEIGHT = 0.8
# Discord accepts at most 25 choices per option.
MAX_CHOICES = 25
Interaction = discord.Interaction["Host"]
Callback = Callable[..., Coroutine[Any, Any, None]]


def option_annotation(parameter: Parameter, limits: Limits) -> Any:
    """The discord.py annotation of a parameter's option: its type with its bounds."""
    bounds = parameter.limits(limits)
    base: Any = {"text": str, "int": int, "float": float, "choice": str, "bool": bool}[parameter.kind]
    if bounds is not None:
        low, high = bounds
        base = app_commands.Range[base, base(low), base(high)]
    return base


def option_choices(parameter: Parameter, models: dict[str, str]) -> list[app_commands.Choice[str]] | None:
    """Choices for the sampler (the A1111 names) and the model ({name: display name})."""
    if parameter.field == "sampler":
        return [app_commands.Choice(name=name, value=name) for name in SAMPLERS[:MAX_CHOICES]]
    if parameter.field == "model":
        return [app_commands.Choice(name=label, value=name) for name, label in list(models.items())[:MAX_CHOICES]]
    return None


def build_command(name: str, description: str, parameters: tuple[Parameter, ...], limits: Limits,
                  models: dict[str, str], callback: Callback, *, required: tuple[str, ...] = (),
                  extra: tuple[inspect.Parameter, ...] = (), extra_descriptions: dict[str, str] | None = None,
                  extra_choices: dict[str, list[app_commands.Choice[str]]] | None = None,
                  ) -> app_commands.Command[Any, ..., None]:
    """A slash command whose options are `parameters` (by option name) plus `extra` ones.

    discord.py reads options from the callback's signature, so the signature is built from the table.
    """
    signature = [inspect.Parameter("interaction", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                   annotation=discord.Interaction)]
    descriptions = dict(extra_descriptions or {})
    choices = dict(extra_choices or {})
    for parameter in parameters:
        annotation = option_annotation(parameter, limits)
        is_required = parameter.option in required
        signature.append(inspect.Parameter(
            parameter.option, inspect.Parameter.KEYWORD_ONLY,
            annotation=annotation if is_required else Optional[annotation],
            default=inspect.Parameter.empty if is_required else None))
        descriptions[parameter.option] = parameter.description
        found = option_choices(parameter, models)
        if found is not None:
            choices[parameter.option] = found
    signature.extend(extra)

    async def command(interaction: discord.Interaction, **options: Any) -> None:
        await callback(interaction, **options)

    command.__signature__ = inspect.Signature(signature)  # type: ignore[attr-defined]
    command = app_commands.describe(**descriptions)(command)
    if choices:
        command = app_commands.choices(**choices)(command)
    return app_commands.Command(name=name, description=description, callback=command)


def model_choices(bot: Host) -> dict[str, str]:
    """{model name: what members see}: display names from MODELS_FILE where it gives them."""
    return {name: bot.queue.model_label(name) for name in bot.settings.model_names}


IMAGINE_PARAMETERS = tuple(parameter for parameter in PARAMETERS if parameter.command_option)
OPTION_FIELDS = {parameter.option: parameter.field for parameter in IMAGINE_PARAMETERS}
# Reference pictures (--sref, --oref): an attachment each, whose URL the job downloads (bot.reference_downloads).
REFERENCE_PARAMETERS = tuple(parameter for parameter in PARAMETERS if parameter.field in ("sref_url", "oref_url"))


class Imagine(commands.Cog):
    """The /imagine command."""

    def __init__(self, bot: Host) -> None:
        self.bot = bot
        settings = bot.settings
        limits = bot.queue.limits
        keyword = inspect.Parameter.KEYWORD_ONLY
        extra = [
            inspect.Parameter("aspect_ratio", keyword, annotation=Optional[str], default=None),
            inspect.Parameter("init_image", keyword, annotation=Optional[discord.Attachment], default=None),
        ]
        # --sref/--oref: an attachment option named like the flag (the parameter table declares the URL field).
        extra += [inspect.Parameter(parameter.option, keyword, annotation=Optional[discord.Attachment], default=None)
                  for parameter in REFERENCE_PARAMETERS]
        choices = {"aspect_ratio": [app_commands.Choice(name=ratio, value=ratio) for ratio in ASPECT_RATIOS]}
        descriptions = {"aspect_ratio": "Shape of the image (ignored when width and height are given)",
                        "init_image": "Start from this picture (PNG, JPEG or WebP)",
                        **{parameter.option: parameter.description.replace("(URL)", "(PNG, JPEG or WebP)")
                           for parameter in REFERENCE_PARAMETERS}}
        loras = bot.queue.lora_names()[:MAX_CHOICES]
        if loras:  # the same as <lora:name:weight> in the prompt, picked from LORA_DIR
            extra += [inspect.Parameter("lora", keyword, annotation=Optional[str], default=None),
                      inspect.Parameter("lora_weight", keyword, annotation=Optional[app_commands.Range[float, 0.0, 2.0]],
                                        default=None)]
            choices["lora"] = [app_commands.Choice(name=name, value=name) for name in loras]
            descriptions["lora"] = "A LoRA to apply (same as <lora:name:0.8> in the prompt)"
            descriptions["lora_weight"] = "How strongly the LoRA applies (default 0.8)"
        self.command = build_command(
            "imagine", "Create images from a text prompt", IMAGINE_PARAMETERS, limits, model_choices(bot),
            self.imagine, required=("prompt",), extra=tuple(extra), extra_descriptions=descriptions,
            extra_choices=choices)

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.command)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.command.name)

    async def imagine(self, interaction: Interaction, *, aspect_ratio: str | None = None,
                      init_image: discord.Attachment | None = None, lora: str | None = None,
                      lora_weight: float | None = None, **options: Any) -> None:
        references = {parameter.field: options.pop(parameter.option, None) for parameter in REFERENCE_PARAMETERS}
        fields = {OPTION_FIELDS[option]: value for option, value in options.items() if value is not None}
        for field, attachment in references.items():
            if attachment is None:
                continue
            try:
                check_attachment(attachment)
            except RequestError as error:
                await send_ephemeral(interaction, str(error).replace("init_image", field.removesuffix("_url")))
                return
            fields[field] = attachment.url
        if lora is not None:
            fields["prompt"] = f"{fields['prompt']} <lora:{lora}:{DEFAULT_LORA_WEIGHT if lora_weight is None else lora_weight:g}>"
        order = WorkOrder(GenerationKind.IMAGINE, fields, with_defaults=True, aspect_ratio=aspect_ratio,
                          attachment=init_image)
        outcome = await self.bot.intake.submit(interaction, order)
        if isinstance(outcome, Refused):
            await send_ephemeral(interaction, outcome.message)


async def setup(bot: Host) -> None:
    await bot.add_cog(Imagine(bot))
