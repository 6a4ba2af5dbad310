"""The unknown-flag message lists every flag a member can type, --repeat included."""

from __future__ import annotations

import pytest

from generation import RequestError
from generation.flags import FLAG_PARAMETERS, REPEAT_FLAG, parse_prompt_flags


def test_an_unknown_flag_lists_every_flag_including_repeat():
    with pytest.raises(RequestError) as refused:
        parse_prompt_flags("a red circle --colour red")
    message = str(refused.value)
    assert message.startswith("Unknown flag --colour.")
    for flag in ("--ar", *FLAG_PARAMETERS, REPEAT_FLAG):
        assert f" {flag}" in message, flag
