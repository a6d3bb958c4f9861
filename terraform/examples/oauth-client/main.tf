# A Tailscale OAuth client secret (scope auth_keys, tag tag:ci): each phase mints its own
# ephemeral key with the tags. The secret goes through a write-only argument.
terraform {
  required_version = ">= 1.11"
  required_providers {
    spacelift = {
      source  = "spacelift-io/spacelift"
      version = ">= 1.44.0"
    }
  }
}

variable "tailscale_oauth_client_secret" {
  description = "Tailscale OAuth client secret (tskey-client-...)."
  type        = string
  sensitive   = true
  ephemeral   = true
}

module "spacetail" {
  source = "../.."

  credential          = "oauth_client_secret"
  oauth_client_secret = var.tailscale_oauth_client_secret
  tags                = ["tag:ci"]
  labels              = ["autoattach:tailnet-prod"]
  # spacetail.pyz from the release (or `tox -e pyz`'s dist/spacetail.pyz), saved beside this file.
  pyz_path = "${path.module}/spacetail.pyz"
}
