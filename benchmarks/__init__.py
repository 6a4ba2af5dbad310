"""Benchmarks (tooling, not the product): `python -m benchmarks.<name>` from the repository root.

They print the figures of the README's Benchmarks table; nothing here is imported by bot, generation
or storage, and none of it ships in the wheel.
"""
