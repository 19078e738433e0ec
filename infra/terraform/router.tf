# The router: libra-serve (API, router, controller) as an ECS Fargate service behind an ALB.
# Why Fargate and not an EC2 instance: the router is CPU-only and keeps no state of its own
# (rates and the worker registry are in Redis), so it needs no AMI to patch or instance to
# replace; the task role hands boto3 its credentials; rolling deploys with health checks and
# rollback come with the service; the ALB adds TLS and replaces a task that stops answering.

resource "aws_ecs_cluster" "this" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "disabled"
  }
}

resource "aws_cloudwatch_log_group" "router" {
  name              = "/libra/${var.name}/router"
  retention_in_days = var.log_retention_days
}

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

# Execution role: what ECS itself needs to start the task (pull the image, ship the logs).
resource "aws_iam_role" "router_execution" {
  name               = "${var.name}-router-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "router_execution" {
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid       = "PullRouterImage"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    resources = [aws_ecr_repository.image["router"].arn]
  }

  statement {
    sid       = "WriteLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.router.arn}:*"]
  }

  # ECS reads the secrets into the container's environment at start (secrets.tf). A secret
  # given in api_keys_secret_arn that is encrypted with a customer-managed key also needs
  # kms:Decrypt on that key for this role.
  statement {
    sid       = "ReadStartSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = values(local.router_secrets)
  }
}

resource "aws_iam_role_policy" "router_execution" {
  name   = "start-task"
  role   = aws_iam_role.router_execution.id
  policy = data.aws_iam_policy_document.router_execution.json
}

# Task role: what libra-serve's boto3 clients may do. Exactly the calls in
# libra/serving/provision/aws.py and libra/serving/backends/serverless.py (tests/unit/test_infra.py derives the
# list from their source and compares).
resource "aws_iam_role" "router_task" {
  name               = "${var.name}-router-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "router_calls" {
  statement {
    sid     = "ReadFleet"
    actions = ["autoscaling:DescribeAutoScalingGroups", "ec2:DescribeInstances"]
    # Describe* actions take no resource-level permissions.
    resources = ["*"]
  }

  statement {
    sid = "DriveFleet"
    # UpdateAutoScalingGroup: the on-demand base with the desired capacity (spot). It cannot
    # swap the launch template: that would also need ec2:RunInstances and iam:PassRole.
    actions   = ["autoscaling:SetDesiredCapacity", "autoscaling:SetInstanceProtection", "autoscaling:UpdateAutoScalingGroup"]
    resources = [aws_autoscaling_group.workers.arn]
  }

  statement {
    sid       = "InvokeServerless"
    actions   = ["lambda:InvokeFunction"]
    resources = [aws_lambda_function.infer.arn, "${aws_lambda_function.infer.arn}:*"]
  }
}

resource "aws_iam_role_policy" "router_calls" {
  name   = "libra-calls"
  role   = aws_iam_role.router_task.id
  policy = data.aws_iam_policy_document.router_calls.json
}

locals {
  # The router's settings: every key is a LIBRA_* name of libra.serving.settings.Settings (nested
  # platform fields with __; checked by tests/unit/test_infra.py) over the aws profile, which the
  # aws provisioner selects. The image sets LIBRA_MODEL_DIR and LIBRA_LOG_DIR.
  router_env = {
    LIBRA_POLICY                          = var.policy
    LIBRA_SLA_S                           = var.sla_s
    LIBRA_PROVISIONER                     = "aws"
    LIBRA_ASG_NAME                        = aws_autoscaling_group.workers.name
    LIBRA_AWS_REGION                      = var.region
    LIBRA_MAX_VMS                         = var.worker_max
    LIBRA_INITIAL_VMS                     = var.worker_initial
    LIBRA_VM__BOOT_S                      = var.worker_boot_s
    LIBRA_VM__CONCURRENCY                 = var.worker_max_batch_size
    LIBRA_VM__SERVICE_TIME_MEAN_S         = var.worker_service_s
    LIBRA_VM__PRICE_PER_HOUR_USD          = var.worker_price_per_hour_usd
    LIBRA_SPOT__ENABLED                   = var.worker_spot_enabled
    LIBRA_SPOT__PRICE_PER_HOUR_USD        = var.worker_spot_price_per_hour_usd
    LIBRA_SERVERLESS_DRIVER               = "aws"
    LIBRA_LAMBDA_FUNCTION                 = aws_lambda_function.infer.function_name
    LIBRA_SERVERLESS__MEMORY_MB           = var.lambda_memory_mb
    LIBRA_SERVERLESS__SERVICE_TIME_MEAN_S = var.lambda_billed_duration_s
    # LIBRA_REDIS_URL and LIBRA_API_KEYS come from Secrets Manager (local.router_secrets).
  }

  # Where the router's own metrics go: CloudWatch extracts metrics from log lines in the
  # embedded metric format (EMF) that the container prints to stdout (awslogs driver). The
  # contract the alarms rely on (alarms.tf, infra/README.md, "Metrics"): namespace
  # AWS_EMF_NAMESPACE, dimension ServiceName = AWS_EMF_SERVICE_NAME; these are the variable
  # names the aws-embedded-metrics library reads.
  router_metrics_env = {
    AWS_EMF_NAMESPACE    = local.metrics_namespace
    AWS_EMF_SERVICE_NAME = local.router_service_name
    AWS_EMF_ENVIRONMENT  = "Local" # stdout, which the awslogs driver ships
  }
}

