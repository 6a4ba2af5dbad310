"""The buttons under results and status lines, the Edit form, and the views that hold them.

Every button is a DynamicItem whose custom id carries the generation id (and image index), e.g.
`gen:reroll:42`, `gen:var:42:0`, `gen:pick:42:3`. discord.py rebuilds the item from the id on every
click, and the record comes from storage, so buttons keep working after a restart. Only the owner
may use them; members with Manage Messages may also delete and cancel. New work goes through the
bot's one entry point (`Intake.submit`).
"""


from __future__ import annotations

import dataclasses
import logging
import re
from typing import TYPE_CHECKING, Any

import discord

from bot.errors import UserFacingError, report_unexpected, send_ephemeral
from bot.intake import Refused, WorkOrder
from generation.queue.records import request_from_record
from generation import GenerationRequest, RequestError
from storage import GenerationKind

if TYPE_CHECKING:
    from bot.host import Host
    from storage import GenerationRecord, Store

log = logging.getLogger(__name__)
Interaction = discord.Interaction["Host"]



class CustomId:
    """A button's custom id, declared once: `build` writes it, `template` (its DynamicItem's) reads it back,
    naming each field after the button's constructor parameter. Extra prefixes are older spellings that
    buttons on old messages still carry."""

    def __init__(self, *prefixes: str, **fields: str) -> None:
        self.prefix = prefixes[0]
        self.fields = fields  # name -> the regular expression of its value
        head = prefixes[0] if len(prefixes) == 1 else "(?:" + "|".join(prefixes) + ")"
        self.template = ":".join([head, *(f"(?P<{name}>{pattern})" for name, pattern in fields.items())])

    def build(self, **values: object) -> str:
        if values.keys() != self.fields.keys():
            raise TypeError(f"{self.prefix} takes {', '.join(self.fields)}, not {', '.join(values)}")
        return ":".join([self.prefix, *(str(values[name]) for name in self.fields)])


NUMBER, DIGIT = "[0-9]+", "[0-9]"


async def submit_child(interaction: Interaction, parent: GenerationRecord, kind: GenerationKind,
                       request: GenerationRequest, source_index: int | None = None) -> None:
    """New work derived from `parent`, through the bot's one entry point; a refusal is private."""
    fields = {item.name: getattr(request, item.name) for item in dataclasses.fields(request)}
    order = WorkOrder(kind, fields, parent=parent, source_index=source_index)
    outcome = await interaction.client.intake.submit(interaction, order)
    if isinstance(outcome, Refused):
        await send_ephemeral(interaction, outcome.message)


async def source_request(store: Store, record: GenerationRecord) -> GenerationRequest:
    """The record's request with its stored pictures: the init image and the references (the exact bytes)."""
    init_image = await store.read_init_image(record.id) if record.has_init_image else None
    references = await store.read_references(record.id) if record.sref_path or record.oref_path else {}
    return request_from_record(record, init_image, references)


class GenerationButton:
    """Shared behaviour of the generation buttons: load the record, check who may use it.

    Buttons that build new work on a result (reroll, U, V, Vary, Upscale) and Info are for anyone who
    can see it, as on Midjourney: the new generation is theirs (their queue share and history, the
    parent recorded), unless the operator turned SHARE_RESULTS off. Edit, Delete and Cancel stay with
    the owner and moderators (Manage Messages).
    Mixed into each DynamicItem (a DynamicItem subclass must name its template, so this is no base).
    """

    generation_id: int
    record: GenerationRecord
    open_to_everyone = False  # when results are shared

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any],
                             match: re.Match[str]) -> Any:
        # Each template names its groups after the constructor's parameters.
        return cls(**{name: int(value) if value.isdigit() else value for name, value in match.groupdict().items()})

    # The three discord.py overrides take Interaction[Any]: DynamicItem declares them generic in the
    # client type, so a narrower Interaction["Host"] would not be a compatible override.
    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        # discord.py turns an exception here into a silent refusal, so report it ourselves.
        try:
            return await self._allowed(interaction)
        except Exception as error:
            await report_unexpected(interaction, error, job_id=self.generation_id,
                                    action=f"{type(self).__name__} check")
            return False

    async def _allowed(self, interaction: Interaction) -> bool:
        allowed = interaction.client.settings.allowed_guilds
        if allowed and interaction.guild_id not in allowed:
            await send_ephemeral(interaction, "imagine-bot is not enabled in this server.")
            return False
        record = await interaction.client.store.get(self.generation_id)
        if record is None or record.deleted:
            await send_ephemeral(interaction, f"Generation #{self.generation_id} no longer exists.")
            return False
        if record.owner_id != interaction.user.id:
            shared = self.open_to_everyone and interaction.client.settings.share_results
            if not shared and not interaction.permissions.manage_messages:
                await send_ephemeral(
                    interaction,
                    f"Not yours: only <@{record.owner_id}> (or a moderator) can use this button of generation "
                    f"#{record.id}. Use /imagine to make your own.")
                return False
        self.record = record
        return True

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        try:
            await self.act(interaction)
        except (UserFacingError, RequestError) as error:
            await send_ephemeral(interaction, str(error))
        except Exception as error:  # nothing a click does may crash the bot
            await report_unexpected(interaction, error, job_id=self.generation_id, action=type(self).__name__)

    async def act(self, interaction: Interaction) -> None:
        raise NotImplementedError


def button(label: str, custom_id: str, *, emoji: str | None = None, style: discord.ButtonStyle = discord.ButtonStyle.secondary,
            row: int | None = None) -> discord.ui.Button[discord.ui.View]:
    return discord.ui.Button(label=label, custom_id=custom_id, emoji=emoji, style=style, row=row)


def image_index(record: GenerationRecord, index: int) -> int:
    if not 0 <= index < len(record.images):
        raise UserFacingError(f"Generation #{record.id} has no image {index + 1}.")
    return index


class GenerationModal(discord.ui.Modal):
    """A form about one generation (opened by its button). Its errors are handled here, once: a refusal
    is shown privately, anything unexpected is reported with the job id."""

    record: GenerationRecord
    action = "form"  # what the report calls it

    async def on_submit(self, interaction: Interaction) -> None:  # type: ignore[override]
        try:
            await self.submitted(interaction)
        except (UserFacingError, RequestError) as error:
            await send_ephemeral(interaction, str(error))
        except Exception as error:  # nothing a form does may crash the bot
            await report_unexpected(interaction, error, job_id=self.record.id, action=self.action)

    async def submitted(self, interaction: Interaction) -> None:
        raise NotImplementedError
