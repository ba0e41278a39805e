"""control_room.state package."""
