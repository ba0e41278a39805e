"""control_room.components package."""
