variable "name" {
  description = "Name of the Spacelift context."
  type        = string
  default     = "spacetail"

  validation {
    condition     = length(trimspace(var.name)) > 0
    error_message = "name must not be empty."
  }
}

variable "description" {
  description = "Description of the Spacelift context."
  type        = string
  default     = "A tailnet inside every phase of the run, with spacetail (hooks and credentials)."

  validation {
    condition     = length(var.description) <= 1024
    error_message = "description is at most 1024 characters."
  }
}

variable "space_id" {
  description = "Space of the context."
  type        = string
  default     = "root"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]+$", var.space_id))
    error_message = "space_id is a Spacelift space ID such as root or prod-01HXYZ..."
  }
}

variable "labels" {
  description = "Labels of the context; `autoattach:<label>` attaches it to every stack labelled `<label>`. Use a label of this install's own when several contexts (tailnets) exist."
  type        = list(string)
  default     = ["autoattach:tailscale"]

  validation {
    condition     = alltrue([for l in var.labels : length(trimspace(l)) > 0])
    error_message = "labels must not hold an empty label."
  }
}

variable "install" {
  description = "Bring spacetail to the run: mount spacetail.pyz (`pyz_path`) and run it with the image's python3, or with `pip_spec` install that package in a venv; tailscale is installed when the image lacks it. `false` on the spacetail runner image, which has both."
  type        = bool
  default     = true
}

variable "pyz_path" {
  description = "Path of the spacetail.pyz to mount (a release's asset, or `tox -e pyz`'s dist/spacetail.pyz); default `spacetail.pyz` beside the module. Its sha256 goes into the hooks, which run nothing else."
  type        = string
  default     = null

  validation {
    condition     = var.pyz_path == null || (var.install && var.pip_spec == null)
    error_message = "pyz_path is used only with install = true and no pip_spec (the runner image and a pip_spec bring spacetail themselves)."
  }
  validation {
    condition     = var.pyz_path == null || endswith(coalesce(var.pyz_path, "x"), ".pyz")
    error_message = "pyz_path is the path of a spacetail.pyz file."
  }
}

variable "credential" {
  description = "How runs authenticate: `auth_key` (`auth_key`), `oauth_client_secret` (`oauth_client_secret` and tags) or `workload_identity` (`client_id` or the per-scope client IDs, and tags; Spacelift's OIDC token is presented, no secret is stored)."
  type        = string

  validation {
    condition     = contains(["auth_key", "oauth_client_secret", "workload_identity"], var.credential)
    error_message = "credential is one of auth_key, oauth_client_secret and workload_identity."
  }
}

variable "credential_version" {
  description = "Version of the secret credential: the provider never reads a write-only value back, so raise this to send a new `auth_key` or `oauth_client_secret`."
  type        = number
  default     = 1

  validation {
    condition     = var.credential_version >= 1 && floor(var.credential_version) == var.credential_version
    error_message = "credential_version is a whole number, 1 or more."
  }
}

variable "auth_key" {
  description = "Tailscale auth key (`tskey-auth-...`), with `credential = \"auth_key\"`: stored as the secret `TS_AUTHKEY` through a write-only argument, never in the plan or the state."
  type        = string
  default     = null
  sensitive   = true
  ephemeral   = true

  validation {
    condition     = var.credential == "auth_key" ? can(regex("^\\S+$", var.auth_key)) : var.auth_key == null
    error_message = "auth_key is set (one word, no spaces) exactly when credential = \"auth_key\"."
  }
}

variable "oauth_client_secret" {
  description = "Tailscale OAuth client secret (`tskey-client-...`), with `credential = \"oauth_client_secret\"` and `tags`: stored as the secret `TS_CLIENT_SECRET` through a write-only argument, never in the plan or the state."
  type        = string
  default     = null
  sensitive   = true
  ephemeral   = true

  validation {
    condition     = var.credential == "oauth_client_secret" ? can(regex("^\\S+$", var.oauth_client_secret)) : var.oauth_client_secret == null
    error_message = "oauth_client_secret is set (one word, no spaces) exactly when credential = \"oauth_client_secret\"."
  }
}

variable "client_id" {
  description = "Workload identity federation client ID (`TS_CLIENT_ID`), with `credential = \"workload_identity\"` and `tags`; Spacelift's own OIDC token is presented."
  type        = string
  default     = null

  validation {
    condition = (var.credential == "workload_identity"
      ? (var.client_id != null && var.client_id != "") || (var.client_id_read != null && var.client_id_write != null)
    : var.client_id == null && var.client_id_read == null && var.client_id_write == null)
    error_message = "With credential = \"workload_identity\" set client_id, or client_id_read and client_id_write; with another credential set none of them."
  }
  validation {
    condition     = var.client_id == null || can(regex("^\\S+$", var.client_id))
    error_message = "client_id is one word, no spaces."
  }
}

