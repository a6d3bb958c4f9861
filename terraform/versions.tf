terraform {
  # 1.11: write-only arguments (value_wo); ephemeral input variables came in 1.10 and variable
  # validations that refer to other variables in 1.9 (hashicorp/terraform CHANGELOG.md).
  required_version = ">= 1.11"

  required_providers {
    spacelift = {
      source = "spacelift-io/spacelift"
      # v1.44.0: spacelift_environment_variable's value_wo and value_wo_version (the newest of
      # the arguments used; description came in v1.15.0, the context's hooks in v1.7.0).
      version = ">= 1.44.0"
    }
  }
}
