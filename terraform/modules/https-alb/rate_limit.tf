# A per-address rate limit at the load balancer (AWS WAF), counted across every allocator
# behind it: each allocator's own limits (access.request_rate_per_minute and friends) count
# only the requests that reach that host. Only the paths a fleet drain or a password guess
# goes through are counted, so VMs reporting in and pages loading never are. A workshop
# behind one NAT shares one address: keep the limit well above the class's size.

locals {
  # URI path -> how it is matched: every login page ends in /login.
  rate_limited_paths = {
    "/request_vm"     = "EXACTLY"
    "/api/request_vm" = "EXACTLY"
    "/release_vm"     = "EXACTLY"
    "/extend_vm"      = "EXACTLY"
    "/login"          = "ENDS_WITH"
  }
}

resource "aws_wafv2_web_acl" "rate_limit" {
  count       = var.rate_limit_per_5_minutes > 0 ? 1 : 0
  name        = "${var.name}-rate-limit"
  description = "Requests per client address to the researcher and login endpoints of ${var.name}"
  scope       = "REGIONAL"
  tags        = var.tags

  default_action {
    allow {}
  }

  rule {
    name     = "requests-per-address"
    priority = 1

    action {
      block {
        custom_response {
          response_code = 429
        }
      }
    }

    statement {
      rate_based_statement {
        limit              = var.rate_limit_per_5_minutes
        aggregate_key_type = "IP"

        scope_down_statement {
          or_statement {
            dynamic "statement" {
              for_each = local.rate_limited_paths
              content {
                byte_match_statement {
                  search_string         = statement.key
                  positional_constraint = statement.value
                  field_to_match {
                    uri_path {}
                  }
                  text_transformation {
                    priority = 0
                    type     = "LOWERCASE"
                  }
                }
              }
            }
          }
        }
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-requests-per-address"
      sampled_requests_enabled   = true
    }
  }

  visibility_config {
    cloudwatch_metrics_enabled = true
    metric_name                = "${var.name}-rate-limit"
    sampled_requests_enabled   = true
  }
}

resource "aws_wafv2_web_acl_association" "rate_limit" {
  count        = var.rate_limit_per_5_minutes > 0 ? 1 : 0
  resource_arn = aws_lb.this.arn
  web_acl_arn  = aws_wafv2_web_acl.rate_limit[0].arn
}
