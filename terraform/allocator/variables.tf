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
  description = "EC2 instance type of the allocator server."
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
  description = "IPv4 CIDR blocks allowed to reach the allocator web app and API (researchers and client VMs)."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = alltrue([for c in var.allowed_cidrs : can(cidrnetmask(c))])
    error_message = "Each entry of allowed_cidrs must be an IPv4 CIDR block such as 203.0.113.0/24."
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
  description = "Password of the allocator's admin pages; passed to the container, never stored in a file of the repo."
  type        = string
  sensitive   = true

  validation {
    condition     = length(var.admin_password) >= 12 && !can(regex("[\\x00\\r\\n]", var.admin_password))
    error_message = "admin_password must be at least 12 characters, on one line."
  }
}

variable "db_password" {
  description = "Password of the allocator's PostgreSQL user; passed to the container."
  type        = string
  sensitive   = true

  validation {
    condition     = length(var.db_password) >= 12 && !can(regex("[\\x00\\r\\n]", var.db_password))
    error_message = "db_password must be at least 12 characters, on one line."
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
  description = "Optional IAM instance profile giving the allocator the AWS rights to create client VMs; null for none."
  type        = string
  default     = null
}

variable "root_volume_size" {
  description = "Size in GiB of the allocator's root volume (holds the database)."
  type        = number
  default     = 30

  validation {
    condition     = var.root_volume_size >= 8
    error_message = "root_volume_size must be at least 8 GiB."
  }
}

variable "tls_mode" {
  description = <<-EOT
    How the allocator serves HTTPS: "none" (plain HTTP on app_port), "certificate" (the
    allocator itself, with the certificate and key given here, on https_port), or
    "load_balancer" (an application load balancer with the ACM certificate acm_certificate_arn
    ends TLS on 443 and forwards to app_port). With TLS, VMs are given https://<domain_name>.
  EOT
  type        = string
  default     = "none"

  validation {
    condition     = contains(["none", "certificate", "load_balancer"], var.tls_mode)
    error_message = "tls_mode must be none, certificate or load_balancer."
  }
}

variable "domain_name" {
  description = "DNS name of the allocator (on its certificate); point it at the instance or the load balancer."
  type        = string
  default     = ""

  validation {
    condition     = var.domain_name == "" || can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.domain_name))
    error_message = "domain_name must be a lowercase DNS name such as lablink.example.org."
  }
}

variable "https_port" {
  description = "Port the allocator serves HTTPS on with tls_mode certificate."
  type        = number
  default     = 443

  validation {
    condition     = var.https_port >= 1 && var.https_port <= 65535 && floor(var.https_port) == var.https_port
    error_message = "https_port must be a port number between 1 and 65535."
  }
}

variable "tls_certificate_pem" {
  description = "PEM certificate chain for domain_name (tls_mode certificate); the server certificate first."
  type        = string
  default     = ""

  validation {
    condition     = var.tls_certificate_pem == "" || (startswith(trimspace(var.tls_certificate_pem), "-----BEGIN CERTIFICATE-----") && !strcontains(var.tls_certificate_pem, "LABLINK_"))
    error_message = "tls_certificate_pem must be a PEM certificate (-----BEGIN CERTIFICATE-----)."
  }
}

variable "tls_private_key_pem" {
  description = "PEM private key of tls_certificate_pem (tls_mode certificate). It travels in user_data: prefer load_balancer where that matters."
  type        = string
  default     = ""
  sensitive   = true

  validation {
    condition     = var.tls_private_key_pem == "" || (can(regex("^-----BEGIN [A-Z ]*PRIVATE KEY-----", trimspace(var.tls_private_key_pem))) && !strcontains(var.tls_private_key_pem, "LABLINK_"))
    error_message = "tls_private_key_pem must be a PEM private key (-----BEGIN ... PRIVATE KEY-----)."
  }
}

variable "acm_certificate_arn" {
  description = "ARN of an ACM certificate for domain_name in this region (tls_mode load_balancer)."
  type        = string
  default     = ""

  validation {
    condition     = var.acm_certificate_arn == "" || can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[A-Za-z0-9-]+$", var.acm_certificate_arn))
    error_message = "acm_certificate_arn must be an ACM certificate ARN."
  }
}
