# GPU workers: an EC2 Auto Scaling group whose desired capacity Libra's controller sets
# (libra/serving/provision/aws.py: set_desired_capacity with HonorCooldown=False). Terraform creates the
# group and never touches its desired capacity again. No scaling policies: the controller is
# the only thing that scales it.
#
# Each instance boots the worker image (templates/worker-user-data.sh.tftpl), which registers in
# Redis under the instance id with its private-IP URL and heartbeats; routers count an
# InService instance as ready once it has registered.
#
# Health: the group uses the load balancer's health check (ELB), not only EC2's. A target group
# polls each worker's /readyz (200 once the model is loaded and warmed up, handlers/worker.py);
# after worker_health_grace_s, a worker that stops answering (a crashed container, a wedged
# GPU) is marked unhealthy and replaced, instead of being billed while it serves nothing.
#
# Capacity: a mixed-instances policy over worker_instance_type and worker_extra_instance_types,
# with capacity rebalancing: on a rebalance recommendation the group launches a replacement
# first and then terminates the at-risk instance through the same drain hook as a scale-in.
# With worker_spot_enabled the first N workers are on-demand and every one above is spot
# (worker_spot_allocation_strategy, worker_spot_max_price), and N is the controller's: it sets
# the on-demand base from each decision (update_auto_scaling_group), as it sets the desired
# capacity, so Terraform sets worker_on_demand_base at creation only. Each worker watches the
# instance metadata (--spot-watch) and drains on an interruption notice; the group replaces the
# instance. Without spot every worker is on-demand (100 % above the base) and the controller
# never touches the distribution.
#
# Scale-in protection matches the provisioner: instances launch unprotected, and before each
# scale-in the provisioner protects the ones with requests in flight and unprotects the others,
# so the group picks an idle instance (or a still-booting one: NewestInstance) to terminate.
# The termination hook holds a leaving instance in Terminating:Wait for worker_drain_s, during
# which routers see it DRAINING and send it nothing new; then SIGTERM lets the worker finish
# what it has (--drain-timeout-s) before the instance goes.

data "aws_ssm_parameter" "worker_ami" {
  count = var.worker_ami_id == null ? 1 : 0

  name = var.worker_ami_ssm_parameter
}

locals {
  worker_ami_id = var.worker_ami_id != null ? var.worker_ami_id : data.aws_ssm_parameter.worker_ami[0].insecure_value
  worker_group  = "${var.name}-workers"
}

resource "aws_cloudwatch_log_group" "worker" {
  name              = "/libra/${var.name}/worker"
  retention_in_days = var.log_retention_days
}

data "aws_iam_policy_document" "ec2_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "worker" {
  name               = "${var.name}-worker"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
}

# The worker process itself calls no AWS API (handlers/worker.py uses no boto3); the host pulls
# the image and ships the container's logs.
data "aws_iam_policy_document" "worker_host" {
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid       = "PullWorkerImage"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    resources = [aws_ecr_repository.image["worker"].arn]
  }

  statement {
    sid       = "WriteLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.worker.arn}:*"]
  }

  # The boot script reads LIBRA_REDIS_URL (AUTH token inside) from Secrets Manager.
  statement {
    sid       = "ReadRedisUrl"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.redis_url.arn]
  }
}

resource "aws_iam_role_policy" "worker_host" {
  name   = "host"
  role   = aws_iam_role.worker.id
  policy = data.aws_iam_policy_document.worker_host.json
}

