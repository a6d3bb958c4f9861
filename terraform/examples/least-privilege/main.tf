# Least privilege per phase with no stored secret: plans join with tags that only reach the read
# replica, approved applies with tags that reach the primary. Merge the `tailnet_policy` output
# into the tailnet policy file.
terraform {
  required_version = ">= 1.11"
  required_providers {
    spacelift = {
      source  = "spacelift-io/spacelift"
      version = ">= 1.44.0"
    }
    tailscale = {
      source  = "tailscale/tailscale"
      version = ">= 0.25.0"
    }
  }
}

module "spacetail" {
  source = "../../least-privilege"

  spacelift_host     = "demo.app.spacelift.io"
  tags_read          = ["tag:ci-read"]
  tags_write         = ["tag:ci-write"]
  read_destinations  = ["tag:db-replica"]
  write_destinations = ["tag:db"]
  read_ip            = ["tcp:5432"]
  write_ip           = ["tcp:5432"]
  labels             = ["autoattach:tailnet-prod"]
  # spacetail.pyz from the release (or `tox -e pyz`'s dist/spacetail.pyz), saved beside this file.
  pyz_path = "${path.module}/spacetail.pyz"
}

output "tailnet_policy" {
  description = "Merge into the tailnet policy file."
  value       = module.spacetail.policy
}
