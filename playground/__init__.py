"""The offline playground (tooling, not the product): the real bot against SimCord's Preview page.

`python -m playground` (what `make demo` runs) serves it; `playground.screenshot` and `playground.tour`
drive it in a headless browser. Needs the `playground` extra (SimCord); `bot` never imports this package.
"""
