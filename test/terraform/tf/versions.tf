# The Linode provider, installed by run.sh from a local build (see ../README.md).
terraform {
  required_providers {
    linode = {
      source  = "linode/linode"
      version = "3.13.0"
    }
  }
}

provider "linode" {
  url         = var.api_url
  api_version = "v4"
  token       = var.token
}
