# N allocators behind an application load balancer (TLS with an ACM certificate), on one
# managed PostgreSQL (RDS) that holds the VM table and the client fleet's Terraform state
# (fleet.terraform_backend = pg). See docs/multi-host.md.

provider "aws" {
  region = var.region
}

locals {
  tags = {
    lablink-deployment = var.deployment_name
  }
  public_url = "https://${var.domain_name}"
  # RDS PostgreSQL enforces TLS (rds.force_ssl); the password is URL-encoded.
  database_url = format(
    "postgresql://%s:%s@%s/%s?sslmode=require",
    var.db_username,
    urlencode(var.db_password),
    aws_db_instance.lablink.endpoint,
    var.db_name,
  )
}

data "aws_vpc" "default" {
  default = true
}

data "aws_subnets" "default" {
  filter {
    name   = "vpc-id"
    values = [data.aws_vpc.default.id]
  }
  filter {
    name   = "default-for-az"
    values = ["true"]
  }
}

resource "aws_security_group" "allocators" {
  name_prefix = "${var.deployment_name}-allocators-"
  description = "LabLink allocators of ${var.deployment_name}"
  vpc_id      = data.aws_vpc.default.id
  tags        = merge(local.tags, { Name = "${var.deployment_name}-allocators" })

  ingress {
    description     = "Web app and API, from the load balancer only"
    from_port       = var.app_port
    to_port         = var.app_port
    protocol        = "tcp"
    security_groups = [module.https_alb.security_group_id]
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
    description = "AWS APIs, the database and the container registry"
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "database" {
  name_prefix = "${var.deployment_name}-database-"
  description = "PostgreSQL of ${var.deployment_name}, for its allocators only"
  vpc_id      = data.aws_vpc.default.id
  tags        = merge(local.tags, { Name = "${var.deployment_name}-database" })

  ingress {
    description     = "PostgreSQL from the allocators"
    from_port       = 5432
    to_port         = 5432
    protocol        = "tcp"
    security_groups = [aws_security_group.allocators.id]
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_db_subnet_group" "lablink" {
  name_prefix = "${var.deployment_name}-"
  description = "Subnets of the ${var.deployment_name} database"
  subnet_ids  = data.aws_subnets.default.ids
  tags        = local.tags
}

resource "aws_db_instance" "lablink" {
  identifier_prefix          = "${var.deployment_name}-"
  engine                     = "postgres"
  engine_version             = var.db_engine_version
  instance_class             = var.db_instance_class
  allocated_storage          = var.db_allocated_storage
  storage_type               = "gp3"
  storage_encrypted          = true
  db_name                    = var.db_name
  username                   = var.db_username
  password                   = var.db_password
  db_subnet_group_name       = aws_db_subnet_group.lablink.name
  vpc_security_group_ids     = [aws_security_group.database.id]
  publicly_accessible        = false
  multi_az                   = var.db_multi_az
  backup_retention_period    = var.db_backup_retention_days
  deletion_protection        = var.db_deletion_protection
  skip_final_snapshot        = !var.db_final_snapshot
  final_snapshot_identifier  = var.db_final_snapshot ? "${var.deployment_name}-final" : null
  auto_minor_version_upgrade = true
  tags                       = local.tags
}

resource "aws_instance" "allocator" {
  count = var.allocator_count

  ami                    = var.ami_id
  instance_type          = var.machine_type
  key_name               = var.key_name
  iam_instance_profile   = var.iam_instance_profile
  subnet_id              = element(sort(data.aws_subnets.default.ids), count.index)
  vpc_security_group_ids = [aws_security_group.allocators.id]

  user_data = templatefile("${path.module}/user_data.sh.tftpl", {
    admin_password  = var.admin_password
    database_url    = local.database_url
    app_port        = var.app_port
    public_url      = local.public_url
    trusted_proxies = data.aws_vpc.default.cidr_block
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

  tags = merge(local.tags, { Name = "${var.deployment_name}-allocator-${count.index + 1}" })
}

module "https_alb" {
  source = "../modules/https-alb"

  name            = var.deployment_name
  vpc_id          = data.aws_vpc.default.id
  subnet_ids      = data.aws_subnets.default.ids
  instance_ids    = aws_instance.allocator[*].id
  app_port        = var.app_port
  certificate_arn = var.acm_certificate_arn
  allowed_cidrs   = var.allowed_cidrs
  tags            = local.tags

  rate_limit_per_5_minutes = var.edge_rate_limit_per_5_minutes
}
