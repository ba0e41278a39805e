"""control_room.services package."""
