"""A server's rules for new work, as pure functions: banned words, allowed channels and models, the
daily quota's window, and which parameters a server may default.

The values live in storage (`GuildConfigRecord`, set with /config); `Intake.draft` applies them and
the runner applies the NSFW policy. Nothing here does I/O.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from generation import PARAMETERS

NSFW_POLICIES = ("block", "spoiler", "allow")
# What a server may default: what a member may (/settings), plus the model.
SERVER_DEFAULT_FIELDS = tuple(parameter.field for parameter in PARAMETERS
                              if parameter.member_default or parameter.field == "model")
MAX_BANNED_WORDS = 200
MAX_BANNED_WORD_CHARS = 100
_WORD = re.compile(r"\w+")


def normalize(text: str) -> str:
    """Case-, accent- and width-insensitive form: NFKD (ｆｕｌｌ → full, é → e + ◌́), marks dropped, casefolded."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(char for char in decomposed if not unicodedata.combining(char))
    return unicodedata.normalize("NFKC", stripped.casefold())


def words(text: str) -> list[str]:
    return _WORD.findall(normalize(text))


def banned_phrase_in(texts: Iterable[str], banned: Iterable[str]) -> str | None:
    """The first banned word or phrase found as whole words in any of `texts` (None if none is).

    "cat" matches "a Cat!" and "ＣＡＴ" but not "category"; "red panda" matches "a RED  pandá".
    """
    phrases = [tuple(words(phrase)) for phrase in banned]
    phrases = [phrase for phrase in phrases if phrase]
    if not phrases:
        return None
    for text in texts:
        tokens = words(text)
        for phrase in phrases:
            size = len(phrase)
            if any(tuple(tokens[start:start + size]) == phrase for start in range(len(tokens) - size + 1)):
                return " ".join(phrase)
    return None


def parse_word_list(text: str) -> list[str]:
    """Comma- or newline-separated words and phrases, trimmed, empty ones dropped."""
    return [" ".join(part.split()) for part in re.split(r"[,\n]", text) if part.strip()]


def quota_window(now: datetime) -> tuple[datetime, datetime]:
    """The UTC day `now` falls in: (its start, the next reset)."""
    start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


def channel_allowed(allowed: Iterable[int], channel_ids: Iterable[int | None]) -> bool:
    """Whether one of `channel_ids` (a channel, and a thread's parent) is allowed; an empty list allows all."""
    allowed_set = set(allowed)
    return not allowed_set or any(channel_id in allowed_set for channel_id in channel_ids if channel_id)


def nsfw_decision(*, flagged_by: set[str], age_restricted: bool, policy: str) -> str:
    """What to do with a finished result: "post", "spoiler" or "hold".

    An image the model's own safety checker flagged is blank (such pipelines return it black): it is
    never posted, anywhere. Otherwise age-restricted channels post as usual, and elsewhere the policy
    decides (block → hold).
    """
    if "safety_checker" in flagged_by:
        return "hold"
    if not flagged_by or age_restricted or policy == "allow":
        return "post"
    return "spoiler" if policy == "spoiler" else "hold"


NSFW_SOURCES = {"safety_checker": "the model's own safety checker", "classifier": "the NSFW classifier",
                "unchecked": "nothing (made in an age-restricted channel, where results are not classified)"}


@dataclasses.dataclass(frozen=True)
class Screening:
    """What the content policy makes of a finished result in one place: "post", "spoiler" or "hold"."""

    action: str
    flagged_by: frozenset[str] = frozenset()
    policy: str = "block"
    age_restricted: bool = False

    def reason(self, generation_id: int) -> str:
        """Why a held result was not posted (for its owner and /history)."""
        if "safety_checker" in self.flagged_by:
            return (f"the model's own safety checker flagged generation #{generation_id} as not safe for work, "
                    "so it came out blank and was not posted")
        if self.flagged_by == {"unchecked"}:
            return (f"generation #{generation_id} was made in an age-restricted channel, where results are not "
                    "checked for NSFW content, and the content policy here holds unchecked images back")
        return (f"generation #{generation_id} was flagged as not safe for work by "
                f"{' and '.join(NSFW_SOURCES.get(source, source) for source in sorted(self.flagged_by))}; "
                "the content policy here holds such images back outside age-restricted channels")
