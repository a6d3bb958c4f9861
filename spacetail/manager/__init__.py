"""The manager process: a detached background process that owns tailscaled, logs in, holds the
control socket and the lock, and decides every move in one loop."""
