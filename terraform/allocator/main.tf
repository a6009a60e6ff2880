provider "aws" {
  region = var.region
}

locals {
  tags = {
    lablink-deployment = var.deployment_name
  }
}

resource "aws_security_group" "allocator" {
  name_prefix = "${var.deployment_name}-allocator-"
  description = "LabLink allocator of ${var.deployment_name}"
  tags        = merge(local.tags, { Name = "${var.deployment_name}-allocator" })

  dynamic "ingress" {
    for_each = length(var.allowed_cidrs) > 0 ? [1] : []
    content {
      description = "Allocator web app and API"
      from_port   = var.app_port
      to_port     = var.app_port
      protocol    = "tcp"
      cidr_blocks = var.allowed_cidrs
    }
  }

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

resource "aws_instance" "allocator" {
  ami                    = var.ami_id
  instance_type          = var.machine_type
  key_name               = var.key_name
  iam_instance_profile   = var.iam_instance_profile
  vpc_security_group_ids = [aws_security_group.allocator.id]

  user_data = templatefile("${path.module}/user_data.sh.tftpl", {
    admin_password  = var.admin_password
    db_password     = var.db_password
    deployment_name = var.deployment_name
    app_port        = var.app_port
    image           = var.allocator_image
  })
  user_data_replace_on_change = true

  root_block_device {
    volume_size = var.root_volume_size
    volume_type = "gp3"
  }

  metadata_options {
    http_tokens = "required"
  }

  tags = merge(local.tags, { Name = "${var.deployment_name}-allocator" })
}
