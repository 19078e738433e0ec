# `terraform test` (offline: the AWS provider is mocked, so nothing is created and no
# credentials are needed): applies the stack against the mock in each network mode and
# checks what Libra's code relies on; the provider still validates every argument. tests/unit/test_infra.py runs it when terraform and the AWS provider are present.

mock_provider "aws" {
  mock_data "aws_availability_zones" {
    defaults = { names = ["us-east-1a", "us-east-1b", "us-east-1c"] }
  }
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  mock_data "aws_ssm_parameter" {
    defaults = { insecure_value = "ami-0123456789abcdef0" }
  }
  mock_resource "aws_ecr_repository" {
    defaults = {
      repository_url = "123456789012.dkr.ecr.us-east-1.amazonaws.com/libra-image"
      arn            = "arn:aws:ecr:us-east-1:123456789012:repository/libra-image"
    }
  }
  mock_resource "aws_elasticache_replication_group" {
    defaults = { primary_endpoint_address = "master.libra-redis.abc123.use1.cache.amazonaws.com" }
  }
  mock_resource "aws_lambda_function" {
    defaults = { arn = "arn:aws:lambda:us-east-1:123456789012:function:libra-infer" }
  }
  mock_resource "aws_autoscaling_group" {
    defaults = { arn = "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:0:autoScalingGroupName/libra-workers" }
  }
  mock_resource "aws_lb" {
    defaults = {
      dns_name = "libra-router-1.us-east-1.elb.amazonaws.com"
      arn      = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/libra-router/0123456789abcdef"
    }
  }
  mock_resource "aws_lb_target_group" {
    defaults = { arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/libra-router/0123456789abcdef" }
  }
  mock_resource "aws_launch_template" {
    defaults = { id = "lt-0123456789abcdef0", latest_version = 1 }
  }
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::123456789012:role/libra-role" }
  }
  mock_resource "aws_iam_instance_profile" {
    defaults = { arn = "arn:aws:iam::123456789012:instance-profile/libra-worker" }
  }
}

run "default_public_tier" {
  command = apply

  assert {
    condition     = length(aws_vpc.this) == 1 && length(aws_subnet.public) == 2 && length(aws_subnet.private) == 2
    error_message = "the default creates a VPC with two public and two private subnets"
  }
  assert {
    condition     = length(aws_nat_gateway.this) == 0 && length(aws_eip.nat) == 0
    error_message = "the public tier must not create a NAT gateway (idle cost)"
  }
  assert {
    condition     = aws_ecs_service.router.network_configuration[0].assign_public_ip == true
    error_message = "router tasks in public subnets need a public IP to pull their image"
  }
  assert {
    condition     = aws_launch_template.worker.network_interfaces[0].associate_public_ip_address == "true"
    error_message = "workers in public subnets need a public IP to pull their image"
  }
  assert {
    condition     = aws_autoscaling_group.workers.protect_from_scale_in == false
    error_message = "instances launch unprotected; the provisioner protects busy ones before a scale-in"
  }
  assert {
    condition     = aws_autoscaling_group.workers.desired_capacity == 0 && aws_autoscaling_group.workers.max_size == 4
    error_message = "the group starts empty with room for LIBRA_MAX_VMS"
  }
  assert {
    condition     = one([for h in aws_autoscaling_group.workers.initial_lifecycle_hook : h.heartbeat_timeout if h.lifecycle_transition == "autoscaling:EC2_INSTANCE_TERMINATING"]) == 30
    error_message = "a terminating worker is held worker_drain_s so routers see it DRAINING"
  }
  assert {
    condition     = strcontains(base64decode(aws_launch_template.worker.user_data), "--worker-id \"$INSTANCE_ID\"")
    error_message = "workers must register under their instance id (libra/serving/provision/aws.py matches on it)"
  }
  assert {
    condition     = strcontains(base64decode(aws_launch_template.worker.user_data), "--env LIBRA_REDIS_URL=rediss://master.libra-redis.abc123.use1.cache.amazonaws.com:6379/0")
    error_message = "workers get the TLS Redis URL"
  }
  assert {
    condition     = aws_launch_template.worker.image_id == "ami-0123456789abcdef0"
    error_message = "without worker_ami_id the AMI comes from the SSM parameter"
  }
  assert {
    condition     = output.router_env["LIBRA_PROVISIONER"] == "aws" && output.router_env["LIBRA_SERVERLESS_DRIVER"] == "aws"
    error_message = "the router drives EC2 and Lambda"
  }
  assert {
    condition     = output.router_env["LIBRA_ASG_NAME"] == "libra-workers" && output.router_env["LIBRA_MAX_VMS"] == "4"
    error_message = "the router drives the group Terraform made, up to its max_size"
  }
  assert {
    condition     = output.router_env["LIBRA_SERVERLESS_MEMORY_MB"] == tostring(aws_lambda_function.infer.memory_size)
    error_message = "the cost model's Lambda memory is the function's"
  }
  assert {
    condition     = output.router_url == "http://libra-router-1.us-east-1.elb.amazonaws.com" && length(aws_lb_listener.https) == 0
    error_message = "without a certificate the ALB serves plain HTTP"
  }
  assert {
    condition     = aws_lambda_function.infer.image_uri == "123456789012.dkr.ecr.us-east-1.amazonaws.com/libra-image:0.1.0"
    error_message = "the function runs the pushed image tag"
  }
  assert {
    condition     = aws_lambda_function.infer.reserved_concurrent_executions == -1
    error_message = "no reserved concurrency unless asked"
  }
}

