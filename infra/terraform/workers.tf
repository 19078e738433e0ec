# GPU workers: an EC2 Auto Scaling group whose desired capacity Libra's controller sets
# (libra/serving/provision/aws.py: set_desired_capacity with HonorCooldown=False). Terraform creates the
# group and never touches its desired capacity again. No scaling policies: the controller is
# the only thing that scales it.
#
# Each instance boots the worker image (templates/worker-user-data.sh.tftpl), which registers in
# Redis under the instance id with its private-IP URL and heartbeats; routers count an
# InService instance as ready once it has registered.
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
    redis_url          = local.redis_url
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

resource "aws_autoscaling_group" "workers" {
  name                = local.worker_group
  min_size            = var.worker_min
  max_size            = var.worker_max
  desired_capacity    = max(var.worker_min, var.worker_initial) # at creation only: then the controller owns it
  vpc_zone_identifier = local.compute_subnet_ids

  launch_template {
    id      = aws_launch_template.worker.id
    version = aws_launch_template.worker.latest_version
  }

  health_check_type         = "EC2"
  health_check_grace_period = 300
  # The controller waits for nothing either: instances count once their worker registers.
  wait_for_capacity_timeout = "0"

  protect_from_scale_in = false
  termination_policies  = ["OldestLaunchTemplate", "NewestInstance"]
  # AZRebalance would terminate instances on its own schedule, busy ones included.
  suspended_processes = ["AZRebalance"]

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
    ignore_changes = [desired_capacity]

    precondition {
      condition     = var.worker_min <= var.worker_max && var.worker_initial <= var.worker_max
      error_message = "Need worker_min <= worker_max and worker_initial <= worker_max (libra.serving.settings.Settings refuses initial_vms > max_vms)."
    }
  }
}
