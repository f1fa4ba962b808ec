# The GitLab host AMI: Debian 12, GitLab Omnibus from GitLab's package repository at the config's
# gitlab.edition and gitlab.version, installed and held by glbootstrap bake (without EXTERNAL_URL,
# so the package does not configure GitLab in the image), and glbootstrap. First boot: glbootstrap apply --role gitlab --config ssm:/glbootstrap/gitlab/config
#
#   packer init packer/ && packer build -var glbootstrap_binary=bin/glbootstrap \
#     -var config_file=examples/gitlab.yaml packer/gitlab.pkr.hcl

# Packer 1.10 reads required_plugins and installs plugins with `packer init`; the amazon plugin's
# 1.x line has amazon-ebs with metadata_options (IMDSv2).
packer {
  required_version = ">= 1.10.0"
  required_plugins {
    amazon = {
      version = ">= 1.3.0, < 2.0.0"
      source  = "github.com/hashicorp/amazon"
    }
  }
}

variable "region" {
  type    = string
  default = "us-east-2"
}

variable "instance_type" {
  type    = string
  default = "m6i.xlarge" # GitLab's docs ask for 4 vCPU / 8 GB and warn against burstable types
}

variable "glbootstrap_binary" {
  type = string
}

variable "config_file" {
  type        = string
  description = "the GitLab host's configuration; bake validates it and reads no secret"
}

source "amazon-ebs" "gitlab" {
  region        = var.region
  instance_type = var.instance_type
  ssh_username  = "admin"
  ami_name      = "glbootstrap-gitlab-{{timestamp}}"
  source_ami_filter {
    filters = {
      name                = "debian-12-amd64-*"
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
    owners      = ["136693071363"] # Debian
    most_recent = true
  }
  launch_block_device_mappings {
    device_name = "/dev/xvda"
    volume_size = 100 # backups are written locally before they go to S3
    volume_type = "gp3"
  }
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }
}

build {
  sources = ["source.amazon-ebs.gitlab"]

  provisioner "file" {
    source      = var.glbootstrap_binary
    destination = "/tmp/glbootstrap"
  }

  provisioner "file" {
    source      = var.config_file
    destination = "/tmp/glbootstrap-bake.yaml"
  }

  # The bake phase: gitlab-<edition> at gitlab.version from GitLab's signed repository (the
  # pinned key fingerprint checked) and held, with EXTERNAL_URL unset and a seed gitlab.rb, so
  # the package does not configure GitLab in the image; then glbootstrap installed at
  # /usr/local/bin and no machine identity: each instance makes its own
  # SSH host keys (cloud-init) and machine-id (systemd, machine-id(5)).
  provisioner "shell" {
    inline = [
      "set -eu",
      "sudo /tmp/glbootstrap bake --yes --role gitlab --config /tmp/glbootstrap-bake.yaml",
      "rm -f /tmp/glbootstrap-bake.yaml /tmp/glbootstrap",
    ]
  }
}
