"""control_room package."""
