# The network: a created VPC (default) or an existing one (var.vpc_id), and who may talk to whom.
#
#   internet -> ALB :443 (:80 redirects) -> router tasks :router_port -> workers :worker_port
#               ALB (health checks only)  -> workers :worker_port /readyz
#                               router tasks, workers      -> Redis :6379 (TLS, AUTH)
#                               router tasks, workers      -> AWS APIs :443 (ECR, Auto Scaling,
#                                                             Lambda, CloudWatch Logs)
#
# Nothing else is open: workers and router tasks take no traffic from the internet even in
# public subnets, and no SSH port exists (Session Manager instead, var.worker_ssm_access). The
# created VPC's default security group has no rules at all (aws_default_security_group below).

data "aws_availability_zones" "available" {
  count = local.create_vpc ? 1 : 0
  state = "available"
}

locals {
  create_vpc  = var.vpc_id == null
  public_tier = var.compute_subnet_tier == "public"
  nat_gateway = local.create_vpc && !local.public_tier
  azs         = local.create_vpc ? slice(data.aws_availability_zones.available[0].names, 0, var.az_count) : []

  vpc_id             = local.create_vpc ? aws_vpc.this[0].id : var.vpc_id
  public_subnet_ids  = local.create_vpc ? aws_subnet.public[*].id : var.public_subnet_ids
  private_subnet_ids = local.create_vpc ? aws_subnet.private[*].id : var.private_subnet_ids
  compute_subnet_ids = local.public_tier ? local.public_subnet_ids : local.private_subnet_ids
  alb_subnet_ids     = var.router_internal ? local.private_subnet_ids : local.public_subnet_ids
}

check "existing_vpc_subnets" {
  assert {
    condition     = local.create_vpc || (length(var.public_subnet_ids) >= 2 && length(var.private_subnet_ids) >= 1)
    error_message = "With vpc_id set, give public_subnet_ids (two zones at least, for the ALB) and private_subnet_ids (Redis)."
  }
}

resource "aws_vpc" "this" {
  count = local.create_vpc ? 1 : 0

  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = { Name = var.name }
}

# Terraform takes over the VPC's default security group and removes all its rules: anything
# launched without a group of ours gets no traffic in or out.
resource "aws_default_security_group" "this" {
  count = local.create_vpc ? 1 : 0

  vpc_id = aws_vpc.this[0].id
  tags   = { Name = "${var.name}-default-closed" }
}

resource "aws_internet_gateway" "this" {
  count = local.create_vpc ? 1 : 0

  vpc_id = aws_vpc.this[0].id
  tags   = { Name = var.name }
}

resource "aws_subnet" "public" {
  count = local.create_vpc ? var.az_count : 0

  vpc_id            = aws_vpc.this[0].id
  availability_zone = local.azs[count.index]
  cidr_block        = cidrsubnet(var.vpc_cidr, 4, count.index)
  # Public IPs are asked for where they are needed (launch template, ECS service), not by default.
  map_public_ip_on_launch = false

  tags = { Name = "${var.name}-public-${local.azs[count.index]}" }
}

resource "aws_subnet" "private" {
  count = local.create_vpc ? var.az_count : 0

  vpc_id            = aws_vpc.this[0].id
  availability_zone = local.azs[count.index]
  cidr_block        = cidrsubnet(var.vpc_cidr, 4, 8 + count.index)

  tags = { Name = "${var.name}-private-${local.azs[count.index]}" }
}

resource "aws_route_table" "public" {
  count = local.create_vpc ? 1 : 0

  vpc_id = aws_vpc.this[0].id
  tags   = { Name = "${var.name}-public" }
}

resource "aws_route" "public_internet" {
  count = local.create_vpc ? 1 : 0

  route_table_id         = aws_route_table.public[0].id
  destination_cidr_block = "0.0.0.0/0"
  gateway_id             = aws_internet_gateway.this[0].id
}

resource "aws_route_table_association" "public" {
  count = local.create_vpc ? var.az_count : 0

  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public[0].id
}

resource "aws_route_table" "private" {
  count = local.create_vpc ? 1 : 0

  vpc_id = aws_vpc.this[0].id
  tags   = { Name = "${var.name}-private" }
}

resource "aws_route_table_association" "private" {
  count = local.create_vpc ? var.az_count : 0

  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private[0].id
}

# One NAT gateway (not one per zone): only with compute_subnet_tier = "private". A zone outage
# then cuts the private subnets' egress; the stack's idle cost is what this trades for.
resource "aws_eip" "nat" {
  count = local.nat_gateway ? 1 : 0

  domain = "vpc"
  tags   = { Name = "${var.name}-nat" }
}

resource "aws_nat_gateway" "this" {
  count = local.nat_gateway ? 1 : 0

  allocation_id = aws_eip.nat[0].id
  subnet_id     = aws_subnet.public[0].id
  tags          = { Name = var.name }

  depends_on = [aws_internet_gateway.this]
}

resource "aws_route" "private_nat" {
  count = local.nat_gateway ? 1 : 0

  route_table_id         = aws_route_table.private[0].id
  destination_cidr_block = "0.0.0.0/0"
  nat_gateway_id         = aws_nat_gateway.this[0].id
}

