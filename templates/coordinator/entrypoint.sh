#!/bin/sh
# Entrypoint of the coordinator image. GitLab's Fargate driver puts the job's SSH public key in
# SSH_PUBLIC_KEY (only for the container named ci-coordinator) and then runs the job over SSH as
# fargate.toml's [SSH] Username on its [SSH] Port. The driver sets nothing else, so user and port
# come from the image: SSH_USER and SSH_PORT, baked at build time from the runner configuration
# (Dockerfile ARG -> ENV; a task definition's environment can still override them). Arguments
# (the task definition's command) are passed on to sshd, e.g. ["-o", "MaxStartups=50"].
set -eu

user="${SSH_USER:-root}"
port="${SSH_PORT:-22}"
if [ -z "${SSH_PUBLIC_KEY:-}" ]; then
    echo "coordinator: SSH_PUBLIC_KEY is empty: the Fargate driver sets it only for the container named ci-coordinator; check the task definition's container name" >&2
    exit 1
fi
home="$(getent passwd "$user" | cut -d: -f6)"
if [ -z "$home" ]; then
    echo "coordinator: no user $user in the image" >&2
    exit 1
fi

install -d -m 0700 -o "$user" "$home/.ssh"
printf '%s\n' "$SSH_PUBLIC_KEY" > "$home/.ssh/authorized_keys"
chown "$user" "$home/.ssh/authorized_keys"
chmod 0600 "$home/.ssh/authorized_keys"

# SSH sessions do not inherit the container's environment: pass on what AWS SDKs need to use the
# task role (and the region), so `glbootstrap codebuild run` works inside jobs. pam_env reads
# /etc/environment for every session.
: > /etc/environment
for v in AWS_CONTAINER_CREDENTIALS_RELATIVE_URI AWS_CONTAINER_CREDENTIALS_FULL_URI \
         AWS_CONTAINER_AUTHORIZATION_TOKEN AWS_REGION AWS_DEFAULT_REGION ECS_CONTAINER_METADATA_URI_V4; do
    eval "val=\${$v:-}"
    if [ -n "$val" ]; then
        printf '%s=%s\n' "$v" "$val" >> /etc/environment
    fi
done

# One host key, ed25519 (sshd_config's HostKey): generating every type (ssh-keygen -A) costs an RSA
# key at every task start, and the driver's client takes ed25519.
ssh-keygen -q -t ed25519 -N '' -C '' -f /etc/ssh/ssh_host_ed25519_key
mkdir -p /run/sshd
exec /usr/sbin/sshd -D -e -p "$port" "$@"
