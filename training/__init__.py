"""Tooling that builds the shipped models; not part of the bot at run time."""
