output "instance_id" {
  description = "ID of the allocator EC2 instance."
  value       = aws_instance.allocator.id
}

output "public_ip" {
  description = "Public IPv4 address of the allocator."
  value       = aws_instance.allocator.public_ip
}

output "public_dns" {
  description = "Public DNS name of the allocator."
  value       = aws_instance.allocator.public_dns
}

output "url" {
  description = "URL of the allocator web app and API."
  value       = "http://${aws_instance.allocator.public_ip}:${var.app_port}"
}

output "security_group_id" {
  description = "ID of the allocator's security group."
  value       = aws_security_group.allocator.id
}