run "private_tier_adds_one_nat_gateway" {
  command = apply

  variables {
    compute_subnet_tier      = "private"
    redis_transit_encryption = false
  }

  assert {
    condition     = length(aws_nat_gateway.this) == 1 && length(aws_route.private_nat) == 1
    error_message = "private compute subnets in a created VPC get one NAT gateway"
  }
  assert {
    condition     = aws_ecs_service.router.network_configuration[0].assign_public_ip == false
    error_message = "private router tasks get no public IP"
  }
  assert {
    condition     = aws_launch_template.worker.network_interfaces[0].associate_public_ip_address == "false"
    error_message = "private workers get no public IP"
  }
  assert {
    condition     = startswith(output.redis_url, "redis://")
    error_message = "without transit encryption the URL is redis://"
  }
}

run "existing_vpc" {
  command = apply

  variables {
    vpc_id              = "vpc-0123456789abcdef0"
    public_subnet_ids   = ["subnet-public-a", "subnet-public-b"]
    private_subnet_ids  = ["subnet-private-a", "subnet-private-b"]
    compute_subnet_tier = "private"
    worker_ami_id       = "ami-0fedcba9876543210"
  }

  assert {
    condition     = length(aws_vpc.this) == 0 && length(aws_subnet.public) == 0 && length(aws_nat_gateway.this) == 0
    error_message = "an existing VPC gets no network resources of ours"
  }
  assert {
    condition     = toset(aws_autoscaling_group.workers.vpc_zone_identifier) == toset(["subnet-private-a", "subnet-private-b"])
    error_message = "workers go into the given private subnets"
  }
  assert {
    condition     = toset(aws_lb.router.subnets) == toset(["subnet-public-a", "subnet-public-b"])
    error_message = "the internet-facing ALB goes into the given public subnets"
  }
  assert {
    condition     = toset(aws_elasticache_subnet_group.redis.subnet_ids) == toset(["subnet-private-a", "subnet-private-b"])
    error_message = "Redis goes into the given private subnets"
  }
  assert {
    condition     = aws_launch_template.worker.image_id == "ami-0fedcba9876543210" && length(data.aws_ssm_parameter.worker_ami) == 0
    error_message = "an explicit worker_ami_id skips the SSM lookup"
  }
}

run "https_listener_redirects_http" {
  command = apply

  variables {
    certificate_arn = "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"
  }

  assert {
    condition     = length(aws_lb_listener.https) == 1 && aws_lb_listener.http.default_action[0].type == "redirect"
    error_message = "with a certificate, HTTPS forwards and HTTP redirects"
  }
  assert {
    condition     = startswith(output.router_url, "https://")
    error_message = "the router URL is HTTPS"
  }
  assert {
    condition     = length(aws_vpc_security_group_ingress_rule.alb_clients) == 2
    error_message = "the ALB opens 80 and 443 to router_ingress_cidrs"
  }
}

run "existing_vpc_without_subnets_is_flagged" {
  command = plan

  variables {
    vpc_id = "vpc-0123456789abcdef0"
  }

  expect_failures = [check.existing_vpc_subnets]
}

run "initial_workers_above_max_is_refused" {
  command = plan

  variables {
    worker_initial = 5
    worker_max     = 4
  }

  expect_failures = [aws_autoscaling_group.workers]
}

run "lambda_timeout_past_the_router_read_timeout_is_refused" {
  command = plan

  variables {
    lambda_timeout_s = 60
  }

  expect_failures = [var.lambda_timeout_s]
}
