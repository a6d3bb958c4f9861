"""spacetail: a Tailscale tailnet inside Spacelift runs, as a non-root user."""

__version__ = "0.1.0"
