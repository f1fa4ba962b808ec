# The runner front AMI: Debian 12, gitlab-runner at the config's runner.version from GitLab's
# package repository, glbootstrap, and the bake-stage phases of the runner role (directories, the pinned Fargate driver). It leaves no
# machine identity behind: no /etc/machine-id content, no .runner_system_id, no glbootstrap state
# (but the record of the driver release it installed),
# so every instance started from it becomes its own runner manager on first boot.
#
#   packer init packer/ && packer build -var glbootstrap_binary=bin/glbootstrap \
#     -var config_file=examples/runner.yaml packer/runner.pkr.hcl
#
# First boot (user-data): glbootstrap apply --role runner --config ssm:/glbootstrap/runner/config

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
  default = "t3.micro"
}

variable "glbootstrap_binary" {
  type        = string
  description = "path of the glbootstrap binary to install (make build)"
}

variable "config_file" {
  type        = string
  description = "a runner configuration; only its fargate.driver and runner.user are used at bake"
}

source "amazon-ebs" "runner" {
  region        = var.region
  instance_type = var.instance_type
  ssh_username  = "admin"
  ami_name      = "glbootstrap-runner-{{timestamp}}"
  source_ami_filter {
    filters = {
      name                = "debian-12-amd64-*"
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
    owners      = ["136693071363"] # Debian
    most_recent = true
  }
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required" # IMDSv2 only, as on the fronts
    http_put_response_hop_limit = 1
  }
}

build {
  sources = ["source.amazon-ebs.runner"]

  provisioner "file" {
    source      = var.glbootstrap_binary
    destination = "/tmp/glbootstrap"
  }

  provisioner "file" {
    source      = var.config_file
    destination = "/tmp/glbootstrap-bake.yaml"
  }

  provisioner "shell" {
    inline = [
      "set -eu",
      # The bake phases: gitlab-runner at runner.version from GitLab's signed repository (the
      # pinned key fingerprint checked) and held, directories, the pinned Fargate driver
      # (instance metadata, no secret, no GitLab); then glbootstrap installed at /usr/local/bin, and no machine identity left: gitlab-runner
      # stopped and disabled until the boot converge registers, no .runner_system_id, an empty
      # machine-id, no SSH host keys. An AMI that carries them makes every instance the same runner
      # manager (gitlab-runner derives the system id from /etc/machine-id when the file is missing:
      # commands/internal/configfile in https://gitlab.com/gitlab-org/gitlab-runner).
      "sudo /tmp/glbootstrap bake --yes --role runner --config /tmp/glbootstrap-bake.yaml",
      "rm -f /tmp/glbootstrap-bake.yaml /tmp/glbootstrap",
    ]
  }
}
