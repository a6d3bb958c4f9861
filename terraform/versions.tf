terraform {
  required_version = ">= 1.5"

  required_providers {
    spacelift = {
      source  = "spacelift-io/spacelift"
      version = ">= 1.14"
    }
  }
}
