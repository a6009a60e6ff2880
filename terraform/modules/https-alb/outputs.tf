output "dns_name" {
  description = "DNS name of the load balancer (point the allocator's domain name at it)."
  value       = aws_lb.this.dns_name
}

output "zone_id" {
  description = "Route 53 zone of the load balancer (for an alias record)."
  value       = aws_lb.this.zone_id
}

output "security_group_id" {
  description = "Security group of the load balancer: the allocators accept it alone."
  value       = aws_security_group.alb.id
}

output "arn" {
  description = "ARN of the load balancer."
  value       = aws_lb.this.arn
}

output "web_acl_arn" {
  description = "ARN of the rate-limiting web ACL (null without one)."
  value       = var.rate_limit_per_5_minutes > 0 ? aws_wafv2_web_acl.rate_limit[0].arn : null
}
