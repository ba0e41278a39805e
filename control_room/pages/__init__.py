"""control_room.pages package."""
