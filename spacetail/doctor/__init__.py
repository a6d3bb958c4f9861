"""`spacetail doctor`: every step between a hook and a tailnet service checked, each with its
fix."""
