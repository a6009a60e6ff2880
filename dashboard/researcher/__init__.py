"""The researcher page: request a VM, see its hostname and PIN, renew or release it."""
