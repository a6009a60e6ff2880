variable "region" {
  description = "AWS region the allocator server runs in."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must look like an AWS region name, e.g. us-east-1."
  }
}

variable "machine_type" {
  description = "EC2 instance type of each allocator."
  type        = string
  default     = "t3.large"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.machine_type))
    error_message = "machine_type must be an EC2 instance type such as t3.large."
  }
}

variable "ami_id" {
  description = "AMI of the allocator server; it must already have Docker (Ubuntu 20.04 with Docker by default)."
  type        = string
  default     = "ami-067cc81f948e50e06"

  validation {
    condition     = can(regex("^ami-[0-9a-f]{8,17}$", var.ami_id))
    error_message = "ami_id must look like ami-0123456789abcdef0."
  }
}

variable "allocator_image" {
  description = "Docker image of the allocator (web app, API and PostgreSQL)."
  type        = string
  default     = "ghcr.io/talmolab/lablink-allocator-image:latest"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9._/:@-]*$", var.allocator_image))
    error_message = "allocator_image must be a Docker image reference (lowercase, no spaces)."
  }
}

variable "app_port" {
  description = "Port the allocator web app listens on, on the host and in the container."
  type        = number
  default     = 5000

  validation {
    condition     = var.app_port >= 1 && var.app_port <= 65535 && floor(var.app_port) == var.app_port
    error_message = "app_port must be a port number between 1 and 65535."
  }
}

variable "allowed_cidrs" {
  description = "IPv4 CIDR blocks allowed to reach the load balancer (researchers and client VMs)."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = alltrue([for c in var.allowed_cidrs : can(cidrnetmask(c))])
    error_message = "Each entry of allowed_cidrs must be an IPv4 CIDR block such as 203.0.113.0/24."
  }
}

variable "edge_rate_limit_per_5_minutes" {
  description = "Requests one client address may make to /request_vm, /release_vm, /extend_vm and the login pages in 5 minutes, counted by AWS WAF at the load balancer across all allocators (each allocator's own limits count per host); 0 turns the WAF off. A class behind one NAT shares an address."
  type        = number
  default     = 1000

  validation {
    condition     = var.edge_rate_limit_per_5_minutes == 0 || var.edge_rate_limit_per_5_minutes >= 10
    error_message = "edge_rate_limit_per_5_minutes must be 0 (off) or at least 10 (AWS WAF's minimum)."
  }
}

variable "ssh_cidrs" {
  description = "IPv4 CIDR blocks allowed to reach the server on SSH (port 22); empty opens no SSH."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.ssh_cidrs : can(cidrnetmask(c))])
    error_message = "Each entry of ssh_cidrs must be an IPv4 CIDR block such as 203.0.113.0/24."
  }
}

variable "admin_password" {
  description = "Password of the admin pages of every allocator; passed to the containers, never stored in a file of the repo."
  type        = string
  sensitive   = true

  validation {
    condition     = length(var.admin_password) >= 12 && !can(regex("[\\x00\\r\\n]", var.admin_password))
    error_message = "admin_password must be at least 12 characters, on one line."
  }
}

variable "deployment_name" {
  description = "Name of this deployment; used in resource names and the lablink-deployment tag."
  type        = string
  default     = "lablink"

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$", var.deployment_name))
    error_message = "deployment_name must be 1-32 lowercase letters, digits or inner hyphens."
  }
}

variable "key_name" {
  description = "Optional EC2 key pair name for SSH access; null for none."
  type        = string
  default     = null
}

variable "iam_instance_profile" {
  description = "IAM instance profile giving the allocators the AWS rights to manage client VMs (see docs/multi-host.md); null for none."
  type        = string
  default     = null
}

variable "root_volume_size" {
  description = "Size in GiB of each allocator's root volume."
  type        = number
  default     = 30

  validation {
    condition     = var.root_volume_size >= 8
    error_message = "root_volume_size must be at least 8 GiB."
  }
}

variable "domain_name" {
  description = "DNS name of the cluster (on its certificate); point it at the load balancer."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.domain_name))
    error_message = "domain_name must be a lowercase DNS name such as lablink.example.org."
  }
}

variable "acm_certificate_arn" {
  description = "ARN of an ACM certificate for domain_name in this region."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[A-Za-z0-9-]+$", var.acm_certificate_arn))
    error_message = "acm_certificate_arn must be an ACM certificate ARN."
  }
}

variable "allocator_count" {
  description = "How many allocator instances serve behind the load balancer (spread over the subnets)."
  type        = number
  default     = 2

  validation {
    condition     = var.allocator_count >= 1 && var.allocator_count <= 20 && floor(var.allocator_count) == var.allocator_count
    error_message = "allocator_count must be a whole number from 1 to 20."
  }
}

variable "db_password" {
  description = "Password of the database's master user (the role the allocators connect as)."
  type        = string
  sensitive   = true

  validation {
    condition     = length(var.db_password) >= 12 && length(var.db_password) <= 128 && can(regex("^[^/@\"\\s]+$", var.db_password))
    error_message = "db_password must be 12-128 characters, without /, @, \" or spaces (RDS refuses those)."
  }
}

variable "db_name" {
  description = "Name of the allocators' database."
  type        = string
  default     = "lablink"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.db_name))
    error_message = "db_name must be a lowercase identifier."
  }
}

variable "db_username" {
  description = "Master user of the database."
  type        = string
  default     = "lablink"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.db_username)) && var.db_username != "postgres"
    error_message = "db_username must be a lowercase identifier other than postgres."
  }
}

variable "db_engine_version" {
  description = "PostgreSQL major version of the database."
  type        = string
  default     = "16"
}

variable "db_instance_class" {
  description = "RDS instance class of the database."
  type        = string
  default     = "db.t4g.small"
}

variable "db_allocated_storage" {
  description = "Storage of the database in GiB."
  type        = number
  default     = 20
}

variable "db_multi_az" {
  description = "Run a standby of the database in a second availability zone."
  type        = bool
  default     = false
}

variable "db_backup_retention_days" {
  description = "Days of automated database backups."
  type        = number
  default     = 7
}

variable "db_deletion_protection" {
  description = "Refuse to delete the database (turn off before terraform destroy)."
  type        = bool
  default     = true
}

variable "db_final_snapshot" {
  description = "Take a final snapshot when the database is deleted."
  type        = bool
  default     = true
}
