"""`python -m bot`: a token means a real login, and a refused or unreachable login is one clear line."""

from __future__ import annotations

import aiohttp
import discord
import pytest

import bot.__main__ as main_module
from bot.settings import Settings


def settings_with_token(tmp_path) -> Settings:
    return Settings(_env_file=None, discord_token="not.a.token", data_dir=tmp_path)


@pytest.mark.parametrize("error, expected", [
    (discord.LoginFailure("Improper token has been passed."), "Discord rejected DISCORD_TOKEN"),
    (aiohttp.ClientConnectionError("no route"), "Could not reach Discord"),
])
def test_a_failed_login_is_one_line_not_a_traceback(tmp_path, monkeypatch, capsys, error, expected):
    attempts = []

    async def refuse(self, token, *, reconnect=True):
        attempts.append(token)
        raise error

    monkeypatch.setattr(discord.Client, "start", refuse)
    assert main_module.run_discord(settings_with_token(tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert attempts == ["not.a.token"]  # a real gateway login was attempted with the token
    assert err.startswith(expected) and "\n" not in err and "Traceback" not in err
    assert "not.a.token" not in err


def test_no_token_means_the_playground(tmp_path, monkeypatch):
    chosen = []

    async def fake_playground(settings):
        chosen.append(settings)

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    monkeypatch.setattr("bot.playground.run_playground", fake_playground)
    assert main_module.main() == 0
    assert len(chosen) == 1 and chosen[0].discord_token is None
