provider "aws" {
  region = var.region
}

locals {
  tags = {
    lablink-deployment = var.deployment_name
  }
  load_balanced = var.tls_mode == "load_balancer"
  serves_tls    = var.tls_mode == "certificate"
  # The port researchers and VMs connect to on the instance itself (none with a load balancer).
  public_port = local.serves_tls ? var.https_port : var.app_port
  # The URL VMs are given (app.public_url). Without TLS: empty, the instance then finds its
  # public IP at boot (IMDSv2) and uses http://<ip>:<app_port>.
  https_url = (
    local.serves_tls && var.https_port != 443
    ? "https://${var.domain_name}:${var.https_port}"
    : "https://${var.domain_name}"
  )
  public_url = var.tls_mode == "none" ? "" : local.https_url
}

check "tls_settings" {
  assert {
    condition     = var.tls_mode == "none" || var.domain_name != ""
    error_message = "tls_mode ${var.tls_mode} needs domain_name (the name on the certificate)."
  }
  assert {
    condition     = !local.serves_tls || (var.tls_certificate_pem != "" && var.tls_private_key_pem != "")
    error_message = "tls_mode certificate needs tls_certificate_pem and tls_private_key_pem."
  }
  assert {
    condition     = !local.load_balanced || var.acm_certificate_arn != ""
    error_message = "tls_mode load_balancer needs acm_certificate_arn."
  }
}

data "aws_vpc" "default" {
  count   = local.load_balanced ? 1 : 0
  default = true
}

data "aws_subnets" "default" {
  count = local.load_balanced ? 1 : 0
  filter {
    name   = "vpc-id"
    values = [data.aws_vpc.default[0].id]
  }
  filter {
    name   = "default-for-az"
    values = ["true"]
  }
}

resource "aws_security_group" "allocator" {
  name_prefix = "${var.deployment_name}-allocator-"
  description = "LabLink allocator of ${var.deployment_name}"
  tags        = merge(local.tags, { Name = "${var.deployment_name}-allocator" })

  dynamic "ingress" {
    for_each = !local.load_balanced && length(var.allowed_cidrs) > 0 ? [1] : []
    content {
      description = local.serves_tls ? "Allocator web app and API (HTTPS)" : "Allocator web app and API"
      from_port   = local.public_port
      to_port     = local.public_port
      protocol    = "tcp"
      cidr_blocks = var.allowed_cidrs
    }
  }

  dynamic "ingress" {
    for_each = local.load_balanced ? [1] : []
    content {
      description     = "Allocator web app and API, from the load balancer only"
      from_port       = var.app_port
      to_port         = var.app_port
      protocol        = "tcp"
      security_groups = [module.https_alb[0].security_group_id]
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
    public_port     = local.public_port
    public_url      = local.public_url
    image           = var.allocator_image
    tls_certificate = local.serves_tls ? var.tls_certificate_pem : ""
    tls_private_key = local.serves_tls ? var.tls_private_key_pem : ""
    trusted_proxies = local.load_balanced ? data.aws_vpc.default[0].cidr_block : ""
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

module "https_alb" {
  source = "../modules/https-alb"
  count  = local.load_balanced ? 1 : 0

  name            = var.deployment_name
  vpc_id          = data.aws_vpc.default[0].id
  subnet_ids      = data.aws_subnets.default[0].ids
  instance_ids    = [aws_instance.allocator.id]
  app_port        = var.app_port
  certificate_arn = var.acm_certificate_arn
  allowed_cidrs   = var.allowed_cidrs
  tags            = local.tags
}
