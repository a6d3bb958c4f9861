"""Installing tailscale: the pinned version and its sums, the package download, where installs live
and are found again."""
