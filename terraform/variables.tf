variable "name" {
  description = "Name of the Spacelift context."
  type        = string
  default     = "spacetail"
}

variable "description" {
  description = "Description of the Spacelift context."
  type        = string
  default     = "A tailnet inside every phase of the run, with spacetail (hooks and credentials)."
}

variable "space_id" {
  description = "Space of the context."
  type        = string
  default     = "root"
}

variable "labels" {
  description = "Labels of the context; `autoattach:tailscale` attaches it to every stack labelled `tailscale`."
  type        = list(string)
  default     = ["autoattach:tailscale"]
}

variable "install" {
  description = "Add the hook lines that install spacetail (in a venv in the workspace) and tailscale when the runner image lacks them; they do nothing on the spacetail runner image."
  type        = bool
  default     = true
}

variable "auth_key" {
  description = "Tailscale auth key (`tskey-auth-...`), stored as the secret `TS_AUTHKEY`. Set exactly one of `auth_key`, `oauth_client_secret` and `client_id`."
  type        = string
  default     = null
  sensitive   = true
}

variable "oauth_client_secret" {
  description = "Tailscale OAuth client secret (`tskey-client-...`), stored as the secret `TS_CLIENT_SECRET`; needs `tags`."
  type        = string
  default     = null
  sensitive   = true
}

variable "client_id" {
  description = "Workload identity federation client id (`TS_CLIENT_ID`); the ID token is Spacelift's own OIDC token unless `id_token` is set. Needs `tags`."
  type        = string
  default     = null
}

variable "id_token" {
  description = "ID token for workload identity (`TS_ID_TOKEN`, secret); usually left unset so Spacelift's OIDC token is used."
  type        = string
  default     = null
  sensitive   = true
}

variable "audience" {
  description = "Audience for the ID token (`TS_AUDIENCE`), if the federated identity needs one."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags the node advertises (`SPACETAIL_TAGS`), e.g. `[\"tag:ci\"]`; required with OAuth and workload identity."
  type        = list(string)
  default     = []
}

variable "hostname" {
  description = "Node name (`TS_HOSTNAME`); default `spacelift-<stack>-<run id>`."
  type        = string
  default     = null
}

variable "forwards" {
  description = "Local port forwards (`SPACETAIL_FORWARDS`): `[ADDR:]LPORT=HOST:PORT`, comma or space separated."
  type        = string
  default     = null
}

variable "extra_args" {
  description = "More `tailscale up` flags (`TS_EXTRA_ARGS`), e.g. `--accept-dns`."
  type        = string
  default     = null
}

variable "pip_spec" {
  description = "What the install hook gives pip (`SPACETAIL_PIP_SPEC`): default the release the hooks were made for (`spacetail==<version>`); e.g. `git+https://github.com/<org>/spacetail@v0.1.0`."
  type        = string
  default     = null
}
