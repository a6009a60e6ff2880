output "url" {
  description = "URL of the cluster (the one VMs are given)."
  value       = local.public_url
}

output "load_balancer_dns_name" {
  description = "Point domain_name at this name (CNAME, or a Route 53 alias with load_balancer_zone_id)."
  value       = module.https_alb.dns_name
}

output "load_balancer_zone_id" {
  description = "Route 53 zone of the load balancer, for an alias record."
  value       = module.https_alb.zone_id
}

output "instance_ids" {
  description = "IDs of the allocator instances."
  value       = aws_instance.allocator[*].id
}

output "database_endpoint" {
  description = "host:port of the cluster's PostgreSQL."
  value       = aws_db_instance.lablink.endpoint
}

output "web_acl_arn" {
  description = "ARN of the load balancer's rate-limiting web ACL (null when edge_rate_limit_per_5_minutes is 0)."
  value       = module.https_alb.web_acl_arn
}
