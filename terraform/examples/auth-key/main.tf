# A reusable, ephemeral, tagged auth key, sent to Spacelift as a secret through a write-only
# argument: it is in neither the plan nor the state of this stack.
terraform {
  required_version = ">= 1.11"
  required_providers {
    spacelift = {
      source  = "spacelift-io/spacelift"
      version = ">= 1.44.0"
    }
  }
}

variable "tailscale_auth_key" {
  description = "Tailscale auth key (tskey-auth-...), e.g. from TF_VAR_tailscale_auth_key."
  type        = string
  sensitive   = true
  ephemeral   = true
}

module "spacetail" {
  source = "../.."

  credential = "auth_key"
  auth_key   = var.tailscale_auth_key
  # Raise to send a new key: a write-only value is never compared with what Spacelift holds.
  credential_version = 1
  labels             = ["autoattach:tailnet-prod"]
  # spacetail.pyz from the release (or `tox -e pyz`'s dist/spacetail.pyz), saved beside this file.
  pyz_path = "${path.module}/spacetail.pyz"
}
