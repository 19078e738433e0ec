# Secrets the router task and the workers read at start: the API key entries (LIBRA_API_KEYS,
# libra/serving/keys.py) and the Redis URL with its AUTH token (LIBRA_REDIS_URL). ECS injects
# both into the router container as environment variables from Secrets Manager (router.tf,
# `secrets`); the worker's boot script fetches the Redis URL with the instance role
# (templates/worker-user-data.sh.tftpl). Neither appears in the task definition, the launch
# template's user data or an output.
#
# Encryption at rest uses Secrets Manager's AWS-managed key (aws/secretsmanager); see
# infra/.checkov.yaml for why not a customer-managed key.

locals {
  create_api_keys_secret = var.api_keys_secret_arn == null
  api_keys_secret_arn    = local.create_api_keys_secret ? aws_secretsmanager_secret.api_keys[0].arn : var.api_keys_secret_arn

  # Container environment variable name -> secret ARN; each name is a Settings field
  # (tests/unit/test_infra.py holds it to that).
  router_secrets = {
    LIBRA_API_KEYS  = local.api_keys_secret_arn
    LIBRA_REDIS_URL = aws_secretsmanager_secret.redis_url.arn
  }
}

resource "aws_secretsmanager_secret" "api_keys" {
  count = local.create_api_keys_secret ? 1 : 0

  name_prefix             = "${var.name}/api-keys-"
  description             = "Libra router API key entries (LIBRA_API_KEYS): names, SHA-256 hashes, rights and limits; never the keys themselves"
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "api_keys" {
  count = local.create_api_keys_secret ? 1 : 0

  secret_id     = aws_secretsmanager_secret.api_keys[0].id
  secret_string = join("\n", var.api_key_entries)
}

resource "aws_secretsmanager_secret" "redis_url" {
  name_prefix             = "${var.name}/redis-url-"
  description             = "LIBRA_REDIS_URL of the Libra routers and workers, AUTH token included"
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "redis_url" {
  secret_id     = aws_secretsmanager_secret.redis_url.id
  secret_string = local.redis_url
}
