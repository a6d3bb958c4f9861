locals {
  # The one source of the hook lines: the README's hooks and the Spacelift plugin equal it too.
  hooks  = jsondecode(file("${path.module}/hooks.json"))
  before = concat(var.install ? local.hooks.install : [], local.hooks.up)
  after  = local.hooks.down

  # Whether a secret is set is not itself secret: it only decides which variables exist.
  has_auth_key     = nonsensitive(var.auth_key == null ? false : var.auth_key != "")
  has_oauth_secret = nonsensitive(var.oauth_client_secret == null ? false : var.oauth_client_secret != "")
  has_id_token     = nonsensitive(var.id_token == null ? false : var.id_token != "")
  has_client_id    = var.client_id == null ? false : var.client_id != ""
  credentials      = length([for x in [local.has_auth_key, local.has_oauth_secret, local.has_client_id] : x if x])

  plain = {
    for name, value in {
      TS_CLIENT_ID       = var.client_id
      TS_AUDIENCE        = var.audience
      SPACETAIL_TAGS     = join(",", var.tags)
      TS_HOSTNAME        = var.hostname
      SPACETAIL_FORWARDS = var.forwards
      TS_EXTRA_ARGS      = var.extra_args
      SPACETAIL_PIP_SPEC = var.pip_spec
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

  lifecycle {
    precondition {
      condition     = local.credentials == 1
      error_message = "Set exactly one of auth_key, oauth_client_secret and client_id."
    }
    precondition {
      condition     = local.has_auth_key || length(var.tags) > 0
      error_message = "OAuth and workload identity need tags: set tags = [\"tag:ci\"] (tags the client may assign)."
    }
    precondition {
      condition     = !local.has_id_token || local.has_client_id
      error_message = "id_token is used only with client_id (workload identity)."
    }
  }
}

resource "spacelift_environment_variable" "auth_key" {
  count       = local.has_auth_key ? 1 : 0
  context_id  = spacelift_context.this.id
  name        = "TS_AUTHKEY"
  value       = var.auth_key
  write_only  = true
  description = "Tailscale auth key (spacetail)"
}

resource "spacelift_environment_variable" "oauth_client_secret" {
  count       = local.has_oauth_secret ? 1 : 0
  context_id  = spacelift_context.this.id
  name        = "TS_CLIENT_SECRET"
  value       = var.oauth_client_secret
  write_only  = true
  description = "Tailscale OAuth client secret (spacetail)"
}

resource "spacelift_environment_variable" "id_token" {
  count       = local.has_id_token ? 1 : 0
  context_id  = spacelift_context.this.id
  name        = "TS_ID_TOKEN"
  value       = var.id_token
  write_only  = true
  description = "ID token for Tailscale workload identity (spacetail)"
}

resource "spacelift_environment_variable" "setting" {
  for_each   = local.plain
  context_id = spacelift_context.this.id
  name       = each.key
  value      = each.value
  write_only = false
}