resource "aws_iam_role_policy_attachment" "worker_ssm" {
  count = var.worker_ssm_access ? 1 : 0

  role       = aws_iam_role.worker.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "worker" {
  name = "${var.name}-worker"
  role = aws_iam_role.worker.name
}

resource "aws_launch_template" "worker" {
  name_prefix            = "${var.name}-worker-"
  description            = "Libra GPU worker (${var.worker_instance_type})"
  image_id               = local.worker_ami_id
  instance_type          = var.worker_instance_type
  update_default_version = true

  iam_instance_profile {
    arn = aws_iam_instance_profile.worker.arn
  }

  network_interfaces {
    device_index                = 0
    associate_public_ip_address = local.public_tier
    security_groups             = [aws_security_group.worker.id]
    delete_on_termination       = true
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  block_device_mappings {
    device_name = var.worker_root_device_name

    ebs {
      volume_size           = var.worker_root_volume_gb
      volume_type           = "gp3"
      encrypted             = true
      delete_on_termination = true
    }
  }

  user_data = base64encode(templatefile("${path.module}/templates/worker-user-data.sh.tftpl", {
    region             = var.region
    registry           = local.registry
    image              = local.image_uri["worker"]
    log_group          = aws_cloudwatch_log_group.worker.name
    redis_secret_arn   = aws_secretsmanager_secret.redis_url.arn
    port               = var.worker_port
    max_batch_size     = var.worker_max_batch_size
    max_batch_delay_ms = var.worker_max_batch_delay_ms
    drain_s            = var.worker_drain_s
  }))

  tag_specifications {
    resource_type = "instance"
    tags          = { Name = "${var.name}-worker" }
  }

  tag_specifications {
    resource_type = "volume"
    tags          = { Name = "${var.name}-worker" }
  }
}

# The workers' target group exists for its health check (the group's ELB health); routers reach
# workers directly by their registered private-IP URL, never through the ALB.
resource "aws_lb_target_group" "worker" {
  name                 = "${var.name}-worker"
  port                 = var.worker_port
  protocol             = "HTTP" # health checks inside the VPC only
  target_type          = "instance"
  vpc_id               = local.vpc_id
  deregistration_delay = 0 # no client traffic to drain: the lifecycle hook does the draining

  health_check {
    path                = "/readyz"
    matcher             = "200"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

# A target group is health-checked only while a listener routes to it. This listener has no
# ingress rule in the ALB's security group (network.tf), and its only forwarding rule matches a
# source address no client can have, so no request ever reaches a worker through it.
resource "aws_lb_listener" "worker_health" {
  load_balancer_arn = aws_lb.router.arn
  port              = var.worker_port
  protocol          = local.https ? "HTTPS" : "HTTP"
  ssl_policy        = local.https ? "ELBSecurityPolicy-TLS13-1-2-2021-06" : null
  certificate_arn   = var.certificate_arn

  default_action {
    type = "fixed-response"

    fixed_response {
      content_type = "text/plain"
      message_body = "not found"
      status_code  = "404"
    }
  }
}

resource "aws_lb_listener_rule" "worker_health" {
  listener_arn = aws_lb_listener.worker_health.arn
  priority     = 1

  condition {
    source_ip {
      values = ["127.0.0.1/32"]
    }
  }

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.worker.arn
  }
}

resource "aws_autoscaling_group" "workers" {
  name                = local.worker_group
  min_size            = var.worker_min
  max_size            = var.worker_max
  desired_capacity    = max(var.worker_min, var.worker_initial) # at creation only: then the controller owns it
  vpc_zone_identifier = local.compute_subnet_ids

  mixed_instances_policy {
    instances_distribution {
      on_demand_base_capacity                  = var.worker_on_demand_base # at creation only with spot: then the controller owns it
      on_demand_percentage_above_base_capacity = var.worker_spot_enabled ? 0 : 100
      spot_allocation_strategy                 = var.worker_spot_allocation_strategy
      spot_max_price                           = var.worker_spot_max_price
    }

    launch_template {
      launch_template_specification {
        launch_template_id = aws_launch_template.worker.id
        version            = aws_launch_template.worker.latest_version
      }

      dynamic "override" {
        for_each = distinct(concat([var.worker_instance_type], var.worker_extra_instance_types))

        content {
          instance_type = override.value
        }
      }
    }
  }
  capacity_rebalance = true

  # The load balancer's /readyz check decides health once the grace period is over.
  health_check_type         = "ELB"
  health_check_grace_period = var.worker_health_grace_s
  target_group_arns         = [aws_lb_target_group.worker.arn]
  # The controller waits for nothing either: instances count once their worker registers.
  wait_for_capacity_timeout = "0"

  protect_from_scale_in = false
  termination_policies  = ["OldestLaunchTemplate", "NewestInstance"]
  # AZRebalance would terminate instances on its own schedule, busy ones included.
  suspended_processes = ["AZRebalance"]

  # One-minute group metrics (free): the fleet-at-max alarm compares these two (alarms.tf).
  enabled_metrics     = ["GroupInServiceInstances", "GroupMaxSize", "GroupDesiredCapacity"]
  metrics_granularity = "1Minute"

  initial_lifecycle_hook {
    name                 = "drain"
    lifecycle_transition = "autoscaling:EC2_INSTANCE_TERMINATING"
    heartbeat_timeout    = var.worker_drain_s
    default_result       = "CONTINUE"
  }

  tag {
    key                 = "Name"
    value               = "${var.name}-worker"
    propagate_at_launch = true
  }

  lifecycle {
    ignore_changes = [
      desired_capacity,
      mixed_instances_policy[0].instances_distribution[0].on_demand_base_capacity,
    ]

    precondition {
      condition     = var.worker_min <= var.worker_max && var.worker_initial <= var.worker_max
      error_message = "Need worker_min <= worker_max and worker_initial <= worker_max (libra.serving.settings.Settings refuses initial_vms > max_vms)."
    }
  }

  depends_on = [aws_lb_listener_rule.worker_health]
}
