variable "region" {
  description = "AWS region the client VMs run in."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must look like an AWS region name, e.g. us-east-1."
  }
}

variable "machine_type" {
  description = "EC2 instance type of each client VM (g4dn.xlarge has one NVIDIA T4 GPU)."
  type        = string
  default     = "g4dn.xlarge"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.machine_type))
    error_message = "machine_type must be an EC2 instance type such as g4dn.xlarge."
  }
}

variable "ami_id" {
  description = "AMI of the client VMs; it must already have Docker and the NVIDIA container toolkit."
  type        = string
  default     = "ami-067cc81f948e50e06"

  validation {
    condition     = can(regex("^ami-[0-9a-f]{8,17}$", var.ami_id))
    error_message = "ami_id must look like ami-0123456789abcdef0."
  }
}

variable "client_image" {
  description = "Docker image each client VM runs."
  type        = string
  default     = "ghcr.io/talmolab/lablink-allocator-client:0.2.0"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9._/:@-]*$", var.client_image))
    error_message = "client_image must be a Docker image reference (lowercase, no spaces)."
  }
}

variable "repository" {
  description = "Optional Git repository URL the client clones at start; empty for none."
  type        = string
  default     = ""

  validation {
    condition     = var.repository == "" || can(regex("^(https://|git@)[^\\s]+$", var.repository))
    error_message = "repository must be empty or an https:// or git@ URL without spaces."
  }
}

variable "allocator_url" {
  description = "Base URL of the allocator the clients register with, e.g. http://203.0.113.7:5000."
  type        = string

  validation {
    condition     = can(regex("^https?://[^\\s]+$", var.allocator_url))
    error_message = "allocator_url must be an http:// or https:// URL without spaces."
  }
}

variable "vm_names" {
  description = "Names of the client VMs; each VM is keyed by its name, so keeping a name keeps its VM."
  type        = set(string)

  validation {
    condition     = alltrue([for n in var.vm_names : can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", n))])
    error_message = "Each VM name must be 1-63 lowercase letters, digits or inner hyphens (a hostname label)."
  }
}

variable "vm_enrolment_tokens" {
  description = <<-EOT
    One-time enrolment token per VM, keyed by VM name; every VM needs an entry. Only VMs
    being created or replaced need a real token (the VM exchanges it for its credential at
    first boot): VMs that already exist get the placeholder "existing-vm", which nothing
    reads (user_data changes are ignored once a VM exists).
  EOT
  type        = map(string)
  sensitive   = true

  validation {
    condition     = alltrue([for t in values(var.vm_enrolment_tokens) : length(t) >= 8 && length(t) <= 200 && can(regex("^[A-Za-z0-9._~-]+$", t))])
    error_message = "Each enrolment token must be 8-200 letters, digits or ._~- characters."
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

variable "ssh_cidrs" {
  description = "IPv4 CIDR blocks allowed to reach the VMs on SSH (port 22); empty opens no SSH."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.ssh_cidrs : can(cidrnetmask(c))])
    error_message = "Each entry of ssh_cidrs must be an IPv4 CIDR block such as 203.0.113.0/24."
  }
}

variable "key_name" {
  description = "Optional EC2 key pair name for SSH access; null for none."
  type        = string
  default     = null
}
