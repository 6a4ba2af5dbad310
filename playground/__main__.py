"""`python -m playground` (`make demo`): the offline playground, with the bot's logging and Ctrl-C handling.

Exit status: 0 after a clean stop, 75 when another playground already runs on this data folder (one
line, before touching it), 2 when it cannot start (one line).
"""

from __future__ import annotations

import sys

from bot.__main__ import EXIT_ALREADY_RUNNING, configure_logging, load_settings, run_until_signalled
from bot.lock import AlreadyRunning
from bot.settings import Settings
from playground import simulator


def main() -> int:
    settings = load_settings()
    configure_logging(settings.log_level)
    return run_playground_until_stopped(settings)


def run_playground_until_stopped(settings: Settings) -> int:
    import simcord

    try:
        run_until_signalled(lambda stop: simulator.run_playground(settings, stop=stop))
    except AlreadyRunning as refusal:
        print(refusal, file=sys.stderr)
        return EXIT_ALREADY_RUNNING
    except OSError as error:
        print(f"The playground could not start: {error}", file=sys.stderr)
        return 2
    except simcord.SetupError as error:
        if "port" not in str(error):
            raise
        print(f"The playground could not listen on port {settings.playground_port} (in use?); "
              "set PLAYGROUND_PORT to another port.", file=sys.stderr)
        return 2
    print("Playground stopped.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
