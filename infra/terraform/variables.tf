# Every variable has a description and, where one exists, a default that deploys a working stack.
# Names that end up in the router's environment are noted with the LIBRA_* setting they feed
# (libra/serving/settings.py, Settings).

# ---------------------------------------------------------------------------------------------
# Stack
# ---------------------------------------------------------------------------------------------

variable "name" {
  description = "Prefix of every resource name (ASG, Lambda function, ECR repositories, ...). Lower-case letters, digits and hyphens, at most 20 characters (ALB and target group names are limited to 32)."
  type        = string
  default     = "libra"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,19}$", var.name))
    error_message = "name must be 1-20 lower-case letters, digits or hyphens, starting with a letter."
  }
}

variable "region" {
  description = "AWS region of the whole stack (also LIBRA_AWS_REGION for the router's boto3 clients)."
  type        = string
  default     = "us-east-1"
}

variable "tags" {
  description = "Extra tags put on every resource (merged into the provider's default_tags)."
  type        = map(string)
  default     = {}
}

variable "image_digests" {
  description = "Digest (sha256:<64 hex>) of each pushed image in its ECR repository: router, worker, lambda. Deploys go by digest, never by tag (tags are immutable too), so the router, the function and every new worker run exactly the bytes that were tested (infra/README.md, Deploy, writes these from the build's metadata)."
  type = object({
    router = string
    worker = string
    lambda = string
  })

  validation {
    condition     = alltrue([for d in values(var.image_digests) : can(regex("^sha256:[0-9a-f]{64}$", d))])
    error_message = "image_digests.router, .worker and .lambda must each be sha256:<64 hex digits> (docker buildx --metadata-file writes containerimage.digest)."
  }
}

variable "log_retention_days" {
  description = "CloudWatch Logs retention for the router, worker and Lambda log groups."
  type        = number
  default     = 14
}

# ---------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------

variable "vpc_id" {
  description = "An existing VPC to deploy into. null (default) creates a VPC with public and private subnets in az_count zones."
  type        = string
  default     = null
}

variable "public_subnet_ids" {
  description = "With vpc_id: subnets with a route to an internet gateway, in at least two zones (the ALB; router tasks and workers when compute_subnet_tier is \"public\")."
  type        = list(string)
  default     = []
}

variable "private_subnet_ids" {
  description = "With vpc_id: subnets for Redis (no internet route needed), and for router tasks and workers when compute_subnet_tier is \"private\" (then they need their own route to the AWS APIs: NAT or VPC endpoints)."
  type        = list(string)
  default     = []
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC created when vpc_id is null; subnets are /20 slices of it."
  type        = string
  default     = "10.42.0.0/16"
}

variable "az_count" {
  description = "Availability zones of the created VPC (the ALB needs two)."
  type        = number
  default     = 2

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 4
    error_message = "az_count must be 2 to 4."
  }
}

variable "enable_flow_logs" {
  description = "VPC flow logs (all traffic, 10-minute aggregation) to the logs bucket, for the created or the given VPC. Billed per GB delivered ($0.25/GB to S3), a few MB a day at idle."
  type        = bool
  default     = true
}

variable "enable_alb_access_logs" {
  description = "ALB access logs to the logs bucket (one line per request: client, path, status, latencies). S3 storage only."
  type        = bool
  default     = true
}

variable "access_log_retention_days" {
  description = "Days before flow logs and ALB access logs in the logs bucket expire."
  type        = number
  default     = 90
}

variable "compute_subnet_tier" {
  description = "Where router tasks and GPU workers run. \"public\" (default): public subnets with public IPs, reached only through their security groups; no NAT gateway, so nothing is billed while idle. \"private\": private subnets; in a created VPC this adds one NAT gateway (about $0.045/h plus $0.045/GB, worker image pulls included)."
  type        = string
  default     = "public"

  validation {
    condition     = contains(["public", "private"], var.compute_subnet_tier)
    error_message = "compute_subnet_tier must be \"public\" or \"private\"."
  }
}

# ---------------------------------------------------------------------------------------------
# Router (ECS Fargate behind an ALB)
# ---------------------------------------------------------------------------------------------

