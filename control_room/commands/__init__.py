"""Command groups of the `lakehouse` CLI, one Typer app per module; control_room/cli.py mounts them."""
