variable "name" {
  description = "Name prefix of the load balancer's resources (the deployment's name)."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the load balancer and its targets."
  type        = string
}

variable "subnet_ids" {
  description = "Subnets of the load balancer, in at least two availability zones."
  type        = list(string)
}

variable "instance_ids" {
  description = "The allocator instances it forwards to."
  type        = list(string)
}

variable "app_port" {
  description = "Port the allocators listen on (plain HTTP behind the load balancer)."
  type        = number
}

variable "certificate_arn" {
  description = "ARN of the ACM certificate for the allocator's domain name."
  type        = string
}

variable "allowed_cidrs" {
  description = "IPv4 CIDR blocks allowed to reach the load balancer."
  type        = list(string)
}

variable "idle_timeout" {
  description = "Seconds a connection may stay idle; above the original client's 3000 s long poll."
  type        = number
  default     = 4000
}

variable "ssl_policy" {
  description = "TLS policy of the HTTPS listener."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"
}

variable "tags" {
  description = "Tags of every resource."
  type        = map(string)
  default     = {}
}

variable "rate_limit_per_5_minutes" {
  description = "Requests one client address may make to the researcher and login endpoints in 5 minutes, counted by AWS WAF across all allocators (0: no WAF)."
  type        = number
  default     = 0

  validation {
    condition     = var.rate_limit_per_5_minutes == 0 || (var.rate_limit_per_5_minutes >= 10 && var.rate_limit_per_5_minutes <= 2000000000)
    error_message = "rate_limit_per_5_minutes must be 0 (off) or between 10 and 2,000,000,000 (AWS WAF's range)."
  }
}
