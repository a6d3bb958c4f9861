locals {
  # Which secret variable exists follows `credential` (not ephemeral): Terraform refuses a
  # count derived from an ephemeral value, and the secrets themselves are ephemeral.
  secrets = {
    auth_key            = { name = "TS_AUTHKEY", description = "Tailscale auth key (spacetail)" }
    oauth_client_secret = { name = "TS_CLIENT_SECRET", description = "Tailscale OAuth client secret (spacetail)" }
  }

  plain = {
    for name, value in {
      TS_CLIENT_ID         = var.client_id
      TS_CLIENT_ID_READ    = var.client_id_read
      TS_CLIENT_ID_WRITE   = var.client_id_write
      SPACETAIL_TAGS       = join(",", var.tags)
      SPACETAIL_TAGS_READ  = join(",", var.tags_read)
      SPACETAIL_TAGS_WRITE = join(",", var.tags_write)
      TS_HOSTNAME          = var.hostname
      SPACETAIL_FORWARDS   = var.forwards
      TS_EXTRA_ARGS        = var.extra_args
      SPACETAIL_PIP_SPEC   = var.pip_spec
    } : name => value if value != null && value != ""
  }
}

resource "spacelift_context" "this" {
  name        = var.name
  description = var.description
  space_id    = var.space_id
  labels      = var.labels

  before_init    = local.before
  after_init     = local.after
  before_plan    = local.before
  after_plan     = local.after
  before_apply   = local.before
  after_apply    = local.after
  before_destroy = local.before
  after_destroy  = local.after
  before_perform = local.before
  after_perform  = local.after
}

# The secret credential goes through the provider's write-only argument: never in the plan or
# the state (only the provider's checksum of the value is kept). Raise credential_version to
# send a new value. Which one exists follows `credential`, never the secrets themselves.
resource "spacelift_environment_variable" "secret" {
  for_each         = { for kind, secret in local.secrets : kind => secret if var.credential == kind }
  context_id       = spacelift_context.this.id
  name             = each.value.name
  value_wo         = each.key == "auth_key" ? var.auth_key : var.oauth_client_secret
  value_wo_version = var.credential_version
  write_only       = true
  description      = each.value.description
}

resource "spacelift_environment_variable" "setting" {
  for_each    = local.plain
  context_id  = spacelift_context.this.id
  name        = each.key
  value       = each.value
  write_only  = false
  description = "spacetail setting"
}

# spacetail.pyz as a file of the context, at /mnt/workspace/spacetail/spacetail.pyz in every
# run; the before hooks run it only if its sha256 is the one computed here. Sent through the
# write-only argument: the state keeps the sum (the version), not 500 kB of base64.
resource "spacelift_mounted_file" "pyz" {
  count              = local.pyz ? 1 : 0
  context_id         = spacelift_context.this.id
  relative_path      = local.hooks.pyz
  content_wo         = filebase64(local.pyz_path)
  content_wo_version = local.pyz_sha256
  write_only         = false
  description        = "spacetail.pyz (sha256 ${local.pyz_sha256}), run by the context's hooks"

  lifecycle {
    precondition {
      condition     = local.pyz_sha256 != ""
      error_message = "No spacetail.pyz at pyz_path (default: beside the module): download spacetail.pyz from the release, or build it with tox -e pyz, and set pyz_path to it."
    }
  }
}
