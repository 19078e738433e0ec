# Alarms and a budget: someone hears about a failing API, a slow one, a controller that cannot
# act, a function that is being throttled, a fleet pinned at its maximum, and a bill that runs
# away, all at alert_email.
#
# Data sources: the ALB's own metrics (AWS/ApplicationELB), Lambda's (AWS/Lambda), the group's
# one-minute metrics (AWS/AutoScaling, enabled in workers.tf), and the router's own metrics,
# which it prints as embedded metric format (EMF) lines to stdout: CloudWatch Logs extracts them
# from the router's log group (router.tf, local.router_metrics_env; infra/README.md, "Metrics").

locals {
  metrics_namespace   = "Libra"
  router_service_name = "${var.name}-router"
  p99_latency_s       = coalesce(var.alarm_p99_latency_s, var.sla_s)
  alarm_actions       = [aws_sns_topic.alerts.arn]
}

resource "aws_sns_topic" "alerts" {
  name = "${var.name}-alerts"
}

resource "aws_sns_topic_subscription" "alert_email" {
  topic_arn = aws_sns_topic.alerts.arn
  protocol  = "email"
  endpoint  = var.alert_email
}

# 5xx answers (the router's and the ALB's own, e.g. no healthy task) as a share of requests;
# minutes with fewer than 20 requests count as healthy, so one error at night does not page.
resource "aws_cloudwatch_metric_alarm" "api_5xx_rate" {
  alarm_name          = "${var.name}-api-5xx-rate"
  alarm_description   = "More than ${var.alarm_5xx_percent}% of API requests answered 5xx in 3 of the last 5 minutes."
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alarm_5xx_percent
  evaluation_periods  = 5
  datapoints_to_alarm = 3
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id          = "rate"
    expression  = "IF(requests >= 20, 100 * (FILL(target5xx, 0) + FILL(elb5xx, 0)) / requests, 0)"
    label       = "5xx percent"
    return_data = true
  }

  metric_query {
    id = "requests"

    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "RequestCount"
      dimensions  = { LoadBalancer = aws_lb.router.arn_suffix }
      period      = 60
      stat        = "Sum"
    }
  }

  metric_query {
    id = "target5xx"

    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_Target_5XX_Count"
      dimensions  = { LoadBalancer = aws_lb.router.arn_suffix }
      period      = 60
      stat        = "Sum"
    }
  }

  metric_query {
    id = "elb5xx"

    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_ELB_5XX_Count"
      dimensions  = { LoadBalancer = aws_lb.router.arn_suffix }
      period      = 60
      stat        = "Sum"
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "api_p99_latency" {
  alarm_name          = "${var.name}-api-p99-latency"
  alarm_description   = "The ALB's p99 target response time was above ${local.p99_latency_s} s in 3 of the last 5 minutes (the SLA is ${var.sla_s} s)."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "TargetResponseTime"
  dimensions          = { LoadBalancer = aws_lb.router.arn_suffix }
  extended_statistic  = "p99"
  period              = 60
  comparison_operator = "GreaterThanThreshold"
  threshold           = local.p99_latency_s
  evaluation_periods  = 5
  datapoints_to_alarm = 3
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# The routers print ControlTickErrors (the failed ticks since their last line) only when it
# is non-zero, so no data means no errors.
resource "aws_cloudwatch_metric_alarm" "control_tick_errors" {
  alarm_name          = "${var.name}-control-tick-errors"
  alarm_description   = "The routers' controllers failed ${var.alarm_tick_errors} or more ticks in 5 minutes: the fleet keeps its size while they fail (router log group for the cause)."
  namespace           = local.metrics_namespace
  metric_name         = "ControlTickErrors"
  dimensions          = { ServiceName = local.router_service_name }
  statistic           = "Sum"
  period              = 300
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = var.alarm_tick_errors
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "lambda_throttles" {
  alarm_name          = "${var.name}-lambda-throttles"
  alarm_description   = "The serverless function was throttled in the last 5 minutes: requests that spilled to Lambda failed or waited (concurrency limit or reserved concurrency)."
  namespace           = "AWS/Lambda"
  metric_name         = "Throttles"
  dimensions          = { FunctionName = aws_lambda_function.infer.function_name }
  statistic           = "Sum"
  period              = 300
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "fleet_at_max" {
  alarm_name          = "${var.name}-fleet-at-max"
  alarm_description   = "The GPU group has run at max_size (${var.worker_max}) for ${var.alarm_fleet_at_max_minutes} minutes: the policy wants more workers than worker_max allows, so the overflow goes to Lambda at its price."
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  evaluation_periods  = var.alarm_fleet_at_max_minutes
  datapoints_to_alarm = var.alarm_fleet_at_max_minutes
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id          = "atmax"
    expression  = "IF(maxsize > 0 AND inservice >= maxsize, 1, 0)"
    label       = "in service == max size"
    return_data = true
  }

  metric_query {
    id = "inservice"

    metric {
      namespace   = "AWS/AutoScaling"
      metric_name = "GroupInServiceInstances"
      dimensions  = { AutoScalingGroupName = aws_autoscaling_group.workers.name }
      period      = 60
      stat        = "Maximum"
    }
  }

  metric_query {
    id = "maxsize"

    metric {
      namespace   = "AWS/AutoScaling"
      metric_name = "GroupMaxSize"
      dimensions  = { AutoScalingGroupName = aws_autoscaling_group.workers.name }
      period      = 60
      stat        = "Maximum"
    }
  }
}

# The bill: a monthly cost budget mailing at 80% spent and when the forecast passes 100%.
resource "aws_budgets_budget" "monthly" {
  name         = "${var.name}-monthly"
  budget_type  = "COST"
  limit_amount = format("%.2f", var.monthly_budget_usd)
  limit_unit   = "USD"
  time_unit    = "MONTHLY"

  dynamic "cost_filter" {
    for_each = var.budget_stack_tag_only ? [1] : []

    content {
      name   = "TagKeyValue"
      values = [format("user:Stack$%s", var.name)]
    }
  }

  notification {
    comparison_operator        = "GREATER_THAN"
    threshold                  = 80
    threshold_type             = "PERCENTAGE"
    notification_type          = "ACTUAL"
    subscriber_email_addresses = [var.alert_email]
  }

  notification {
    comparison_operator        = "GREATER_THAN"
    threshold                  = 100
    threshold_type             = "PERCENTAGE"
    notification_type          = "FORECASTED"
    subscriber_email_addresses = [var.alert_email]
  }
}
