"""Settings: .env.example and the code agree, and the token never leaks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def example_keys() -> dict[str, str]:
    keys = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            keys[name.strip()] = value.strip()
    return keys


def test_every_setting_is_documented_and_every_documented_setting_is_read():
    in_code = {name.upper() for name in Settings.model_fields}
    in_example = set(example_keys())
    assert in_code - in_example == set(), "settings missing from .env.example"
    assert in_example - in_code == set(), ".env.example lists settings the code never reads"


def test_example_values_are_the_defaults(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    defaults = Settings()
    for name, value in example_keys().items():
        monkeypatch.setenv(name, value)
    from_example = Settings()
    assert from_example.model_dump() == defaults.model_dump()


def test_no_module_reads_the_environment_behind_settings_back():
    offenders = []
    for package in ("bot", "generation", "storage"):
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text()
            # Reading configuration (writing HF_HUB_OFFLINE for the hub libraries is no reading).
            if re.search(r"os\.getenv|os\.environ\.get|os\.environ\[[^]]+\](?!\s*=)|in os\.environ", text):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_token_is_secret_and_lists_parse(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DISCORD_TOKEN", "abc.def.ghi")
    monkeypatch.setenv("ALLOWED_GUILDS", "1, 22")
    settings = Settings()
    assert "abc.def.ghi" not in repr(settings) and "abc.def.ghi" not in str(settings.model_dump())
    assert settings.discord_token.get_secret_value() == "abc.def.ghi"
    assert settings.allowed_guilds == [1, 22]


def test_database_url_defaults_to_sqlite_in_data_dir(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    settings = Settings(data_dir=tmp_path / "d")
    assert settings.resolved_database_url == f"sqlite+aiosqlite:///{tmp_path / 'd' / 'imagine.db'}"
