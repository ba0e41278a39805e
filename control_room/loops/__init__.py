"""control_room.loops package."""
