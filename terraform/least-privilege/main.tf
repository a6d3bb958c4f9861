locals {
  # Spacelift's OIDC token: iss is the account's URL, aud its hostname; sub is made from the
  # account's subject template (subject.tf).
  issuer = "https://${var.spacelift_host}"
}

# One identity per scope: a read-scope token (a proposed run, or the plan of a tracked run
# that waits for approval) can only be exchanged for the read tags; only a write-scope token
# (the approved apply, tasks, destroy and testing runs) gets the write tags. Tailscale enforces
# it, whatever runs in the phase.
resource "tailscale_federated_identity" "scope" {
  for_each    = local.scopes
  description = "${var.identity_description} ${each.key}"
  scopes      = ["auth_keys"]
  tags        = each.value.tags
  issuer      = local.issuer
  audience    = var.spacelift_host
  subject     = local.subjects[each.key]
}

# The Spacelift side: a context with the hooks, the two client IDs and the two tag lists, and
# no secret at all.
module "context" {
  source = "../"

  credential      = "workload_identity"
  client_id_read  = tailscale_federated_identity.scope["read"].id
  client_id_write = tailscale_federated_identity.scope["write"].id
  tags_read       = var.tags_read
  tags_write      = var.tags_write

  name       = var.name
  space_id   = var.space_id
  labels     = var.labels
  install    = var.install
  hostname   = var.hostname
  forwards   = var.forwards
  extra_args = var.extra_args
  pip_spec   = var.pip_spec
  pyz_path   = var.pyz_path
}
