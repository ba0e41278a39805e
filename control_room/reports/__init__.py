"""Reports rendered from the control plane and the spec files: caps vs usage, capabilities, backlog, CI summary."""
