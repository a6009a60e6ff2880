output "instance_id" {
  description = "ID of the allocator EC2 instance."
  value       = aws_instance.allocator.id
}

output "public_ip" {
  description = "Public IPv4 address of the allocator instance."
  value       = aws_instance.allocator.public_ip
}

output "public_dns" {
  description = "Public DNS name of the allocator instance."
  value       = aws_instance.allocator.public_dns
}

output "url" {
  description = "URL of the allocator web app and API (the one VMs are given)."
  value       = local.public_url != "" ? local.public_url : "http://${aws_instance.allocator.public_ip}:${var.app_port}"
}

output "load_balancer_dns_name" {
  description = "With tls_mode load_balancer: point domain_name at this name (CNAME or alias)."
  value       = local.load_balanced ? module.https_alb[0].dns_name : null
}

output "security_group_id" {
  description = "ID of the allocator's security group."
  value       = aws_security_group.allocator.id
}
