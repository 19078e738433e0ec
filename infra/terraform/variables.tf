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

variable "image_tag" {
  description = "Tag of the router, worker and Lambda images in their ECR repositories (push them first: infra/README.md)."
  type        = string
  default     = "0.1.0"
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
  description = "ACM certificate for an HTTPS listener; with it, HTTP redirects to HTTPS. null serves plain HTTP on port 80."
  type        = string
  default     = null
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

variable "worker_price_per_hour_usd" {
  description = "On-demand price of worker_instance_type in region (LIBRA_VM_PRICE_PER_HOUR_USD: the controller's cost model and the cost meter). 0.526 is g4dn.xlarge in us-east-1."
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
  description = "Dynamic batcher's largest batch on a worker (--max-batch-size), and LIBRA_MAX_BATCH_SIZE, the request slots the router plans per worker."
  type        = number
  default     = 16
}

variable "worker_max_batch_delay_ms" {
  description = "Longest a worker waits to fill a batch, ms (--max-batch-delay-ms)."
  type        = number
  default     = 5
}

variable "worker_capacity_rps" {
  description = "Requests/s one worker sustains (LIBRA_VM_CAPACITY_RPS), which sizes the fleet. 40 is the project's default; measure it on worker_instance_type with bench/worker_batching.py."
  type        = number
  default     = 40
}

variable "worker_service_s" {
  description = "Expected worker time per request, seconds (LIBRA_VM_SERVICE_S): the router's SLA headroom rule."
  type        = number
  default     = 0.05
}

variable "worker_boot_s" {
  description = "Launch-to-ready time the policy plans with (LIBRA_BOOT_DELAY_S; with the aws provisioner it is only the policy's estimate, nothing sleeps). 120 s is the simulator's default; the first image pull on a fresh instance can take longer, so measure it."
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
  description = "Lambda memory, MiB (also LIBRA_SERVERLESS_MEMORY_MB, the cost model's GB-s). 1769 MiB is one full vCPU."
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
  description = "Billed duration of one warm invocation, seconds (LIBRA_SERVERLESS_DURATION_S, the policy's per-request serverless price). Measure with bench/serverless_latency.py."
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
