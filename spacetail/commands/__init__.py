"""What each command does: `cli` calls these, and none of them imports another; what two
commands share lives below them (state, tailnet, config)."""