# S3 gateway endpoint: free, and ECR image layers come from S3, so worker image pulls through a
# NAT gateway are not billed per GB.
resource "aws_vpc_endpoint" "s3" {
  count = local.create_vpc ? 1 : 0

  vpc_id            = aws_vpc.this[0].id
  service_name      = "com.amazonaws.${var.region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = [aws_route_table.public[0].id, aws_route_table.private[0].id]

  tags = { Name = "${var.name}-s3" }
}

# ---------------------------------------------------------------------------------------------
# Security groups (rules as separate resources, so groups can name each other without cycles)
# ---------------------------------------------------------------------------------------------

resource "aws_security_group" "alb" {
  name        = "${var.name}-alb"
  description = "Libra ALB: clients in, router tasks out"
  vpc_id      = local.vpc_id
}

resource "aws_security_group" "router" {
  name        = "${var.name}-router"
  description = "Libra router tasks: ALB in; workers, Redis and AWS APIs out"
  vpc_id      = local.vpc_id
}

resource "aws_security_group" "worker" {
  name        = "${var.name}-worker"
  description = "Libra GPU workers: router in; Redis and AWS APIs out"
  vpc_id      = local.vpc_id
}

resource "aws_security_group" "redis" {
  name        = "${var.name}-redis"
  description = "Libra Redis: routers and workers in"
  vpc_id      = local.vpc_id
}

locals {
  # Port 80 either redirects to 443 or, with allow_plain_http and no certificate, serves the API
  # (router.tf). The workers' health-check listener (workers.tf) gets no ingress rule at all.
  alb_ports = var.certificate_arn == null ? [80] : [80, 443]
  alb_ingress = {
    for pair in setproduct(var.router_ingress_cidrs, local.alb_ports) : "${pair[0]}:${pair[1]}" => {
      cidr = pair[0]
      port = pair[1]
    }
  }
}

resource "aws_vpc_security_group_ingress_rule" "alb_clients" {
  for_each = local.alb_ingress

  security_group_id = aws_security_group.alb.id
  description       = "clients"
  cidr_ipv4         = each.value.cidr
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
}

resource "aws_vpc_security_group_egress_rule" "alb_to_router" {
  security_group_id            = aws_security_group.alb.id
  description                  = "router tasks"
  referenced_security_group_id = aws_security_group.router.id
  ip_protocol                  = "tcp"
  from_port                    = var.router_port
  to_port                      = var.router_port
}

# The ALB health-checks the workers' /readyz (the group's ELB health check, workers.tf); no
# client request reaches a worker through the ALB (the listener rule can never match).
resource "aws_vpc_security_group_egress_rule" "alb_to_worker" {
  security_group_id            = aws_security_group.alb.id
  description                  = "worker health checks"
  referenced_security_group_id = aws_security_group.worker.id
  ip_protocol                  = "tcp"
  from_port                    = var.worker_port
  to_port                      = var.worker_port
}

resource "aws_vpc_security_group_ingress_rule" "worker_from_alb" {
  security_group_id            = aws_security_group.worker.id
  description                  = "ALB health checks"
  referenced_security_group_id = aws_security_group.alb.id
  ip_protocol                  = "tcp"
  from_port                    = var.worker_port
  to_port                      = var.worker_port
}

resource "aws_vpc_security_group_ingress_rule" "router_from_alb" {
  security_group_id            = aws_security_group.router.id
  description                  = "ALB"
  referenced_security_group_id = aws_security_group.alb.id
  ip_protocol                  = "tcp"
  from_port                    = var.router_port
  to_port                      = var.router_port
}

resource "aws_vpc_security_group_egress_rule" "router_to_worker" {
  security_group_id            = aws_security_group.router.id
  description                  = "workers /infer"
  referenced_security_group_id = aws_security_group.worker.id
  ip_protocol                  = "tcp"
  from_port                    = var.worker_port
  to_port                      = var.worker_port
}

resource "aws_vpc_security_group_ingress_rule" "worker_from_router" {
  security_group_id            = aws_security_group.worker.id
  description                  = "router tasks"
  referenced_security_group_id = aws_security_group.router.id
  ip_protocol                  = "tcp"
  from_port                    = var.worker_port
  to_port                      = var.worker_port
}

resource "aws_vpc_security_group_egress_rule" "to_redis" {
  for_each = {
    router = aws_security_group.router.id
    worker = aws_security_group.worker.id
  }

  security_group_id            = each.value
  description                  = "Redis"
  referenced_security_group_id = aws_security_group.redis.id
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
}

resource "aws_vpc_security_group_ingress_rule" "redis_from" {
  for_each = {
    router = aws_security_group.router.id
    worker = aws_security_group.worker.id
  }

  security_group_id            = aws_security_group.redis.id
  description                  = "${each.key}s"
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
}

resource "aws_vpc_security_group_egress_rule" "aws_apis" {
  for_each = {
    router = aws_security_group.router.id
    worker = aws_security_group.worker.id
  }

  security_group_id = each.value
  description       = "AWS APIs and ECR over HTTPS"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}
