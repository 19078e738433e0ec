terraform {
  # 1.7: `terraform test` with mock providers (tests/); 1.5: `check` blocks.
  required_version = ">= 1.7"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40, < 6.0"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = merge({ Project = "libra", Stack = var.name }, var.tags)
  }
}

data "aws_partition" "current" {}

data "aws_caller_identity" "current" {}
