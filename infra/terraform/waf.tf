# Optional WAF in front of the ALB (enable_waf): a per-client-IP rate limit, and AWS's
# known-bad-inputs rules (Log4j-style payloads, invalid request bodies). The router still does
# its own admission: API keys and per-key token buckets (libra/serving/auth.py); WAF stops a
# flood before it costs router CPU or the ALB's LCUs. Only blocked requests are logged.

resource "aws_wafv2_web_acl" "router" {
  count = var.enable_waf ? 1 : 0

  name        = "${var.name}-router"
  description = "Libra ALB: per-IP rate limit and known bad inputs"
  scope       = "REGIONAL"

  default_action {
    allow {}
  }

  rule {
    name     = "per-ip-rate"
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
        limit                 = var.waf_rate_limit_per_5min
        aggregate_key_type    = "IP"
        evaluation_window_sec = 300
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-per-ip-rate"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "known-bad-inputs"
    priority = 2

    override_action {
      none {}
    }

    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesKnownBadInputsRuleSet"
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-known-bad-inputs"
      sampled_requests_enabled   = true
    }
  }

  visibility_config {
    cloudwatch_metrics_enabled = true
    metric_name                = "${var.name}-router"
    sampled_requests_enabled   = true
  }
}

resource "aws_wafv2_web_acl_association" "router" {
  count = var.enable_waf ? 1 : 0

  resource_arn = aws_lb.router.arn
  web_acl_arn  = aws_wafv2_web_acl.router[0].arn
}

# WAF requires log group names starting with aws-waf-logs-.
resource "aws_cloudwatch_log_group" "waf" {
  count = var.enable_waf ? 1 : 0

  name              = "aws-waf-logs-${var.name}"
  retention_in_days = var.log_retention_days
}

resource "aws_wafv2_web_acl_logging_configuration" "router" {
  count = var.enable_waf ? 1 : 0

  resource_arn            = aws_wafv2_web_acl.router[0].arn
  log_destination_configs = [aws_cloudwatch_log_group.waf[0].arn]

  logging_filter {
    default_behavior = "DROP"

    filter {
      behavior    = "KEEP"
      requirement = "MEETS_ANY"

      condition {
        action_condition {
          action = "BLOCK"
        }
      }
    }
  }
}
