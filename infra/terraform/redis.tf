# Redis (ElastiCache): the routers' shared per-second rate counters and the worker registry
# (libra/serving/state/). Everything Libra writes has a TTL, so there is nothing to back up or fail over:
# one node, no snapshots. A lost node costs a few seconds of rates (routers fall back to their
# local counts) and the workers re-register on their next heartbeat.
#
# Clients authenticate with an AUTH token over TLS. The token is generated once (Secrets
# Manager's GetRandomPassword), kept by the replication group, and handed to routers and workers
# only inside the LIBRA_REDIS_URL secret (secrets.tf): never in a plain environment variable,
# user data or an output.

resource "aws_elasticache_subnet_group" "redis" {
  name       = "${var.name}-redis"
  subnet_ids = local.private_subnet_ids
}

# Read on every plan, used only at creation: the replication group ignores later values.
data "aws_secretsmanager_random_password" "redis_auth" {
  password_length     = 64
  exclude_punctuation = true # the token sits in a URL (rediss://:<token>@host): keep it plain
}

resource "aws_elasticache_replication_group" "redis" {
  replication_group_id = "${var.name}-redis"
  description          = "Libra rate counters and worker registry"

  engine             = var.redis_engine
  engine_version     = var.redis_engine_version
  node_type          = var.redis_node_type
  num_cache_clusters = 1
  port               = 6379

  subnet_group_name  = aws_elasticache_subnet_group.redis.name
  security_group_ids = [aws_security_group.redis.id]

  at_rest_encryption_enabled = true
  transit_encryption_enabled = var.redis_transit_encryption
  # ElastiCache accepts an AUTH token only with TLS in transit.
  auth_token                 = var.redis_transit_encryption ? data.aws_secretsmanager_random_password.redis_auth.random_password : null
  automatic_failover_enabled = false
  multi_az_enabled           = false
  snapshot_retention_limit   = 0
  apply_immediately          = true

  lifecycle {
    # The token is made once, at creation; rotating it is a deliberate step (infra/README.md).
    ignore_changes = [auth_token]
  }
}

locals {
  redis_auth = var.redis_transit_encryption ? ":${aws_elasticache_replication_group.redis.auth_token}@" : ""
  # LIBRA_REDIS_URL for routers and workers (redis-py: rediss:// is TLS, verified with the
  # system CA store, which trusts ElastiCache's certificates; `:<token>@` is the AUTH password).
  redis_url = format(
    "%s://%s%s:%d/0",
    var.redis_transit_encryption ? "rediss" : "redis",
    local.redis_auth,
    aws_elasticache_replication_group.redis.primary_endpoint_address,
    aws_elasticache_replication_group.redis.port,
  )
  # The same without the token, for outputs and docs.
  redis_endpoint = format(
    "%s://%s:%d/0",
    var.redis_transit_encryption ? "rediss" : "redis",
    aws_elasticache_replication_group.redis.primary_endpoint_address,
    aws_elasticache_replication_group.redis.port,
  )
}
