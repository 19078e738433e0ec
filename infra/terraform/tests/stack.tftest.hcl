# `terraform test` (offline: the AWS provider is mocked, so nothing is created and no
# credentials are needed): applies the stack against the mock in each network mode and
# checks what Libra's code relies on; the provider still validates every argument. tests/unit/test_infra.py runs it when terraform and the AWS provider are present.

# What every run deploys unless it says otherwise: the secure default (HTTPS, API keys from a
# secret Terraform makes, images by digest, alerts to an address).
variables {
  certificate_arn = "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"
  api_key_entries = ["alice sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 rate_rps=20", "ops sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae admin"]
  alert_email     = "oncall@example.com"
  image_digests = {
    router = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
    worker = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
    lambda = "sha256:3333333333333333333333333333333333333333333333333333333333333333"
  }
}

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
  mock_resource "aws_lb_listener" {
    defaults = { arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/libra-router/0123456789abcdef/0123456789abcdef" }
  }
  mock_resource "aws_secretsmanager_secret" {
    defaults = { arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:libra/secret-AbCdEf" }
  }
  mock_resource "aws_sns_topic" {
    defaults = { arn = "arn:aws:sns:us-east-1:123456789012:libra-alerts" }
  }
  mock_resource "aws_s3_bucket" {
    defaults = { arn = "arn:aws:s3:::libra-logs-0123", id = "libra-logs-0123" }
  }
  mock_resource "aws_cloudwatch_log_group" {
    defaults = { arn = "arn:aws:logs:us-east-1:123456789012:log-group:aws-waf-logs-libra" }
  }
  mock_resource "aws_wafv2_web_acl" {
    defaults = { arn = "arn:aws:wafv2:us-east-1:123456789012:regional/webacl/libra-router/00000000-0000-0000-0000-000000000000" }
  }
  mock_data "aws_elb_service_account" {
    defaults = { arn = "arn:aws:iam::127311923021:root" }
  }
  mock_data "aws_secretsmanager_random_password" {
    defaults = { random_password = "mockAuthTokenOfSixtyFourCharactersXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX" }
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
    condition     = !strcontains(base64decode(aws_launch_template.worker.user_data), "mockAuthToken") && strcontains(base64decode(aws_launch_template.worker.user_data), "--secret-id ${aws_secretsmanager_secret.redis_url.arn}")
    error_message = "workers read the Redis URL from its secret; the token never appears in user data"
  }
  assert {
    condition     = aws_secretsmanager_secret_version.redis_url.secret_string == "rediss://:mockAuthTokenOfSixtyFourCharactersXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX@master.libra-redis.abc123.use1.cache.amazonaws.com:6379/0"
    error_message = "the Redis URL secret is TLS with the AUTH token as password"
  }
  assert {
    condition     = aws_elasticache_replication_group.redis.transit_encryption_enabled == true && aws_elasticache_replication_group.redis.auth_token == "mockAuthTokenOfSixtyFourCharactersXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
    error_message = "Redis requires TLS and the AUTH token"
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
    condition     = output.router_env["LIBRA_SERVERLESS__MEMORY_MB"] == tostring(aws_lambda_function.infer.memory_size)
    error_message = "the cost model's Lambda memory is the function's"
  }
  assert {
    condition     = output.router_url == "https://libra-router-1.us-east-1.elb.amazonaws.com" && length(aws_lb_listener.https) == 1
    error_message = "the default serves the API over HTTPS"
  }
  assert {
    condition     = aws_lambda_function.infer.image_uri == "123456789012.dkr.ecr.us-east-1.amazonaws.com/libra-image@sha256:3333333333333333333333333333333333333333333333333333333333333333"
    error_message = "the function runs its image by digest"
  }
  assert {
    condition     = alltrue([for r in aws_ecr_repository.image : r.image_tag_mutability == "IMMUTABLE"])
    error_message = "image tags are immutable"
  }
  assert {
    condition     = jsondecode(aws_ecs_task_definition.router.container_definitions)[0].image == "123456789012.dkr.ecr.us-east-1.amazonaws.com/libra-image@sha256:1111111111111111111111111111111111111111111111111111111111111111"
    error_message = "the router task runs its image by digest"
  }
  assert {
    condition     = strcontains(base64decode(aws_launch_template.worker.user_data), "docker pull 123456789012.dkr.ecr.us-east-1.amazonaws.com/libra-image@sha256:2222222222222222222222222222222222222222222222222222222222222222")
    error_message = "workers pull their image by digest"
  }
  assert {
    condition     = aws_lambda_function.infer.reserved_concurrent_executions == -1
    error_message = "no reserved concurrency unless asked"
  }
  assert {
    condition     = aws_lb_listener.http.default_action[0].type == "redirect" && aws_lb_listener.https[0].default_action[0].type == "fixed-response"
    error_message = "port 80 only redirects; HTTPS answers 404 unless a rule forwards"
  }
  assert {
    condition     = aws_lb_listener_rule.api.listener_arn == aws_lb_listener.https[0].arn && toset(flatten([for c in aws_lb_listener_rule.api.condition : [for pp in c.path_pattern : pp.values]])) == toset(["/predict", "/healthz", "/readyz", "/v2", "/v2/*"])
    error_message = "the public listener forwards only /predict, the probes and the OIP v2 paths"
  }
  assert {
    condition     = length([for p in flatten([for c in aws_lb_listener_rule.api.condition : [for pp in c.path_pattern : pp.values]]) : p if contains(["/status", "/metrics", "/docs", "/redoc", "/openapi.json", "/*"], p)]) == 0
    error_message = "/status, /metrics and the docs are never routed from outside"
  }
  assert {
    condition     = toset([for r in aws_vpc_security_group_ingress_rule.alb_clients : r.from_port]) == toset([80, 443])
    error_message = "the ALB admits 80 (redirect) and 443"
  }
  assert {
    condition     = { for s in jsondecode(aws_ecs_task_definition.router.container_definitions)[0].secrets : s.name => s.valueFrom } == { LIBRA_API_KEYS = aws_secretsmanager_secret.api_keys[0].arn, LIBRA_REDIS_URL = aws_secretsmanager_secret.redis_url.arn }
    error_message = "the router gets its API keys and Redis URL from Secrets Manager"
  }
  assert {
    condition     = length([for e in jsondecode(aws_ecs_task_definition.router.container_definitions)[0].environment : e if contains(["LIBRA_REDIS_URL", "LIBRA_API_KEYS"], e.name)]) == 0
    error_message = "no secret travels as a plain environment variable"
  }
  assert {
    condition     = aws_secretsmanager_secret_version.api_keys[0].secret_string == join("\n", var.api_key_entries)
    error_message = "the API key secret holds the entries, one per line"
  }
  assert {
    condition     = aws_autoscaling_group.workers.health_check_type == "ELB" && aws_autoscaling_group.workers.health_check_grace_period == 600 && toset(aws_autoscaling_group.workers.target_group_arns) == toset([aws_lb_target_group.worker.arn])
    error_message = "workers are judged by the load balancer's health check after a grace period"
  }
  assert {
    condition     = aws_lb_target_group.worker.health_check[0].path == "/readyz" && aws_lb_target_group.worker.port == 8101
    error_message = "the worker health check is the worker's /readyz on its port"
  }
  assert {
    condition     = flatten([for c in aws_lb_listener_rule.worker_health.condition : [for ip in c.source_ip : ip.values]]) == ["127.0.0.1/32"] && length([for r in aws_vpc_security_group_ingress_rule.alb_clients : r if r.from_port == 8101]) == 0
    error_message = "no client can reach a worker through the ALB's health-check listener"
  }
  assert {
    condition     = aws_autoscaling_group.workers.capacity_rebalance == true && aws_autoscaling_group.workers.mixed_instances_policy[0].instances_distribution[0].on_demand_base_capacity == 1 && aws_autoscaling_group.workers.mixed_instances_policy[0].instances_distribution[0].on_demand_percentage_above_base_capacity == 100
    error_message = "mixed instances, capacity rebalancing on; spot is opt-in: every worker on-demand by default"
  }
  assert {
    condition     = length(aws_default_security_group.this) == 1 && length(aws_default_security_group.this[0].ingress) == 0 && length(aws_default_security_group.this[0].egress) == 0
    error_message = "the created VPC's default security group has no rules"
  }
  assert {
    condition     = length(aws_flow_log.vpc) == 1 && aws_flow_log.vpc[0].traffic_type == "ALL" && aws_lb.router.access_logs[0].enabled == true
    error_message = "flow logs and ALB access logs are on by default"
  }
  assert {
    condition     = length(aws_wafv2_web_acl.router) == 0
    error_message = "WAF is opt-in"
  }
  assert {
    condition     = aws_cloudwatch_metric_alarm.control_tick_errors.namespace == "Libra" && aws_cloudwatch_metric_alarm.control_tick_errors.metric_name == "ControlTickErrors" && aws_cloudwatch_metric_alarm.control_tick_errors.dimensions["ServiceName"] == "libra-router"
    error_message = "the tick-error alarm watches the EMF metric the router prints"
  }
  assert {
    condition     = { for e in jsondecode(aws_ecs_task_definition.router.container_definitions)[0].environment : e.name => e.value if startswith(e.name, "AWS_EMF_") } == { AWS_EMF_NAMESPACE = "Libra", AWS_EMF_SERVICE_NAME = "libra-router", AWS_EMF_ENVIRONMENT = "Local" }
    error_message = "the router is told the EMF namespace and service name the alarm watches"
  }
  assert {
    condition     = aws_cloudwatch_metric_alarm.api_p99_latency.extended_statistic == "p99" && aws_cloudwatch_metric_alarm.api_p99_latency.threshold == 1
    error_message = "p99 latency alarm at the SLA"
  }
  assert {
    condition     = alltrue([for a in [aws_cloudwatch_metric_alarm.api_5xx_rate, aws_cloudwatch_metric_alarm.api_p99_latency, aws_cloudwatch_metric_alarm.control_tick_errors, aws_cloudwatch_metric_alarm.lambda_throttles, aws_cloudwatch_metric_alarm.fleet_at_max] : a.alarm_actions == toset([aws_sns_topic.alerts.arn])])
    error_message = "every alarm notifies the alerts topic"
  }
  assert {
    condition     = aws_sns_topic_subscription.alert_email.endpoint == "oncall@example.com" && toset(flatten([for n in aws_budgets_budget.monthly.notification : n.subscriber_email_addresses])) == toset(["oncall@example.com"])
    error_message = "alarms and the budget go to alert_email"
  }
  assert {
    condition     = toset(aws_autoscaling_group.workers.enabled_metrics) == toset(["GroupInServiceInstances", "GroupMaxSize", "GroupDesiredCapacity"])
    error_message = "the group publishes the metrics the fleet-at-max alarm compares"
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
    condition     = startswith(output.redis_endpoint, "redis://") && aws_secretsmanager_secret_version.redis_url.secret_string == "redis://master.libra-redis.abc123.use1.cache.amazonaws.com:6379/0"
    error_message = "without transit encryption the URL is redis:// with no AUTH token (ElastiCache allows one only with TLS)"
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

run "plain_http_is_refused_without_a_certificate" {
  command = plan

  variables {
    certificate_arn = null
  }

  expect_failures = [aws_lb_listener.http]
}

run "plain_http_when_allowed_explicitly" {
  command = apply

  variables {
    certificate_arn  = null
    allow_plain_http = true
  }

  assert {
    condition     = length(aws_lb_listener.https) == 0 && aws_lb_listener.http.default_action[0].type == "fixed-response" && aws_lb_listener_rule.api.listener_arn == aws_lb_listener.http.arn
    error_message = "with allow_plain_http, port 80 serves the same routed paths"
  }
  assert {
    condition     = startswith(output.router_url, "http://") && toset([for r in aws_vpc_security_group_ingress_rule.alb_clients : r.from_port]) == toset([80])
    error_message = "the plain-HTTP stack opens port 80 only"
  }
  assert {
    condition     = aws_lb_listener.worker_health.protocol == "HTTP"
    error_message = "without a certificate the health-check listener is HTTP"
  }
}

run "api_keys_are_required" {
  command = plan

  variables {
    api_key_entries = []
  }

  expect_failures = [aws_ecs_task_definition.router]
}

run "api_keys_from_an_existing_secret" {
  command = apply

  variables {
    api_key_entries     = []
    api_keys_secret_arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:team/libra-keys-AbCdEf"
  }

  assert {
    condition     = length(aws_secretsmanager_secret.api_keys) == 0 && { for s in jsondecode(aws_ecs_task_definition.router.container_definitions)[0].secrets : s.name => s.valueFrom }["LIBRA_API_KEYS"] == var.api_keys_secret_arn
    error_message = "a given secret is used as it is, and none is created"
  }
}

run "a_key_instead_of_its_hash_is_refused" {
  command = plan

  variables {
    api_key_entries = ["alice libra_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]
  }

  expect_failures = [var.api_key_entries]
}

run "an_image_tag_instead_of_a_digest_is_refused" {
  command = plan

  variables {
    image_digests = { router = "0.1.0", worker = "sha256:2222222222222222222222222222222222222222222222222222222222222222", lambda = "sha256:3333333333333333333333333333333333333333333333333333333333333333" }
  }

  expect_failures = [var.image_digests]
}

run "waf_when_enabled" {
  command = apply

  variables {
    enable_waf              = true
    waf_rate_limit_per_5min = 1000
  }

  assert {
    condition     = length(aws_wafv2_web_acl_association.router) == 1 && aws_wafv2_web_acl_association.router[0].resource_arn == aws_lb.router.arn
    error_message = "the web ACL is attached to the ALB"
  }
  assert {
    condition     = one([for r in aws_wafv2_web_acl.router[0].rule : r.statement[0].rate_based_statement[0].limit if length(r.statement[0].rate_based_statement) > 0]) == 1000
    error_message = "a per-IP rate-based rule at waf_rate_limit_per_5min"
  }
}

run "logs_switched_off" {
  command = apply

  variables {
    enable_flow_logs       = false
    enable_alb_access_logs = false
  }

  assert {
    condition     = length(aws_s3_bucket.logs) == 0 && length(aws_flow_log.vpc) == 0 && aws_lb.router.access_logs[0].enabled == false
    error_message = "with both off there is no logs bucket, flow log or access logging"
  }
}

run "spot_and_on_demand_mix_and_extra_types" {
  command = apply

  variables {
    worker_spot_enabled             = true
    worker_on_demand_base           = 0
    worker_spot_allocation_strategy = "capacity-optimized"
    worker_spot_max_price           = "0.30"
    worker_spot_price_per_hour_usd  = 0.19
    worker_extra_instance_types     = ["g5.xlarge", "g4dn.xlarge"]
  }

  assert {
    condition     = [for o in aws_autoscaling_group.workers.mixed_instances_policy[0].launch_template[0].override : o.instance_type] == ["g4dn.xlarge", "g5.xlarge"]
    error_message = "overrides: worker_instance_type first, extra types after, no duplicates"
  }
  assert {
    condition     = aws_autoscaling_group.workers.mixed_instances_policy[0].instances_distribution[0].on_demand_base_capacity == 1 && aws_autoscaling_group.workers.mixed_instances_policy[0].instances_distribution[0].on_demand_percentage_above_base_capacity == 0
    error_message = "with spot on every worker above the base is spot; the base stays as the group was created with (1, an earlier run): a later worker_on_demand_base is ignored, the controller owns it"
  }
  assert {
    condition     = aws_autoscaling_group.workers.mixed_instances_policy[0].instances_distribution[0].spot_allocation_strategy == "capacity-optimized" && aws_autoscaling_group.workers.mixed_instances_policy[0].instances_distribution[0].spot_max_price == "0.30" && aws_autoscaling_group.workers.capacity_rebalance == true
    error_message = "the spot strategy and price cap follow the variables, rebalancing on"
  }
  assert {
    condition     = { for e in jsondecode(aws_ecs_task_definition.router.container_definitions)[0].environment : e.name => e.value if startswith(e.name, "LIBRA_SPOT__") } == { LIBRA_SPOT__ENABLED = "true", LIBRA_SPOT__PRICE_PER_HOUR_USD = "0.19" }
    error_message = "the router is told spot is on, and its price"
  }
}

run "spot_allocation_strategy_is_checked" {
  command = plan

  variables {
    worker_spot_allocation_strategy = "cheapest"
  }

  expect_failures = [var.worker_spot_allocation_strategy]
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
