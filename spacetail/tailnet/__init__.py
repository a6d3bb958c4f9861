"""Talking to tailscale and through the tailnet: its command lines and LocalAPI, its words
(failures), the SOCKS5 dialer, its DNS, and waiting for peers and targets."""
