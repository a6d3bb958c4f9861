# Workload identity federation with Spacelift's own OIDC token: the context holds a client ID
# and tags, no secret at all. The federated identity (issuer https://<account>.app.spacelift.io,
# audience <account>.app.spacelift.io, subject space:*:stack:*:run_type:*:scope:*) was made in
# Tailscale's admin console; ../least-privilege makes one per scope with Terraform.
terraform {
  required_version = ">= 1.11"
  required_providers {
    spacelift = {
      source  = "spacelift-io/spacelift"
      version = ">= 1.44.0"
    }
  }
}

module "spacetail" {
  source = "../.."

  credential = "workload_identity"
  client_id  = "kXyZ123CNTRL"
  tags       = ["tag:ci"]
  labels     = ["autoattach:tailnet-prod"]
  # spacetail.pyz from the release (or `tox -e pyz`'s dist/spacetail.pyz), saved beside this file.
  pyz_path = "${path.module}/spacetail.pyz"
}
