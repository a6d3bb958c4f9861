locals {
  # The one source of the hook lines: the README's hooks and the Spacelift plugin equal it too.
  hooks  = jsondecode(file("${path.module}/hooks.json"))
  before = concat(var.install ? local.hooks.install : [], local.hooks.up)
  after  = local.hooks.down

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
      TS_AUDIENCE          = var.audience
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