variable "client_id_read" {
  description = "Client ID of the federated identity for read-scope phases (`TS_CLIENT_ID_READ`): plans of proposed runs and of tracked runs awaiting approval. Set with `client_id_write`."
  type        = string
  default     = null

  validation {
    condition     = (var.client_id_read == null) == (var.client_id_write == null) && (var.client_id_read == null || can(regex("^\\S+$", var.client_id_read)))
    error_message = "client_id_read and client_id_write are set together, each one word."
  }
}

variable "client_id_write" {
  description = "Client ID of the federated identity for write-scope phases (`TS_CLIENT_ID_WRITE`): applies, tasks, destroy and testing runs. Set with `client_id_read`."
  type        = string
  default     = null

  validation {
    condition     = var.client_id_write == null || can(regex("^\\S+$", var.client_id_write))
    error_message = "client_id_write is one word, no spaces."
  }
}

variable "tags" {
  description = "Tags the node advertises (`SPACETAIL_TAGS`), e.g. `[\"tag:ci\"]`; OAuth and workload identity need tags (these, or the per-scope ones)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for t in var.tags : can(regex("^tag:[A-Za-z][A-Za-z0-9-]*$", t))])
    error_message = "tags are Tailscale tags such as tag:ci."
  }
  validation {
    condition     = var.credential == "auth_key" || length(var.tags) > 0 || length(var.tags_read) > 0
    error_message = "OAuth and workload identity need tags: set tags = [\"tag:ci\"] (tags the client may assign), or tags_read and tags_write."
  }
}

variable "tags_read" {
  description = "Tags of read-scope phases (`SPACETAIL_TAGS_READ`); set with `tags_write`."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for t in var.tags_read : can(regex("^tag:[A-Za-z][A-Za-z0-9-]*$", t))]) && (length(var.tags_read) > 0) == (length(var.tags_write) > 0)
    error_message = "tags_read and tags_write are set together, each a list of tags such as tag:ci-read."
  }
}

variable "tags_write" {
  description = "Tags of write-scope phases (`SPACETAIL_TAGS_WRITE`); set with `tags_read`."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for t in var.tags_write : can(regex("^tag:[A-Za-z][A-Za-z0-9-]*$", t))])
    error_message = "tags_write are Tailscale tags such as tag:ci-write."
  }
}

variable "hostname" {
  description = "Node name (`TS_HOSTNAME`), a DNS label; default `spacelift-<stack>-<run id>`."
  type        = string
  default     = null

  validation {
    condition     = var.hostname == null || can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.hostname))
    error_message = "hostname is a DNS label: lowercase letters, digits and dashes, at most 63."
  }
}

variable "forwards" {
  description = "Local port forwards (`SPACETAIL_FORWARDS`): `[ADDR:]LPORT=HOST:PORT`, comma or space separated."
  type        = string
  default     = null

  validation {
    condition     = var.forwards == null || alltrue([for f in compact(split(" ", replace(coalesce(var.forwards, " "), ",", " "))) : can(regex("^([^=\\s]+:)?[0-9]{1,5}=[^=\\s]+:[0-9]{1,5}$", f))])
    error_message = "forwards are [ADDR:]LPORT=HOST:PORT, e.g. 5432=db.example.ts.net:5432."
  }
}

variable "extra_args" {
  description = "More `tailscale up` flags (`TS_EXTRA_ARGS`), e.g. `--accept-dns`; never a secret (the variable is not secret)."
  type        = string
  default     = null

  validation {
    condition     = var.extra_args == null || !strcontains(coalesce(var.extra_args, " "), "tskey-")
    error_message = "extra_args holds a Tailscale key: use credential and auth_key or oauth_client_secret, which are stored as secrets."
  }
}

variable "pip_spec" {
  description = "Opt-in, instead of the pyz: a spacetail package from an index of your own, installed in a venv in the workspace (`SPACETAIL_PIP_SPEC`), e.g. `spacetail==0.1.0` with `PIP_INDEX_URL` set in the stack; no default names a package."
  type        = string
  default     = null

  validation {
    condition     = var.pip_spec == null || can(regex("^\\S+$", var.pip_spec))
    error_message = "pip_spec is one pip requirement, no spaces."
  }
  validation {
    condition     = var.pip_spec == null || var.install
    error_message = "pip_spec is used only with install = true."
  }
}
