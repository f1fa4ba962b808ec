# The runner front AMI: Debian 12, gitlab-runner from GitLab's package repository, glbootstrap, and
# the bake-stage phases of the runner role (directories, the pinned Fargate driver). It leaves no
# machine identity behind: no /etc/machine-id content, no .runner_system_id, no glbootstrap state
# (but the record of the driver release it installed),
# so every instance started from it becomes its own runner manager on first boot.
#
#   packer init packer/ && packer build -var glbootstrap_binary=bin/glbootstrap \
#     -var config_file=examples/runner.yaml packer/runner.pkr.hcl
#
# First boot (user-data): glbootstrap apply --role runner --config ssm:/glbootstrap/runner/config

packer {
  required_plugins {
    amazon = {
      version = ">= 1.3.0"
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

variable "gitlab_runner_version" {
  type        = string
  default     = "18.5.0-1"
  description = "the gitlab-runner Debian package version to pin"
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
      "sudo install -m 0755 /tmp/glbootstrap /usr/local/bin/glbootstrap",
      "curl -fsSL https://packages.gitlab.com/install/repositories/runner/gitlab-runner/script.deb.sh | sudo bash",
      "sudo apt-get install -y gitlab-runner=${var.gitlab_runner_version}",
      "sudo apt-mark hold gitlab-runner",
      # Bake phases only: they need instance metadata but no secret and no GitLab.
      "sudo glbootstrap apply --role runner --config /tmp/glbootstrap-bake.yaml --phase directories,fargate-driver",
    ]
  }

  # No machine identity in the image: an AMI that carries .runner_system_id or a non-empty
  # machine-id makes every instance the same runner manager (gitlab-runner derives the system id
  # from /etc/machine-id when the file is missing: commands/internal/configfile in
  # https://gitlab.com/gitlab-org/gitlab-runner). glbootstrap's state goes too, except
  # driver.json, which names the driver release installed above, not the machine.
  provisioner "shell" {
    inline = [
      "sudo systemctl stop gitlab-runner || true",
      "sudo rm -f /etc/gitlab-runner/.runner_system_id /etc/gitlab-runner/config.toml /tmp/glbootstrap-bake.yaml",
      "sudo find /var/lib/glbootstrap -mindepth 1 ! -name driver.json -delete",
      "sudo truncate -s 0 /etc/machine-id",
      "sudo rm -f /var/lib/dbus/machine-id",
    ]
  }
}