variable "router_cpu" {
  description = "Fargate CPU units of one router task (1024 = 1 vCPU). The router decodes audio and video for every request, so it is CPU-bound."
  type        = number
  default     = 2048
}

variable "router_memory_mb" {
  description = "Fargate memory of one router task, MiB (must be a valid pairing with router_cpu)."
  type        = number
  default     = 4096
}

variable "router_count" {
  description = "Router tasks. Each runs the controller too; several share rates through Redis and drive the same group (libra-serve e2e tests run two)."
  type        = number
  default     = 1

  validation {
    condition     = var.router_count >= 1
    error_message = "router_count must be at least 1."
  }
}

variable "router_port" {
  description = "Port libra-serve listens on inside the task."
  type        = number
  default     = 8000
}

variable "router_internal" {
  description = "true puts the ALB in the private subnets with no internet-facing address."
  type        = bool
  default     = false
}

variable "router_ingress_cidrs" {
  description = "CIDR blocks allowed to reach the ALB listener(s)."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "certificate_arn" {
  description = "ACM certificate of the HTTPS listener (port 443); port 80 then only redirects to it. Required unless allow_plain_http is true."
  type        = string
  default     = null
}

variable "allow_plain_http" {
  description = "Without certificate_arn, serve the API over plain HTTP on port 80. false (default) makes plan fail without a certificate: API keys and inputs would cross the internet in clear text. Meant for a throw-away test stack or an internal ALB behind another TLS terminator."
  type        = bool
  default     = false
}

variable "api_keys_secret_arn" {
  description = "An existing Secrets Manager secret holding the router's API key entries (LIBRA_API_KEYS: `name sha256:<hex> [admin] [rate_rps=..] [burst=..]`, one per line; `libra-serve keys` makes them). Managed outside Terraform, so not even the hashes enter the state. null: Terraform creates the secret from api_key_entries."
  type        = string
  default     = null

  validation {
    condition     = var.api_keys_secret_arn == null || can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+$", var.api_keys_secret_arn))
    error_message = "api_keys_secret_arn must be a Secrets Manager secret ARN."
  }
}

variable "api_key_entries" {
  description = "API key entries for the secret Terraform creates when api_keys_secret_arn is null (hashes only, never keys: `name sha256:<64 hex> [options]`). One of the two is required: a router without keys would answer anyone."
  type        = list(string)
  default     = []
  sensitive   = true

  validation {
    condition     = alltrue([for e in var.api_key_entries : can(regex("^[A-Za-z0-9_.@-]{1,64}\\s+([sS][hH][aA]256:)?[0-9a-fA-F]{64}(\\s+(admin|rate_rps=[0-9]*\\.?[0-9]+|burst=[0-9]+))*$", trimspace(e)))])
    error_message = "Each api_key_entries item is `name sha256:<64 hex> [admin] [rate_rps=N] [burst=N]` (the hash of a key, never the key: `libra-serve keys hash`)."
  }
}

variable "enable_waf" {
  description = "Put a WAF web ACL in front of the ALB: a per-IP rate-based rule (waf_rate_limit_per_5min) and AWS's known-bad-inputs managed rules. About $7/month plus $0.60 per million requests (infra/README.md)."
  type        = bool
  default     = false
}

variable "waf_rate_limit_per_5min" {
  description = "Requests one client IP may send in any 5-minute window before WAF blocks it (the rate-based rule; AWS's minimum is 10). The router's per-key token buckets (LIBRA_RATE_LIMIT_RPS) still apply below it."
  type        = number
  default     = 3000

  validation {
    condition     = var.waf_rate_limit_per_5min >= 10
    error_message = "waf_rate_limit_per_5min must be at least 10 (AWS WAF's minimum)."
  }
}

variable "alb_deletion_protection" {
  description = "Deletion protection on the ALB (terraform destroy then fails until it is turned off). The ALB holds no state, so the default leaves it off."
  type        = bool
  default     = false
}

variable "policy" {
  description = "Scaling policy the controller runs (LIBRA_POLICY): libra, libra-forecast, libra-paper, vm-static, vm-reactive, serverless, spock or mark."
  type        = string
  default     = "libra"

  validation {
    condition     = contains(["libra", "libra-forecast", "libra-paper", "vm-static", "vm-reactive", "serverless", "spock", "mark"], var.policy)
    error_message = "policy must be one of libra, libra-forecast, libra-paper, vm-static, vm-reactive, serverless, spock, mark."
  }
}

variable "sla_s" {
  description = "End-to-end latency SLA per request, seconds (LIBRA_SLA_S)."
  type        = number
  default     = 1.0
}

# ---------------------------------------------------------------------------------------------
# GPU workers (EC2 Auto Scaling group driven by libra/serving/provision/aws.py)
# ---------------------------------------------------------------------------------------------

variable "worker_instance_type" {
  description = "EC2 instance type of a GPU worker (one NVIDIA T4 on g4dn.xlarge)."
  type        = string
  default     = "g4dn.xlarge"
}

variable "worker_extra_instance_types" {
  description = "More instance types the group may launch besides worker_instance_type (mixed-instances overrides), e.g. [\"g5.xlarge\"]: more spot pools, fewer interruptions. Each must run the worker image (an NVIDIA GPU the image's CUDA supports); the controller plans with one service time, batch size and price (worker_service_s, worker_max_batch_size, worker_price_per_hour_usd), so keep them alike."
  type        = list(string)
  default     = []
}

variable "worker_spot_enabled" {
  description = "Spot workers (LIBRA_SPOT__ENABLED): the controller sets the group's on-demand base from the policy's decision (its on_demand_vms; all on-demand when the policy says nothing of spot) and every worker above the base is spot; workers drain on an interruption notice (docs/serving.md, Spot capacity). false (default, as the platform's profile: spot is opt-in): every worker on-demand, and Libra never touches the group's instances distribution."
  type        = bool
  default     = false
}

variable "worker_on_demand_base" {
  description = "The group's on-demand base at creation (mixed-instances on_demand_base_capacity): its first N workers are on-demand. With worker_spot_enabled the controller owns it afterwards (Terraform ignores later changes, as it does desired_capacity); without spot every worker is on-demand whatever it says."
  type        = number
  default     = 1

  validation {
    condition     = var.worker_on_demand_base >= 0
    error_message = "worker_on_demand_base must be 0 or more."
  }
}

variable "worker_spot_allocation_strategy" {
  description = "How the group picks spot pools among worker_instance_type and worker_extra_instance_types. price-capacity-optimized (default, AWS's recommendation) weighs price against the pools' spare capacity, so fewer interruptions than lowest-price."
  type        = string
  default     = "price-capacity-optimized"

  validation {
    condition     = contains(["price-capacity-optimized", "capacity-optimized", "capacity-optimized-prioritized", "lowest-price"], var.worker_spot_allocation_strategy)
    error_message = "worker_spot_allocation_strategy must be price-capacity-optimized, capacity-optimized, capacity-optimized-prioritized or lowest-price."
  }
}

variable "worker_spot_max_price" {
  description = "Highest price per instance-hour (USD, as a string, e.g. \"0.30\") the group bids for a spot worker. null (default): the on-demand price, AWS's recommendation (a lower cap adds interruptions when the price rises, and saves nothing below it)."
  type        = string
  default     = null

  validation {
    condition     = var.worker_spot_max_price == null || can(regex("^[0-9]+(\\.[0-9]+)?$", coalesce(var.worker_spot_max_price, "0")))
    error_message = "worker_spot_max_price must be null or a price in USD such as \"0.30\"."
  }
}

variable "worker_spot_price_per_hour_usd" {
  description = "What a spot worker costs per hour in region, for the policy's cost model and the cost meter (LIBRA_SPOT__PRICE_PER_HOUR_USD). 0.2104 is the platform profile's g4dn.xlarge figure; spot prices move, so check the region's spot price history."
  type        = number
  default     = 0.2104
}

variable "worker_health_grace_s" {
  description = "Seconds after launch before the group acts on the load balancer's health check of a worker (/readyz): boot, image pull, model load and warm-up must fit. After it, a worker whose /readyz fails unhealthy_threshold times is replaced."
  type        = number
  default     = 600
}

variable "worker_price_per_hour_usd" {
  description = "On-demand price of worker_instance_type in region (LIBRA_VM__PRICE_PER_HOUR_USD: the controller's cost model and the cost meter). 0.526 is g4dn.xlarge in us-east-1."
  type        = number
  default     = 0.526
}

variable "worker_ami_id" {
  description = "AMI of the workers: needs an NVIDIA driver that supports the image's CUDA (13.x: driver >= 580), Docker with the NVIDIA container toolkit, and the AWS CLI. null looks up worker_ami_ssm_parameter."
  type        = string
  default     = null
}

variable "worker_ami_ssm_parameter" {
  description = "SSM parameter holding the worker AMI id when worker_ami_id is null: AWS's Deep Learning Base OSS NVIDIA Driver GPU AMI (Amazon Linux 2023), which has the driver, Docker, the NVIDIA container toolkit and the AWS CLI."
  type        = string
  default     = "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-amazon-linux-2023/latest/ami-id"
}

variable "worker_root_device_name" {
  description = "Root device name of the worker AMI (/dev/xvda on Amazon Linux)."
  type        = string
  default     = "/dev/xvda"
}

variable "worker_root_volume_gb" {
  description = "Root EBS volume (gp3) of a worker; must be at least the AMI's snapshot size. Billed only while the worker exists."
  type        = number
  default     = 100
}

variable "worker_min" {
  description = "Auto Scaling group min_size: workers kept even when the policy asks for fewer."
  type        = number
  default     = 0
}

variable "worker_max" {
  description = "Auto Scaling group max_size, and LIBRA_MAX_VMS (the controller never asks for more)."
  type        = number
  default     = 4
}

variable "worker_initial" {
  description = "Workers the group is created with (and LIBRA_INITIAL_VMS); afterwards the policy decides, and a restarted router adopts the group's size. 0 keeps the idle stack GPU-free."
  type        = number
  default     = 0
}

variable "worker_port" {
  description = "Port the worker serves /infer on (the router reaches it at the instance's private IP)."
  type        = number
  default     = 8101
}

variable "worker_max_batch_size" {
  description = "Dynamic batcher's largest batch on a worker (--max-batch-size), and LIBRA_VM__CONCURRENCY, the request slots the router and the policy plan per worker."
  type        = number
  default     = 16
}

variable "worker_max_batch_delay_ms" {
  description = "Longest a worker waits to fill a batch, ms (--max-batch-delay-ms)."
  type        = number
  default     = 5
}

variable "worker_service_s" {
  description = "Mean worker time per request at full batch, seconds (LIBRA_VM__SERVICE_TIME_MEAN_S): a worker's capacity is worker_max_batch_size / this (which sizes the fleet), and the router plans with its p99.9. Measure it on worker_instance_type with bench/worker_batching.py (slots / measured req/s)."
  type        = number
  default     = 0.05
}

variable "worker_boot_s" {
  description = "Launch-to-ready time the policy plans with (LIBRA_VM__BOOT_S; with the aws provisioner it is only the policy's estimate, nothing sleeps). 120 s is the simulator's default; the first image pull on a fresh instance can take longer, so measure it."
  type        = number
  default     = 120
}

variable "worker_drain_s" {
  description = "Seconds a terminating worker is kept (termination lifecycle hook, 30-7200) and given to finish in-flight requests after SIGTERM (--drain-timeout-s)."
  type        = number
  default     = 30

  validation {
    condition     = var.worker_drain_s >= 30 && var.worker_drain_s <= 7200
    error_message = "worker_drain_s must be 30 to 7200 (the lifecycle hook's heartbeat timeout range)."
  }
}

variable "worker_ssm_access" {
  description = "Attach AmazonSSMManagedInstanceCore to workers so Session Manager can open a shell (no SSH port is opened either way)."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------------------------------------
# Serverless (AWS Lambda from a container image)
# ---------------------------------------------------------------------------------------------

variable "lambda_memory_mb" {
  description = "Lambda memory, MiB (also LIBRA_SERVERLESS__MEMORY_MB, the cost model's GB-s). 1769 MiB is one full vCPU."
  type        = number
  default     = 2048
}

variable "lambda_timeout_s" {
  description = "Lambda timeout, seconds. At most the router's read timeout (30 s, AwsLambdaDriver.read_timeout_s), past which the router has given up anyway."
  type        = number
  default     = 30

  validation {
    condition     = var.lambda_timeout_s >= 1 && var.lambda_timeout_s <= 30
    error_message = "lambda_timeout_s must be 1 to 30 (the router stops waiting after 30 s)."
  }
}

variable "lambda_reserved_concurrency" {
  description = "Reserved concurrency of the function: a cap on concurrent instances (and so on the burst bill). -1 reserves nothing (the account's unreserved pool caps it)."
  type        = number
  default     = -1
}

variable "lambda_ort_threads" {
  description = "ONNX Runtime intra-op threads in the function (LIBRA_ORT_THREADS read by handlers/lambda_function.py)."
  type        = number
  default     = 1
}

variable "lambda_billed_duration_s" {
  description = "Billed duration of one warm invocation, seconds (LIBRA_SERVERLESS__SERVICE_TIME_MEAN_S, the policy's per-request serverless price and the router's prior). Measure with bench/serverless_latency.py."
  type        = number
  default     = 0.1
}

variable "media_retention_days" {
  description = "Days before objects in the media bucket (large inputs passed to Lambda by S3 reference) expire."
  type        = number
  default     = 1
}

# ---------------------------------------------------------------------------------------------
# Redis (ElastiCache): shared rate counters and the worker registry
# ---------------------------------------------------------------------------------------------

variable "redis_engine" {
  description = "ElastiCache engine: redis, or valkey (same protocol, about 20% cheaper per node)."
  type        = string
  default     = "redis"

  validation {
    condition     = contains(["redis", "valkey"], var.redis_engine)
    error_message = "redis_engine must be redis or valkey."
  }
}

variable "redis_engine_version" {
  description = "Engine version (7.1 for redis; for valkey e.g. 8.0)."
  type        = string
  default     = "7.1"
}

variable "redis_node_type" {
  description = "ElastiCache node type. Libra keeps only per-second counters and heartbeats, all with TTLs, so the smallest node is plenty."
  type        = string
  default     = "cache.t4g.micro"
}

variable "redis_transit_encryption" {
  description = "TLS between clients and Redis; the URL handed to routers and workers is then rediss://."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------------------------------------
# Container registry
# ---------------------------------------------------------------------------------------------

variable "ecr_keep_images" {
  description = "Images kept per ECR repository; older ones expire."
  type        = number
  default     = 10
}

variable "ecr_force_delete" {
  description = "Let terraform destroy delete ECR repositories that still hold images."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------------------------------------
# Alarms and the budget (alarms.tf)
# ---------------------------------------------------------------------------------------------

variable "alert_email" {
  description = "Address that receives the alarms (SNS email subscription: confirm the mail AWS sends) and the budget's notifications."
  type        = string

  validation {
    condition     = can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.alert_email))
    error_message = "alert_email must be an e-mail address."
  }
}

variable "monthly_budget_usd" {
  description = "Monthly cost budget, USD: mail at 80% of it spent and when the month's forecast passes it. The idle stack costs about $114/month (infra/README.md, us-east-1), each on-demand GPU worker about $395/month if it ran all month."
  type        = number
  default     = 500
}

variable "budget_stack_tag_only" {
  description = "Count only costs tagged Stack = name in the budget. Needs the `Stack` cost allocation tag activated in the billing console first, or the budget sees $0 and never alerts; false (default) budgets the whole account."
  type        = bool
  default     = false
}

variable "alarm_5xx_percent" {
  description = "Alarm when 5xx answers (router and ALB) exceed this percent of requests for 3 of 5 minutes (only minutes with at least 20 requests count)."
  type        = number
  default     = 5
}

variable "alarm_p99_latency_s" {
  description = "Alarm when the ALB's p99 target response time exceeds this for 3 of 5 minutes. null: sla_s."
  type        = number
  default     = null
}

variable "alarm_tick_errors" {
  description = "Alarm when the routers' failed control ticks (EMF metric Libra/ControlTickErrors) reach this many in 5 minutes."
  type        = number
  default     = 3
}

variable "alarm_fleet_at_max_minutes" {
  description = "Alarm when the worker group has had max_size workers in service for this many consecutive minutes: the policy wants more than worker_max allows, so the overflow is going to Lambda."
  type        = number
  default     = 15
}
