# The tailnet policy snippet: only locals and variables, so it can be evaluated without the
# providers (the tests run it through `terraform console`).
locals {
  # Spacelift's token scopes: each gets its own federated identity (main.tf) and grant.
  scopes = {
    read  = { tags = var.tags_read, destinations = var.read_destinations, ip = var.read_ip }
    write = { tags = var.tags_write, destinations = var.write_destinations, ip = var.write_ip }
  }

  # To merge into the tailnet policy file: who may own the tags, and what each scope reaches.
  policy = {
    tagOwners = { for tag in distinct(concat(var.tags_read, var.tags_write)) : tag => var.tag_owners }
    grants = [
      for scope in ["read", "write"] : {
        src = local.scopes[scope].tags
        dst = local.scopes[scope].destinations
        ip  = local.scopes[scope].ip
      }
    ]
  }
}
