# The subjects the two identities trust: only locals and variables, so they can be evaluated
# without the providers (the tests run them through `terraform console`).
locals {
  # Spacelift fills the account's subject template (default
  # space:{spaceId}:{callerType}:{callerId}:run_type:{runType}:scope:{scope}; callerType is
  # `stack` or `module`). Each field this module narrows is put in; {scope} becomes read or
  # write; any other field is `*`, which a Tailscale subject pattern matches against anything.
  subject_fields = {
    "{spaceId}"    = var.subject_space
    "{callerType}" = var.subject_caller_type
    "{callerId}"   = var.subject_stacks
  }
  subject_known = replace(replace(replace(var.subject_template,
    "{spaceId}", local.subject_fields["{spaceId}"]),
    "{callerType}", local.subject_fields["{callerType}"]),
  "{callerId}", local.subject_fields["{callerId}"])
  subjects = {
    for scope in ["read", "write"] :
    scope => replace(replace(local.subject_known, "{scope}", scope), "/\\{[A-Za-z_]+\\}/", "*")
  }
}