resource "aws_ecs_task_definition" "router" {
  family                   = "${var.name}-router"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.router_cpu
  memory                   = var.router_memory_mb
  execution_role_arn       = aws_iam_role.router_execution.arn
  task_role_arn            = aws_iam_role.router_task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  container_definitions = jsonencode([{
    name      = "router"
    image     = local.image_uri["router"]
    essential = true
    # The image's CMD is libra-serve on 0.0.0.0:8000; the port follows var.router_port.
    command = ["libra-serve", "--host", "0.0.0.0", "--port", tostring(var.router_port)]
    portMappings = [{
      containerPort = var.router_port
      protocol      = "tcp"
    }]
    environment = [for k, v in merge(local.router_env, local.router_metrics_env) : { name = k, value = tostring(v) }]
    secrets     = [for k, arn in local.router_secrets : { name = k, valueFrom = arn }]
    # libra-serve drains for up to 30 s on SIGTERM (uvicorn timeout_graceful_shutdown).
    stopTimeout = 35
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.router.name
        awslogs-region        = var.region
        awslogs-stream-prefix = "router"
      }
    }
  }])

  lifecycle {
    precondition {
      condition     = var.api_keys_secret_arn != null || length(var.api_key_entries) > 0
      error_message = "Give the router API keys: api_keys_secret_arn (a secret you manage) or api_key_entries (hashed entries, `libra-serve keys`). Without keys libra-serve answers anyone."
    }
  }
}

resource "aws_lb" "router" {
  name               = "${var.name}-router"
  load_balancer_type = "application"
  internal           = var.router_internal
  security_groups    = [aws_security_group.alb.id]
  subnets            = local.alb_subnet_ids
  # Uploads may be 25 MiB (libra-serve's max_body_bytes): leave room for slow clients.
  idle_timeout               = 120
  drop_invalid_header_fields = true
  enable_deletion_protection = var.alb_deletion_protection

  access_logs {
    enabled = var.enable_alb_access_logs
    bucket  = var.enable_alb_access_logs ? aws_s3_bucket.logs[0].id : ""
    prefix  = "alb"
  }

  # The log bucket must admit the ELB log writer before the ALB turns logging on.
  depends_on = [aws_s3_bucket_policy.logs]
}

resource "aws_lb_target_group" "router" {
  name                 = "${var.name}-router"
  port                 = var.router_port
  protocol             = "HTTP" # inside the VPC; clients reach the ALB over TLS
  target_type          = "ip"
  vpc_id               = local.vpc_id
  deregistration_delay = 35

  health_check {
    # 200 once the controller has ticked (libra/serving/api.py): a task joins when it can route.
    path                = "/readyz"
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

# The public listener: HTTPS with certificate_arn (port 80 then only redirects), plain HTTP on
# port 80 only when allow_plain_http says so; otherwise plan stops here. Whichever listener serves
# the API answers 404 by default and forwards only the paths in local.public_paths.
locals {
  https          = var.certificate_arn != null
  api_listener   = local.https ? aws_lb_listener.https[0].arn : aws_lb_listener.http.arn
  router_scheme  = local.https ? "https" : "http"
  not_found_body = "{\"error\":{\"code\":\"not_found\",\"message\":\"no such path on this endpoint\"}}"

  # What the internet may call: the API, the health probes, and the Open Inference Protocol v2
  # paths. Not /status (worker addresses), /metrics, /docs, /redoc or /openapi.json: those
  # stay inside the VPC (and need an admin key there too: libra/serving/auth.py).
  public_paths = ["/predict", "/healthz", "/readyz", "/v2", "/v2/*"]
}

resource "aws_lb_listener" "http" {
  load_balancer_arn = aws_lb.router.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type = local.https ? "redirect" : "fixed-response"

    dynamic "redirect" {
      for_each = local.https ? [1] : []

      content {
        port        = "443"
        protocol    = "HTTPS"
        status_code = "HTTP_301"
      }
    }

    dynamic "fixed_response" {
      for_each = local.https ? [] : [1]

      content {
        content_type = "application/json"
        message_body = local.not_found_body
        status_code  = "404"
      }
    }
  }

  lifecycle {
    precondition {
      condition     = var.certificate_arn != null || var.allow_plain_http
      error_message = "The API needs HTTPS: set certificate_arn (an ACM certificate for the ALB), or set allow_plain_http = true to serve it over plain HTTP on port 80 knowingly (API keys and inputs then travel in clear text)."
    }
  }
}

resource "aws_lb_listener" "https" {
  count = local.https ? 1 : 0

  load_balancer_arn = aws_lb.router.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn

  default_action {
    type = "fixed-response"

    fixed_response {
      content_type = "application/json"
      message_body = local.not_found_body
      status_code  = "404"
    }
  }
}

resource "aws_lb_listener_rule" "api" {
  listener_arn = local.api_listener
  priority     = 10

  condition {
    path_pattern {
      values = local.public_paths
    }
  }

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.router.arn
  }
}

resource "aws_ecs_service" "router" {
  name             = "${var.name}-router"
  cluster          = aws_ecs_cluster.this.id
  task_definition  = aws_ecs_task_definition.router.arn
  desired_count    = var.router_count
  launch_type      = "FARGATE"
  platform_version = "LATEST"

  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  health_check_grace_period_seconds  = 60

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = local.compute_subnet_ids
    security_groups  = [aws_security_group.router.id]
    assign_public_ip = local.public_tier
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.router.arn
    container_name   = "router"
    container_port   = var.router_port
  }

  depends_on = [aws_lb_listener_rule.api, aws_iam_role_policy.router_execution]
}
