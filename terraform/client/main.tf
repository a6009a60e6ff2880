provider "aws" {
  region = var.region
}

locals {
  tags = {
    lablink-deployment = var.deployment_name
  }
}

resource "aws_security_group" "client" {
  name_prefix = "${var.deployment_name}-client-"
  description = "LabLink client VMs of ${var.deployment_name}"
  tags        = merge(local.tags, { Name = "${var.deployment_name}-client" })

  dynamic "ingress" {
    for_each = length(var.ssh_cidrs) > 0 ? [1] : []
    content {
      description = "SSH"
      from_port   = 22
      to_port     = 22
      protocol    = "tcp"
      cidr_blocks = var.ssh_cidrs
    }
  }

  egress {
    description = "All outbound traffic"
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_instance" "client" {
  for_each = var.vm_names

  ami                    = var.ami_id
  instance_type          = var.machine_type
  key_name               = var.key_name
  vpc_security_group_ids = [aws_security_group.client.id]

  # Only a one-time enrolment token: the VM exchanges it for its credential at first boot.
  user_data = templatefile("${path.module}/user_data.sh.tftpl", {
    allocator_url   = var.allocator_url
    hostname        = each.key
    enrolment_token = lookup(var.vm_enrolment_tokens, each.key, "")
    repository      = var.repository
    image           = var.client_image
  })

  metadata_options {
    http_tokens = "required"
  }

  tags = merge(local.tags, { Name = each.key })

  lifecycle {
    # Tokens are minted per apply, and user_data runs only at first boot: a VM that exists is
    # never replaced because its user_data changed (new settings reach new VMs only).
    ignore_changes = [user_data]

    precondition {
      condition     = contains(keys(var.vm_enrolment_tokens), each.key)
      error_message = "vm_enrolment_tokens has no token for VM ${each.key}."
    }
  }
}
