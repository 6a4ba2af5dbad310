"""How the bot tells a user that something went wrong.

Two kinds of failure reach a user:
- a problem with what they asked for (validation, permissions): an ephemeral message that names the
  problem and what is allowed; the bot carries on;
- a bug or an outage: logged with the job id, and the user gets a one-line apology quoting that id.
"""

from __future__ import annotations

import logging

import discord
from discord import app_commands

log = logging.getLogger(__name__)


class UserFacingError(Exception):
    """A problem the user can fix; `str(error)` is shown to them as is."""


async def send_ephemeral(interaction: discord.Interaction, text: str) -> None:
    """Answer privately whether or not the interaction was already acknowledged.

    After a public `defer(thinking=True)` Discord turns an "ephemeral" followup into a public edit of
    the thinking message, so validation must happen before deferring; this helper is for the cases
    where it did.
    """
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True)
        else:
            await interaction.response.send_message(text, ephemeral=True)
    except discord.HTTPException:
        # The token may have expired or the channel vanished: nothing left to tell the user through.
        log.warning("could not send an error message to user %s: %s", interaction.user.id, text)


def apology(job_id: int | str | None) -> str:
    if job_id is None:
        return "Sorry, something went wrong on our side. It has been logged."
    return f"Sorry, something went wrong on our side with job #{job_id}. It has been logged under that number."


async def report_unexpected(interaction: discord.Interaction, error: BaseException, *,
                            job_id: int | str | None = None, action: str = "interaction") -> None:
    """Log an unexpected error with the job id, and apologise to the user."""
    log.error("unexpected error in %s (job #%s, user %s)", action, job_id, interaction.user.id,
              exc_info=(type(error), error, error.__traceback__))
    await send_ephemeral(interaction, apology(job_id))


async def on_app_command_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
    """Tree-wide handler: checks that already answered stay quiet, everything else is an apology."""
    if isinstance(error, app_commands.CheckFailure):
        if not interaction.response.is_done():
            await send_ephemeral(interaction, "You can't use this command here.")
        return
    original = getattr(error, "original", error)
    if isinstance(original, UserFacingError):
        await send_ephemeral(interaction, str(original))
        return
    await report_unexpected(interaction, original, action=f"/{interaction.command.name if interaction.command else '?'}")
