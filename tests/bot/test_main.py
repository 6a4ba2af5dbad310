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


# ---------------------------------------------------------------- no token; the playground entry point

import io
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import playground.__main__ as playground_main
from bot.lock import InstanceLock
from playground.simulator import lock_path

REPO = Path(__file__).resolve().parents[2]


def test_no_token_exits_with_status_2_and_one_line_naming_make_demo(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    assert main_module.main() == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "DISCORD_TOKEN" in lines[0] and "make demo" in lines[0]
    assert not (tmp_path / "data").exists()  # nothing was started or created


@pytest.mark.system(reason="python -m bot in a process")
def test_python_m_bot_without_a_token_is_status_2_and_one_line(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "DISCORD_TOKEN"}
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run([sys.executable, "-m", "bot"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1
    assert "make demo" in result.stderr


def test_the_playground_entry_point_runs_it_with_a_stop_signal(tmp_path, monkeypatch, capsys):
    chosen = []

    async def fake_playground(settings, *, stop):
        chosen.append(settings)

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    monkeypatch.setattr("playground.simulator.run_playground", fake_playground)
    assert playground_main.main() == 0
    assert len(chosen) == 1 and chosen[0].discord_token is None
    assert capsys.readouterr().out.strip().splitlines()[-1] == "Playground stopped."


def test_ctrl_c_is_one_clean_stop_with_status_0(tmp_path, monkeypatch, capsys):
    stopped = []

    async def interrupted_playground(settings, *, stop):
        os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C in the terminal sends
        await stop.wait()
        stopped.append(True)

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    monkeypatch.setattr("playground.simulator.run_playground", interrupted_playground)
    assert playground_main.main() == 0
    captured = capsys.readouterr()
    assert stopped == [True]
    assert captured.err.strip() == "Stopping…" and "Traceback" not in captured.out + captured.err
    assert captured.out.strip().endswith("Playground stopped.")


def test_a_second_playground_is_refused_in_one_line_before_its_data_is_touched(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    settings = Settings(_env_file=None)
    data = settings.data_dir / "playground" / "first-instance.db"
    data.parent.mkdir(parents=True)
    data.write_text("in use")
    with InstanceLock(lock_path(settings), what="An imagine-bot playground"):
        assert playground_main.main() == main_module.EXIT_ALREADY_RUNNING
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "already running" in err and str(os.getpid()) in err
    assert data.read_text() == "in use"


def test_a_second_discord_bot_on_the_same_data_is_refused_before_logging_in(tmp_path, monkeypatch, capsys):
    attempts = []

    async def start(self, token, *, reconnect=True):
        attempts.append(token)

    monkeypatch.setattr(discord.Client, "start", start)
    settings = settings_with_token(tmp_path)
    with InstanceLock(settings.data_dir / "imagine-bot.lock", what="imagine-bot"):
        assert main_module.run_discord(settings) == main_module.EXIT_ALREADY_RUNNING
    assert attempts == []
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.system(reason="runs make")
def test_the_make_demo_recipe_adds_no_error_line_to_a_refusal():
    recipe = subprocess.run(["make", "-n", "demo", "VENV=.venv"], cwd=REPO, capture_output=True, text=True)
    assert recipe.returncode == 0
    assert f"[ $status -eq {main_module.EXIT_ALREADY_RUNNING} ] || exit $status" in recipe.stdout


@pytest.mark.system(reason="runs make")
def test_every_make_target_has_a_recipe():
    makefile = (REPO / "Makefile").read_text()
    targets = re.search(r"^\.PHONY:(.*)$", makefile, re.M).group(1).split()
    assert {"demo", "test", "check", "bench", "screenshot", "tour"} <= set(targets)
    for target in targets:
        dry = subprocess.run(["make", "-n", target], cwd=REPO, capture_output=True, text=True)
        assert dry.returncode == 0, dry.stderr
        assert "Nothing to be done" not in dry.stdout + dry.stderr and dry.stdout.strip(), target


@pytest.fixture
def log_stream():
    stream = io.StringIO()
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    handler = main_module.configure_logging("INFO", stream)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)
    assert root.handlers == before or handler not in root.handlers


def test_the_start_up_log_keeps_what_matters_and_drops_the_noise(log_stream):
    logging.getLogger("discord.client").warning("davey is not installed, voice will NOT be supported")
    logging.getLogger("discord.client").warning("PyNaCl is not installed, voice will NOT be supported")
    logging.getLogger("discord.ext.commands.bot").warning(
        "Privileged message content intent is missing, commands may not work as expected.")
    logging.getLogger("discord.state").warning("Guilds intent seems to be disabled. This may cause state related issues.")
    logging.getLogger("alembic.runtime.migration").info("Context impl SQLiteImpl.")
    logging.getLogger("diffusers.models.modeling_utils").warning(
        "Cannot initialize model with low cpu memory usage because `accelerate` was not found in the environment.")
    logging.getLogger("storage.store").warning("a warning worth reading")
    logging.getLogger("alembic.runtime.migration").warning("an alembic warning worth reading")
    lines = log_stream.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert "a warning worth reading" in lines[0] and "an alembic warning" in lines[1]
    assert "\x1b[" not in log_stream.getvalue()  # a log file gets no colour codes


def test_hugging_face_progress_bars_are_off_and_its_records_reach_the_one_handler(log_stream):
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    assert not diffusers_logging.is_progress_bar_enabled()
    assert not transformers_logging.is_progress_bar_enabled()
    transformers_logging.get_logger("transformers.image_processing_utils").warning(
        "`CLIPImageProcessor` requires torchvision (not installed); falling back")
    diffusers_logging.get_logger("diffusers.pipelines").warning("a diffusers warning worth reading")
    assert log_stream.getvalue().count("\n") == 1 and "a diffusers warning worth reading" in log_stream.getvalue()


@pytest.mark.parametrize("values, threads", [
    ({}, 1),  # the shipped tiny model on its own: one thread
    ({"cpu_threads": 2}, 2),  # an explicit CPU_THREADS always wins
    ({"extra_models": "stabilityai/sd-turbo"}, None),  # a real model: torch's default (one per core)
    ({"model": "/models/dreamshaper_8.safetensors"}, None),
])
def test_the_cpu_thread_default_suits_the_model(values, threads, monkeypatch):
    monkeypatch.delenv("CPU_THREADS", raising=False)
    settings = Settings(_env_file=None, **values).with_cpu_thread_default()
    assert settings.cpu_threads == threads
