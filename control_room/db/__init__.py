"""control_room.db package."""
