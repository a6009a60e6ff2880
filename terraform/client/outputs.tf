output "vms" {
  description = "Client VMs by name: id, public_ip, public_dns and name (no credentials)."
  value = {
    for name, vm in aws_instance.client : name => {
      id         = vm.id
      public_ip  = vm.public_ip
      public_dns = vm.public_dns
      name       = name
    }
  }
  sensitive = false
}

output "security_group_id" {
  description = "ID of the security group the client VMs share."
  value       = aws_security_group.client.id
}
