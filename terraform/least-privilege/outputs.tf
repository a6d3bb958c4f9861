output "context_id" {
  description = "ID of the Spacelift context, for `spacelift_context_attachment` when not attaching by label."
  value       = module.context.context_id
}

output "client_id_read" {
  description = "Client ID of the read-scope federated identity (`TS_CLIENT_ID_READ` in the context)."
  value       = tailscale_federated_identity.scope["read"].id
}

output "client_id_write" {
  description = "Client ID of the write-scope federated identity (`TS_CLIENT_ID_WRITE` in the context)."
  value       = tailscale_federated_identity.scope["write"].id
}

output "policy" {
  description = "Tailnet policy snippet (JSON) to merge into your policy file: `tagOwners` for the read and write tags, and one grant per scope (read tags to `read_destinations`, write tags to `write_destinations`)."
  value       = jsonencode(local.policy)
}
