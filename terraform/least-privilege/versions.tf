terraform {
  # As the module it calls (../): write-only arguments and ephemeral variables.
  required_version = ">= 1.11"

  required_providers {
    spacelift = {
      source  = "spacelift-io/spacelift"
      version = ">= 1.44.0"
    }
    tailscale = {
      source = "tailscale/tailscale"
      # v0.25.0: the first release with tailscale_federated_identity (issuer, subject,
      # audience, custom_claim_rules, tags, scopes, description).
      version = ">= 0.25.0"
    }
  }
}
