variable "spacelift_host" {
  description = "Your Spacelift account's hostname, e.g. `demo.app.spacelift.io`: the OIDC token's audience, and its issuer with `https://`."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$", var.spacelift_host))
    error_message = "spacelift_host is a hostname such as demo.app.spacelift.io, without https:// or a path."
  }
}

variable "subject_space" {
  description = "Space ID the identities trust, or a pattern (`*` matches anything): narrows the token subject `space:<space>:...`."
  type        = string
  default     = "*"

  validation {
    condition     = can(regex("^[A-Za-z0-9_*-]+$", var.subject_space))
    error_message = "subject_space is a space ID or a pattern of letters, digits, -, _ and *."
  }
}

variable "subject_template" {
  description = "Your Spacelift account's OIDC subject template; the default is Spacelift's own. Fields: `{spaceId}`, `{callerType}`, `{callerId}` (narrowed by the variables below), `{scope}` (read or write, required), any other (e.g. `{runId}`) matched by `*`."
  type        = string
  default     = "space:{spaceId}:{callerType}:{callerId}:run_type:{runType}:scope:{scope}"

  validation {
    condition     = strcontains(var.subject_template, "{scope}")
    error_message = "subject_template must contain {scope}: without it a read token could not be told from a write token, and least privilege per phase is lost."
  }
  validation {
    condition     = !strcontains(var.subject_template, "*") && can(regex("^\\S+$", var.subject_template))
    error_message = "subject_template is the template as Spacelift shows it: one word, fields in braces, no *."
  }
}

variable "subject_caller_type" {
  description = "Which runs the identities trust: `stack`, `module` (module test runs), or `*` for both (the token subject's `{callerType}`)."
  type        = string
  default     = "*"

  validation {
    condition     = contains(["stack", "module", "*"], var.subject_caller_type)
    error_message = "subject_caller_type is stack, module or *."
  }
}

variable "subject_stacks" {
  description = "Stack or module ID the identities trust, or a pattern such as `prod-*`: narrows the token subject's `{callerId}`."
  type        = string
  default     = "*"

  validation {
    condition     = can(regex("^[A-Za-z0-9_*-]+$", var.subject_stacks))
    error_message = "subject_stacks is a stack or module ID, or a pattern of letters, digits, -, _ and *."
  }
}

variable "tags_read" {
  description = "Tags of read-scope phases (plans of proposed runs and of runs awaiting approval), e.g. `[\"tag:ci-read\"]`."
  type        = list(string)

  validation {
    condition     = length(var.tags_read) > 0 && alltrue([for t in var.tags_read : can(regex("^tag:[A-Za-z][A-Za-z0-9-]*$", t))])
    error_message = "tags_read is a non-empty list of tags such as tag:ci-read."
  }
}

variable "tags_write" {
  description = "Tags of write-scope phases (approved applies, tasks, destroy and testing runs), e.g. `[\"tag:ci-write\"]`; none of them a read tag."
  type        = list(string)

  validation {
    condition     = length(var.tags_write) > 0 && alltrue([for t in var.tags_write : can(regex("^tag:[A-Za-z][A-Za-z0-9-]*$", t))])
    error_message = "tags_write is a non-empty list of tags such as tag:ci-write."
  }
  validation {
    condition     = length(setintersection(var.tags_read, var.tags_write)) == 0
    error_message = "tags_read and tags_write share a tag: a plan would get what only an approved apply may have."
  }
}

variable "read_destinations" {
  description = "What read-scope nodes may reach (grant `dst`): tags, hosts or addresses, e.g. `[\"tag:db-replica\"]`."
  type        = list(string)

  validation {
    condition     = length(var.read_destinations) > 0 && alltrue([for d in var.read_destinations : can(regex("^\\S+$", d))])
    error_message = "read_destinations is a non-empty list of grant destinations, each one word."
  }
}

variable "write_destinations" {
  description = "What write-scope nodes may reach (grant `dst`), e.g. `[\"tag:db\"]`."
  type        = list(string)

  validation {
    condition     = length(var.write_destinations) > 0 && alltrue([for d in var.write_destinations : can(regex("^\\S+$", d))])
    error_message = "write_destinations is a non-empty list of grant destinations, each one word."
  }
}

variable "read_ip" {
  description = "Ports and protocols of the read grant (`ip`), e.g. `[\"tcp:5432\"]`; `[\"*\"]` for all."
  type        = list(string)
  default     = ["*"]

  validation {
    condition     = length(var.read_ip) > 0 && alltrue([for p in var.read_ip : can(regex("^[a-z0-9:*,-]+$", p))])
    error_message = "read_ip holds grant ip entries such as tcp:5432 or *."
  }
}

variable "write_ip" {
  description = "Ports and protocols of the write grant (`ip`), e.g. `[\"tcp:5432\"]`; `[\"*\"]` for all."
  type        = list(string)
  default     = ["*"]

  validation {
    condition     = length(var.write_ip) > 0 && alltrue([for p in var.write_ip : can(regex("^[a-z0-9:*,-]+$", p))])
    error_message = "write_ip holds grant ip entries such as tcp:5432 or *."
  }
}

variable "tag_owners" {
  description = "Who owns the read and write tags in the policy snippet (`tagOwners`)."
  type        = list(string)
  default     = ["autogroup:admin"]

  validation {
    condition     = length(var.tag_owners) > 0 && alltrue([for o in var.tag_owners : can(regex("^\\S+$", o))])
    error_message = "tag_owners is a non-empty list such as [\"autogroup:admin\"]."
  }
}

variable "identity_description" {
  description = "Start of the federated identities' descriptions (` read` and ` write` are added)."
  type        = string
  default     = "spacetail"

  validation {
    condition     = can(regex("^[A-Za-z0-9 -]{1,44}$", var.identity_description))
    error_message = "identity_description is 1 to 44 letters, digits, spaces or dashes (Tailscale allows 50 in all)."
  }
}

# Passed on to the module in ../, which validates them.

variable "name" {
  description = "Name of the Spacelift context."
  type        = string
  default     = "spacetail"
}

variable "space_id" {
  description = "Space of the context."
  type        = string
  default     = "root"
}

variable "labels" {
  description = "Labels of the context; `autoattach:<label>` attaches it to every stack labelled `<label>`. Use a label of this install's own when several contexts (tailnets) exist."
  type        = list(string)
  default     = ["autoattach:tailscale"]
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
}

variable "hostname" {
  description = "Node name (`TS_HOSTNAME`), a DNS label; default `spacelift-<stack>-<run id>`."
  type        = string
  default     = null
}

variable "forwards" {
  description = "Local port forwards (`SPACETAIL_FORWARDS`): `[ADDR:]LPORT=HOST:PORT`, comma or space separated."
  type        = string
  default     = null
}

variable "extra_args" {
  description = "More `tailscale up` flags (`TS_EXTRA_ARGS`), e.g. `--accept-dns`; never a secret (the variable is not secret)."
  type        = string
  default     = null
}

variable "pip_spec" {
  description = "Opt-in, instead of the pyz: a spacetail package from an index of your own, installed in a venv in the workspace (`SPACETAIL_PIP_SPEC`), e.g. `spacetail==0.1.0` with `PIP_INDEX_URL` set in the stack; no default names a package."
  type        = string
  default     = null
}
