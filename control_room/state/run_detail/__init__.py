"""The run detail page's state, split by concern: header, tasks, timeline (figures) and events; state.py holds them."""

from control_room.state.run_detail.state import RunDetailState

__all__ = ["RunDetailState"]
