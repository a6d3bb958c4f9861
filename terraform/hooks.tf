# The hook lines of the context, from hooks.json: only locals and variables, so they can be
# evaluated without the providers (the tests run them through `terraform console`).
locals {
  # The one source of the hook lines: the plugin and the docs equal it too (tests check it).
  hooks = jsondecode(file("${path.module}/hooks.json"))

  # Three ways to get spacetail into a run: the mounted spacetail.pyz run by the image's own
  # python3 (install, the default); a package of your own index in a venv (install and
  # pip_spec); none, on the spacetail runner image (install = false).
  pyz        = var.install && var.pip_spec == null
  pyz_path   = coalesce(var.pyz_path, "${path.module}/spacetail.pyz")
  pyz_sha256 = local.pyz && fileexists(local.pyz_path) ? filesha256(local.pyz_path) : ""
  before = (local.pyz
    ? [for line in local.hooks.pyz_before : replace(line, "@SPACETAIL_PYZ_SHA256@", local.pyz_sha256)]
  : concat(var.install ? local.hooks.pip : [], local.hooks.up))
  after = local.pyz ? local.hooks.pyz_after : local.hooks.down
}
