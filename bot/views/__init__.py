"""The buttons under results and status lines, the forms they open, and the views that hold them."""

from bot.views.describe import describe_text, describe_view
from bot.views.layouts import DYNAMIC_ITEMS, result_layout, result_view, status_view

__all__ = ["DYNAMIC_ITEMS", "describe_text", "describe_view", "result_layout", "result_view", "status_view"]
