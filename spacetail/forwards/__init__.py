"""The forwarders' data plane: local ports relayed through tailscaled's SOCKS5 proxy, for clients
that speak no proxy."""
