output "context_id" {
  description = "ID of the context, for `spacelift_context_attachment` when not attaching by label."
  value       = spacelift_context.this.id
}

output "labels" {
  description = "Labels of the context (stacks labelled `tailscale` get it with the default)."
  value       = spacelift_context.this.labels
}

output "before_hooks" {
  description = "The hook lines run before every phase."
  value       = local.before
}

output "after_hooks" {
  description = "The hook lines run after every phase."
  value       = local.after
}

output "pyz_sha256" {
  description = "sha256 of the mounted spacetail.pyz, which the before hooks check; empty when the context mounts none (`install = false`, or `pip_spec`)."
  value       = local.pyz_sha256
}
